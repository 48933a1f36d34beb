/**
 * The cluster zone seen from a pod with real `dig`: the DNS component runs in a node
 * namespace on a manifest folder, listening on 169.254.20.10 (which it puts on `lo`).
 * Every record form of the Kubernetes DNS spec, over UDP and TCP, EDNS and TC, the
 * search path with `nslookup`, and a Service change visible within the TTL.
 */
import { labTest } from '../harness';
import { dig, dnsLab, m, ManifestDir, podResolvConf, sleep, startDns } from './helpers';

const manifests = [
  m.namespace('default'),
  m.namespace('prod'),
  m.namespace('empty'),
  m.service('default', 'kubernetes', { clusterIP: '10.96.0.1', clusterIPs: ['10.96.0.1'], ports: [{ name: 'https', port: 443, protocol: 'TCP' }] }),
  m.service('prod', 'web', { clusterIPs: ['10.96.1.10', 'fd00:10:96::10'], ipFamilies: ['IPv4', 'IPv6'], ports: [{ name: 'http', port: 80, protocol: 'TCP' }, { name: 'metrics', port: 9090, protocol: 'TCP' }] }),
  m.service('prod', 'db', { clusterIP: 'None', ports: [{ name: 'pg', port: 5432, protocol: 'TCP' }] }),
  m.slice('prod', 'db', [
    { addresses: ['10.244.1.5'], hostname: 'db-0', conditions: { ready: true } },
    { addresses: ['10.244.2.6'], hostname: 'db-1', conditions: { ready: true } },
    { addresses: ['10.244.3.7'], conditions: { ready: true } },
    { addresses: ['10.244.3.8'], conditions: { ready: false } },
  ], [{ name: 'pg', port: 5432, protocol: 'TCP' }]),
  m.service('prod', 'alias', { type: 'ExternalName', externalName: 'web.prod.svc.cluster.local' }),
  m.service('prod', 'sub', { clusterIP: 'None' }),
  m.pod('prod', 'p1', '10.244.1.9', { hostname: 'foo', subdomain: 'sub' }),
  m.service('prod', 'many', { clusterIP: 'None' }),
  m.slice('prod', 'many', Array.from({ length: 120 }, (_, i) => ({ addresses: [`10.244.5.${i + 1}`], conditions: { ready: true } }))),
];

labTest('cluster zone records from a pod with dig', { prefix: 'pwdns-rec', timeout: 150_000 }, async (t, lab) => {
  const dir = new ManifestDir('pwdns-rec');
  t.teardown(() => dir.remove());
  dir.write('cluster.yaml', manifests);
  const { node, pod } = await dnsLab(lab);
  const host = await startDns(lab, node.ns, dir.dir, { upstreams: [], resolvConf: '/nonexistent' });
  t.teardown(() => host.stop());

  let r = await dig(pod, 'web.prod.svc.cluster.local');
  t.equal(r.status, 'NOERROR');
  t.same(r.answers, [['web.prod.svc.cluster.local.', 5, 'A', '10.96.1.10']], 'A, TTL 5');
  t.match(r.flags, /aa/, 'authoritative');
  r = await dig(pod, 'Web.PROD.svc.cluster.local');
  t.equal(r.answers[0]?.[0], 'Web.PROD.svc.cluster.local.', 'question case kept in the answer');
  r = await dig(pod, 'web.prod.svc.cluster.local', 'AAAA');
  t.same(r.answers.map((a) => a[3]), ['fd00:10:96::10'], 'AAAA of a dual-stack Service');
  r = await dig(pod, '_http._tcp.web.prod.svc.cluster.local', 'SRV');
  t.same(r.answers.map((a) => a[3]), ['0 100 80 web.prod.svc.cluster.local.'], 'SRV for a named port');
  r = await dig(pod, '10.96.1.10', 'PTR', { args: ['-x'] });
  t.same(r.answers.map((a) => a[3]), ['web.prod.svc.cluster.local.'], 'PTR of a Service IP');

  r = await dig(pod, 'db.prod.svc.cluster.local');
  t.same(r.answers.map((a) => a[3]).sort(), ['10.244.1.5', '10.244.2.6', '10.244.3.7'], 'headless: one A per ready endpoint');
  r = await dig(pod, 'db-1.db.prod.svc.cluster.local');
  t.same(r.answers.map((a) => a[3]), ['10.244.2.6'], 'endpoint hostname');
  r = await dig(pod, '_pg._tcp.db.prod.svc.cluster.local', 'SRV');
  t.same(r.answers.map((a) => a[3].split(' ')[3]).sort(), ['10-244-3-7.db.prod.svc.cluster.local.', 'db-0.db.prod.svc.cluster.local.', 'db-1.db.prod.svc.cluster.local.'], 'headless SRV per endpoint');
  r = await dig(pod, '10.244.2.6', 'PTR', { args: ['-x'] });
  t.same(r.answers.map((a) => a[3]), ['db-1.db.prod.svc.cluster.local.'], 'PTR of a headless endpoint with a hostname');
  r = await dig(pod, 'foo.sub.prod.svc.cluster.local');
  t.same(r.answers.map((a) => a[3]), ['10.244.1.9'], 'pod hostname + subdomain');
  r = await dig(pod, 'alias.prod.svc.cluster.local');
  t.same(r.answers.map((a) => [a[2], a[3]]), [['CNAME', 'web.prod.svc.cluster.local.'], ['A', '10.96.1.10']], 'ExternalName chased in the zone');
  r = await dig(pod, '10-244-7-7.prod.pod.cluster.local');
  t.same(r.answers.map((a) => a[3]), ['10.244.7.7'], 'pod record (insecure)');
  r = await dig(pod, 'dns-version.cluster.local', 'TXT');
  t.same(r.answers.map((a) => a[3]), ['"1.1.0"']);

  r = await dig(pod, 'nope.prod.svc.cluster.local');
  t.equal(r.status, 'NXDOMAIN');
  t.match(r.authority.join('\n'), /SOA/, 'NXDOMAIN with the SOA');
  r = await dig(pod, 'web.prod.svc.cluster.local', 'TXT');
  t.equal(r.status, 'NOERROR');
  t.equal(r.answers.length, 0);
  t.match(r.authority.join('\n'), /SOA/, 'NODATA with the SOA');
  r = await dig(pod, 'x.nosuchns.svc.cluster.local');
  t.equal(r.status, 'NXDOMAIN', 'missing namespace');
  r = await dig(pod, 'empty.svc.cluster.local');
  t.equal(r.status, 'NOERROR', 'existing namespace: NODATA');
  r = await dig(pod, 'cluster.local', 'AXFR');
  t.match(r.raw, /Transfer failed|REFUSED/, 'AXFR refused');

  // TCP, EDNS and truncation.
  r = await dig(pod, 'web.prod.svc.cluster.local', 'A', { args: ['+tcp'] });
  t.same(r.answers.map((a) => a[3]), ['10.96.1.10'], 'over TCP');
  r = await dig(pod, 'many.prod.svc.cluster.local', 'A', { args: ['+ignore', '+noedns'] });
  t.match(r.flags, /tc/, '120 records without EDNS: TC');
  r = await dig(pod, 'many.prod.svc.cluster.local', 'A', { args: ['+ignore', '+bufsize=4096'] });
  t.match(r.flags, /tc/, 'a 4096 client gets TC above our 1232');
  r = await dig(pod, 'many.prod.svc.cluster.local', 'A');
  t.equal(r.answers.length, 120, 'dig retries over TCP and gets all 120');

  // The search path of a pod's resolv.conf.
  const undo = podResolvConf(pod, 'nameserver 169.254.20.10\nsearch prod.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n');
  t.teardown(undo);
  const ns = await lab.exec(pod, ['nslookup', 'kubernetes.default']);
  t.match(ns.stdout, /Name:\s+kubernetes\.default\.svc\.cluster\.local\s+Address: 10\.96\.0\.1/, 'nslookup kubernetes.default through the search path');

  // A Service change is visible within the TTL.
  dir.write('cluster.yaml', manifests.map((d) => (d.kind === 'Service' && (d.metadata as { name: string }).name === 'web' ? m.service('prod', 'web', { clusterIPs: ['10.96.1.77'], ports: [{ name: 'http', port: 80, protocol: 'TCP' }] }) : d)));
  let seen = '';
  const start = Date.now();
  for (let i = 0; i < 50 && seen !== '10.96.1.77'; i++) {
    seen = (await dig(pod, 'web.prod.svc.cluster.local')).answers[0]?.[3] ?? '';
    if (seen !== '10.96.1.77') await sleep(100);
  }
  t.equal(seen, '10.96.1.77', 'new ClusterIP answered within the polling bound (50 × 100 ms, the TTL is 5 s)');
  t.comment(`visible after ${Date.now() - start} ms`);
  r = await dig(pod, '_metrics._tcp.web.prod.svc.cluster.local', 'SRV');
  t.equal(r.status, 'NXDOMAIN', 'the removed port is gone');
});
