import { Packet } from 'dns2';
import { Registry } from 'prom-client';
import t from 'tap';
import { systemClock } from '../common/clock';
import { silentLogger } from '../common/log';
import type { ComponentContext } from '../daemon/component';
import { loadConfig } from '../daemon/config';
import type { Kernel } from '../kernel';
import type { ClusterState } from '../k8s/types';
import { DnsComponent } from './component';
import { buildDnsSection, type DnsSection } from './config';
import { FakeController } from './controller';
import { ask, configMap, pod, service, slice } from './testing';
import { buildQuery, fitUdp, isQuery, parseQuery, RCODE, TYPE } from './wire';

interface Parsed {
  header: { id: number; rcode: number; aa: number; tc: number; rd: number };
  questions: { name: string; type: number }[];
  answers: Record<string, unknown>[];
  authorities: Record<string, unknown>[];
  additionals: Record<string, unknown>[];
}
const parse = (b: Buffer | null): Parsed => {
  if (!b) throw new Error('no reply');
  return Packet.parse(b) as unknown as Parsed;
};

function setup(section: Partial<Record<string, unknown>> = {}, fc = new FakeController()): { c: DnsComponent; fc: FakeController } {
  const config = loadConfig({ argv: ['--node-name', 'n1'], env: {}, readFile: () => { throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' }); } }).config;
  const ctx: ComponentContext<DnsSection> = {
    config,
    section: buildDnsSection({ upstreams: [], resolvConf: '/nonexistent/resolv.conf', ...section }),
    state: {} as ClusterState,
    node: { patchAnnotations: async () => undefined, setCondition: async () => undefined, writesBack: false },
    kernel: undefined as unknown as Kernel,
    logger: silentLogger,
    clock: systemClock,
    metrics: new Registry(),
  };
  return { c: new DnsComponent(ctx, { controller: fc }), fc };
}

function cluster(): FakeController {
  const fc = new FakeController();
  fc.ns.add('default').add('prod').add('empty');
  fc.svc.set('default/kubernetes', service('default', 'kubernetes', { clusterIPs: ['10.96.0.1'], ports: [{ name: 'https', port: 443 }] }));
  fc.svc.set('prod/web', service('prod', 'web', { clusterIPs: ['10.96.1.10', 'fd00:10:96::10'], ipFamilies: ['IPv4', 'IPv6'], ports: [{ name: 'http', port: 80 }, { name: 'dns', port: 53, protocol: 'UDP' }, { port: 9000 }] }));
  fc.svc.set('prod/db', service('prod', 'db', { clusterIPs: ['None'], ports: [{ name: 'pg', port: 5432 }] }));
  fc.slices.set('prod/db', [
    slice('prod', 'db', [{ ip: '10.244.1.5', hostname: 'db-0' }, { ip: '10.244.2.6' }, { ip: '10.244.3.7', ready: false }], [{ name: 'pg', port: 5432 }]),
  ]);
  fc.svc.set('prod/ext', service('prod', 'ext', { type: 'ExternalName', externalName: 'web.prod.svc.cluster.local' }));
  fc.svc.set('prod/out', service('prod', 'out', { type: 'ExternalName', externalName: 'example.org' }));
  fc.svc.set('prod/sub', service('prod', 'sub', { clusterIPs: ['None'] }));
  fc.podList.push(pod('prod', 'p1', '10.244.1.9', { hostname: 'foo', subdomain: 'sub' }));
  return fc;
}

async function synced(fc = cluster(), section: Partial<Record<string, unknown>> = {}): Promise<DnsComponent> {
  const { c } = setup(section, fc);
  await c.sync(new AbortController().signal);
  return c;
}

t.test('ClusterIP Service: A, AAAA, SRV per named port, PTR; case and ID kept; TTL 5', async (t) => {
  const c = await synced();
  let r = parse(await ask(c.handler, 'WEB.Prod.svc.Cluster.Local', TYPE.A, { id: 777 }));
  t.equal(r.header.id, 777);
  t.equal(r.header.rcode, RCODE.NOERROR);
  t.equal(r.header.aa, 1);
  t.equal(r.header.rd, 1);
  t.equal(r.questions[0]!.name, 'WEB.Prod.svc.Cluster.Local', 'question case preserved');
  t.same(r.answers.map((a) => [a.name, a.address, a.ttl]), [['WEB.Prod.svc.Cluster.Local', '10.96.1.10', 5]]);
  r = parse(await ask(c.handler, 'web.prod.svc.cluster.local', TYPE.AAAA));
  t.equal(r.answers.length, 1);
  t.match(String(r.answers[0]!.address), /fd00:10:96:/);
  r = parse(await ask(c.handler, '_http._tcp.web.prod.svc.cluster.local', TYPE.SRV));
  t.same(r.answers.map((a) => [a.port, a.target]), [[80, 'web.prod.svc.cluster.local']]);
  t.ok(r.additionals.some((a) => a.address === '10.96.1.10'), 'target address in additional');
  r = parse(await ask(c.handler, '_dns._udp.web.prod.svc.cluster.local', TYPE.SRV));
  t.same(r.answers.map((a) => a.port), [53]);
  r = parse(await ask(c.handler, '_http._udp.web.prod.svc.cluster.local', TYPE.SRV));
  t.equal(r.header.rcode, RCODE.NXDOMAIN, 'wrong protocol: no such name');
  r = parse(await ask(c.handler, '_tcp.web.prod.svc.cluster.local', TYPE.SRV));
  t.equal(r.header.rcode, RCODE.NOERROR, 'empty non-terminal: NODATA');
  t.equal(r.answers.length, 0);
  r = parse(await ask(c.handler, 'web.prod.svc.cluster.local', TYPE.SRV));
  t.equal(r.answers.length, 2, 'SRV at the service name: every named port');
  r = parse(await ask(c.handler, '10.1.96.10.in-addr.arpa', TYPE.PTR));
  t.same(r.answers.map((a) => a.domain), ['web.prod.svc.cluster.local']);
});

t.test('headless Service: ready endpoints, hostnames, SRV per endpoint × port, PTR', async (t) => {
  const c = await synced();
  let r = parse(await ask(c.handler, 'db.prod.svc.cluster.local', TYPE.A));
  t.same(r.answers.map((a) => a.address).sort(), ['10.244.1.5', '10.244.2.6'], 'not-ready endpoint left out');
  r = parse(await ask(c.handler, 'db-0.db.prod.svc.cluster.local', TYPE.A));
  t.same(r.answers.map((a) => a.address), ['10.244.1.5']);
  r = parse(await ask(c.handler, '10-244-2-6.db.prod.svc.cluster.local', TYPE.A));
  t.same(r.answers.map((a) => a.address), ['10.244.2.6'], 'endpoint without hostname: dashed IP');
  r = parse(await ask(c.handler, '_pg._tcp.db.prod.svc.cluster.local', TYPE.SRV));
  t.same(r.answers.map((a) => a.target).sort(), ['10-244-2-6.db.prod.svc.cluster.local', 'db-0.db.prod.svc.cluster.local']);
  t.equal(r.additionals.length, 2);
  r = parse(await ask(c.handler, '5.1.244.10.in-addr.arpa', TYPE.PTR));
  t.same(r.answers.map((a) => a.domain), ['db-0.db.prod.svc.cluster.local']);
  r = parse(await ask(c.handler, 'foo.sub.prod.svc.cluster.local', TYPE.A));
  t.same(r.answers.map((a) => a.address), ['10.244.1.9'], 'pod hostname + subdomain');
  r = parse(await ask(c.handler, 'sub.prod.svc.cluster.local', TYPE.A));
  t.same(r.answers.map((a) => a.address), ['10.244.1.9']);
});

t.test('headless Service: an endpoint with several addresses publishes every one', async (t) => {
  const fc = cluster();
  fc.slices.set('prod/db', [slice('prod', 'db', [{ ip: ['10.244.1.5', '10.244.1.15'] }, { ip: '10.244.2.6' }], [{ name: 'pg', port: 5432 }])]);
  const c = await synced(fc);
  const r = parse(await ask(c.handler, 'db.prod.svc.cluster.local', TYPE.A));
  t.same(r.answers.map((a) => a.address).sort(), ['10.244.1.15', '10.244.1.5', '10.244.2.6']);
});

t.test('publishNotReadyAddresses includes not-ready endpoints', async (t) => {
  const fc = cluster();
  fc.svc.set('prod/db', service('prod', 'db', { clusterIPs: ['None'], publishNotReadyAddresses: true }));
  const c = await synced(fc);
  const r = parse(await ask(c.handler, 'db.prod.svc.cluster.local', TYPE.A));
  t.equal(r.answers.length, 3);
});

t.test('ExternalName: CNAME, chased inside the zone, forwarded outside', async (t) => {
  const c = await synced();
  let r = parse(await ask(c.handler, 'ext.prod.svc.cluster.local', TYPE.A));
  t.same(r.answers.map((a) => [a.type, a.domain ?? a.address]), [[TYPE.CNAME, 'web.prod.svc.cluster.local'], [TYPE.A, '10.96.1.10']]);
  t.equal(r.answers[1]!.name, 'web.prod.svc.cluster.local', 'chased record owned by the target');
  r = parse(await ask(c.handler, 'out.prod.svc.cluster.local', TYPE.A));
  t.same(r.answers.map((a) => [a.type, a.domain]), [[TYPE.CNAME, 'example.org']], 'no upstream: CNAME only');
  r = parse(await ask(c.handler, 'out.prod.svc.cluster.local', TYPE.CNAME));
  t.same(r.answers.map((a) => a.domain), ['example.org']);
});

t.test('pod records: insecure (default), verified, disabled', async (t) => {
  let c = await synced();
  let r = parse(await ask(c.handler, '10-244-9-9.prod.pod.cluster.local', TYPE.A));
  t.same(r.answers.map((a) => a.address), ['10.244.9.9'], 'insecure: any IP');
  r = parse(await ask(c.handler, 'fd00--1.prod.pod.cluster.local', TYPE.AAAA));
  t.same(r.answers.map((a) => a.address), ['fd00::1']);
  r = parse(await ask(c.handler, '10-244-9-9.prod.pod.cluster.local', TYPE.AAAA));
  t.equal(r.header.rcode, RCODE.NOERROR);
  t.equal(r.answers.length, 0, 'wrong family: NODATA');
  c = await synced(cluster(), { podRecords: 'verified' });
  r = parse(await ask(c.handler, '10-244-9-9.prod.pod.cluster.local', TYPE.A));
  t.equal(r.header.rcode, RCODE.NXDOMAIN, 'verified: no such pod');
  r = parse(await ask(c.handler, '10-244-1-9.prod.pod.cluster.local', TYPE.A));
  t.same(r.answers.map((a) => a.address), ['10.244.1.9'], 'verified: pod exists in that namespace');
  r = parse(await ask(c.handler, '10-244-1-9.default.pod.cluster.local', TYPE.A));
  t.equal(r.header.rcode, RCODE.NXDOMAIN, 'verified: wrong namespace');
  c = await synced(cluster(), { podRecords: 'disabled' });
  r = parse(await ask(c.handler, '10-244-9-9.prod.pod.cluster.local', TYPE.A));
  t.equal(r.header.rcode, RCODE.NXDOMAIN);
});

t.test('dns-version, SOA/NS at the apex, NXDOMAIN and NODATA with the SOA', async (t) => {
  const c = await synced();
  let r = parse(await ask(c.handler, 'dns-version.cluster.local', TYPE.TXT));
  t.match(JSON.stringify(r.answers[0]), /1\.1\.0/);
  r = parse(await ask(c.handler, 'cluster.local', TYPE.SOA));
  t.equal(r.answers[0]!.type, TYPE.SOA);
  r = parse(await ask(c.handler, 'cluster.local', TYPE.NS));
  t.equal(r.answers[0]!.ns, 'ns.dns.cluster.local');
  r = parse(await ask(c.handler, 'nope.prod.svc.cluster.local', TYPE.A));
  t.equal(r.header.rcode, RCODE.NXDOMAIN);
  t.equal(r.authorities[0]!.type, TYPE.SOA);
  t.equal(r.authorities[0]!.minimum, 5, 'negative TTL = cluster TTL');
  r = parse(await ask(c.handler, 'web.prod.svc.cluster.local', TYPE.TXT));
  t.equal(r.header.rcode, RCODE.NOERROR, 'NODATA');
  t.equal(r.answers.length, 0);
  t.equal(r.authorities[0]!.type, TYPE.SOA);
  r = parse(await ask(c.handler, 'empty.svc.cluster.local', TYPE.A));
  t.equal(r.header.rcode, RCODE.NOERROR, 'existing namespace: NODATA');
  r = parse(await ask(c.handler, 'web.missing.svc.cluster.local', TYPE.A));
  t.equal(r.header.rcode, RCODE.NXDOMAIN, 'missing namespace: NXDOMAIN');
  r = parse(await ask(c.handler, 'missing.svc.cluster.local', TYPE.A));
  t.equal(r.header.rcode, RCODE.NXDOMAIN);
});

t.test('before the first sync: SERVFAIL, not NXDOMAIN', async (t) => {
  const { c } = setup({}, cluster());
  const r = parse(await ask(c.handler, 'web.prod.svc.cluster.local', TYPE.A));
  t.equal(r.header.rcode, RCODE.SERVFAIL);
  t.match(c.status(), { waitingFor: /first sync/ });
});

t.test('EDNS: OPT in the answer; TC when larger than the client allows', async (t) => {
  const fc = cluster();
  const many = Array.from({ length: 100 }, (_, i) => ({ ip: `10.244.4.${i + 1}` }));
  fc.slices.set('prod/db', [slice('prod', 'db', many, [{ name: 'pg', port: 5432 }])]);
  const c = await synced(fc);
  const withEdns = (await ask(c.handler, 'web.prod.svc.cluster.local', TYPE.A, { edns: 4096 }))!;
  t.equal(withEdns.readUInt16BE(10), 1, 'one additional: our OPT');
  t.equal(withEdns.readUInt16BE(withEdns.length - 8), 1232, 'our UDP size advertised');
  const big = (await ask(c.handler, 'db.prod.svc.cluster.local', TYPE.A))!;
  t.ok(big.length > 512);
  const q = parseQuery(buildQuery('db.prod.svc.cluster.local', TYPE.A, 1), 'udp', 'x');
  if (!isQuery(q)) throw new Error('parse');
  const tc = parse(fitUdp(q, big, 512, 1232));
  t.equal(tc.header.tc, 1);
  t.equal(tc.answers.length, 0);
  t.equal(parse(fitUdp(q, big, 4096, 1232)).answers.length, 100, 'fits: untouched');
});

t.test('incremental update: a changed Service is re-encoded; a deleted one is gone', async (t) => {
  const fc = cluster();
  const c = await synced(fc);
  const ev = { type: 'update', kind: 'Service', previous: fc.svc.get('prod/web')!, current: service('prod', 'web', { clusterIPs: ['10.96.1.11'] }) } as const;
  fc.svc.set('prod/web', ev.current);
  t.ok(c.handleEvent(ev));
  await c.sync(new AbortController().signal);
  let r = parse(await ask(c.handler, 'web.prod.svc.cluster.local', TYPE.A));
  t.same(r.answers.map((a) => a.address), ['10.96.1.11']);
  r = parse(await ask(c.handler, '10.1.96.10.in-addr.arpa', TYPE.PTR));
  t.not(r.answers.length, 1, 'old PTR gone');
  const del = { type: 'delete', kind: 'Service', previous: fc.svc.get('default/kubernetes')! } as const;
  fc.svc.delete('default/kubernetes');
  c.handleEvent(del);
  await c.sync(new AbortController().signal);
  r = parse(await ask(c.handler, 'kubernetes.default.svc.cluster.local', TYPE.A));
  t.equal(r.header.rcode, RCODE.NXDOMAIN);
  // Endpoint change of a headless Service.
  fc.slices.set('prod/db', [slice('prod', 'db', [{ ip: '10.244.8.8' }])]);
  c.handleEvent({ type: 'add', kind: 'EndpointSlice', current: fc.slices.get('prod/db')![0]! });
  await c.sync(new AbortController().signal);
  r = parse(await ask(c.handler, 'db.prod.svc.cluster.local', TYPE.A));
  t.same(r.answers.map((a) => a.address), ['10.244.8.8']);
});

t.test('many updates keep the slab bounded (compaction)', async (t) => {
  const fc = cluster();
  for (let i = 0; i < 2000; i++) fc.svc.set(`prod/s${i}`, service('prod', `s${i}`, { clusterIPs: [`10.97.${i >> 8}.${i & 255}`], ports: [{ name: 'http', port: 80 }] }));
  const c = await synced(fc);
  const before = c.zone.stats().slabBytes;
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < 2000; i++) fc.svc.set(`prod/s${i}`, service('prod', `s${i}`, { clusterIPs: [`10.98.${i >> 8}.${i & 255}`], ports: [{ name: 'http', port: 80 + round }] }));
    c.zone.update([...Array(2000).keys()].map((i) => `prod/s${i}`));
  }
  t.ok(c.zone.stats().slabBytes < before * 3, `slab ${c.zone.stats().slabBytes} vs ${before}`);
  const r = parse(await ask(c.handler, '_http._tcp.s1999.prod.svc.cluster.local', TYPE.SRV));
  t.same(r.answers.map((a) => a.port), [84]);
});

t.test('kube-dns ConfigMap: stub domains and upstreams; a bad one names key and value and keeps the last good', async (t) => {
  const fc = cluster();
  fc.cms.set('kube-system/kube-dns', configMap('kube-system', 'kube-dns', { stubDomains: '{"acme.local": ["10.0.0.53"]}', upstreamNameservers: '["10.0.0.1", "10.0.0.2:5353"]' }));
  const c = await synced(fc);
  t.match(c.status(), { stubDomains: { 'acme.local': ['10.0.0.53:53'] }, upstreams: [{ to: '10.0.0.1:53' }, { to: '10.0.0.2:5353' }] });
  fc.cms.set('kube-system/kube-dns', configMap('kube-system', 'kube-dns', { stubDomains: '{"acme.local": ["not-an-ip"]}' }));
  c.handleEvent({ type: 'update', kind: 'ConfigMap', previous: fc.cms.get('kube-system/kube-dns')!, current: fc.cms.get('kube-system/kube-dns')! });
  await c.sync(new AbortController().signal);
  const st = c.status();
  t.match(st.configMapError, /stubDomains\["acme.local"\]\[0\]=.*not-an-ip/);
  t.match(st, { stubDomains: { 'acme.local': ['10.0.0.53:53'] } }, 'last good kept');
  await c.close();
});

t.test('loops: our own addresses and the kube-dns Service IP are never upstreams', async (t) => {
  const fc = cluster();
  fc.svc.set('kube-system/kube-dns', service('kube-system', 'kube-dns', { clusterIPs: ['10.96.0.10'] }));
  const c = await synced(fc, { upstreams: ['169.254.20.10', '10.96.0.10', '10.0.0.9'] });
  t.match(c.status(), { upstreams: [{ to: '10.0.0.9:53' }], excludedUpstreams: ['169.254.20.10:53', '10.96.0.10:53'] });
  await c.close();
});

t.test('AXFR/IXFR refused, malformed packets never throw', async (t) => {
  // Server-level rules are tested in the netns suite; here: the parser on random input.
  let seed = 12345;
  const rnd = (): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const base = buildQuery('web.prod.svc.cluster.local', TYPE.A, 1, { ednsSize: 1232 });
  const c = await synced();
  for (let i = 0; i < 20000; i++) {
    const b = i % 2 ? Buffer.from(base) : Buffer.alloc(Math.floor(rnd() * 80));
    for (let j = 0; j < 3; j++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
    const q = parseQuery(b, 'udp', 'x');
    if (isQuery(q)) await c.handler(q);
  }
  t.pass('20000 mutated packets');
});
