/**
 * `dns.workers: 2`: a worker thread shares the listen address with the main thread through
 * SO_REUSEPORT and answers from the shared zone; what it cannot answer (here an ExternalName)
 * it hands to the main thread. The worker also serves the kube-dns Service VIP (steered to lo),
 * and stops serving it when the Service goes. Real `dig` from a pod, from many source ports so
 * the kernel spreads the queries over both sockets.
 */
import { exec, labTest } from '../harness';
import { dig, dnsLab, hostStatus, m, ManifestDir, sleep, startDns } from './helpers';

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
});
