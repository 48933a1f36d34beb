import t from 'tap';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IpAddress } from '../../common/ip';
import { RangeAllocator } from './allocator';
import { parseHostLocal } from './config';
import { DiskIpamStore } from './disk-store';
import { FakeIpamStore } from './fake-store';

const ip = (s: string): IpAddress => IpAddress.parse(s);

t.test('host-local canonicalisation', async (t) => {
  const c = parseHostLocal({ subnet: '10.244.1.7/24', routes: [{ dst: '0.0.0.0/0' }] });
  const r = c.rangeSets[0]![0]!;
  t.equal(r.subnet.toString(), '10.244.1.0/24');
  t.equal(r.start.toString(), '10.244.1.1');
  t.equal(r.end.toString(), '10.244.1.254', 'broadcast excluded');
  t.equal(r.gateway?.toString(), '10.244.1.1');
  t.equal(c.dataDir, '/var/lib/cni/networks');
  const dual = parseHostLocal({ ranges: [[{ subnet: '10.244.1.0/24' }], [{ subnet: 'fd00:10:244:1::/120' }]] });
  t.equal(dual.rangeSets.length, 2);
  t.equal(dual.rangeSets[1]![0]!.end.toString(), 'fd00:10:244:1::ff');
  t.throws(() => parseHostLocal({ ranges: [[{ subnet: '10.0.0.0/24', rangeStart: '10.0.1.5' }]] }), /not inside subnet/);
  t.throws(() => parseHostLocal({ ranges: [[{ subnet: '10.0.0.0/24' }, { subnet: '10.0.0.0/25' }]] }), /overlaps/);
});

t.test('round-robin from last_reserved_ip, skipping the gateway, wrapping once', async (t) => {
  const store = new FakeIpamStore();
  const set = parseHostLocal({ ranges: [[{ subnet: '10.0.0.0/29', gateway: '10.0.0.3' }]] }).rangeSets[0]!;
  const a = new RangeAllocator(set, 0, store);
  const got: string[] = [];
  for (let i = 0; i < 5; i++) got.push((await a.allocate(`c${i}`, 'eth0', undefined)).address.ip.toString());
  t.same(got, ['10.0.0.1', '10.0.0.2', '10.0.0.4', '10.0.0.5', '10.0.0.6']);
  await t.rejects(a.allocate('c9', 'eth0', undefined), /exhausted/);
  await store.releaseById('c1', 'eth0');
  t.equal((await a.allocate('c9', 'eth0', undefined)).address.ip.toString(), '10.0.0.2', 'wraps to the freed address');
  await store.releaseById('c3', 'eth0');
  // last is .2 now: the next scan starts at .4 and finds .5? no: .4 is held by c2... .5 was c3's
  t.equal((await a.allocate('c10', 'eth0', undefined)).address.ip.toString(), '10.0.0.5');
  await t.rejects(a.allocate('c10', 'eth0', undefined), /duplicate allocation/);
});

t.test('disk store: host-local layout, exclusive create, corrupt and foreign files', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pwc-ipam-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = new DiskIpamStore(dir, 'net1');
  const release = await store.lock();
  t.ok(await store.reserve('cid1', 'eth0', ip('10.0.0.2'), '0'));
  t.notOk(await store.reserve('cid2', 'eth0', ip('10.0.0.2'), '0'), 'second reserve of the same IP fails');
  release();
  t.equal(readFileSync(join(dir, 'net1', '10.0.0.2'), 'utf8'), 'cid1\r\neth0');
  t.equal(readFileSync(join(dir, 'net1', 'last_reserved_ip.0'), 'utf8'), '10.0.0.2');
  t.ok(readdirSync(join(dir, 'net1')).includes('lock'));
  writeFileSync(join(dir, 'net1', '10.0.0.3'), '\0\0garbage\n\n\n');
  writeFileSync(join(dir, 'net1', 'notes.txt'), 'hello');
  writeFileSync(join(dir, 'net1', '10.0.0.4'), 'oldcid'); // pre-ifname host-local format
  const { reservations, problems } = await store.list();
  t.same(reservations.map((r) => r.ip.toString()).sort(), ['10.0.0.2', '10.0.0.4']);
  t.same(problems.map((p) => p.file).sort(), ['10.0.0.3', 'notes.txt']);
  // The corrupt file still blocks its IP: never a double allocation.
  const set = parseHostLocal({ ranges: [[{ subnet: '10.0.0.0/29', rangeStart: '10.0.0.3', rangeEnd: '10.0.0.4' }]] }).rangeSets[0]!;
  await t.rejects(new RangeAllocator(set, 0, store).allocate('cid9', 'eth0', undefined), /exhausted/);
  t.same((await store.getById('oldcid', 'eth0')).map(String), ['10.0.0.4'], 'old format matches by id');
  t.same((await store.releaseById('cid1', 'eth0')).map(String), ['10.0.0.2']);
  t.same(await store.releaseById('cid1', 'eth0'), [], 'release twice is fine');
});

t.test('the lock excludes a concurrent holder in the same process', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pwc-lock-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = new DiskIpamStore(dir, 'net1');
  const order: string[] = [];
  const r1 = await store.lock();
  const second = store.lock().then((r) => {
    order.push('second');
    r();
  });
  await new Promise((res) => setImmediate(res));
  order.push('first-release');
  r1();
  await second;
  t.same(order, ['first-release', 'second']);
});

t.test('the daemon listing cache sees every change another writer makes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pwc-cache-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const cached = new DiskIpamStore(dir, 'net1', undefined, undefined, { cache: true });
  const other = new DiskIpamStore(dir, 'net1'); // e.g. host-local or the in-process path
  t.ok(await cached.reserve('a', 'eth0', ip('10.0.0.2'), '0'));
  t.same((await cached.getById('a', 'eth0')).map(String), ['10.0.0.2']);
  t.ok(await other.reserve('b', 'eth0', ip('10.0.0.3'), '0'));
  t.same((await cached.getById('b', 'eth0')).map(String), ['10.0.0.3'], 'a reservation by another writer is seen');
  // Another writer releases a's IP and hands it to c: the cache must not think a still owns it.
  await other.releaseById('a', 'eth0');
  t.ok(await other.reserve('c', 'eth0', ip('10.0.0.2'), '0'));
  t.same(await cached.getById('a', 'eth0'), [], 'a released elsewhere');
  t.same((await cached.getById('c', 'eth0')).map(String), ['10.0.0.2'], 'the re-created file has its new owner');
  t.same(await cached.releaseById('a', 'eth0'), [], 'releasing a does not touch c');
  t.equal(readFileSync(join(dir, 'net1', '10.0.0.2'), 'utf8'), 'c\r\neth0');
  t.same((await cached.releaseById('c', 'eth0')).map(String), ['10.0.0.2']);
  t.same((await other.list()).reservations.map((r) => r.containerId), ['b'], 'the other writer sees our release');
});
