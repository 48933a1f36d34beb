import t from 'tap';
import { Cidr, IpAddress } from '../../common/ip';
import { FakeIptables, FakeNetnsWorld, FakeNetworkKernel, FakeNft, FakeSysctl } from './index';

t.test('FakeNetworkKernel: links, errors, idempotent deletes', async (t) => {
  const world = new FakeNetnsWorld();
  const host = world.kernel('/run/netns/host');
  const pod = world.kernel('/run/netns/pod');
  await host.createLink({ kind: 'bridge', name: 'pw0', up: true });
  await t.rejects(host.createLink({ kind: 'bridge', name: 'pw0' }), { name: 'AlreadyExistsError', field: 'link', value: 'pw0' });
  await t.rejects(host.createLink({ kind: 'bridge', name: 'x'.repeat(16) }), { name: 'InvalidInputError', field: 'name' });
  await t.rejects(host.setMtu('nope', 1500), { name: 'NotFoundError', value: 'nope' });
  const v = await host.createLink({ kind: 'veth', name: 'veth1', peerName: 'eth0', peerNetns: { path: '/run/netns/pod' } });
  const eth0 = await pod.getLink('eth0');
  t.ok(eth0, 'peer created in the other namespace');
  t.equal(eth0!.peerIndex, v.index);
  await t.rejects(host.createLink({ kind: 'veth', name: 'v2', peerName: 'e', peerNetns: { path: '/run/netns/missing' } }), { name: 'NotFoundError', field: 'netns' });
  await host.setMaster('veth1', 'pw0');
  await host.setBridgePort('veth1', { hairpin: true });
  t.same(host.portFlags('veth1'), { hairpin: true, learning: true, promisc: false });
  await host.deleteLink('veth1');
  t.equal(await pod.getLink('eth0'), undefined, 'deleting one end removes the peer');
  await host.deleteLink('veth1'); // idempotent
  await t.rejects(host.createLink({ kind: 'vxlan', name: 'vx', vni: -1, port: 8472, learning: false }), { name: 'InvalidInputError', field: 'vni' });
});

t.test('FakeNetworkKernel: addresses, routes, batches with injected failures', async (t) => {
  const k = new FakeNetworkKernel();
  await k.createLink({ kind: 'bridge', name: 'pw0' });
  await k.addAddress('pw0', Cidr.parse('10.244.1.1/24'));
  await k.addAddress('pw0', Cidr.parse('10.244.1.1/24')); // idempotent
  await t.rejects(k.addAddress('pw0', Cidr.parse('10.244.1.1/16')), { name: 'AlreadyExistsError' });
  await k.addRoute({ dst: Cidr.parse('10.244.2.0/24'), gateway: IpAddress.parse('10.244.1.9') });
  await t.rejects(k.addRoute({ dst: Cidr.parse('10.244.2.0/24'), gateway: IpAddress.parse('10.244.1.9') }), { name: 'KernelError', errno: 17 });
  await t.rejects(k.addRoute({ dst: Cidr.parse('10.244.3.0/24'), gateway: IpAddress.parse('192.0.2.1') }), { name: 'KernelError', errno: 101 });
  await k.addRoute({ dst: Cidr.parse('10.244.3.0/24'), gateway: IpAddress.parse('192.0.2.1'), dev: 'pw0', onlink: true });
  await k.replaceRoute({ dst: Cidr.parse('10.244.2.0/24'), type: 'blackhole' });
  t.equal((await k.listRoutes()).find((r) => r.dst.toString() === '10.244.2.0/24')?.type, 'blackhole');
  await k.deleteRoute({ dst: Cidr.parse('10.99.0.0/24') }); // idempotent
  k.batchFailure = (_kind, _c, i) => (i === 2 ? 22 : 0);
  const r = await k.applyFdb([0, 1, 2, 3].map((i) => ({ op: 'add' as const, entry: { dev: 'pw0', mac: '00:00:00:00:00:00', dst: IpAddress.parse(`198.18.0.${i + 1}`), permanent: true } })));
  t.equal(r.applied, 3);
  t.same(r.failed.map((f) => [f.index, f.errno]), [[2, 22]]);
  t.equal((await k.listFdb('pw0')).length, 3, 'append keeps several dsts for the all-zero MAC');
});

t.test('FakeSysctl validates keys and stores values', async (t) => {
  const s = new FakeSysctl();
  await s.write('net.ipv4.ip_forward', '1');
  t.equal(await s.read('net.ipv4.ip_forward'), '1');
  await t.rejects(s.read('net..ipv4'), { name: 'InvalidInputError' });
  await t.rejects(s.write('../../etc/passwd', 'x'), { name: 'InvalidInputError' });
});

t.test('FakeIptables: noflush semantics, atomic failure naming the line, tracing', async (t) => {
  const ipt = new FakeIptables();
  await ipt.restore(['*filter', ':FORWARD ACCEPT [0:0]', '-A FORWARD -j ACCEPT -m comment --comment "other owner"', 'COMMIT', ''].join('\n'));
  await ipt.restore(
    [
      '*nat',
      ':PREROUTING ACCEPT [0:0]',
      ':PW-SERVICES - [0:0]',
      ':PW-SVC-A - [0:0]',
      '-A PREROUTING -j PW-SERVICES',
      '-A PW-SERVICES -d 10.96.0.10/32 -p udp --dport 53 -j PW-SVC-A',
      '-A PW-SVC-A -j DNAT --to-destination 10.244.1.5:53',
      'COMMIT',
      '',
    ].join('\n'),
  );
  t.same(ipt.rules('filter', 'FORWARD'), ['-j ACCEPT -m comment --comment "other owner"'], 'noflush keeps other tables');
  const tr = ipt.trace('nat', 'PREROUTING', { dst: '10.96.0.10', protocol: 'udp', dport: 53 });
  t.equal(tr.verdict, 'DNAT');
  t.same(tr.args, ['--to-destination', '10.244.1.5:53']);
  t.equal(ipt.trace('nat', 'PREROUTING', { dst: '10.96.0.11', protocol: 'udp', dport: 53 }).verdict, 'ACCEPT', 'policy when nothing matches');
  const before = await ipt.save('nat');
  await t.rejects(ipt.restore(['*nat', ':PW-SVC-A - [0:0]', '-A PW-NOPE -j ACCEPT', 'COMMIT'].join('\n')), { name: 'CommandError', message: /line 3 failed/ });
  t.equal(await ipt.save('nat'), before, 'a failed restore changes nothing');
  // A re-declared user chain is flushed; -X removes it once unreferenced.
  await ipt.restore(['*nat', ':PW-SERVICES - [0:0]', ':PW-SVC-A - [0:0]', '-X PW-SVC-A', 'COMMIT'].join('\n'));
  t.notOk(ipt.chains('nat').includes('PW-SVC-A'));
});

t.test('FakeNft stores scripts and can fail', async (t) => {
  const n = new FakeNft();
  await n.apply('add table inet podwire\n');
  t.equal(n.last, 'add table inet podwire\n');
  n.failNext(2);
  await t.rejects(n.apply('add table inet x\nbogus\n'), { name: 'CommandError', message: /script line 2: bogus/ });
  t.equal(n.scripts.length, 1);
});
