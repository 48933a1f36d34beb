/**
 * `podwired --allocate-node-cidrs` as the daemon wires it: 3 Daemons (the real src/daemon
 * Daemon, each with its own KubernetesSource over HTTP to the fixture API server on
 * 127.0.0.1, config from the real flag parser, no data-plane components, a fake kernel, so
 * nothing touches any namespace) race over 20 Nodes; the leader's daemon is stopped after the
 * 10th PATCH without releasing the Lease (like kill -9); the survivors take over after the
 * lease duration (15 s, the daemon's default) and finish; no subnet is handed out twice.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { silentLogger } from '../../src/common';
import { Daemon } from '../../src/daemon/daemon';
import { loadConfig } from '../../src/daemon/config';
import { createKubernetesSource } from '../../src/k8s';
import { fakeKernel } from '../../src/kernel/testing';
import { FakeApiServer, type KObject } from '../fixtures/apiserver/server';

t.test('3 podwired daemons with --allocate-node-cidrs race over 20 Nodes; the leader dies halfway', { timeout: 90_000 }, async (t) => {
  const api = new FakeApiServer();
  await api.start();
  const dir = mkdtempSync(path.join(tmpdir(), 'qo-allocd-'));
  const kubeconfig = path.join(dir, 'kubeconfig');
  api.writeKubeconfig(kubeconfig);
  const names = [...Array(20).keys()].map((i) => `node-${String(i + 1).padStart(2, '0')}`);
  for (const [i, n] of names.entries()) api.put('nodes', { metadata: { name: n }, spec: {}, status: { addresses: [{ type: 'InternalIP', address: `198.18.0.${i + 1}` }] } } as KObject);
  const ids = ['node-01', 'node-02', 'node-03'];
  const daemons: { d: Daemon; ac: AbortController }[] = [];
  t.teardown(async () => {
    for (const x of daemons) {
      x.ac.abort();
      await x.d.stop().catch(() => undefined);
    }
    await api.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  let patches = 0;
  let killed: string | undefined;
  api.onRequest = (r) => {
    if (r.method !== 'PATCH' || !r.path.startsWith('/api/v1/nodes/')) return;
    if (++patches !== 10 || killed !== undefined) return;
    const i = daemons.findIndex((x) => (x.d.status().nodeCidrAllocator as { isLeader?: boolean } | undefined)?.isLeader);
    if (i < 0) return;
    killed = ids[i];
    daemons[i]!.ac.abort(); // the Lease is not released
  };
  for (const id of ids) {
    const { config } = loadConfig({
      argv: ['--node-name', id, '--kubeconfig', kubeconfig, '--control-socket', path.join(dir, id, 'podwire.sock'), '--state-dir', path.join(dir, id, 'state'), '--allocate-node-cidrs', '--cluster-cidr', '10.244.0.0/16', '--node-cidr-mask-size', '26', '--enable', 'cni'],
      env: {},
      readFile: () => {
        throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
      },
    });
    const source = createKubernetesSource({ kubeconfigPath: kubeconfig, nodeName: id, logger: silentLogger, kinds: ['Node'], credentials: 'in-process' });
    const d = new Daemon({ config, source, components: [], logger: silentLogger, processMetrics: false, tcpServers: false, kernel: fakeKernel() });
    const ac = new AbortController();
    daemons.push({ d, ac });
    await d.start(ac.signal);
  }
  const cidr = (n: string) => ((api.get('nodes', n)?.spec as { podCIDRs?: string[] } | undefined)?.podCIDRs ?? [])[0];
  let done = false;
  for (let i = 0; i < 1200 && !done; i++) {
    done = names.every((n) => cidr(n) !== undefined);
    if (!done) await new Promise((r) => setTimeout(r, 50));
  }
  t.ok(done, 'every Node got a pod CIDR');
  t.ok(killed, `the leader's daemon (${killed}) was stopped after the 10th PATCH`);
  const got = names.map(cidr);
  t.equal(new Set(got).size, 20, 'no subnet handed out twice');
  t.same([...got].sort(), [...Array(20).keys()].map((i) => `10.244.${Math.floor(i / 4)}.${(i % 4) * 64}/26`).sort(), 'the lowest 20 /26s (--node-cidr-mask-size 26)');
  t.equal(api.requests.filter((r) => r.method === 'PATCH' && r.status === 422).length, 0, 'no set CIDR was ever rewritten');
  const holder = (api.get('leases', 'kube-system/podwire-node-cidr-allocator')?.spec as { holderIdentity?: string } | undefined)?.holderIdentity;
  t.ok(holder !== undefined && holder !== killed, `a survivor (${holder}) holds the Lease`);
  const st = daemons.map((x) => x.d.status().nodeCidrAllocator as { isLeader: boolean; allocations: number } | undefined);
  t.equal(st.filter((s) => s?.isLeader).length, 1, 'one leader among the daemons');
  // The 10th PATCH was aborted on the client while the server applied it: the dead leader
  // counted 9, and the new leader found that Node already allocated when it rebuilt the used set.
  t.ok((st.find((s) => s?.isLeader)?.allocations ?? 0) >= 10, 'the new leader allocated the other half', { st });
});
