/**
 * "A packet from S to VIP:port goes where": the rendered ruleset, applied to FakeNft's
 * model, walked by its packet tracer (src/kernel/testing/fake-nft.ts) hook by hook as
 * the kernel would (filter at -110, then DNAT; postrouting for masquerade).
 */
import t from 'tap';
import { fakeKernel, type FakeKernel, type NftTracePacket, type NftTraceResult } from '../kernel/testing';
import { FakeClock } from '../daemon/testing/fake-clock';
import { proxierHarness, slice, svc, type ProxierHarness } from './testing';

const signal = new AbortController().signal;
const NODE_IP = '198.18.0.1';
const OUTSIDE = '198.18.0.9';

async function cluster(): Promise<{ k: FakeKernel; h: ProxierHarness }> {
  const k = fakeKernel();
  const h = proxierHarness(k, new FakeClock(), { config: { nodeName: 'node-a' } });
  h.apply(svc('ns/web', '10.96.0.10', { type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }] }));
  h.apply(slice('ns/web', [{ ip: '10.244.1.2', node: 'node-a' }, { ip: '10.244.2.2', node: 'node-b' }], [{ name: 'http', port: 8080 }]));
  h.apply(svc('ns/empty', '10.96.0.20', { type: 'NodePort', ports: [{ port: 80, nodePort: 30099 }] }));
  h.apply(svc('ns/local', '10.96.0.30', { type: 'NodePort', externalTrafficPolicy: 'Local', ports: [{ name: 'http', port: 80, nodePort: 30030 }] }));
  h.apply(slice('ns/local', [{ ip: '10.244.2.3', node: 'node-b' }], [{ name: 'http', port: 8080 }]));
  h.apply(svc('ns/local2', '10.96.0.31', { type: 'NodePort', externalTrafficPolicy: 'Local', ports: [{ name: 'http', port: 80, nodePort: 30031 }] }));
  h.apply(slice('ns/local2', [{ ip: '10.244.1.4', node: 'node-a' }, { ip: '10.244.2.4', node: 'node-b' }], [{ name: 'http', port: 8080 }]));
  h.apply(svc('ns/lb', '10.96.0.40', { type: 'LoadBalancer', loadBalancerIPs: ['198.19.0.40'], loadBalancerSourceRanges: ['198.18.7.0/24'], ports: [{ name: 'http', port: 80, nodePort: 30040 }] }));
  h.apply(slice('ns/lb', [{ ip: '10.244.1.5', node: 'node-a' }], [{ name: 'http', port: 8080 }]));
  await h.proxier.sync(signal);
  return { k, h };
}

const tcp = (saddr: string, daddr: string, dport: number, hook: NftTracePacket['hook'] = 'prerouting', more: Partial<NftTracePacket> = {}): NftTracePacket => ({ family: 4, saddr, daddr, protocol: 'tcp', dport, hook, ...more });
const dests = (r: NftTraceResult): string[] => (r.alternatives ?? [r]).map((a) => (a.dnat ? `${a.dnat.addr}:${a.dnat.port}` : a.verdict)).sort();

t.test('ClusterIP: every endpoint, no masquerade mark for a pod, a mark for an off-cluster source', async (t) => {
  const { k } = await cluster();
  const fromPod = k.nft.trace(tcp('10.244.1.9', '10.96.0.10', 80));
  t.equal(fromPod.verdict, 'accept');
  t.same(dests(fromPod), ['10.244.1.2:8080', '10.244.2.2:8080'], 'random over both endpoints');
  t.equal(fromPod.mark, undefined, 'pod source: no masquerade mark');
  const fromHost = k.nft.trace(tcp(NODE_IP, '10.96.0.10', 80, 'output'));
  t.same(dests(fromHost), ['10.244.1.2:8080', '10.244.2.2:8080'], 'the node itself (output hook) reaches the ClusterIP too');
  t.equal(fromHost.mark, 0x4000, 'off-cluster source: marked for masquerade');
  const post = k.nft.trace(tcp(NODE_IP, '10.244.2.2', 8080, 'postrouting', { mark: 0x4000 }));
  t.equal(post.masquerade, true, 'a marked packet is masqueraded in postrouting');
  t.equal(k.nft.trace(tcp('10.244.1.9', '10.244.2.2', 8080, 'postrouting')).masquerade, undefined, 'an unmarked pod packet is not');
  const hairpin = k.nft.trace(tcp('10.244.1.2', '10.244.1.2', 8080, 'postrouting', { ctStatus: ['dnat'] }));
  t.equal(hairpin.masquerade, true, 'hairpin (a pod reaching itself through its Service) is masqueraded');
  const udp = k.nft.trace({ ...tcp('10.244.1.9', '10.96.0.10', 80), protocol: 'udp' });
  t.equal(udp.dnat, undefined, 'UDP to a TCP-only Service port is not DNATed');
  const otherPort = k.nft.trace(tcp('10.244.1.9', '10.96.0.10', 81, 'forward'));
  t.equal(otherPort.verdict, 'reject', 'a ClusterIP on a port it does not serve is rejected in forward');
  t.equal(k.nft.trace(tcp('10.244.1.9', '10.96.99.99', 80, 'forward')).verdict, 'drop', 'an unallocated Service IP is dropped');
});

t.test('NodePort: from outside to the node address, only on local addresses', async (t) => {
  const { k } = await cluster();
  const r = k.nft.trace(tcp(OUTSIDE, NODE_IP, 30080, 'prerouting', { daddrLocal: true }));
  t.same(dests(r), ['10.244.1.2:8080', '10.244.2.2:8080']);
  t.equal(r.mark, 0x4000, 'external traffic under eTP Cluster is masqueraded');
  t.equal(k.nft.trace(tcp(OUTSIDE, '198.18.0.77', 30080, 'prerouting', { daddrLocal: false })).dnat, undefined, 'not a local address: no NodePort');
  t.equal(k.nft.trace(tcp(OUTSIDE, NODE_IP, 30081, 'prerouting', { daddrLocal: true })).dnat, undefined, 'not a NodePort');
});

t.test('no endpoints: REJECT on the ClusterIP and the NodePort', async (t) => {
  const { k } = await cluster();
  const r = k.nft.trace(tcp('10.244.1.9', '10.96.0.20', 80));
  t.equal(r.verdict, 'reject');
  t.equal(r.dnat, undefined);
  t.match(r.path.join(' '), /reject-chain/);
  t.equal(k.nft.trace(tcp(OUTSIDE, NODE_IP, 30099, 'prerouting', { daddrLocal: true })).verdict, 'reject', 'NodePort too');
  t.equal(k.nft.trace(tcp(NODE_IP, '10.96.0.20', 80, 'output')).verdict, 'reject', 'from the node itself too');
});

t.test('externalTrafficPolicy Local: drop without a local endpoint, local endpoints only and no masquerade with one', async (t) => {
  const { k } = await cluster();
  t.equal(k.nft.trace(tcp(OUTSIDE, NODE_IP, 30030, 'prerouting', { daddrLocal: true })).verdict, 'drop', 'no local endpoint: dropped');
  t.same(dests(k.nft.trace(tcp('10.244.1.9', '10.96.0.30', 80))), ['10.244.2.3:8080'], 'the ClusterIP still uses every endpoint');
  const r = k.nft.trace(tcp(OUTSIDE, NODE_IP, 30031, 'prerouting', { daddrLocal: true }));
  t.same(dests(r), ['10.244.1.4:8080'], 'only the local endpoint');
  t.equal(r.mark, undefined, 'the client source is kept (no masquerade mark)');
});

t.test('loadBalancerSourceRanges: enforced before DNAT on the LB IP', async (t) => {
  const { k } = await cluster();
  const ok = k.nft.trace(tcp('198.18.7.20', '198.19.0.40', 80));
  t.same(dests(ok), ['10.244.1.5:8080'], 'an allowed source reaches the endpoint');
  const denied = k.nft.trace(tcp('198.18.8.20', '198.19.0.40', 80));
  t.equal(denied.verdict, 'drop', 'another source is dropped');
  t.match(denied.path[denied.path.length - 1], /firewall-check/);
  t.same(dests(k.nft.trace(tcp('198.18.8.20', '10.96.0.40', 80))), ['10.244.1.5:8080'], 'the ranges do not apply to the ClusterIP');
});

t.test('an endpoint change moves the trace', async (t) => {
  const { k, h } = await cluster();
  h.apply(slice('ns/web', [{ ip: '10.244.1.2', node: 'node-a' }, { ip: '10.244.2.7', node: 'node-b' }], [{ name: 'http', port: 8080 }]));
  await h.proxier.sync(signal);
  t.same(dests(k.nft.trace(tcp('10.244.1.9', '10.96.0.10', 80))), ['10.244.1.2:8080', '10.244.2.7:8080']);
  h.remove('EndpointSlice', 'ns/web-abc');
  await h.proxier.sync(signal);
  t.equal(k.nft.trace(tcp('10.244.1.9', '10.96.0.10', 80)).verdict, 'reject', 'all endpoints gone: REJECT');
});
