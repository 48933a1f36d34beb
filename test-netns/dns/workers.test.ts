/**
 * `dns.workers: 2`: a worker thread shares the listen address with the main thread through
 * SO_REUSEPORT and answers from the shared zone; what it cannot answer (here an ExternalName)
 * it hands to the main thread. The worker also serves the kube-dns Service VIP (steered to lo),
 * and stops serving it when the Service goes. Real `dig` from a pod, from many source ports so
 * the kernel spreads the queries over both sockets.
 *
 * Over TCP the same: each thread has its own listener on the address (and on the VIP); `dig
 * +tcp`, `dig +tcp +keepopen` (several names on one connection) and a pipelined client
 * (load-client.js tcp: all queries in one write) get right answers from both threads, with
 * forwarded names, ExternalName and AXFR handed by the worker to the main thread and the
 * answers written back on the worker's connection; idle connections are closed after
 * `dns.tcpIdle` by both threads.
 */
import path from 'node:path';
import { exec, labTest } from '../harness';
import { dig, dnsLab, hostStatus, m, ManifestDir, NODE_LOCAL, sleep, startAuth, startDns } from './helpers';

const CLIENT = path.join(__dirname, 'load-client.js');

/** Listening TCP sockets on `addr` in `ns` (one line each). */
async function tcpListeners(ns: string, addr: string): Promise<string[]> {
  return (await exec(ns, ['ss', '-Hlnt', 'src', addr])).stdout.trim().split('\n').filter((l) => l);
}

labTest('two UDP serving threads on one address (dns.workers)', { prefix: 'qd-wrk', timeout: 120_000 }, async (t, lab) => {
  const md = new ManifestDir('qd-wrk');
  t.teardown(() => md.remove());
  md.write('cluster.yaml', [
    m.namespace('prod'),
    m.service('prod', 'web', { clusterIP: '10.96.1.10', clusterIPs: ['10.96.1.10'], ports: [{ name: 'http', port: 80, protocol: 'TCP' }] }),
    m.service('prod', 'alias', { type: 'ExternalName', externalName: 'web.prod.svc.cluster.local' }),
  ]);
  const VIP = '10.96.0.10';
  md.write('kube-dns.yaml', [m.namespace('kube-system'), m.service('kube-system', 'kube-dns', { clusterIP: VIP, clusterIPs: [VIP], ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] })]);
  const { node, pod } = await dnsLab(lab);
  const host = await startDns(lab, node.ns, md.dir, { upstreams: [], resolvConf: '/nonexistent', workers: 2 });
  t.teardown(() => host.stop());

  const who = new Map<string, number>();
  const wrong: string[] = [];
  const N = 24;
  for (let i = 0; i < N; i++) {
    const w = await dig(pod, 'worker.podwire.invalid', 'TXT');
    const name = w.answers[0]?.[3] ?? w.status;
    who.set(name, (who.get(name) ?? 0) + 1);
    const a = await dig(pod, 'web.prod.svc.cluster.local');
    if (a.answers.map((x) => x[3]).join() !== '10.96.1.10') wrong.push(`A: ${a.status} ${a.raw.slice(0, 200)}`);
    const nx = await dig(pod, 'nope.prod.svc.cluster.local');
    if (nx.status !== 'NXDOMAIN' || !/SOA/.test(nx.authority.join())) wrong.push(`NXDOMAIN: ${nx.status}`);
    const alias = await dig(pod, 'alias.prod.svc.cluster.local');
    if (alias.answers.map((x) => x[3]).join() !== 'web.prod.svc.cluster.local.,10.96.1.10') wrong.push(`ExternalName: ${alias.status} ${alias.answers.join(' ')}`);
  }
  t.same(wrong, [], 'every answer right, whichever thread took it');
  t.ok((who.get('"main"') ?? 0) > 0 && (who.get('"worker-1"') ?? 0) > 0, `both threads answered: ${JSON.stringify([...who])}`);
  await sleep(1500); // workers report their counts every second
  const st = await hostStatus(host);
  t.equal(st.workers, 2, 'status shows 2 serving threads');
  // 3 counted queries per round (the worker.podwire.invalid probe is not counted, like the pid probe).
  t.ok((st.queries as number) >= 3 * N, `the metrics count the workers' queries too (${String(st.queries)})`);

  // The kube-dns VIP: served by both threads too (the worker binds it once the main thread steers it).
  for (let i = 0; i < 50 && !/10\.96\.0\.10/.test((await exec(node.ns, ['ss', '-Hlnu', 'src', `${VIP}:53`])).stdout); i++) await sleep(100);
  const sockets = (await exec(node.ns, ['ss', '-Hlnu', 'src', `${VIP}:53`])).stdout.trim().split('\n').filter((l) => l);
  t.equal(sockets.length, 2, `two UDP sockets on the kube-dns VIP ${VIP}:53 (main thread and worker)`, { sockets });
  const vipTcp = await tcpListeners(node.ns, `${VIP}:53`);
  t.equal(vipTcp.length, 2, `two TCP listeners on the kube-dns VIP too`, { vipTcp });
  const onVip = new Map<string, number>();
  const vipWrong: string[] = [];
  for (let i = 0; i < N; i++) {
    const w = await dig(pod, 'worker.podwire.invalid', 'TXT', { server: VIP });
    const name = w.answers[0]?.[3] ?? w.status;
    onVip.set(name, (onVip.get(name) ?? 0) + 1);
    const a = await dig(pod, 'alias.prod.svc.cluster.local', 'A', { server: VIP });
    if (a.answers.map((x) => x[3]).join() !== 'web.prod.svc.cluster.local.,10.96.1.10') vipWrong.push(`ExternalName via the VIP: ${a.status} ${a.answers.join(' ')}`);
  }
  t.same(vipWrong, [], 'every answer on the VIP right (the worker hands the ExternalName to the main thread, which answers from its VIP socket)');
  t.ok((onVip.get('"main"') ?? 0) > 0 && (onVip.get('"worker-1"') ?? 0) > 0, `both threads answered on the VIP: ${JSON.stringify([...onVip])}`);
  md.write('kube-dns.yaml', [m.namespace('kube-system')]);
  let left = sockets;
  for (let i = 0; i < 50 && left.length > 0; i++) {
    await sleep(100);
    left = (await exec(node.ns, ['ss', '-Hlnu', 'src', `${VIP}:53`])).stdout.trim().split('\n').filter((l) => l);
  }
  t.same(left, [], 'the kube-dns Service deleted: no thread serves the VIP any more');
  t.same(await tcpListeners(node.ns, `${VIP}:53`), [], 'over TCP neither');
});

labTest('TCP on every serving thread (dns.workers): dig +tcp, pipelining, hand-off to the main thread', { prefix: 'hdt-wrktcp', timeout: 150_000 }, async (t, lab) => {
  const md = new ManifestDir('hdt-wrktcp');
  t.teardown(() => md.remove());
  md.write('cluster.yaml', [
    m.namespace('prod'),
    m.service('prod', 'web', { clusterIP: '10.96.1.10', clusterIPs: ['10.96.1.10'], ports: [{ name: 'http', port: 80, protocol: 'TCP' }] }),
    m.service('prod', 'alias', { type: 'ExternalName', externalName: 'web.prod.svc.cluster.local' }),
  ]);
  const { node, pod, others } = await dnsLab(lab, 1);
  const up = await startAuth(lab, others[0]!.ns, '198.18.0.2:53', 'example.org', {}, { wildcard: '192.0.2.11' });
  t.teardown(() => up.stop());
  const host = await startDns(lab, node.ns, md.dir, { upstreams: ['198.18.0.2'], resolvConf: '/nonexistent', workers: 2, tcpIdle: 1000 });
  t.teardown(() => host.stop());
  const listeners = await tcpListeners(node.ns, `${NODE_LOCAL}:53`);
  t.equal(listeners.length, 2, 'two TCP listeners on the address (main thread and worker)', { listeners });

  // dig +tcp: a new connection per query, spread by the kernel over both listeners.
  const who = new Map<string, number>();
  const wrong: string[] = [];
  const N = 16;
  for (let i = 0; i < N; i++) {
    const w = await dig(pod, 'worker.podwire.invalid', 'TXT', { args: ['+tcp'] });
    const name = w.answers[0]?.[3] ?? w.status;
    who.set(name, (who.get(name) ?? 0) + 1);
    const a = await dig(pod, 'web.prod.svc.cluster.local', 'A', { args: ['+tcp'] });
    if (a.answers.map((x) => x[3]).join() !== '10.96.1.10') wrong.push(`A: ${a.status} ${a.raw.slice(0, 200)}`);
    const nx = await dig(pod, 'nope.prod.svc.cluster.local', 'A', { args: ['+tcp'] });
    if (nx.status !== 'NXDOMAIN' || !/SOA/.test(nx.authority.join())) wrong.push(`NXDOMAIN: ${nx.status}`);
    const fwd = await dig(pod, `d${i}.example.org`, 'A', { args: ['+tcp'] });
    if (fwd.answers.map((x) => x[3]).join() !== '192.0.2.11') wrong.push(`forwarded: ${fwd.status} ${fwd.answers.join(' ')}`);
  }
  t.same(wrong, [], 'every dig +tcp answer right, whichever thread took the connection');
  t.ok((who.get('"main"') ?? 0) > 0 && (who.get('"worker-1"') ?? 0) > 0, `both threads answered over TCP: ${JSON.stringify([...who])}`);

  // dig +tcp +keepopen: several names on one connection; the thread is asked first and last.
  const keep: Record<string, number> = {};
  const keepWrong: string[] = [];
  for (let i = 0; i < 12; i++) {
    const r = await exec(pod, ['dig', `@${NODE_LOCAL}`, '+tcp', '+keepopen', '+tries=1', '+timeout=3', '+nocookie', '+short', 'worker.podwire.invalid', 'TXT', 'web.prod.svc.cluster.local', 'A', 'alias.prod.svc.cluster.local', 'A', `k${i}.example.org`, 'A', 'worker.podwire.invalid', 'TXT'], { timeoutMs: 20_000 });
    const lines = r.stdout.trim().split('\n');
    const [first, ...rest] = lines;
    keep[first ?? '?'] = (keep[first ?? '?'] ?? 0) + 1;
    const want = [first, '10.96.1.10', 'web.prod.svc.cluster.local.', '10.96.1.10', '192.0.2.11', first];
    if (!/^"(main|worker-1)"$/.test(first ?? '') || rest.join() !== want.slice(1).join()) keepWrong.push(r.stdout + r.stderr);
  }
  t.same(keepWrong, [], 'dig +tcp +keepopen: every name answered on the one connection, by the thread that took it');
  t.ok((keep['"worker-1"'] ?? 0) > 0, `connections kept open on the worker too: ${JSON.stringify(keep)}`);

  // Pipelined: all queries in one write on each of 16 connections at once, then left idle.
  const queries: [string, string][] = [
    ['worker.podwire.invalid', 'TXT'],
    ['web.prod.svc.cluster.local', 'A'],
    ['nope.prod.svc.cluster.local', 'A'],
    ['alias.prod.svc.cluster.local', 'A'],
    ['p.example.org', 'A'],
    ['cluster.local', 'AXFR'],
  ];
  const run = await exec(pod, [process.execPath, CLIENT, 'tcp', JSON.stringify({ server: NODE_LOCAL, connections: 16, queries, timeoutMs: 8000, waitClose: true })], { timeoutMs: 30_000 });
  const res = JSON.parse(/\{"connections".*\}/.exec(run.stdout)?.[0] ?? '{"connections":[]}') as { connections: { answers: Record<string, { rcode: string; data: string[] }> | null; order: string[]; closedByServer: boolean }[] };
  t.equal(res.connections.length, 16, 'the pipelined client ran 16 connections', { stderr: run.stderr });
  const expect: Record<string, { rcode: string; data: string[] }> = {
    'web.prod.svc.cluster.local A': { rcode: 'NOERROR', data: ['10.96.1.10'] },
    'nope.prod.svc.cluster.local A': { rcode: 'NXDOMAIN', data: [] },
    'alias.prod.svc.cluster.local A': { rcode: 'NOERROR', data: ['web.prod.svc.cluster.local.', '10.96.1.10'] },
    'p.example.org A': { rcode: 'NOERROR', data: ['192.0.2.11'] },
    'cluster.local AXFR': { rcode: 'REFUSED', data: [] },
  };
  const byThread = new Map<string, number>();
  const pipeWrong: unknown[] = [];
  for (const c of res.connections) {
    const thread = c.answers?.['worker.podwire.invalid TXT']?.data[0] ?? 'none';
    byThread.set(thread, (byThread.get(thread) ?? 0) + 1);
    const answers = c.answers;
    if (!answers || !Object.entries(expect).every(([k, v]) => JSON.stringify(answers[k]) === JSON.stringify(v))) pipeWrong.push({ thread, answers, order: c.order });
  }
  t.same(pipeWrong, [], 'every pipelined connection got all 6 answers, each right (forwarded, ExternalName and AXFR through the main thread)');
  t.ok((byThread.get('worker-1') ?? 0) > 0 && (byThread.get('main') ?? 0) > 0, `pipelined connections on both threads: ${JSON.stringify([...byThread])}`);
  t.same(
    res.connections.filter((c) => !c.closedByServer).map((c) => c.answers?.['worker.podwire.invalid TXT']?.data[0]),
    [],
    'every idle connection closed by the server after dns.tcpIdle (1 s), on both threads',
  );
  t.match(up.stdout, /Q p\.example\.org 1/, 'the forwarded name reached the upstream');
});
