// NetworkKernel link operations against the real kernel, checked with iproute2.
import { labTest, ping, exec } from '../harness';
import { Cidr, IpAddress } from '../../src/common/ip';
import { openKernel, netnsRef } from '../../src/kernel';
import { ipJson, linkDetail, bridgeJson } from './helpers';

labTest('bridge + veth with the peer created in a second netns, ping across', { prefix: 'pwk-link', requires: ['veth', 'bridge'] }, async (t, lab) => {
  const hostNs = await lab.addNetns('host');
  const podNs = await lab.addNetns('pod');
  const k = await openKernel(netnsRef(hostNs));
  t.teardown(() => k.close());
  const pod = await openKernel(netnsRef(podNs));
  t.teardown(() => pod.close());

  const br = await k.net.createLink({ kind: 'bridge', name: 'pw0', up: true, mtu: 1450, mac: '02:00:00:aa:00:01' });
  t.equal(br.kind, 'bridge');
  const veth = await k.net.createLink({ kind: 'veth', name: 'vethpwk0', peerName: 'eth0', peerNetns: netnsRef(podNs), mtu: 1450, peerMac: '02:00:00:bb:00:02' });
  await k.net.setMaster('vethpwk0', 'pw0');
  await k.net.setLinkUp('vethpwk0', true);

  const hostSide = await linkDetail(hostNs, 'vethpwk0');
  t.equal(hostSide.master, 'pw0', 'veth enslaved to the bridge (ip -d link)');
  t.equal(hostSide.linkinfo?.info_kind, 'veth');
  t.equal(hostSide.mtu, 1450);
  const bridge = await linkDetail(hostNs, 'pw0');
  t.equal(bridge.linkinfo?.info_kind, 'bridge');
  t.equal(bridge.address, '02:00:00:aa:00:01');
  const podSide = await linkDetail(podNs, 'eth0');
  t.equal(podSide.address, '02:00:00:bb:00:02', 'peer created in the pod netns with its MAC');
  t.equal(podSide.mtu, 1450);
  t.equal(veth.peerIndex, podSide.ifindex, 'Link.peerIndex is the peer ifindex in the other netns');
  t.same(await ipJson(hostNs, ['link', 'show', 'dev', 'eth0']).catch(() => 'absent'), 'absent', 'the peer never existed in the host netns');

  await k.net.addAddress('pw0', Cidr.parse('10.244.7.1/24'));
  await k.net.addAddress('pw0', Cidr.parse('10.244.7.1/24')); // idempotent
  await pod.net.addAddress('eth0', Cidr.parse('10.244.7.2/24'));
  await pod.net.setLinkUp('eth0', true);
  const addrs = await ipJson<{ addr_info: { local: string; prefixlen: number; family: string }[] }[]>(hostNs, ['addr', 'show', 'dev', 'pw0']);
  t.same(addrs[0]!.addr_info.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`), ['10.244.7.1/24'], 'exactly one address after two adds');
  t.same((await k.net.listAddresses('pw0')).filter((a) => a.cidr.family === 4).map((a) => a.cidr.toString()), ['10.244.7.1/24']);
  const r = await ping(podNs, '10.244.7.1', { count: 1, waitS: 2 });
  t.ok(r.ok, `pod pings the bridge across the veth: ${r.output}`);

  await k.net.deleteAddress('pw0', Cidr.parse('10.244.7.1/24'));
  await k.net.deleteAddress('pw0', Cidr.parse('10.244.7.1/24')); // already gone: fine
  t.equal((await k.net.listAddresses('pw0')).filter((a) => a.cidr.family === 4).length, 0);

  await k.net.deleteLink('vethpwk0');
  t.equal(await pod.net.getLink('eth0'), undefined, 'deleting the host end removes the pod end');
  await k.net.deleteLink('vethpwk0'); // idempotent, as CNI DEL expects
  await k.net.deleteLink('pw0');
  t.same((await k.net.listLinks()).map((l) => l.name), ['lo'], 'nothing left behind');
});

labTest('vxlan attributes, port flags, promisc, MTU, MAC, move to netns with rename', { prefix: 'pwk-link', requires: ['vxlan', 'veth', 'bridge'] }, async (t, lab) => {
  const ns = await lab.addNetns('node');
  const other = await lab.addNetns('other');
  const k = await openKernel(netnsRef(ns));
  t.teardown(() => k.close());

  await k.net.createLink({ kind: 'veth', name: 'ul0', peerName: 'ul1' });
  const ul = (await k.net.getLink('ul0'))!;
  const vx = await k.net.createLink({
    kind: 'vxlan', name: 'pw.vxlan', vni: 4242, port: 8472, local: IpAddress.parse('198.18.0.1'),
    underlayDevice: 'ul0', learning: false, ttl: 17, portRange: [30000, 30100],
  });
  const d = await linkDetail(ns, 'pw.vxlan');
  const info = d.linkinfo?.info_data ?? {};
  t.equal(d.linkinfo?.info_kind, 'vxlan');
  t.equal(info.id, 4242, 'vni');
  t.equal(info.port, 8472, 'dstport');
  t.equal(info.local, '198.18.0.1', 'local');
  t.equal(info.learning, false, 'nolearning');
  t.equal(info.ttl, 17, 'ttl');
  t.same(info.port_range, { low: 30000, high: 30100 }, 'srcport range');
  t.equal(info.link, 'ul0', 'underlay device');
  t.same(vx.vxlan, { vni: 4242, port: 8472, local: '198.18.0.1', learning: false, underlayIndex: ul.index }, 'decoded back');
  await t.rejects(k.net.createLink({ kind: 'vxlan', name: 'vx2', vni: 1, port: 8472, learning: false, underlayDevice: 'nope0' }), { name: 'NotFoundError', value: 'nope0' });

  await k.net.createLink({ kind: 'bridge', name: 'br0' });
  await k.net.setMaster('ul1', 'br0');
  await k.net.setBridgePort('ul1', { hairpin: true, learning: false });
  const port = (await bridgeJson<{ ifname: string; hairpin: boolean; learning: boolean }[]>(ns, ['-d', 'link', 'show', 'dev', 'ul1']))[0]!;
  t.equal(port.hairpin, true, 'hairpin on (bridge -d link)');
  t.equal(port.learning, false, 'learning off');
  await k.net.setBridgePort('ul1', { hairpin: false });
  t.equal((await bridgeJson<{ hairpin: boolean }[]>(ns, ['-d', 'link', 'show', 'dev', 'ul1']))[0]!.hairpin, false, 'hairpin off again');
  await k.net.setMaster('ul1', undefined);
  t.equal((await linkDetail(ns, 'ul1')).master, undefined, 'nomaster');

  await k.net.setPromisc('ul1', true);
  t.equal((await linkDetail(ns, 'ul1')).promiscuity, 1, 'promisc on');
  await k.net.setPromisc('ul1', false);
  t.equal((await linkDetail(ns, 'ul1')).promiscuity, 0, 'promisc off');
  await k.net.setMtu('ul1', 1400);
  await k.net.setMac('ul1', '02:00:00:00:11:11');
  const ul1 = await linkDetail(ns, 'ul1');
  t.equal(ul1.mtu, 1400);
  t.equal(ul1.address, '02:00:00:00:11:11');
  await k.net.setLinkUp('ul1', true);
  t.ok((await linkDetail(ns, 'ul1')).flags.includes('UP'));
  await k.net.setLinkUp('ul1', false);
  t.notOk((await linkDetail(ns, 'ul1')).flags.includes('UP'));

  await k.net.moveToNetns('ul1', netnsRef(other), 'eth9');
  t.equal(await k.net.getLink('ul1'), undefined, 'gone from the source netns');
  t.equal((await linkDetail(other, 'eth9')).mtu, 1400, 'arrived renamed in the target netns');

  await t.rejects(k.net.setMtu('ul0', 20), { name: 'InvalidInputError', field: 'mtu', value: 20 });
  await t.rejects(k.net.setMtu('ul0', 70000), { name: 'InvalidInputError', field: 'mtu' });
  await t.rejects(k.net.createLink({ kind: 'vxlan', name: 'vx3', vni: 0x1000000, port: 8472, learning: false }), { name: 'InvalidInputError', field: 'vni' });
  for (const bad of ['a'.repeat(16), 'a/b', 'a b', '.', '..', '']) {
    await t.rejects(k.net.createLink({ kind: 'bridge', name: bad }), { name: 'InvalidInputError', field: 'name', value: bad }, `bad name ${JSON.stringify(bad)}`);
  }
  t.same((await k.net.listLinks()).map((l) => l.name).sort(), ['br0', 'lo', 'pw.vxlan', 'ul0'], 'invalid input created nothing');
});

labTest('bad input and missing things: netns path, duplicate link, missing link', { prefix: 'pwk-link', requires: ['veth', 'bridge'] }, async (t, lab) => {
  const ns = await lab.addNetns('a');
  await t.rejects(openKernel(netnsRef('/run/netns/pwk-link-does-not-exist')), { name: 'NotFoundError', field: 'netns', value: '/run/netns/pwk-link-does-not-exist' });
  const k = await openKernel(netnsRef(ns));
  t.teardown(() => k.close());
  await k.net.createLink({ kind: 'bridge', name: 'dup0' });
  await t.rejects(k.net.createLink({ kind: 'bridge', name: 'dup0' }), { name: 'AlreadyExistsError', field: 'link', value: 'dup0' });
  await t.rejects(k.net.createLink({ kind: 'veth', name: 'v0', peerName: 'dup0' }), { name: 'AlreadyExistsError', value: 'dup0' }, 'a taken peer name is named');
  await t.rejects(k.net.createLink({ kind: 'veth', name: 'v1', peerName: 'p1', peerNetns: netnsRef('/run/netns/pwk-link-missing') }), { name: 'NotFoundError', field: 'netns' });
  await t.rejects(k.net.setLinkUp('missing0', true), { name: 'NotFoundError', field: 'link', value: 'missing0' });
  await t.rejects(k.net.setMaster('dup0', 'missing0'), { name: 'NotFoundError', value: 'missing0' });
  await t.rejects(k.net.addAddress('dup0', '10.0.0.1/33' as unknown as Cidr), { name: 'InvalidInputError', field: 'cidr', value: '10.0.0.1/33' });
  await t.rejects(k.net.addAddress('dup0', 'not-an-ip/24' as unknown as Cidr), { name: 'InvalidInputError', field: 'cidr' });
  await t.rejects(k.net.moveToNetns('dup0', netnsRef('/run/netns/pwk-link-missing')), { name: 'NotFoundError', field: 'netns' });
  await t.rejects(k.net.setBridgePort('dup0', { hairpin: true }), { name: 'KernelError', errno: 95 }, 'a bridge is not a bridge port: EOPNOTSUPP');
  await k.net.deleteLink('missing0');
  const names = (await k.net.listLinks()).map((l) => l.name).sort();
  t.same(names, ['dup0', 'lo'], 'failed creates left nothing behind');
  const links = await exec(null, ['ip', '-n', ns, '-o', 'link']);
  t.equal(links.stdout.trim().split('\n').length, 2, 'iproute2 agrees');
});
