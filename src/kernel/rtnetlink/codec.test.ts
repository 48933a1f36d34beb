import t, { type Test } from 'tap';
import { Cidr, IpAddress } from '../../common/ip';
import { NetlinkNetworkKernel } from '../network-kernel';
import { FakeTransport } from '../testing/fake-transport';
import * as C from './constants';
import { CAPTURED } from './fixtures';
import { decodeAddr, encodeNewAddr } from './addr';
import { decodeLink, encodeBridgePort, encodeNewLink, vethInfoData, vxlanInfoData } from './link';
import { decodeNeigh, encodeNewNeigh } from './neigh';
import { attrMap, parseAttrs, parseHeader, payloadOf, splitMessages, attr, u8, frame } from './nlmsg';
import { decodeRoute, encodeNewRoute } from './route';
import type { Route } from '../types';

const hex = (s: string): Buffer => Buffer.from(s, 'hex');

/** Every attribute of `ours` must appear byte-for-byte (type and payload) in `kernel`. */
function assertAttrsSubset(tt: Test, ours: Buffer, kernel: Buffer, what: string): void {
  const k = attrMap(kernel);
  for (const a of parseAttrs(ours)) {
    tt.ok(k.has(a.type), `${what}: kernel message has attribute ${a.type}`);
    tt.same(a.data.toString('hex'), k.get(a.type)?.toString('hex'), `${what}: attribute ${a.type} bytes equal the kernel's`);
  }
}

function assertFramed(tt: Test, msg: Buffer): void {
  const h = parseHeader(msg);
  tt.equal(h.length, msg.length, 'nlmsg_len covers the whole buffer');
  tt.equal(msg.length % 4, 0, 'message is NLMSG_ALIGN-padded');
}

t.test('route: onlink route encodes like iproute2 and decodes the kernel dump', async (t) => {
  const ours = encodeNewRoute({ route: { dst: Cidr.parse('10.244.5.0/24'), gateway: IpAddress.parse('10.244.5.0'), onlink: true }, oif: 3 }, 'add');
  assertFramed(t, ours);
  const h = parseHeader(ours);
  t.equal(h.type, C.RTM_NEWROUTE);
  t.equal(h.flags, C.NLM_F_REQUEST | C.NLM_F_ACK | C.NLM_F_CREATE | C.NLM_F_EXCL);
  const kernel = hex(CAPTURED.route);
  const kp = payloadOf(kernel);
  const op = payloadOf(ours);
  t.equal(op.subarray(0, 12).toString('hex'), kp.subarray(0, 12).toString('hex'), 'rtmsg identical (family, len, table, proto boot, scope, unicast, RTNH_F_ONLINK=4)');
  assertAttrsSubset(t, op.subarray(12), kp.subarray(12), 'route');

  const d = decodeRoute(kernel);
  t.equal(d.route.dst.toString(), '10.244.5.0/24');
  t.equal(d.route.gateway?.toString(), '10.244.5.0');
  t.equal(d.route.onlink, true);
  t.equal(d.route.table, 254);
  t.equal(d.route.protocol, C.RTPROT_BOOT);
  t.equal(d.route.type, 'unicast');
  t.equal(d.route.scope, 'universe');
  t.equal(d.oif, 3);

  const replace = parseHeader(encodeNewRoute({ route: { dst: Cidr.parse('10.244.5.0/24'), type: 'blackhole' } }, 'replace'));
  t.equal(replace.flags & C.NLM_F_REPLACE, C.NLM_F_REPLACE, 'replace sets NLM_F_REPLACE');
  t.equal(replace.flags & C.NLM_F_EXCL, 0, 'replace does not set NLM_F_EXCL');
  const bh = payloadOf(encodeNewRoute({ route: { dst: Cidr.parse('10.96.0.0/12'), type: 'blackhole', table: 1000, metric: 7 } }, 'add'));
  t.equal(bh[7], C.RTN_BLACKHOLE, 'blackhole type');
  t.equal(bh[4], 0, 'table > 255 leaves rtm_table unspec...');
  t.equal(attrMap(bh.subarray(12)).get(C.RTA_TABLE)?.readUInt32LE(0), 1000, '...and uses RTA_TABLE');
  t.equal(attrMap(bh.subarray(12)).get(C.RTA_PRIORITY)?.readUInt32LE(0), 7, 'metric is RTA_PRIORITY');
});

t.test('vxlan: IFLA_INFO_DATA attributes equal the kernel\'s, port in network byte order', async (t) => {
  const data = vxlanInfoData({ vni: 1, port: 8472, local: IpAddress.parse('198.18.0.1'), learning: false, ttl: 5, portRange: [1000, 2000] });
  const msg = encodeNewLink({ name: 'vx0', kind: 'vxlan', infoData: data });
  assertFramed(t, msg);
  const kernel = hex(CAPTURED.vxlan);
  const kLinkinfo = attrMap(attrMap(payloadOf(kernel).subarray(16)).get(C.IFLA_LINKINFO)!);
  const kData = kLinkinfo.get(C.IFLA_INFO_DATA)!;
  const ourLinkinfoAttr = parseAttrs(payloadOf(msg).subarray(16)).find((a) => a.type === C.IFLA_LINKINFO)!;
  t.ok(ourLinkinfoAttr.nested, 'IFLA_LINKINFO carries NLA_F_NESTED');
  const ourInfo = attrMap(ourLinkinfoAttr.data);
  t.equal(ourInfo.get(C.IFLA_INFO_KIND)?.toString(), 'vxlan\0');
  assertAttrsSubset(t, ourInfo.get(C.IFLA_INFO_DATA)!, kData, 'vxlan');
  t.equal(attrMap(kData).get(C.IFLA_VXLAN_PORT)!.toString('hex'), '2118', '8472 = 0x2118, big endian');

  const link = decodeLink(kernel);
  t.equal(link.name, 'vx0');
  t.equal(link.index, 3);
  t.equal(link.kind, 'vxlan');
  t.same(link.vxlan, { vni: 1, port: 8472, local: '198.18.0.1', learning: false, underlayIndex: undefined });
  t.equal(link.up, true);
});

t.test('veth peer: VETH_INFO_PEER = ifinfomsg + IFLA_IFNAME + IFLA_NET_NS_FD', async (t) => {
  const [peer] = vethInfoData({ name: 'eth0', netnsFd: 42, mtu: 1450 });
  const a = parseAttrs(peer!)[0]!;
  t.equal(a.type, C.VETH_INFO_PEER);
  const inner = attrMap(a.data.subarray(16));
  t.equal(inner.get(C.IFLA_IFNAME)?.toString(), 'eth0\0');
  t.equal(inner.get(C.IFLA_NET_NS_FD)?.readUInt32LE(0), 42);
  t.equal(inner.get(C.IFLA_MTU)?.readUInt32LE(0), 1450);
});

t.test('bridge port flags: AF_BRIDGE setlink with nested IFLA_PROTINFO', async (t) => {
  const msg = encodeBridgePort(7, { hairpin: true, learning: false });
  assertFramed(t, msg);
  t.equal(parseHeader(msg).type, C.RTM_SETLINK);
  const p = payloadOf(msg);
  t.equal(p[0], C.AF_BRIDGE);
  t.equal(p.readInt32LE(4), 7);
  const prot = parseAttrs(p.subarray(16))[0]!;
  t.equal(prot.type, C.IFLA_PROTINFO);
  t.ok(prot.nested, 'NLA_F_NESTED set (br_setlink needs it)');
  const flags = attrMap(prot.data);
  t.equal(flags.get(C.IFLA_BRPORT_MODE)?.[0], 1);
  t.equal(flags.get(C.IFLA_BRPORT_LEARNING)?.[0], 0);
});

t.test('fdb and neighbour entries match the kernel\'s', async (t) => {
  const fdb = encodeNewNeigh({ family: C.AF_BRIDGE, ifindex: 3, state: C.NUD_PERMANENT, flags: C.NTF_SELF, lladdr: Buffer.alloc(6), dst: IpAddress.parse('198.18.0.2') }, 'append');
  assertFramed(t, fdb);
  t.equal(parseHeader(fdb).flags, C.NLM_F_REQUEST | C.NLM_F_ACK | C.NLM_F_CREATE | C.NLM_F_APPEND);
  const kf = payloadOf(hex(CAPTURED.fdb));
  const of = payloadOf(fdb);
  t.equal(of[0], kf[0], 'family AF_BRIDGE');
  t.equal(of.readInt32LE(4), kf.readInt32LE(4), 'ifindex');
  t.equal(of[10], kf[10], 'NTF_SELF');
  t.equal(of.readUInt16LE(8) & C.NUD_PERMANENT, kf.readUInt16LE(8) & C.NUD_PERMANENT, 'NUD_PERMANENT');
  assertAttrsSubset(t, of.subarray(12), kf.subarray(12), 'fdb');
  const df = decodeNeigh(hex(CAPTURED.fdb));
  t.equal(df.mac, '00:00:00:00:00:00');
  t.equal(df.dst?.toString(), '198.18.0.2');

  const n = encodeNewNeigh({ family: C.AF_INET, ifindex: 3, state: C.NUD_PERMANENT, flags: 0, lladdr: Buffer.from([2, 0, 0, 0, 0, 5]), dst: IpAddress.parse('10.244.5.0') }, 'replace');
  const kn = payloadOf(hex(CAPTURED.neigh));
  const on = payloadOf(n);
  t.equal(on.subarray(0, 11).toString('hex'), kn.subarray(0, 11).toString('hex'), 'ndmsg equal up to ndm_type');
  assertAttrsSubset(t, on.subarray(12), kn.subarray(12), 'neigh');
  t.equal(decodeNeigh(hex(CAPTURED.neigh)).mac, '02:00:00:00:00:05');
});

t.test('address: IFA_LOCAL/IFA_ADDRESS equal the kernel\'s', async (t) => {
  const ours = payloadOf(encodeNewAddr(2, Cidr.parse('10.244.0.1/24')));
  const k = payloadOf(hex(CAPTURED.addr));
  t.equal(ours[0], k[0]);
  t.equal(ours[1], k[1], 'prefix length');
  t.equal(ours.readUInt32LE(4), k.readUInt32LE(4), 'ifindex');
  assertAttrsSubset(t, ours.subarray(8), k.subarray(8), 'addr');
  t.equal(decodeAddr(hex(CAPTURED.addr))?.cidr.toString(), '10.244.0.1/24');
});

t.test('padding: odd-sized attributes and concatenated messages', async (t) => {
  const a = attr(1, u8(9));
  t.equal(a.length, 8, 'a 5-byte attribute takes 8 bytes');
  t.equal(a.readUInt16LE(0), 5, 'nla_len excludes the padding');
  const m1 = frame(C.RTM_NEWLINK, C.NLM_F_REQUEST, [Buffer.alloc(16), a]);
  const m2 = encodeNewLink({ name: 'abc', kind: 'bridge' });
  for (const m of [m1, m2]) assertFramed(t, m);
  const parts = splitMessages(Buffer.concat([m1, m2, m1]));
  t.equal(parts.length, 3, 'a batch datagram splits back into its messages');
});

function kernelWithFake(): { k: NetlinkNetworkKernel; tr: FakeTransport } {
  const tr = new FakeTransport();
  const vx0 = hex(CAPTURED.vxlan);
  tr.onRequest = (msg) => {
    const h = parseHeader(msg);
    if (h.type === C.RTM_GETLINK && (h.flags & C.NLM_F_DUMP) === C.NLM_F_DUMP) return [vx0];
    const name = attrMap(payloadOf(msg).subarray(16)).get(C.IFLA_IFNAME)?.toString().replace(/\0.*/, '');
    if (h.type === C.RTM_GETLINK) return name === 'vx0' ? [vx0] : 19; // ENODEV
    // Like the kernel: RTM_NEWLINK with NLM_F_EXCL for a taken name is EEXIST.
    if (h.type === C.RTM_NEWLINK && (h.flags & C.NLM_F_EXCL) !== 0 && name === 'vx0') return 17; // EEXIST
    return [];
  };
  return { k: new NetlinkNetworkKernel(tr, undefined), tr };
}

t.test('errors name the field and value', async (t) => {
  const { k, tr } = kernelWithFake();
  await t.rejects(k.createLink({ kind: 'bridge', name: 'a-very-long-name0' }), { name: 'InvalidInputError', field: 'name', value: 'a-very-long-name0' });
  await t.rejects(k.createLink({ kind: 'bridge', name: 'a/b' }), { name: 'InvalidInputError', field: 'name' });
  await t.rejects(k.createLink({ kind: 'bridge', name: '..' }), { name: 'InvalidInputError', field: 'name' });
  await t.rejects(k.createLink({ kind: 'bridge', name: 'b0', mtu: 10 }), { name: 'InvalidInputError', field: 'mtu', value: 10 });
  await t.rejects(k.createLink({ kind: 'vxlan', name: 'v', vni: 1 << 24, port: 8472, learning: false }), { name: 'InvalidInputError', field: 'vni', value: 1 << 24 });
  await t.rejects(k.addAddress('vx0', '10.0.0.1/33' as unknown as Cidr), { name: 'InvalidInputError', field: 'cidr', value: '10.0.0.1/33' });
  await t.rejects(k.createLink({ kind: 'bridge', name: 'vx0' }), { name: 'AlreadyExistsError', field: 'link', value: 'vx0' });
  await t.rejects(k.setLinkUp('nope', true), { name: 'NotFoundError', field: 'link', value: 'nope' });
  await k.deleteLink('nope'); // idempotent
  t.notOk(tr.requests.some((m) => parseHeader(m).type === C.RTM_DELLINK), 'no DELLINK sent for a missing link');
});

t.test('a batch of 10,000 routes names exactly the failing change', async (t) => {
  const { k, tr } = kernelWithFake();
  tr.onBatch = (_m, i) => (i === 5000 ? 101 : 0); // ENETUNREACH
  const changes = Array.from({ length: 10_000 }, (_, i) => ({
    op: 'add' as const,
    entry: { dst: Cidr.parse(`10.${100 + (i >> 8)}.${i & 255}.0/24`), gateway: IpAddress.parse('198.18.0.2'), dev: 'vx0', onlink: true },
  }));
  const r = await k.applyRoutes(changes);
  t.equal(tr.batches.length, 1, 'one transport batch');
  t.equal(tr.batches[0]!.length, 10_000);
  t.equal(r.applied, 9_999);
  t.equal(r.failed.length, 1);
  t.equal(r.failed[0]!.index, 5000);
  t.equal(r.failed[0]!.errno, 101);
  t.match(r.failed[0]!.message, /ENETUNREACH/);
  t.equal(r.failed[0]!.change, changes[5000]);
  for (const m of tr.batches[0]!) if (m.length % 4 !== 0) t.fail('unpadded message in batch');

  const r2 = await k.applyRoutes([{ op: 'add', entry: { dst: Cidr.parse('10.1.0.0/24'), dev: 'missing0' } }, { op: 'delete', entry: { dst: Cidr.parse('10.2.0.0/24') } }]);
  t.equal(r2.failed.length, 1, 'unknown dev fails only its own change');
  t.equal(r2.failed[0]!.index, 0);
  t.match(r2.failed[0]!.message, /missing0/);
});

t.test('decode(encode(x)) round trips', async (t) => {
  const cases: Route[] = [
    { dst: Cidr.parse('10.244.5.0/24'), gateway: IpAddress.parse('198.18.0.2'), onlink: true, protocol: 99, metric: 10, table: 254, type: 'unicast', scope: 'universe' },
    { dst: Cidr.parse('fd00:244:5::/64'), gateway: IpAddress.parse('fd00::2'), protocol: 3, table: 254, type: 'unicast', scope: 'universe' },
    { dst: Cidr.parse('10.96.0.0/12'), type: 'blackhole', table: 1000, protocol: 3, scope: 'universe' },
    { dst: Cidr.parse('0.0.0.0/0'), gateway: IpAddress.parse('198.18.0.254'), mtu: 1400, table: 254, protocol: 3, type: 'unicast', scope: 'universe' },
    { dst: Cidr.parse('10.245.0.0/16'), scope: 'link', table: 254, protocol: 3, type: 'unicast', src: IpAddress.parse('10.245.0.1') },
  ];
  for (const r of cases) {
    const d = decodeRoute(encodeNewRoute({ route: r, oif: 9 }, 'replace'));
    t.equal(d.oif, 9);
    t.same({ ...d.route, dst: d.route.dst.toString(), gateway: d.route.gateway?.toString(), src: d.route.src?.toString() }, { ...r, dst: r.dst.toString(), gateway: r.gateway?.toString(), src: r.src?.toString() }, `route ${r.dst.toString()}`);
  }
  const n = decodeNeigh(encodeNewNeigh({ family: C.AF_INET6, ifindex: 4, state: C.NUD_PERMANENT, flags: 0, lladdr: Buffer.from('020000000006', 'hex'), dst: IpAddress.parse('fd00::6') }, 'replace'));
  t.same([n.family, n.ifindex, n.state, n.mac, n.dst?.toString()], [C.AF_INET6, 4, C.NUD_PERMANENT, '02:00:00:00:00:06', 'fd00::6']);
  t.equal(decodeAddr(encodeNewAddr(5, Cidr.parse('fd00::1/64')))?.cidr.toString(), 'fd00::1/64');
  // `ip -6 addr add fd00::1/128 dev X nodad`: ifaddrmsg {family 10, prefixlen 128, flags IFA_F_NODAD (0x02), scope 0, index}
  t.equal(encodeNewAddr(5, Cidr.parse('fd00::1/128'), { nodad: true }).subarray(16, 24).toString('hex'), '0a80020005000000');
  t.equal(encodeNewAddr(5, Cidr.parse('fd00::1/128')).subarray(16, 24).toString('hex'), '0a80000005000000');
  const l = decodeLink(encodeNewLink({ name: 'pw.vxlan', kind: 'vxlan', mtu: 1450, mac: Buffer.from('020000000001', 'hex'), up: true, infoData: vxlanInfoData({ vni: 7, port: 4789, learning: true, underlayIndex: 2, local: IpAddress.parse('fd00::1') }) }));
  t.same(l, { index: 0, name: 'pw.vxlan', kind: 'vxlan', mtu: 1450, mac: '02:00:00:00:00:01', up: true, masterIndex: undefined, peerIndex: undefined, vxlan: { vni: 7, port: 4789, local: 'fd00::1', learning: true, underlayIndex: 2 } });
});

t.test('createLink with masterIndex: one RTM_NEWLINK with IFLA_MASTER and NLM_F_ECHO, the echo is the result', async (t) => {
  const tr = new FakeTransport();
  const vx0 = hex(CAPTURED.vxlan); // what the kernel echoes for vx0 (ifindex 3)
  tr.onRequest = (msg) => (parseHeader(msg).type === C.RTM_NEWLINK ? [vx0] : 19);
  const k = new NetlinkNetworkKernel(tr, undefined);
  const link = await k.createLink({ kind: 'vxlan', name: 'vx0', vni: 1, port: 8472, learning: false, masterIndex: 2 });
  t.equal(tr.requests.length, 1, 'one round trip: no lookup before or after');
  const h = parseHeader(tr.requests[0]!);
  t.equal(h.type, C.RTM_NEWLINK);
  t.equal(h.flags & (C.NLM_F_CREATE | C.NLM_F_EXCL | C.NLM_F_ECHO), C.NLM_F_CREATE | C.NLM_F_EXCL | C.NLM_F_ECHO);
  const a = attrMap(payloadOf(tr.requests[0]!).subarray(16));
  t.equal(a.get(C.IFLA_MASTER)?.readUInt32LE(0), 2, 'IFLA_MASTER carries the bridge ifindex');
  t.equal(link.index, 3);
  t.equal(link.name, 'vx0');
  t.equal(link.masterIndex, 2);

  // A kernel without NLM_F_ECHO support only ACKs: one lookup fetches the link.
  const old = new FakeTransport();
  old.onRequest = (msg) => (parseHeader(msg).type === C.RTM_NEWLINK ? [] : [vx0]);
  const got = await new NetlinkNetworkKernel(old, undefined).createLink({ kind: 'vxlan', name: 'vx0', vni: 1, port: 8472, learning: false });
  t.equal(got.index, 3);
  t.same(old.requests.map((m) => parseHeader(m).type), [C.RTM_NEWLINK, C.RTM_GETLINK]);
  t.equal(encodeNewLink({ name: 'b', kind: 'bridge' }).readUInt16LE(6) & C.NLM_F_ECHO, 0, 'no echo unless asked');
});

t.test('applyLinkConfig: the steps in order in one batch, by ifindex; each failure named', async (t) => {
  const tr = new FakeTransport();
  tr.onRequest = (msg) => (parseHeader(msg).type === C.RTM_GETADDR ? [hex(CAPTURED.addr)] : 19);
  tr.onBatch = (msg) => {
    const type = parseHeader(msg).type;
    if (type === C.RTM_NEWADDR) return 17; // EEXIST: 10.244.0.1/24 is on ifindex 2 (CAPTURED.addr)
    if (type === C.RTM_NEWROUTE) return 101; // ENETUNREACH
    return 0;
  };
  const k = new NetlinkNetworkKernel(tr, undefined);
  const r = await k.applyLinkConfig([
    { kind: 'up', index: 1, up: true },
    { kind: 'up', index: 2, up: true },
    { kind: 'address', index: 2, cidr: Cidr.parse('10.244.0.1/24') },
    { kind: 'route', index: 2, route: { dst: Cidr.parse('0.0.0.0/0'), gateway: IpAddress.parse('10.244.0.254'), dev: 'ignored0' } },
    { kind: 'bridgePort', index: 2, hairpin: true },
    { kind: 'up', index: -1, up: true },
  ]);
  t.equal(tr.batches.length, 1, 'one batch');
  const sent = tr.batches[0]!;
  t.same(sent.map((m) => parseHeader(m).type), [C.RTM_NEWLINK, C.RTM_NEWLINK, C.RTM_NEWADDR, C.RTM_NEWROUTE, C.RTM_SETLINK], 'in order; the invalid step is not sent');
  t.same(sent.map((m) => payloadOf(m).readInt32LE(4)).slice(0, 2), [1, 2], 'ifi_index of the link steps');
  const routeAttrs = attrMap(payloadOf(sent[3]!).subarray(12));
  t.equal(routeAttrs.get(C.RTA_OIF)?.readUInt32LE(0), 2, 'route leaves through the step index, not route.dev');
  t.equal(r.applied, 4, 'the exact address already present counts as applied');
  t.same(r.failed.map((f) => [f.index, f.errno]), [[3, 101], [5, 22]]);
  t.match(r.failed[0]!.message, /add route 0\.0\.0\.0\/0 via 10\.244\.0\.254 on link #2: ENETUNREACH/);
  t.match(r.failed[1]!.message, /index/);
});
