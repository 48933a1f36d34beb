/**
 * SCTP Services in the three proxy modes, against the kernel fakes (the host kernel has no
 * sctp module; test-netns/vm/sctp-proxy.test.ts runs the same Services on a kernel that has
 * one). Golden text / bytes of what each mode hands the kernel, compared with what
 * kube-proxy renders for SCTP:
 *   nftables  `sctp` in the map keys and a per-protocol endpoint map (`… : ip daddr . sctp dport`);
 *   iptables  `-p sctp -m sctp --dport N` (kube-proxy's `-m <protocol> -p <protocol> --dport`,
 *             as iptables-save prints it back), `-p sctp -m sctp -j DNAT` in the endpoint chain;
 *   ipvs      IPVS_SVC_ATTR_PROTOCOL = IPPROTO_SCTP (132) in the genetlink messages, SCTP
 *             NodePorts in a hash:ip,port set (kube-proxy's KUBE-NODE-PORT-SCTP-HASH).
 * And kube-proxy's conntrack rule: only UDP entries are flushed (pkg/proxy/conntrack/cleanup.go),
 * so an SCTP endpoint going away deletes no conntrack entry; in ipvs mode an SCTP real server
 * drains (weight 0) like a TCP one (graceful_termination.go: every protocol but UDP).
 */
import t from 'tap';
import { Cidr } from '../common/ip';
import { fakeKernel, FakeIpset, FakeIpvs, type FakeKernel } from '../kernel/testing';
import { encodeChange } from '../kernel/ipvs/ipvs';
import { parseAttrs } from '../kernel/rtnetlink/nlmsg';
import { GOLDEN_FAMILY_ID, IPVSADM_SENT } from '../kernel/ipvs/fixtures';
import { FakeClock } from '../daemon/testing/fake-clock';
import type { ClusterObject } from '../k8s/types';
import { MemoryState, proxierHarness, proxyContext, slice, svc, testConfig } from './testing';
import { IptablesProxier } from './iptables/proxier';
import { endpointChain, serviceChain } from './iptables/names';
import { IpvsProxier } from './ipvs/proxier';
import { renderRules } from './ipvs/rules';
import { LEGACY_SETS, SETS } from './ipvs/render';

const signal = new AbortController().signal;
const NODE_IP = '198.18.0.1';
const OUT = '198.18.0.99';
const POD = '10.244.1.10';
const lines = (s: string | undefined): string[] => (s ?? '').split('\n').filter((l) => l !== '');

/** An SCTP NodePort Service with two endpoints, and one without endpoints. */
const withEndpoints = (): ClusterObject[] => [
  svc('ns/sctp', '10.96.0.40', { type: 'NodePort', ports: [{ name: 'assoc', port: 900, protocol: 'SCTP', targetPort: 9000, nodePort: 30900 }] }),
  slice('ns/sctp', [{ ip: '10.244.1.2', node: 'node-a' }, { ip: '10.244.2.2', node: 'node-b' }], [{ name: 'assoc', port: 9000, protocol: 'SCTP' }]),
];
const without = (): ClusterObject[] => [svc('ns/empty', '10.96.0.41', { type: 'NodePort', ports: [{ name: 'assoc', port: 900, protocol: 'SCTP', nodePort: 30901 }] })];

const deps = (k: FakeKernel, state: MemoryState, section: Record<string, unknown> = {}, mode = 'nftables') =>
  proxyContext(k, state, testConfig({ proxyMode: mode as 'nftables' }), { ...(mode === 'ipvs' ? { mode } : {}), ...section });

t.test('nftables: golden elements and chains of an SCTP ClusterIP + NodePort, with and without endpoints', async (t) => {
  const k = fakeKernel();
  const h = proxierHarness(k, new FakeClock());
  for (const o of [...withEndpoints(), ...without()]) h.apply(o);
  await h.proxier.sync(signal);
  const s = lines(k.nft.scripts.join('\n'));
  for (const want of [
    // the skeleton's SCTP maps: the data type's `sctp dport` is what makes nft match SCTP
    'add map inet podwire endpoints4-sctp { typeof ip daddr . meta l4proto . th dport . numgen random mod 1 : ip daddr . sctp dport ; }',
    'add map inet podwire np-endpoints4-sctp { typeof meta l4proto . th dport . numgen random mod 1 : ip daddr . sctp dport ; }',
    'add element inet podwire services4 { 10.96.0.40 . sctp . 900 : goto lb4c-sctp-2 }',
    'add element inet podwire endpoints4-sctp { 10.96.0.40 . sctp . 900 . 0 : 10.244.1.2 . 9000, 10.96.0.40 . sctp . 900 . 1 : 10.244.2.2 . 9000 }',
    'add element inet podwire nodeports4 { sctp . 30900 : goto lb4nx-sctp-2 }',
    'add element inet podwire np-endpoints4-sctp { sctp . 30900 . 0 : 10.244.1.2 . 9000, sctp . 30900 . 1 : 10.244.2.2 . 9000 }',
    'add rule inet podwire lb4c-sctp-2 ip saddr != { 10.244.0.0/16 } jump mark-for-masquerade',
    'add rule inet podwire lb4c-sctp-2 dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 2 map @endpoints4-sctp',
    'add rule inet podwire lb4nx-sctp-2 jump mark-for-masquerade',
    'add rule inet podwire lb4nx-sctp-2 dnat ip to meta l4proto . th dport . numgen random mod 2 map @np-endpoints4-sctp',
    'add element inet podwire no-endpoints4 { 10.96.0.41 . sctp . 900 : goto reject-chain }',
    'add element inet podwire no-endpoint-nodeports4 { sctp . 30901 : goto reject-chain }',
    // kube-proxy's reject-chain: a TCP reset for TCP, ICMP port unreachable for the rest (SCTP too)
    'add rule inet podwire reject-chain reject',
  ]) t.ok(s.includes(want), want);
  t.notOk(s.some((l) => /endpoints4-(tcp|udp) \{ 10\.96\.0\.40/.test(l)), 'no SCTP endpoint in the TCP or UDP maps');

  // The packets: SCTP to the VIP is DNATed over both endpoints; TCP to the same port is not.
  const pkt = { family: 4 as const, saddr: POD, daddr: '10.96.0.40', protocol: 'sctp' as const, dport: 900, hook: 'prerouting' as const };
  const r = k.nft.trace(pkt);
  t.same((r.alternatives ?? [r]).map((a) => `${a.dnat?.addr}:${a.dnat?.port}`).sort(), ['10.244.1.2:9000', '10.244.2.2:9000'], 'SCTP ClusterIP → both endpoints');
  t.equal(r.mark, undefined, 'a pod source is not marked');
  t.equal(k.nft.trace({ ...pkt, protocol: 'tcp' }).dnat, undefined, 'TCP to an SCTP-only port is not DNATed');
  const np = k.nft.trace({ ...pkt, saddr: OUT, daddr: NODE_IP, dport: 30900, daddrLocal: true });
  t.ok(np.dnat || np.alternatives, 'SCTP NodePort from outside is DNATed');
  t.equal(np.mark, 0x4000, 'and marked for masquerade (eTP Cluster)');
  t.equal(k.nft.trace({ ...pkt, daddr: '10.96.0.41' }).verdict, 'reject', 'no endpoints: rejected');
  t.equal(k.nft.trace({ ...pkt, saddr: OUT, daddr: NODE_IP, dport: 30901, daddrLocal: true }).verdict, 'reject', 'its NodePort too');
});

t.test('nftables: SCTP with ClientIP affinity gets `meta l4proto sctp` DNAT rules', async (t) => {
  const k = fakeKernel();
  const h = proxierHarness(k, new FakeClock());
  h.apply(svc('ns/aff', '10.96.0.42', { sessionAffinity: 'ClientIP', affinityTimeout: 60, ports: [{ name: 'assoc', port: 900, protocol: 'SCTP', targetPort: 9000 }] }));
  h.apply(slice('ns/aff', ['10.244.1.2'], [{ name: 'assoc', port: 9000, protocol: 'SCTP' }]));
  await h.proxier.sync(signal);
  const s = lines(k.nft.last);
  t.ok(s.some((l) => /^add rule inet podwire svc4c-\S+ update @affinity4-\S+ \{ ip saddr \} meta l4proto sctp dnat ip to 10\.244\.1\.2:9000$/.test(l)), 'affinity DNAT carries the protocol');
  t.ok(s.includes('add element inet podwire services4 { 10.96.0.42 . sctp . 900 : goto ' + (s.find((l) => l.startsWith('add chain inet podwire svc4c-'))?.split(' ')[4] ?? '?') + ' }'), 'the VIP element goes to its own chain');
});

t.test('nftables and ipvs: an SCTP endpoint going away deletes no conntrack entry (kube-proxy flushes UDP only)', async (t) => {
  const k = fakeKernel();
  const h = proxierHarness(k, new FakeClock());
  for (const o of withEndpoints()) h.apply(o);
  await h.proxier.sync(signal);
  h.apply(slice('ns/sctp', [{ ip: '10.244.1.2', node: 'node-a' }], [{ name: 'assoc', port: 9000, protocol: 'SCTP' }]));
  await h.proxier.sync(signal);
  t.ok(lines(k.nft.last).includes('add element inet podwire services4 { 10.96.0.40 . sctp . 900 : goto lb4c-sctp-1 }'), 'the VIP now goes to the one-endpoint chain');
  t.ok(lines(k.nft.last).includes('delete element inet podwire endpoints4-sctp { 10.96.0.40 . sctp . 900 . 1 }'), 'the gone endpoint\'s element is deleted');
  t.same(k.conntrack.deletes, [], 'no conntrack delete for SCTP');

  const w = fakeKernel();
  await w.net.createLink({ kind: 'bridge', name: 'eth0' });
  await w.net.addAddress('eth0', Cidr.parse(`${NODE_IP}/24`));
  const ipvs = new FakeIpvs();
  const state = new MemoryState();
  const p = new IpvsProxier(deps(w, state, {}, 'ipvs'), { ipvs, ipset: new FakeIpset(), probe: async () => 'loaded' });
  await p.reconcileOnStart(signal);
  for (const o of withEndpoints()) p.handleEvent(state.apply(o));
  await p.sync(signal);
  const vip = { family: 4 as const, protocol: 'sctp' as const, address: '10.96.0.40', port: 900 };
  ipvs.setConns(vip, '10.244.2.2', 9000, 1);
  p.handleEvent(state.apply(slice('ns/sctp', [{ ip: '10.244.1.2', node: 'node-a' }], [{ name: 'assoc', port: 9000, protocol: 'SCTP' }])));
  await p.sync(signal);
  const dests = async (): Promise<string[]> => (await ipvs.listDests(vip)).map((d) => `${d.address}:${d.port} w${d.weight}`).sort();
  t.same(await dests(), ['10.244.1.2:9000 w1', '10.244.2.2:9000 w0'], 'ipvs: an SCTP real server with a live association drains at weight 0 (graceful termination), like TCP');
  ipvs.setConns(vip, '10.244.2.2', 9000, 0);
  await p.sync(signal);
  t.same(await dests(), ['10.244.1.2:9000 w1'], 'ipvs: and is deleted once its association is gone');
  t.same(w.conntrack.deletes, [], 'ipvs: no conntrack delete for SCTP');
  await p.close();
});

t.test('iptables: golden iptables-restore lines of an SCTP ClusterIP + NodePort, with and without endpoints', async (t) => {
  const k = fakeKernel();
  const state = new MemoryState();
  const p = new IptablesProxier(deps(k, state));
  await p.reconcileOnStart(signal);
  for (const o of [...withEndpoints(), ...without()]) p.handleEvent(state.apply(o));
  await p.sync(signal);
  const id = 'ns/sctp:assoc/sctp';
  const svcC = serviceChain('SVC', id);
  const ext = serviceChain('EXT', id);
  const sep = (ep: string): string => endpointChain(id, ep);
  const text = lines(k.iptables(4).restores.map((r) => r.text).join('\n'));
  for (const want of [
    `-A PODWIRE-SERVICES -d 10.96.0.40/32 -p sctp -m comment --comment "ns/sctp:assoc cluster IP" -m sctp --dport 900 -j ${svcC}`,
    `-A ${svcC} ! -s 10.244.0.0/16 -d 10.96.0.40/32 -p sctp -m comment --comment "ns/sctp:assoc cluster IP" -m sctp --dport 900 -j PODWIRE-MARK-MASQ`,
    `-A ${svcC} -m comment --comment "ns/sctp:assoc -> 10.244.1.2:9000" -m statistic --mode random --probability 0.50000000000 -j ${sep('10.244.1.2:9000')}`,
    `-A ${svcC} -m comment --comment "ns/sctp:assoc -> 10.244.2.2:9000" -j ${sep('10.244.2.2:9000')}`,
    `-A ${sep('10.244.1.2:9000')} -s 10.244.1.2/32 -m comment --comment "ns/sctp:assoc" -j PODWIRE-MARK-MASQ`,
    `-A ${sep('10.244.1.2:9000')} -p sctp -m comment --comment "ns/sctp:assoc" -m sctp -j DNAT --to-destination 10.244.1.2:9000`,
    `-A PODWIRE-NODEPORTS -p sctp -m comment --comment "ns/sctp:assoc" -m sctp --dport 30900 -j ${ext}`,
    `-A ${ext} -m comment --comment "masquerade traffic for ns/sctp:assoc external destinations" -j PODWIRE-MARK-MASQ`,
    `-A ${ext} -j ${svcC}`,
    '-A PODWIRE-SERVICES -d 10.96.0.41/32 -p sctp -m comment --comment "ns/empty:assoc has no endpoints" -m sctp --dport 900 -j REJECT --reject-with icmp-port-unreachable',
    '-A PODWIRE-EXT-SERVICES -p sctp -m comment --comment "ns/empty:assoc has no endpoints" -m addrtype --dst-type LOCAL -m sctp --dport 30901 -j REJECT --reject-with icmp-port-unreachable',
  ]) t.ok(text.includes(want), want);
  t.notOk(text.some((l) => /-p sctp(?! -m comment --comment "[^"]*"( -m recent [^-]*| -m addrtype --dst-type LOCAL)? -m sctp)/.test(l)), 'every `-p sctp` comes with its `-m sctp` match');

  const ipt = k.iptables(4);
  const pkt = { src: POD, dst: '10.96.0.40', protocol: 'sctp' as const, dport: 900 };
  t.equal(ipt.trace('nat', 'PREROUTING', pkt).args.at(-1), '10.244.2.2:9000', 'SCTP to the VIP is DNATed (the last endpoint when no coin wins)');
  t.equal(ipt.trace('nat', 'PREROUTING', { ...pkt, protocol: 'tcp' }).verdict, 'ACCEPT', 'TCP to the SCTP port is untouched');
  const np = ipt.trace('nat', 'PREROUTING', { src: OUT, dst: NODE_IP, protocol: 'sctp', dport: 30900, localDst: true });
  t.equal(np.verdict, 'DNAT', 'SCTP NodePort from outside is DNATed');
  t.equal(np.mark, 0x4000, 'and marked for masquerade');
  t.equal(ipt.trace('filter', 'FORWARD', { src: POD, dst: '10.96.0.41', protocol: 'sctp', dport: 900 }).verdict, 'REJECT', 'no endpoints: REJECT');
  t.equal(ipt.trace('filter', 'INPUT', { src: OUT, dst: NODE_IP, protocol: 'sctp', dport: 30901, localDst: true }).verdict, 'REJECT', 'its NodePort too');
  t.same(k.conntrack.deletes, [], 'no conntrack work for SCTP');
  await p.close();
});

/** The genetlink message as the transport sends it (REQUEST|ACK set), seq / pid zeroed, as hex. */
const wire = (b: Buffer): string => {
  const c = Buffer.from(b);
  c.writeUInt16LE(c.readUInt16LE(6) | 0x5, 6);
  c.fill(0, 8, 16);
  return c.toString('hex');
};
const golden = (hex: string): string => wire(Buffer.from(hex, 'hex'));
/** { nest: { attr: hex } } of a genetlink message (IPVS's two levels). */
function attrTree(b: Buffer): Record<number, Record<number, string>> {
  const out: Record<number, Record<number, string>> = {};
  for (const n of parseAttrs(b.subarray(20, b.readUInt32LE(0)))) {
    out[n.type] = {};
    for (const a of parseAttrs(n.data)) out[n.type]![a.type] = a.data.toString('hex');
  }
  return out;
}

t.test('ipvs: golden genetlink bytes (IPPROTO_SCTP = 132), hash:ip,port NodePort sets, the fixed rules', async (t) => {
  const w = fakeKernel();
  await w.net.createLink({ kind: 'bridge', name: 'eth0' });
  await w.net.addAddress('eth0', Cidr.parse(`${NODE_IP}/24`));
  const ipvs = new FakeIpvs();
  const ipset = new FakeIpset();
  const state = new MemoryState();
  const p = new IpvsProxier(deps(w, state, {}, 'ipvs'), { ipvs, ipset, probe: async () => 'loaded' });
  await p.reconcileOnStart(signal);
  for (const o of [...withEndpoints(), ...without()]) p.handleEvent(state.apply(o));
  await p.sync(signal);

  const svcKey = { family: 4 as const, protocol: 'sctp' as const, address: '10.96.0.40', port: 900 };
  const newSvc = ipvs.calls.find((c) => c.op === 'add' && c.entry.kind === 'service' && c.entry.service.address === '10.96.0.40')!;
  t.ok(newSvc, 'NEW_SERVICE for the SCTP ClusterIP');
  t.equal(wire(encodeChange(GOLDEN_FAMILY_ID, newSvc)), golden(IPVSADM_SENT.newServiceSctp), 'byte for byte what `ipvsadm -A --sctp-service 10.96.0.40:900 -s rr` sends');
  const newDest = ipvs.calls.find((c) => c.op === 'add' && c.entry.kind === 'dest' && c.entry.service.address === '10.96.0.40' && c.entry.dest.address === '10.244.1.2')!;
  // ipvsadm repeats the whole service in a dest command, we send its key: every attribute we send is ipvsadm's, byte for byte.
  const ours = attrTree(encodeChange(GOLDEN_FAMILY_ID, newDest));
  const theirs = attrTree(Buffer.from(IPVSADM_SENT.newDestSctp, 'hex'));
  t.equal(wire(encodeChange(GOLDEN_FAMILY_ID, newDest)).slice(0, 40).slice(8), golden(IPVSADM_SENT.newDestSctp).slice(0, 40).slice(8), 'NEW_DEST: family id, flags, genl cmd and version');
  t.same(Object.keys(ours[1] ?? {}), ['1', '2', '3', '4'], 'the service key: AF, PROTOCOL, ADDR, PORT');
  for (const [nest, attrs] of Object.entries(ours)) for (const [type, data] of Object.entries(attrs)) t.equal(data, theirs[Number(nest)]?.[Number(type)], `NEW_DEST nest ${nest} attr ${type} as \`ipvsadm -a --sctp-service 10.96.0.40:900 -r 10.244.1.2:9000 -m -w 1\``);
  // The protocol attribute itself: nla_len 6, IPVS_SVC_ATTR_PROTOCOL (2), u16 132 host order, padding.
  t.ok(encodeChange(GOLDEN_FAMILY_ID, newSvc).includes(Buffer.from('0600020084000000', 'hex')), 'IPVS_SVC_ATTR_PROTOCOL = 132');
  t.same((await ipvs.listServices()).filter((s) => s.protocol === 'sctp').map((s) => `${s.address}:${s.port}`).sort(), ['10.96.0.40:900', '10.96.0.41:900', `${NODE_IP}:30900`, `${NODE_IP}:30901`], 'SCTP virtual servers: ClusterIPs and NodePorts on the node address');
  t.same((await ipvs.listDests(svcKey)).map((d) => `${d.address}:${d.port}`).sort(), ['10.244.1.2:9000', '10.244.2.2:9000']);

  const members = (n: string): string[] => [...(ipset.sets.get(n)?.members ?? [])].sort();
  t.match(ipset.sets.get(SETS.nodePortSCTP)?.create ?? '', /hash:ip,port/, 'SCTP NodePorts: a hash:ip,port set (bitmap:port never matches SCTP)');
  t.same(members(SETS.nodePortSCTP), [`${NODE_IP},sctp:30900`, `${NODE_IP},sctp:30901`], 'one node address,sctp:port member per node address');
  t.same(members(SETS.clusterIP), ['10.96.0.40,sctp:900', '10.96.0.41,sctp:900']);
  t.same(members(SETS.noEndpoint), ['10.96.0.41,sctp:900', `${NODE_IP},sctp:30901`]);
  t.same(members(SETS.nodePortTCP), [], 'nothing in the TCP bitmap');
  const rules = renderRules({ clusterCIDRs: ['10.244.0.0/16'], masqueradeAll: false, masqMark: 0x4000 }, []);
  t.ok(rules.includes(`-A PODWIRE-IPVS-NODE-PORT -p sctp -m set --match-set ${SETS.nodePortLocalSCTP} dst,dst -m comment --comment "NodePort, externalTrafficPolicy Local: keep the client address" -j RETURN`), 'Local SCTP NodePorts: dst,dst');
  t.ok(rules.includes(`-A PODWIRE-IPVS-NODE-PORT -p sctp -m set --match-set ${SETS.nodePortSCTP} dst,dst -j PODWIRE-IPVS-MARK-MASQ`), 'SCTP NodePorts marked for masquerade: dst,dst');
  t.ok(rules.includes(`-A PODWIRE-IPVS-NODE-PORT -p tcp -m set --match-set ${SETS.nodePortTCP} dst -j PODWIRE-IPVS-MARK-MASQ`), 'TCP stays a port bitmap: dst');
  for (const n of Object.values(SETS)) t.ok(n.length <= 31, `${n}: an ipset name fits IPSET_MAXNAMELEN`);
  await p.close();
});

t.test('ipvs: the bitmap SCTP NodePort sets of an earlier build are destroyed after the rules stop using them', async (t) => {
  const w = fakeKernel();
  await w.net.createLink({ kind: 'bridge', name: 'eth0' });
  await w.net.addAddress('eth0', Cidr.parse(`${NODE_IP}/24`));
  const ipset = new FakeIpset();
  await ipset.restore(LEGACY_SETS.map((n) => `create ${n} bitmap:port range 0-65535`).join('\n'));
  const state = new MemoryState();
  const p = new IpvsProxier(deps(w, state, {}, 'ipvs'), { ipvs: new FakeIpvs(), ipset, probe: async () => 'loaded' });
  await p.reconcileOnStart(signal);
  for (const o of withEndpoints()) p.handleEvent(state.apply(o));
  await p.sync(signal);
  for (const n of LEGACY_SETS) t.notOk(ipset.sets.has(n), `${n} destroyed`);
  t.ok(ipset.sets.has(SETS.nodePortSCTP), `${SETS.nodePortSCTP} in their place`);
  const save = w.iptables(4).restores.map((r) => r.text).join('\n');
  for (const n of LEGACY_SETS) t.notMatch(save, new RegExp(`--match-set ${n} `), `no rule matches on ${n}`);
  await p.close();
});
