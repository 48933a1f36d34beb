/** CniDeps over the kernel fakes and the fake IPAM store, for unit tests without root. */
import { silentLogger } from '../common/log';
import { FakeIptables, FakeNetnsWorld, FakeSysctl } from '../kernel/testing';
import type { BatchResult, LinkConfigStep, NetworkKernel } from '../kernel/types';
import type { CniDeps, ExecResult } from './deps';
import { FakeIpamStore } from './ipam/fake-store';

export const HOST_NS = '/fake/host';

export interface FakeCniDeps extends CniDeps {
  world: FakeNetnsWorld;
  stores: Map<string, FakeIpamStore>;
  ipt: FakeIptables;
  sysctlFake: FakeSysctl;
  /**
   * Make every call of `method` on the pod kernel throw (rollback tests). The same
   * operation inside a batch (`applyLinkConfig`: addRoute = a 'route' step, addAddress =
   * 'address', setLinkUp = 'up') fails too, with EINVAL, while the other steps apply.
   */
  failPod?: string;
  /** Paths that exist but are no network namespace, with the reason checkNetns gives. */
  notNetns?: Map<string, string>;
}

const EINVAL = 22;
const STEP_OF: Record<string, LinkConfigStep['kind']> = { addRoute: 'route', addAddress: 'address', setLinkUp: 'up' };

function injectedBatch(k: NetworkKernel, kind: LinkConfigStep['kind'], method: string) {
  return async (steps: LinkConfigStep[]): Promise<BatchResult<LinkConfigStep>> => {
    const out: BatchResult<LinkConfigStep> = { applied: 0, failed: [] };
    for (const [index, step] of steps.entries()) {
      if (step.kind === kind) {
        out.failed.push({ index, change: { op: 'add', entry: step }, errno: EINVAL, message: `injected failure in ${method}` });
        continue;
      }
      const r = await k.applyLinkConfig!([step]);
      out.applied += r.applied;
      for (const f of r.failed) out.failed.push({ ...f, index });
    }
    return out;
  };
}

export function createFakeDeps(): FakeCniDeps {
  // Like a real new netns: `lo` starts down, so a test can see that ADD brings it up.
  const world = new FakeNetnsWorld({ loopbackUp: false });
  const stores = new Map<string, FakeIpamStore>();
  const ipt = new FakeIptables(4);
  const sysctlFake = new FakeSysctl();
  const deps: FakeCniDeps = {
    world,
    stores,
    ipt,
    sysctlFake,
    log: silentLogger,
    sysctl: sysctlFake,
    podSysctl: () => new FakeSysctl(),
    hostKernel: async () => world.kernel(HOST_NS),
    openPodKernel: async (netns) => {
      const k = world.kernel(netns);
      if (!deps.failPod) return k;
      const method = deps.failPod;
      return new Proxy(k, {
        get(target, prop, recv) {
          if (prop === method) return async () => Promise.reject(new Error(`injected failure in ${method}`));
          if (prop === 'applyLinkConfig' && STEP_OF[method]) return injectedBatch(target, STEP_OF[method]!, method);
          if (prop === 'close') return () => undefined;
          return Reflect.get(target, prop, recv) as unknown;
        },
      }) as NetworkKernel;
    },
    checkNetns: (netns) => {
      const what = deps.notNetns?.get(netns.path);
      if (what) return { ok: false, missing: false, reason: what };
      return world.has(netns.path) ? { ok: true } : { ok: false, missing: true, reason: 'does not exist' };
    },
    iptables: () => ipt,
    openStore: (dataDir, network) => {
      const key = `${dataDir}/${network}`;
      let s = stores.get(key);
      if (!s) stores.set(key, (s = new FakeIpamStore()));
      return s;
    },
    execPlugin: async (): Promise<ExecResult> => ({ exitCode: 1, stdout: Buffer.from('{"code":7,"msg":"no delegate in fakes"}') }),
  };
  return deps;
}
