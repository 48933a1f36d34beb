/**
 * The "every Service programmed" comparison: podwired's expected list from a cluster state
 * (which Services count, which entries each has), and the kernel side of each mode read back
 * from fakes: nft JSON as `nft -j` prints it, the iptables rules the real iptables proxier
 * writes (into the fake iptables), IPVS virtual servers. A deleted element/rule/virtual
 * server names its Service.
 */
import t from 'tap';
import { Registry } from 'prom-client';
import { silentLogger } from '../common/log';
import { FakeClock } from '../daemon/testing/fake-clock';
import { fakeKernel } from '../kernel/testing';
import { FakeIpvs } from '../kernel/testing/fake-ipvs';
import { buildProxySection } from '../proxy/config';
import { expectedServices, type ExpectedInfo, type ExpectedServices } from '../proxy/expected';
import { IptablesProxier } from '../proxy/iptables/proxier';
import type { ClusterEvent } from '../k8s/types';
import { MemoryState, slice, svc, testConfig } from '../proxy/testing';
import { compareServices, describeMissing, iptablesPresent, ipvsPresent, nftPresent } from './service-rules';

const NFT: ExpectedInfo = { mode: 'nftables', families: [4, 6], table: 'inet podwire', pending: 0 };

function cluster(): MemoryState {
  const s = new MemoryState();
  s.apply(svc('default/kubernetes', '10.96.0.1', { ports: [{ name: 'https', port: 443 }] }));
  s.apply(svc('ns/dual', ['10.96.0.20', 'fd00:96::20'], { ports: [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }] }));
  s.apply(svc('ns/np', '10.96.0.30', { type: 'NodePort', ports: [{ port: 80, nodePort: 30080 }], externalIPs: ['198.18.0.100', '10.96.0.30'] }));
  s.apply(svc('ns/lb', '10.96.0.40', { type: 'LoadBalancer', ports: [{ port: 443, nodePort: 30443 }], loadBalancerIPs: ['203.0.113.7'], externalIPs: ['203.0.113.7'] }));
  s.apply(svc('ns/headless', 'None'));
  s.apply({ ...svc('ns/ext', 'None'), type: 'ExternalName', externalName: 'example.org' });
  s.apply(svc('ns/other-proxy', '10.96.0.50', { labels: { 'service.kubernetes.io/service-proxy-name': 'cilium' } }));
  s.apply(svc('ns/bad', '10.96.0.60', { ports: [{ port: 0 }] }));
  return s;
}

t.test('the expected list: proxied Services only, every address once, the served families', async (t) => {
  const e = expectedServices(cluster(), 'node-a', NFT);
  t.equal(e.services, 4);
  t.equal(e.skipped, 3, 'headless, ExternalName, service-proxy-name');
  t.equal(e.invalid, 1);
  t.same(e.entries, [
    ['default/kubernetes', 'c', 4, '10.96.0.1', 'tcp', 443],
    ['ns/dual', 'c', 4, '10.96.0.20', 'udp', 53],
    ['ns/dual', 'c', 4, '10.96.0.20', 'tcp', 53],
    ['ns/dual', 'c', 6, 'fd00:96::20', 'udp', 53],
    ['ns/dual', 'c', 6, 'fd00:96::20', 'tcp', 53],
    ['ns/np', 'c', 4, '10.96.0.30', 'tcp', 80],
    ['ns/np', 'x', 4, '198.18.0.100', 'tcp', 80],
    ['ns/np', 'n', 4, '', 'tcp', 30080],
    ['ns/lb', 'c', 4, '10.96.0.40', 'tcp', 443],
    ['ns/lb', 'x', 4, '203.0.113.7', 'tcp', 443],
    ['ns/lb', 'n', 4, '', 'tcp', 30443],
  ]);
  const v4 = expectedServices(cluster(), 'node-a', { mode: 'ipvs', families: [4], pending: 0 });
  t.equal(v4.entries.filter((x) => x[2] === 6).length, 0, 'ipvs: IPv4 only');
  t.equal(v4.services, 4);
  const v6only = new MemoryState();
  v6only.apply(svc('ns/v6', 'fd00:96::1'));
  t.same([expectedServices(v6only, 'n', { mode: 'ipvs', families: [4], pending: 0 }).skipped, expectedServices(v6only, 'n', { mode: 'ipvs', families: [4], pending: 0 }).services], [1, 0], 'a Service of an unserved family only is skipped');
  t.ok(JSON.stringify(e).length < 80 * e.entries.length + 300, 'compact: well under 100 bytes an entry');
});

const concat = (...a: (string | number)[]) => ({ concat: a });
function nftJson(drop: (key: string) => boolean = () => false) {
  const el = (m: string, items: [unknown, unknown][]) => ({ map: { family: 'inet', table: 'podwire', name: m, elem: items.filter(([k]) => !drop(JSON.stringify(k))) } });
  return {
    nftables: [
      { metainfo: { json_schema_version: 1 } },
      { table: { family: 'inet', name: 'podwire' } },
      el('services4', [
        [concat('10.96.0.1', 'tcp', 443), { goto: { target: 'lb4c-tcp-1' } }],
        [concat('10.96.0.20', 'udp', 53), { goto: { target: 'lb4c-udp-2' } }],
        [concat('10.96.0.30', 'tcp', 80), { goto: { target: 'lb4c-tcp-1' } }],
        [concat('198.18.0.100', 'tcp', 80), { goto: { target: 'lb4x-tcp-1' } }],
        [concat('10.96.0.40', 'tcp', 443), { goto: { target: 'lb4c-tcp-1' } }],
        [concat('203.0.113.7', 'tcp', 443), { goto: { target: 'lb4x-tcp-1' } }],
      ]),
      // A Service port without endpoints is programmed too: as a reject.
      el('no-endpoints4', [[concat('10.96.0.20', 'tcp', 53), { goto: { target: 'reject-chain' } }]]),
      el('services6', [[concat('fd00:96::20', 'udp', 53), { goto: { target: 'lb6c-udp-1' } }], [concat('fd00:96::20', 'tcp', 53), { goto: { target: 'lb6c-tcp-1' } }]]),
      el('nodeports4', [[concat('tcp', 30080), { goto: { target: 'lb4nx-tcp-1' } }], [concat('tcp', 30443), { goto: { target: 'lb4nx-tcp-1' } }]]),
      el('endpoints4-tcp', [[concat('10.96.0.1', 'tcp', 443, 0), concat('198.18.0.1', 6443)]]),
      { set: { family: 'inet', table: 'podwire', name: 'affinity4-abc', flags: ['dynamic', 'timeout'], elem: [{ elem: { val: '10.244.1.5', expires: 100 } }] } },
    ],
  };
}

t.test('nftables: every key in services/no-endpoints/nodeports maps; a deleted element names its Service', async (t) => {
  const e = expectedServices(cluster(), 'node-a', NFT);
  const all = compareServices(e, nftPresent(nftJson(), 'podwire'));
  t.same([all.missing, all.missingEntries, all.entries, all.services], [[], 0, 11, 4]);
  const noLb = compareServices(e, nftPresent(nftJson((k) => k.includes('203.0.113.7')), 'podwire'));
  t.same(noLb.missing, [{ service: 'ns/lb', entries: [['ns/lb', 'x', 4, '203.0.113.7', 'tcp', 443]] }]);
  t.equal(describeMissing(noLb), 'ns/lb 203.0.113.7:443/tcp (externalIP)');
  const noNp = compareServices(e, nftPresent(nftJson((k) => k.includes('30080') || k.includes('fd00:96::20","tcp')), 'podwire'));
  t.equal(describeMissing(noNp), 'ns/dual [fd00:96::20]:53/tcp, ns/np nodePort 30080/tcp');
  t.equal(compareServices(e, nftPresent(nftJson(), 'other')).missingEntries, 11, 'another table is not ours');
});

t.test('describeMissing: at most 5 Services, then a count', async (t) => {
  const s = new MemoryState();
  for (let i = 1; i <= 8; i++) s.apply(svc(`ns/s${i}`, `10.96.1.${i}`, { ports: [{ port: 80 }, { port: 81 }] }));
  const c = compareServices(expectedServices(s, 'n', NFT), { vips: new Set(), nodePorts: new Set() });
  t.equal(c.missing.length, 8);
  t.equal(describeMissing(c), 'ns/s1 10.96.1.1:80/tcp +1, ns/s2 10.96.1.2:80/tcp +1, ns/s3 10.96.1.3:80/tcp +1, ns/s4 10.96.1.4:80/tcp +1, ns/s5 10.96.1.5:80/tcp +1, and 3 more Services');
});

t.test('iptables: the rules the iptables proxier writes, read back from iptables-save', async (t) => {
  const k = fakeKernel();
  const cfg = testConfig({ nodeName: 'node-a', clusterCIDR: '10.244.0.0/16,fd00:244::/56', serviceCIDR: '10.96.0.0/12,fd00:96::/108' });
  const state = cluster();
  // Endpoints for some: a no-endpoint Service is a REJECT in filter, still programmed.
  state.apply(slice('default/kubernetes', [{ ip: '198.18.0.1' }], [{ name: 'https', port: 6443 }]));
  state.apply(slice('ns/np', [{ ip: '10.244.1.5', node: 'node-a' }]));
  const p = new IptablesProxier({ config: cfg, section: buildProxySection({ healthzBindAddress: '' }, cfg), state, node: { patchAnnotations: async () => undefined, setCondition: async () => undefined, writesBack: false }, kernel: k, logger: silentLogger, clock: new FakeClock(), metrics: new Registry() });
  for (const s of state.values('Service')) p.handleEvent({ kind: 'Service', type: 'add', current: s } satisfies ClusterEvent);
  await p.sync(new AbortController().signal);
  const e: ExpectedServices = expectedServices(state, 'node-a', { mode: 'iptables', families: [4, 6], pending: 0 });
  const read = async () => {
    const present = iptablesPresent(4, await k.iptables(4).save('nat'), await k.iptables(4).save('filter'));
    return iptablesPresent(6, await k.iptables(6).save('nat'), await k.iptables(6).save('filter'), present);
  };
  const all = compareServices(e, await read());
  t.same(all.missing, [], 'every Service found in the rules', { missing: all.missing });
  // Someone deletes the ClusterIP rule of default/kubernetes (nat) and the no-endpoints REJECT of ns/lb's NodePort (filter).
  const nat = k.iptables(4).table('nat').get('PODWIRE-SERVICES')!;
  const i = nat.rules.findIndex((r) => r.startsWith('-d 10.96.0.1/32'));
  t.ok(i >= 0, 'the kubernetes ClusterIP rule is in nat PODWIRE-SERVICES');
  nat.rules.splice(i, 1);
  const ext = k.iptables(4).table('filter').get('PODWIRE-EXT-SERVICES')!;
  const j = ext.rules.findIndex((r) => r.includes('--dport 30443'));
  t.ok(j >= 0, 'ns/lb NodePort without endpoints: a REJECT in filter PODWIRE-EXT-SERVICES');
  ext.rules.splice(j, 1);
  const c = compareServices(e, await read());
  t.equal(describeMissing(c), 'default/kubernetes 10.96.0.1:443/tcp, ns/lb nodePort 30443/tcp');
});

t.test('ipvs: virtual servers; NodePorts on any node address', async (t) => {
  const e = expectedServices(cluster(), 'node-a', { mode: 'ipvs', families: [4], pending: 0 });
  const ipvs = new FakeIpvs();
  const vs = (address: string, protocol: 'tcp' | 'udp', port: number) => ({ op: 'add' as const, entry: { kind: 'service' as const, service: { family: 4 as const, protocol, address, port, scheduler: 'rr', netmask: '255.255.255.255' } } });
  await ipvs.apply([vs('10.96.0.1', 'tcp', 443), vs('10.96.0.20', 'udp', 53), vs('10.96.0.20', 'tcp', 53), vs('10.96.0.30', 'tcp', 80), vs('198.18.0.100', 'tcp', 80), vs('198.18.0.1', 'tcp', 30080), vs('10.96.0.40', 'tcp', 443), vs('203.0.113.7', 'tcp', 443), vs('198.18.0.1', 'tcp', 30443)]);
  t.same(compareServices(e, ipvsPresent(await ipvs.listServices())).missing, []);
  await ipvs.apply([{ op: 'delete', entry: { kind: 'service', service: { family: 4, protocol: 'udp', address: '10.96.0.20', port: 53, scheduler: 'rr' } } }]);
  t.equal(describeMissing(compareServices(e, ipvsPresent(await ipvs.listServices()))), 'ns/dual 10.96.0.20:53/udp');
});

t.test('ipvs, dual-stack: the IPv6 virtual servers count for the IPv6 addresses', async (t) => {
  const e = expectedServices(cluster(), 'node-a', { mode: 'ipvs', families: [4, 6], pending: 0 });
  t.ok(e.entries.some((x) => x[2] === 6), 'the IPv6 addresses are expected (the ipvs mode serves both families)');
  const ipvs = new FakeIpvs();
  const vs = (family: 4 | 6, address: string, protocol: 'tcp' | 'udp', port: number) => ({ op: 'add' as const, entry: { kind: 'service' as const, service: { family, protocol, address, port, scheduler: 'rr' } } });
  await ipvs.apply([vs(4, '10.96.0.1', 'tcp', 443), vs(4, '10.96.0.20', 'udp', 53), vs(4, '10.96.0.20', 'tcp', 53), vs(4, '10.96.0.30', 'tcp', 80), vs(4, '198.18.0.100', 'tcp', 80), vs(4, '198.18.0.1', 'tcp', 30080), vs(4, '10.96.0.40', 'tcp', 443), vs(4, '203.0.113.7', 'tcp', 443), vs(4, '198.18.0.1', 'tcp', 30443)]);
  const c = compareServices(e, ipvsPresent(await ipvs.listServices()));
  t.equal(c.missingEntries, 2, 'without the AF_INET6 virtual servers the two IPv6 ports are missing');
  t.match(describeMissing(c), /^ns\/dual \[?fd00:96::20\]?:53\/(udp|tcp) \+1$/);
  await ipvs.apply([vs(6, 'fd00:96::20', 'udp', 53), vs(6, 'fd00:96::20', 'tcp', 53)]);
  t.same(compareServices(e, ipvsPresent(await ipvs.listServices())).missing, [], 'with them nothing is');
});
