// The batch path resolves devices from an ifindex cache: a link re-created behind the
// kernel handle's back (new ifindex, same name) must still get its routes and FDB entries.
import { labTest, execOk } from '../harness';
import { Cidr, IpAddress } from '../../src/common/ip';
import { openKernel, netnsRef, type Change, type FdbEntry, type Route } from '../../src/kernel';
import { ipJson } from './helpers';

labTest('batches survive a link re-created by someone else (stale cached ifindex)', { prefix: 'pwkn-bc', requires: ['vxlan', 'veth'] }, async (t, lab) => {
  const ns = await lab.addNetns('node');
  const k = await openKernel(netnsRef(ns));
  t.teardown(() => k.close());
  await k.net.createLink({ kind: 'veth', name: 'eth0', peerName: 'ul0', up: true });
  await k.net.setLinkUp('ul0', true);
  await k.net.addAddress('eth0', Cidr.parse('198.18.0.1/24'));
  const vx = { kind: 'vxlan' as const, name: 'pw.1', vni: 1, port: 8472, learning: false, local: IpAddress.parse('198.18.0.1'), underlayDevice: 'eth0', up: true };
  const first = await k.net.createLink(vx);
  const routes = (base: number): Change<Route>[] =>
    Array.from({ length: 50 }, (_, i) => ({ op: 'replace' as const, entry: { dst: Cidr.parse(`10.${base}.${i}.0/24`), gateway: IpAddress.parse(`10.${base}.${i}.0`), dev: 'pw.1', onlink: true, protocol: 99 } }));
  t.same((await k.net.applyRoutes(routes(200))).failed, []);
  // Someone else deletes and re-creates pw.1: same name, new ifindex.
  await execOk(ns, ['ip', 'link', 'del', 'pw.1']);
  await execOk(ns, ['ip', 'link', 'add', 'pw.1', 'type', 'vxlan', 'id', '1', 'dstport', '8472', 'nolearning', 'local', '198.18.0.1', 'dev', 'eth0']);
  await execOk(ns, ['ip', 'link', 'set', 'pw.1', 'up']);
  const second = await k.net.getLink('pw.1');
  t.not(second!.index, first.index, 'a new ifindex');
  const r = await k.net.applyRoutes(routes(201));
  t.same(r, { applied: 50, failed: [] }, 'stale index: refreshed and resent');
  const fdb: Change<FdbEntry>[] = [{ op: 'add', entry: { dev: 'pw.1', mac: '00:00:00:00:00:00', dst: IpAddress.parse('198.18.0.2'), permanent: true } }];
  t.same((await k.net.applyFdb(fdb)).failed, []);
  const shown = await ipJson<{ dst: string; dev: string }[]>(ns, ['route', 'show', 'proto', '99']);
  t.equal(shown.filter((x) => x.dst.startsWith('10.201.') && x.dev === 'pw.1').length, 50, 'all 50 on the new link');
});
