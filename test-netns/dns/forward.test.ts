/**
 * Stub domains, upstreams and the cache, with servers the test starts in other lab
 * namespaces (never an outside address): the kube-dns ConfigMap's stubDomains and
 * upstreamNameservers, a truncated answer retried over TCP, upstream failover when one
 * is killed, serve-stale when all are down and fresh answers when one is back, a live
 * ConfigMap change, and a bad ConfigMap (error names key and value, last good kept).
 */
import { labTest } from '../harness';
import { dig, dnsLab, hostStatus, m, ManifestDir, sleep, startAuth, startDns } from './helpers';

const kubeDns = (stub: string): ReturnType<typeof m.configMap> =>
  m.configMap('kube-system', 'kube-dns', { stubDomains: JSON.stringify({ 'acme.local': [stub] }), upstreamNameservers: JSON.stringify(['198.18.0.2', '198.18.0.3']) });

labTest('stub domains, failover, serve-stale, TC retry, live ConfigMap', { prefix: 'pwdns-fwd', timeout: 170_000 }, async (t, lab) => {
  const dir = new ManifestDir('pwdns-fwd');
  t.teardown(() => dir.remove());
  dir.write('cluster.yaml', [m.namespace('default'), kubeDns('198.18.0.2:5300')]);
  const { node, pod, others } = await dnsLab(lab, 2);
  const [n2, n3] = others as [typeof others[0], typeof others[0]];
  const upA = () => startAuth(lab, n2.ns, '198.18.0.2:53', 'example.org', { 'www.example.org': { A: ['192.0.2.10'] } }, { ttl: 2, wildcard: '192.0.2.11' });
  const upB = () => startAuth(lab, n3.ns, '198.18.0.3:53', 'example.org', { 'www.example.org': { A: ['192.0.2.20'] } }, { ttl: 2, wildcard: '192.0.2.21' });
  let a = await upA();
  let b = await upB();
  const stub1 = await startAuth(lab, n2.ns, '198.18.0.2:5300', 'acme.local', { 'www.acme.local': { A: ['192.0.2.99'] } });
  const stub2 = await startAuth(lab, n3.ns, '198.18.0.3:5300', 'acme.local', { 'www.acme.local': { A: ['192.0.2.98'] } });
  const host = await startDns(lab, node.ns, dir.dir, { readTimeout: 400, healthCheck: 200, maxFails: 2, staleAnswerTimeout: 800, resolvConf: '/nonexistent' });
  t.teardown(() => host.stop());

  // Stub domain from the ConfigMap.
  let r = await dig(pod, 'www.acme.local');
  t.same(r.answers.map((x) => x[3]), ['192.0.2.99'], 'stub domain answered by its own server');
  t.match(stub1.stdout, /Q www\.acme\.local 1 udp/);

  // A truncated upstream answer is retried over TCP; the client gets TC and then all of it over TCP.
  r = await dig(pod, 'big.acme.local', 'A', { args: ['+ignore'] });
  t.match(r.flags, /tc/, 'too large for the client over UDP: TC');
  r = await dig(pod, 'big.acme.local');
  t.equal(r.answers.length, 80, 'full answer over TCP');
  t.match(stub1.stdout, /Q big\.acme\.local 1 tcp/, 'the forwarder retried over TCP');

  // Upstreams from upstreamNameservers, cached.
  r = await dig(pod, 'www.example.org');
  t.ok(['192.0.2.10', '192.0.2.20'].includes(r.answers[0]?.[3] ?? ''), `forwarded: ${r.answers[0]?.[3]}`);

  // Failover: kill A; every query still gets an answer (from B).
  await a.stop();
  let ok = 0;
  const seen = new Set<string>();
  for (let i = 0; i < 20; i++) {
    const x = await dig(pod, `f${i}.example.org`);
    if (x.status === 'NOERROR') ok++;
    seen.add(x.answers[0]?.[3] ?? x.status);
  }
  t.equal(ok, 20, 'all 20 answered with one upstream dead');
  t.same([...seen], ['192.0.2.21'], 'by the live upstream');
  const st = await hostStatus(host);
  t.match(st.upstreams, [{ to: '198.18.0.2:53', down: true }, { to: '198.18.0.3:53', down: false }], 'the dead upstream is marked down');
  // CoreDNS's metric names, as a dashboard reads them.
  const metrics = String(st.metrics);
  const metric = (re: RegExp): number => Number(re.exec(metrics)?.[1] ?? NaN);
  t.ok(metric(/^coredns_forward_requests_total\{to="198\.18\.0\.3:53"\} (\d+)$/m) >= 20, 'coredns_forward_requests_total per upstream');
  t.ok(metric(/^coredns_forward_healthcheck_failures_total\{to="198\.18\.0\.2:53"\} (\d+)$/m) >= 1, 'coredns_forward_healthcheck_failures_total of the dead upstream');
  t.ok(metric(/^coredns_cache_misses_total\{[^}]*\} (\d+)$/m) >= 20, 'coredns_cache_misses_total');
  t.ok(metric(/^coredns_dns_responses_total\{[^}]*rcode="NOERROR"[^}]*\} (\d+)$/m) >= 20, 'coredns_dns_responses_total{rcode}');

  // Serve-stale: B dies too; the expired entry is served (TTL 30) after upstreams are tried.
  await b.stop();
  await sleep(2500); // www.example.org (TTL 2) expires
  r = await dig(pod, 'www.example.org');
  t.equal(r.status, 'NOERROR', 'stale answer while every upstream is down');
  t.equal(r.answers[0]?.[1], 30, 'with the stale TTL');
  r = await dig(pod, 'never-seen.example.org');
  t.equal(r.status, 'SERVFAIL', 'nothing stale to serve: SERVFAIL');

  // One upstream back: fresh answers again.
  a = await upA();
  let fresh = '';
  for (let i = 0; i < 30 && fresh !== '192.0.2.10'; i++) {
    const x = await dig(pod, 'www.example.org');
    if (x.answers[0]?.[1] !== 30) fresh = x.answers[0]?.[3] ?? '';
    if (fresh !== '192.0.2.10') await sleep(200);
  }
  t.equal(fresh, '192.0.2.10', 'fresh answer from the upstream that came back');

  // Live ConfigMap change: the stub domain moves to the second server.
  dir.write('cluster.yaml', [m.namespace('default'), kubeDns('198.18.0.3:5300')]);
  let moved = '';
  for (let i = 0; i < 40 && moved !== '192.0.2.98'; i++) {
    moved = (await dig(pod, 'www.acme.local')).answers[0]?.[3] ?? '';
    if (moved !== '192.0.2.98') await sleep(100);
  }
  t.equal(moved, '192.0.2.98', 'stub domain follows the ConfigMap');
  t.match(stub2.stdout, /Q www\.acme\.local/);

  // A bad ConfigMap: error names the key and value; the last good configuration stays.
  dir.write('cluster.yaml', [m.namespace('default'), m.configMap('kube-system', 'kube-dns', { stubDomains: '{"acme.local": "198.18.0.2"}' })]);
  let err = '';
  for (let i = 0; i < 40 && !err; i++) {
    err = String((await hostStatus(host)).configMapError ?? '');
    if (!err) await sleep(100);
  }
  t.match(err, /stubDomains\["acme\.local"\]=.*198\.18\.0\.2.*non-empty list/, `error names key and value: ${err}`);
  r = await dig(pod, 'www.acme.local');
  t.same(r.answers.map((x) => x[3]), ['192.0.2.98'], 'last good stub domain kept');
  void b;
  b = await upB();
});
