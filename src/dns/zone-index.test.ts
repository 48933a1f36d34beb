import t from 'tap';
import { FakeController } from './controller';
import { pod, service, slice } from './testing';
import { sockaddrHost } from './udp-native';
import { buildQuery, isQuery, parseQuery, type Query, TYPE } from './wire';
import { ClusterZone } from './zone';
import { ZoneIndex } from './zone-index';

function cluster(): FakeController {
  const fc = new FakeController();
  fc.ns.add('default').add('prod').add('empty');
  fc.svc.set('default/kubernetes', service('default', 'kubernetes', { clusterIPs: ['10.96.0.1'], ports: [{ name: 'https', port: 443 }] }));
  fc.svc.set('prod/web', service('prod', 'web', { clusterIPs: ['10.96.1.10', 'fd00:10:96::10'], ipFamilies: ['IPv4', 'IPv6'], ports: [{ name: 'http', port: 80 }] }));
  fc.svc.set('prod/db', service('prod', 'db', { clusterIPs: ['None'], ports: [{ name: 'pg', port: 5432 }] }));
  fc.slices.set('prod/db', [slice('prod', 'db', [{ ip: '10.244.1.5', hostname: 'db-0' }, { ip: '10.244.2.6' }], [{ name: 'pg', port: 5432 }])]);
  fc.svc.set('prod/ext', service('prod', 'ext', { type: 'ExternalName', externalName: 'web.prod.svc.cluster.local' }));
  fc.podList.push(pod('prod', 'p1', '10.244.1.9'));
  return fc;
}

const q = (name: string, type: number, edns = 0): Query => {
  const p = parseQuery(buildQuery(name, type, 4321, edns ? { ednsSize: edns } : {}), 'udp', '10.244.1.2');
  if (!isQuery(p)) throw new Error('no parse');
  return p;
};

t.test("a worker's answers are byte for byte the main thread's", async (t) => {
  const zone = new ClusterZone(cluster(), { zones: ['cluster.local'], ttl: 5, podRecords: 'insecure' });
  zone.rebuild();
  const idx = new ZoneIndex(zone.snapshot(1));
  const cases: [string, number][] = [
    ['web.prod.svc.cluster.local', TYPE.A],
    ['WEB.prod.svc.cluster.local', TYPE.AAAA],
    ['web.prod.svc.cluster.local', TYPE.TXT], // NODATA
    ['_http._tcp.web.prod.svc.cluster.local', TYPE.SRV],
    ['db.prod.svc.cluster.local', TYPE.A],
    ['db-0.db.prod.svc.cluster.local', TYPE.A],
    ['nope.prod.svc.cluster.local', TYPE.A], // NXDOMAIN
    ['nope.missing.svc.cluster.local', TYPE.A],
    ['empty.svc.cluster.local', TYPE.A], // a namespace: NODATA
    ['prod.svc.cluster.local', TYPE.A],
    ['cluster.local', TYPE.SOA],
    ['dns-version.cluster.local', TYPE.TXT],
    ['10.1.96.10.in-addr.arpa', TYPE.PTR],
  ];
  for (const [name, type] of cases) {
    for (const edns of [0, 1232]) {
      const w = idx.answer(q(name, type, edns), 1232);
      const m = zone.lookup(q(name, type, edns), 1232);
      t.ok(w, `${name}/${type} answered in the worker`);
      t.ok(Buffer.isBuffer(m) && w?.equals(m), `${name}/${type} edns=${edns}: same bytes`);
    }
  }
  // What the worker must leave to the main thread.
  t.equal(idx.answer(q('ext.prod.svc.cluster.local', TYPE.A), 1232), null, 'ExternalName');
  t.equal(idx.answer(q('10-244-1-9.prod.pod.cluster.local', TYPE.A), 1232), null, 'pod records');
  t.equal(idx.answer(q('example.com', TYPE.A), 1232), null, 'outside the zone');
  t.equal(idx.answer(q('9.9.9.10.in-addr.arpa', TYPE.PTR), 1232), null, 'a reverse name without a PTR (falls through)');
  t.equal(idx.answer(q('web.prod.svc.cluster.local', TYPE.PTR), 1232)?.readUInt16BE(6), 0, 'an existing name without the type: NODATA here');
  const before = new ZoneIndex(new ClusterZone(cluster(), { zones: ['cluster.local'], ttl: 5, podRecords: 'insecure' }).snapshot(0));
  t.equal(before.answer(q('web.prod.svc.cluster.local', TYPE.A), 1232), null, 'before the first sync: the main thread (SERVFAIL there)');
});

t.test('an old snapshot stays valid while the zone changes', async (t) => {
  const fc = cluster();
  const zone = new ClusterZone(fc, { zones: ['cluster.local'], ttl: 5, podRecords: 'insecure' });
  zone.rebuild();
  const old = new ZoneIndex(zone.snapshot(1));
  const want = old.answer(q('web.prod.svc.cluster.local', TYPE.A), 1232)!;
  for (let i = 0; i < 3000; i++) fc.svc.set(`prod/s${i}`, service('prod', `s${i}`, { clusterIPs: [`10.97.${i >> 8}.${i & 255}`] }));
  fc.svc.delete('prod/web');
  zone.update([...fc.svc.keys(), 'prod/web']);
  t.ok(old.answer(q('web.prod.svc.cluster.local', TYPE.A), 1232)!.equals(want), 'the old snapshot answers as before');
  const fresh = new ZoneIndex(zone.snapshot(2));
  t.equal(fresh.answer(q('web.prod.svc.cluster.local', TYPE.A), 1232)![3]! & 0x0f, 3, 'the new one has the change (NXDOMAIN)');
  t.equal(fresh.answer(q('s2999.prod.svc.cluster.local', TYPE.A), 1232)!.readUInt16BE(6), 1, 'and the new names');
});

t.test('sockaddr text', async (t) => {
  const a = Buffer.alloc(28);
  a.writeUInt16LE(2, 0);
  a.set([10, 244, 1, 2], 4);
  t.equal(sockaddrHost(a, 0), '10.244.1.2');
  const b = Buffer.alloc(28);
  b.writeUInt16LE(10, 0);
  b.set([0xfd, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x05], 8);
  t.equal(sockaddrHost(b, 0), 'fd00:10::5');
  b.fill(0, 8);
  b.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1], 8);
  t.equal(sockaddrHost(b, 0), '192.0.2.1', 'IPv4-mapped');
  b.fill(0, 8);
  b[23] = 1;
  t.equal(sockaddrHost(b, 0), '::1');
});
