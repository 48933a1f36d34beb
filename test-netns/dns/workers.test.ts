/**
 * `dns.workers: 2`: a worker thread shares the listen address with the main thread through
 * SO_REUSEPORT and answers from the shared zone; what it cannot answer (here an ExternalName)
 * it hands to the main thread. Real `dig` from a pod, from many source ports so the kernel
 * spreads the queries over both sockets.
 */
import { labTest } from '../harness';
import { dig, dnsLab, hostStatus, m, ManifestDir, sleep, startDns } from './helpers';

labTest('two UDP serving threads on one address (dns.workers)', { prefix: 'qd-wrk', timeout: 120_000 }, async (t, lab) => {
  const md = new ManifestDir('qd-wrk');
  t.teardown(() => md.remove());
  md.write('cluster.yaml', [
    m.namespace('prod'),
    m.service('prod', 'web', { clusterIP: '10.96.1.10', clusterIPs: ['10.96.1.10'], ports: [{ name: 'http', port: 80, protocol: 'TCP' }] }),
    m.service('prod', 'alias', { type: 'ExternalName', externalName: 'web.prod.svc.cluster.local' }),
  ]);
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
});
