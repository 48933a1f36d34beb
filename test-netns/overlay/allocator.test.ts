/**
 * `--allocate-node-cidrs` against the fixture API server (real HTTP on 127.0.0.1, the real
 * client stack; no namespaces, nothing in the kernel):
 *  - 3 allocators (as 3 podwireds would run them) race over 20 Nodes without pod CIDRs,
 *    dual-stack; the leader is killed (no lease release, like kill -9) after 10 PATCHes;
 *    in the end every Node has one v4 and one v6 CIDR, no two Nodes share one, no set CIDR
 *    was ever changed (the fixture answers 422 to that, none seen), the Lease changed holder;
 *  - a deleted Node's subnet is not handed out during the grace period, and is after it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { silentLogger } from '../../src/common';
import { Cidr } from '../../src/common/ip';
import { createCredentials, HttpTransport } from '../../src/k8s/api-client';
import { NodeCidrAllocator, RELEASED_ANNOTATION } from '../../src/overlay/node-cidr-allocator';
import { FakeApiServer, type KObject, type RequestRecord } from '../fixtures/apiserver/server';

const NS = 'kube-system';

function bareNode(name: string, i: number): KObject {
  return {
    metadata: { name },
    spec: {},
    status: { addresses: [{ type: 'InternalIP', address: `198.18.0.${i}` }] },
  } as KObject;
}

const cidrsOf = (n: KObject | undefined): string[] => ((n?.spec as { podCIDRs?: string[] } | undefined)?.podCIDRs ?? []);

async function bounded(what: string, cond: () => boolean, maxMs = 30_000): Promise<boolean> {
  for (let i = 0; i < maxMs / 50; i++) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  t.fail(`timed out waiting for: ${what}`);
  return false;
}

async function setup(nodes: number) {
  const api = new FakeApiServer();
  await api.start();
  const dir = mkdtempSync(join(tmpdir(), 'qo-alloc-'));
  const kubeconfig = join(dir, 'kubeconfig');
  api.writeKubeconfig(kubeconfig);
  for (let i = 1; i <= nodes; i++) api.put('nodes', bareNode(`node-${String(i).padStart(2, '0')}`, i));
  const transports: HttpTransport[] = [];
  const transport = async (): Promise<HttpTransport> => {
    const tr = new HttpTransport(await createCredentials({ kubeconfigPath: kubeconfig, mode: 'in-process' }));
    transports.push(tr);
    return tr;
  };
  const cleanup = async (): Promise<void> => {
    for (const tr of transports) tr.close();
    await api.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  return { api, transport, cleanup };
}

const timings = { leaseDurationMs: 1500, renewDeadlineMs: 1000, retryPeriodMs: 200, resyncMs: 100 };

t.test('3 allocators race over 20 Nodes (dual-stack); the leader is killed halfway; nothing lost, nothing shared, nothing changed', async (t) => {
  const { api, transport, cleanup } = await setup(20);
  t.teardown(cleanup);
  const patches: RequestRecord[] = [];
  const ids = ['pw-a', 'pw-b', 'pw-c'];
  const acs = ids.map(() => new AbortController());
  const allocators: NodeCidrAllocator[] = [];
  let killed: string | undefined;
  api.onRequest = (r) => {
    if (r.method === 'PATCH' && r.path.startsWith('/api/v1/nodes/')) {
      patches.push(r);
      // Halfway: kill whoever leads now (abort without releasing the Lease, like kill -9).
      if (patches.length === 10 && killed === undefined) {
        const i = allocators.findIndex((a) => a.elector.isLeader);
        if (i >= 0) {
          killed = ids[i];
          acs[i]!.abort();
        }
      }
    }
  };
  for (const [i, id] of ids.entries()) {
    allocators.push(
      new NodeCidrAllocator({
        transport: await transport(),
        identity: id,
        clusterCIDRs: [Cidr.parse('10.244.0.0/16'), Cidr.parse('fd00:10:244::/56')],
        maskSizeV4: 24,
        maskSizeV6: 64,
        releaseGraceMs: 60_000,
        leaseNamespace: NS,
        logger: silentLogger,
        ...timings,
      }),
    );
    void allocators[i]!.run(acs[i]!.signal);
  }
  t.teardown(() => acs.forEach((a) => a.abort()));
  const all = (): KObject[] => [...Array(20).keys()].map((i) => api.get('nodes', `node-${String(i + 1).padStart(2, '0')}`)!);
  await bounded('every node has pod CIDRs', () => all().every((n) => cidrsOf(n).length === 2));
  t.ok(killed, `the leader (${killed}) was killed after 10 PATCHes`);
  const v4 = all().map((n) => cidrsOf(n)[0]!);
  const v6 = all().map((n) => cidrsOf(n)[1]!);
  t.equal(new Set(v4).size, 20, 'no IPv4 subnet handed out twice');
  t.equal(new Set(v6).size, 20, 'no IPv6 subnet handed out twice');
  t.same([...v4].sort(), [...Array(20).keys()].map((i) => `10.244.${i}.0/24`).sort(), 'the lowest 20 /24s, nothing skipped');
  t.ok(v6.every((c) => /^fd00:10:244:[0-9a-f]*::\/64$|^fd00:10:244::\/64$/.test(c)), 'one /64 of the v6 cluster CIDR each', { v6 });
  for (const n of all()) t.equal((n.spec as { podCIDR?: string }).podCIDR, cidrsOf(n)[0], `${n.metadata.name}: spec.podCIDR is the first of spec.podCIDRs`);
  t.equal(patches.filter((p) => p.status === 422).length, 0, 'no PATCH ever tried to change a set CIDR (the fixture would answer 422)');
  const lease = api.get('leases', `${NS}/podwire-node-cidr-allocator`);
  const spec = lease?.spec as { holderIdentity?: string; leaseTransitions?: number } | undefined;
  t.not(spec?.holderIdentity, killed, `the Lease moved to a survivor (${spec?.holderIdentity})`);
  t.ok((spec?.leaseTransitions ?? 0) >= 1, 'leaseTransitions counts the change of holder', { spec });
  t.ok(ids.includes(spec?.holderIdentity ?? ''), 'held by one of the candidates');
  t.equal(allocators.filter((a) => a.elector.isLeader).length, 1, 'exactly one leader at the end');
  // A Node deleted after all this still counts as ours until the grace period ends: see the next test.
  const before = JSON.stringify(all().map(cidrsOf));
  await new Promise((r) => setTimeout(r, 500));
  t.equal(JSON.stringify(all().map(cidrsOf)), before, 'further passes change nothing');
});

t.test('a deleted Node\'s subnet is held for the grace period (across a leader change), then reused', async (t) => {
  const { api, transport, cleanup } = await setup(3);
  t.teardown(cleanup);
  const grace = 2500;
  const make = async (id: string) =>
    new NodeCidrAllocator({ transport: await transport(), identity: id, clusterCIDRs: [Cidr.parse('10.244.0.0/16')], maskSizeV4: 24, maskSizeV6: 64, releaseGraceMs: grace, leaseNamespace: NS, logger: silentLogger, ...timings });
  const first = await make('pw-a');
  const ac1 = new AbortController();
  void first.run(ac1.signal);
  t.teardown(() => ac1.abort());
  await bounded('3 nodes allocated', () => [1, 2, 3].every((i) => cidrsOf(api.get('nodes', `node-0${i}`)).length === 1));
  t.same(cidrsOf(api.get('nodes', 'node-01')), ['10.244.0.0/24']);
  api.delete('nodes', 'node-01');
  // The leader sees the deletion, records it on the Lease, then dies.
  await bounded('the release is on the Lease', () => ((api.get('leases', `${NS}/podwire-node-cidr-allocator`)?.metadata as { annotations?: Record<string, string> } | undefined)?.annotations?.[RELEASED_ANNOTATION] ?? '').includes('10.244.0.0/24'));
  const deletedAt = Date.now();
  ac1.abort();
  const second = await make('pw-b');
  const ac2 = new AbortController();
  void second.run(ac2.signal);
  t.teardown(() => ac2.abort());
  api.put('nodes', bareNode('node-04', 4));
  await bounded('node-04 allocated', () => cidrsOf(api.get('nodes', 'node-04')).length === 1);
  if (Date.now() - deletedAt < grace) t.same(cidrsOf(api.get('nodes', 'node-04')), ['10.244.3.0/24'], 'within the grace period the new leader skips the deleted node\'s subnet');
  else t.comment('the machine was too slow to check inside the grace period');
  await new Promise((r) => setTimeout(r, Math.max(0, grace - (Date.now() - deletedAt)) + 300));
  api.put('nodes', bareNode('node-05', 5));
  await bounded('node-05 allocated', () => cidrsOf(api.get('nodes', 'node-05')).length === 1);
  t.same(cidrsOf(api.get('nodes', 'node-05')), ['10.244.0.0/24'], 'after the grace period the subnet is free again (lowest first)');
});
