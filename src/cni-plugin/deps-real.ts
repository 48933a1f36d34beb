/** CniDeps over the real kernel module (src/kernel) and the host-local disk store. */
// node:child_process is required where used: it loads net, dgram and the stream machinery,
// milliseconds of every in-process CNI plugin start that never spawns anything.
// The kernel's narrow API (lite.ts), not index.ts: no conntrack, IPVS or libnftables on a pod start.
import type { Logger } from '../common/log';
import { NetnsIptables, NetnsSysctl, checkNetnsPath, openNetworkKernel } from '../kernel/lite';
import type { IptablesRunner, NetworkKernel } from '../kernel/types';
import type { CniDeps, ExecResult } from './deps';
import { DiskIpamStore } from './ipam/disk-store';

/** Node-namespace netlink sockets kept by a warm caller. */
const HOST_SOCKETS = 4;

export interface RealDeps extends CniDeps {
  close(): void;
}

/**
 * One set of deps per process (in-process path) or per daemon (fast path). `warm`
 * (default true) is for a long-lived caller such as podwired: a pool of node sockets,
 * the IPAM listing cache, remembered gateway/sysctl facts and parsed configs. The
 * one-shot in-process path passes `{ warm: false }`. Pod sockets are always per call.
 */
export function createRealDeps(log: Logger, options: { warm?: boolean } = {}): RealDeps {
  const warm = options.warm ?? true;
  // A small pool of node-namespace sockets: a request waits for the one before it on the
  // same socket, and a veth delete holds its socket ~20 ms, so concurrent calls rotate.
  const pool: (Promise<NetworkKernel> | undefined)[] = new Array<Promise<NetworkKernel> | undefined>(warm ? HOST_SOCKETS : 1);
  let turn = 0;
  const stores = warm ? new Map<string, DiskIpamStore>() : undefined;
  const iptables = new Map<4 | 6, IptablesRunner>();
  const sysctl = new NetnsSysctl(undefined);
  return {
    log,
    sysctl,
    ...(warm ? { ensured: new Set<string>(), parsed: new Map(), bridges: new Map() } : {}),
    async hostKernel(): Promise<NetworkKernel> {
      const i = turn++ % pool.length;
      let k = pool[i];
      if (!k) {
        pool[i] = k = openNetworkKernel();
        k.catch(() => (pool[i] = undefined));
      }
      return await k;
    },
    openPodKernel: (netns): Promise<NetworkKernel> => openNetworkKernel(netns),
    // Synchronous on purpose: open + ioctl cost microseconds, a thread-pool hop far more.
    checkNetns: (netns) => checkNetnsPath(netns.path),
    podSysctl: (netns) => new NetnsSysctl(netns),
    iptables(family) {
      let r = iptables.get(family);
      if (!r) iptables.set(family, (r = new NetnsIptables(family, undefined)));
      return r;
    },
    openStore(dataDir, network) {
      if (!stores) return new DiskIpamStore(dataDir, network, log);
      // Warm: one store per directory, so its listing cache survives between calls.
      const key = `${dataDir}\0${network}`;
      let st = stores.get(key);
      if (!st) stores.set(key, (st = new DiskIpamStore(dataDir, network, log, undefined, { cache: true })));
      return st;
    },
    execPlugin,
    close() {
      for (let i = 0; i < pool.length; i++) {
        void pool[i]?.then((k) => k.close()).catch(() => undefined);
        pool[i] = undefined;
      }
    },
  };
}

function execPlugin(file: string, env: Record<string, string>, stdin: Buffer): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const child = (require('node:child_process') as typeof import('node:child_process')).spawn(file, [], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'inherit'] });
    const out: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.on('error', reject);
    child.on('close', (code) => resolve({ exitCode: code ?? 1, stdout: Buffer.concat(out) }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(stdin);
  });
}
