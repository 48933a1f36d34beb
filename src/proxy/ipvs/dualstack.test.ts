/**
 * The ipvs mode with IPv6 and dual-stack Services, against the kernel fakes: the golden
 * rendered state of a dual-stack Service (virtual servers of both families, the sets of
 * both, /128 VIPs with nodad, the ip6tables rules), a node without IPv6, the set names
 * (ipset's 31 characters), and the mode-switch cleanup of the IPv6 objects.
 */
import t from 'tap';
import { Registry } from 'prom-client';
import { Cidr } from '../../common/ip';
import { silentLogger } from '../../common/log';
import { fakeKernel, FakeIpset, FakeIpvs } from '../../kernel/testing';
import { FakeClock } from '../../daemon/testing/fake-clock';
import { buildProxySection } from '../config';
import { MemoryState, slice, svc, testConfig } from '../testing';
import type { ClusterKind, ClusterObject } from '../../k8s/types';
import { IpvsProxier, VIP_DEVICE } from './proxier';
import { renderRules } from './rules';
import { destKey, SET_TYPES, SETS, SETS6, setName, sourceRangeMembers } from './render';
import { removeIpvsLeftovers } from './leftovers';

const signal = new AbortController().signal;
const NODE_IP = '198.18.0.2';
const NODE_IP6 = 'fd00:198:18::2';

async function harness(o: { ipv6?: boolean; ip6tables?: boolean } = {}) {
  const k = fakeKernel();
  await k.net.createLink({ kind: 'bridge', name: 'eth0' });
  await k.net.addAddress('eth0', Cidr.parse(`${NODE_IP}/24`));
  await k.net.addAddress('eth0', Cidr.parse(`${NODE_IP6}/64`));
  await k.net.addAddress('eth0', Cidr.parse('fe80::2/64')); // a link-local: no NodePort on it
  if (o.ipv6 === false) await k.sysctl.write('net.ipv6.conf.all.disable_ipv6', '1');
  if (o.ip6tables === false) {
    k.iptables(6).save = async () => {
      throw new Error("ip6tables-legacy-save v1.8.9 (legacy): can't initialize ip6tables table `nat': Table does not exist");
    };
  }
  const ipvs = new FakeIpvs();
  const ipset = new FakeIpset();
  const state = new MemoryState();
  const config = testConfig({ proxyMode: 'ipvs' });
  const section = buildProxySection({ healthzBindAddress: '', mode: 'ipvs', clusterCIDR: '10.244.0.0/16,fd00:10:244::/56' }, config);
  const p = new IpvsProxier(
    { config, section, state, node: { patchAnnotations: async () => undefined, setCondition: async () => undefined, writesBack: false }, kernel: k, logger: silentLogger, clock: new FakeClock(), metrics: new Registry() },
    { ipvs, ipset, probe: async () => 'loaded' },
  );
  await p.reconcileOnStart(signal);
  return {
    k,
    ipvs,
    ipset,
    p,
    apply: async (...objs: ClusterObject[]) => {
      for (const x of objs) p.handleEvent(state.apply(x));
      await p.sync(signal);
    },
    remove: async (kind: ClusterKind, key: string) => {
      const ev = state.remove(kind, key);
      if (ev) p.handleEvent(ev);
      await p.sync(signal);
    },
  };
}

/** The IPVS table, `proto [addr]:port sched -> [ip]:port wW ...`, sorted; AF per virtual server. */
async function table(ipvs: FakeIpvs): Promise<string[]> {
  const out: string[] = [];
  for (const s of await ipvs.listServices()) {
    const dests = (await ipvs.listDests(s)).map((d) => `${destKey(d)}w${d.weight}`).sort();
    out.push(`v${s.family} ${s.protocol} ${destKey({ address: s.address!, port: s.port! })} ${s.scheduler}${s.persistent ? ` persistent ${s.timeout} /${String(s.netmask)}` : ''} -> ${dests.join(' ')}`);
  }
  return out.sort();
}

const members = (ipset: FakeIpset, name: string): string[] => [...(ipset.sets.get(name)?.members ?? [])].sort();
const local = (ips: string[]) => ips.map((ip) => ({ ip, node: 'node-a' }));

/** A dual-stack NodePort Service with ClientIP affinity and an IPv6 external IP, endpoints of both families, and an IPv6-only one without endpoints. */
const DUAL: ClusterObject[] = [
  svc('ns/web', ['10.96.0.10', 'fd00:10:96::a'], { type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }], externalIPs: ['198.18.5.5', 'fd00:198:18::55'], sessionAffinity: 'ClientIP', affinityTimeout: 600 }),
  slice('ns/web', local(['10.244.1.2', '10.244.1.3']), [{ name: 'http', port: 8080 }], { name: 'web-v4' }),
  slice('ns/web', local(['fd00:10:244:1::2', 'fd00:10:244:1::3']), [{ name: 'http', port: 8080 }], { name: 'web-v6' }),
  svc('ns/empty6', 'fd00:10:96::14', { ports: [{ port: 53, protocol: 'UDP' }] }),
];

/** ip6tables-restore text of the golden world (cluster CIDRs 10.244.0.0/16 and fd00:10:244::/56, masquerade bit 14). */
const GOLDEN_RULES6 = `*nat
:PODWIRE-IPVS-SERVICES - [0:0]
:PODWIRE-IPVS-NODE-PORT - [0:0]
:PODWIRE-IPVS-MARK-MASQ - [0:0]
:PODWIRE-IPVS-POSTROUTING - [0:0]
-A PODWIRE-IPVS-MARK-MASQ -j MARK --or-mark 0x4000
-A PODWIRE-IPVS-POSTROUTING -m set --match-set PODWIRE-6-LOOP-BACK dst,dst,src -m comment --comment "hairpin: an endpoint reaching itself through its Service" -j MASQUERADE
-A PODWIRE-IPVS-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A PODWIRE-IPVS-POSTROUTING -j MARK --xor-mark 0x4000
-A PODWIRE-IPVS-POSTROUTING -m comment --comment "podwire service traffic requiring SNAT" -j MASQUERADE --random-fully
-A PODWIRE-IPVS-SERVICES ! -s fd00:10:244::/56 -m set --match-set PODWIRE-6-CLUSTER-IP dst,dst -m comment --comment "off-cluster traffic to a ClusterIP" -j PODWIRE-IPVS-MARK-MASQ
-A PODWIRE-IPVS-SERVICES -m set --match-set PODWIRE-6-EXTERNAL-IP dst,dst -m set ! --match-set PODWIRE-6-EXTERNAL-IP-LOCAL dst,dst -m comment --comment "external IP, externalTrafficPolicy Cluster" -j PODWIRE-IPVS-MARK-MASQ
-A PODWIRE-IPVS-SERVICES -m set --match-set PODWIRE-6-LOAD-BALANCER dst,dst -m set ! --match-set PODWIRE-6-LOAD-BALANCER-LOCAL dst,dst -m comment --comment "LB ingress IP, externalTrafficPolicy Cluster" -j PODWIRE-IPVS-MARK-MASQ
-A PODWIRE-IPVS-SERVICES -m addrtype --dst-type LOCAL -j PODWIRE-IPVS-NODE-PORT
-A PODWIRE-IPVS-NODE-PORT -p tcp -m set --match-set PODWIRE-6-NODE-PORT-LOCAL-TCP dst -m comment --comment "NodePort, externalTrafficPolicy Local: keep the client address" -j RETURN
-A PODWIRE-IPVS-NODE-PORT -p tcp -m set --match-set PODWIRE-6-NODE-PORT-TCP dst -j PODWIRE-IPVS-MARK-MASQ
-A PODWIRE-IPVS-NODE-PORT -p udp -m set --match-set PODWIRE-6-NODE-PORT-LOCAL-UDP dst -m comment --comment "NodePort, externalTrafficPolicy Local: keep the client address" -j RETURN
-A PODWIRE-IPVS-NODE-PORT -p udp -m set --match-set PODWIRE-6-NODE-PORT-UDP dst -j PODWIRE-IPVS-MARK-MASQ
-A PODWIRE-IPVS-NODE-PORT -p sctp -m set --match-set PODWIRE-6-NODE-PORT-LOC-SCTP-IP dst,dst -m comment --comment "NodePort, externalTrafficPolicy Local: keep the client address" -j RETURN
-A PODWIRE-IPVS-NODE-PORT -p sctp -m set --match-set PODWIRE-6-NODE-PORT-SCTP-IP dst,dst -j PODWIRE-IPVS-MARK-MASQ
-I PREROUTING 1 -j PODWIRE-IPVS-SERVICES
-I OUTPUT 1 -j PODWIRE-IPVS-SERVICES
-I POSTROUTING 1 -j PODWIRE-IPVS-POSTROUTING
COMMIT
*filter
:PODWIRE-IPVS-INPUT - [0:0]
:PODWIRE-IPVS-FORWARD - [0:0]
:PODWIRE-IPVS-SOURCE-RANGES - [0:0]
:PODWIRE-IPVS-FILTER - [0:0]
-A PODWIRE-IPVS-INPUT -m set --match-set PODWIRE-6-LOAD-BALANCER-FW dst,dst -m comment --comment "LB IP with loadBalancerSourceRanges" -j PODWIRE-IPVS-SOURCE-RANGES
-A PODWIRE-IPVS-INPUT -p tcp -m set --match-set PODWIRE-6-NO-ENDPOINT dst,dst -m comment --comment "Service has no endpoints" -j REJECT --reject-with tcp-reset
-A PODWIRE-IPVS-INPUT -m set --match-set PODWIRE-6-NO-ENDPOINT dst,dst -m comment --comment "Service has no endpoints" -j REJECT --reject-with icmp6-port-unreachable
-A PODWIRE-IPVS-INPUT -m set --match-set PODWIRE-6-IPVS-IPS dst -j PODWIRE-IPVS-FILTER
-A PODWIRE-IPVS-SOURCE-RANGES -m set --match-set PODWIRE-6-LOAD-BALANCER-SRCCIDR dst,dst,src -j RETURN
-A PODWIRE-IPVS-SOURCE-RANGES -m set --match-set PODWIRE-6-LOAD-BALANCER-SRC-IP dst,dst,src -j RETURN
-A PODWIRE-IPVS-SOURCE-RANGES -m comment --comment "source not in loadBalancerSourceRanges" -j DROP
-A PODWIRE-IPVS-FILTER -m set --match-set PODWIRE-6-LOAD-BALANCER dst,dst -j RETURN
-A PODWIRE-IPVS-FILTER -m set --match-set PODWIRE-6-CLUSTER-IP dst,dst -j RETURN
-A PODWIRE-IPVS-FILTER -m set --match-set PODWIRE-6-EXTERNAL-IP dst,dst -j RETURN
-A PODWIRE-IPVS-FILTER -m set --match-set PODWIRE-6-HEALTH-CHECK-NODEPORT dst -j RETURN
-A PODWIRE-IPVS-FILTER -m conntrack --ctstate NEW -m comment --comment "a VIP on a port that is no Service" -j REJECT --reject-with icmp6-port-unreachable
-A PODWIRE-IPVS-FORWARD -m mark --mark 0x4000/0x4000 -m comment --comment "NodePort / masqueraded Service traffic" -j ACCEPT
-A PODWIRE-IPVS-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-I INPUT 1 -j PODWIRE-IPVS-INPUT
-I FORWARD 1 -j PODWIRE-IPVS-FORWARD
COMMIT
*mangle
:PODWIRE-IPVS-OUTPUT - [0:0]
-A PODWIRE-IPVS-OUTPUT -m set --match-set PODWIRE-6-LOAD-BALANCER-FW dst,dst -m set ! --match-set PODWIRE-6-LOAD-BALANCER-SRCCIDR dst,dst,src -m set ! --match-set PODWIRE-6-LOAD-BALANCER-SRC-IP dst,dst,src -m comment --comment "the node is not in loadBalancerSourceRanges" -j DROP
-I OUTPUT 1 -j PODWIRE-IPVS-OUTPUT
COMMIT
`;

t.test('golden: a dual-stack Service is an AF_INET and an AF_INET6 virtual server per kind, in the sets of each family', async (t) => {
  const h = await harness();
  await h.apply(...DUAL);
  t.same(await table(h.ipvs), [
    'v4 tcp 10.96.0.10:80 rr persistent 600 /255.255.255.255 -> 10.244.1.2:8080w1 10.244.1.3:8080w1',
    'v4 tcp 198.18.0.2:30080 rr persistent 600 /255.255.255.255 -> 10.244.1.2:8080w1 10.244.1.3:8080w1',
    'v4 tcp 198.18.5.5:80 rr persistent 600 /255.255.255.255 -> 10.244.1.2:8080w1 10.244.1.3:8080w1',
    'v6 tcp [fd00:10:96::a]:80 rr persistent 600 /128 -> [fd00:10:244:1::2]:8080w1 [fd00:10:244:1::3]:8080w1',
    'v6 tcp [fd00:198:18::2]:30080 rr persistent 600 /128 -> [fd00:10:244:1::2]:8080w1 [fd00:10:244:1::3]:8080w1',
    'v6 tcp [fd00:198:18::55]:80 rr persistent 600 /128 -> [fd00:10:244:1::2]:8080w1 [fd00:10:244:1::3]:8080w1',
    'v6 udp [fd00:10:96::14]:53 rr -> ',
  ], 'per family: ClusterIP, NodePort on the node address of that family (not the link-local), external IP; persistence /32 and /128');

  t.same(members(h.ipset, SETS.clusterIP), ['10.96.0.10,tcp:80']);
  t.same(members(h.ipset, SETS6.clusterIP), ['fd00:10:96::14,udp:53', 'fd00:10:96::a,tcp:80']);
  t.equal(SETS6.clusterIP, 'PODWIRE-6-CLUSTER-IP');
  t.same(members(h.ipset, SETS.nodePortTCP), ['30080']);
  t.same(members(h.ipset, SETS6.nodePortTCP), ['30080'], 'the IPv6 NodePort bitmap (one per family, as kube-proxy)');
  t.same(members(h.ipset, SETS6.externalIP), ['fd00:198:18::55,tcp:80']);
  t.same(members(h.ipset, SETS.externalIP), ['198.18.5.5,tcp:80']);
  t.same(members(h.ipset, SETS6.noEndpoint), ['fd00:10:96::14,udp:53']);
  t.same(members(h.ipset, SETS.noEndpoint), []);
  t.same(members(h.ipset, SETS6.loopBack), ['fd00:10:244:1::2,tcp:8080,fd00:10:244:1::2', 'fd00:10:244:1::3,tcp:8080,fd00:10:244:1::3']);
  t.same(members(h.ipset, SETS6.ipvsIPs), ['fd00:10:96::14', 'fd00:10:96::a', 'fd00:198:18::55']);
  t.same(members(h.ipset, SETS.ipvsIPs), ['10.96.0.10', '198.18.5.5']);
  t.match(h.ipset.sets.get(SETS6.clusterIP)?.create, /^create PODWIRE-6-CLUSTER-IP hash:ip,port family inet6 /);
  t.match(h.ipset.sets.get(SETS6.nodePortTCP)?.create, /^create PODWIRE-6-NODE-PORT-TCP bitmap:port range 0-65535/);

  const vips = (await h.k.net.listAddresses(VIP_DEVICE)).map((a) => a.cidr.toString()).sort();
  t.same(vips, ['10.96.0.10/32', '198.18.5.5/32', 'fd00:10:96::14/128', 'fd00:10:96::a/128', 'fd00:198:18::55/128'], 'VIPs: /32 and /128 host addresses');
  const index = (await h.k.net.getLink(VIP_DEVICE))!.index;
  t.same([...h.k.net.nodad].sort(), [`${index} fd00:10:96::14/128`, `${index} fd00:10:96::a/128`, `${index} fd00:198:18::55/128`], 'the IPv6 VIPs with nodad (never tentative), the IPv4 ones without');

  const rules6 = renderRules({ clusterCIDRs: ['10.244.0.0/16', 'fd00:10:244::/56'], masqueradeAll: false, masqMark: 0x4000 }, undefined, 6);
  t.equal(rules6, GOLDEN_RULES6, 'the ip6tables rules: the v4 set, on the IPv6 sets, the IPv6 cluster CIDR, ICMPv6 rejects');
  const nat6 = await h.k.iptables(6).save('nat');
  t.match(nat6, /-A PREROUTING -j PODWIRE-IPVS-SERVICES/, 'applied with ip6tables: the jumps');
  t.match(nat6, /-A PODWIRE-IPVS-SERVICES ! -s fd00:10:244::\/56 -m set --match-set PODWIRE-6-CLUSTER-IP dst,dst/);
  t.match(await h.k.iptables(6).save('filter'), /-A PODWIRE-IPVS-INPUT -m set --match-set PODWIRE-6-NO-ENDPOINT dst,dst .*-j REJECT --reject-with icmp6-port-unreachable/);
  const nat4 = await h.k.iptables(4).save('nat');
  t.match(nat4, /-A PODWIRE-IPVS-SERVICES ! -s 10\.244\.0\.0\/16 -m set --match-set PODWIRE-CLUSTER-IP dst,dst/, 'iptables keeps the IPv4 rules');
  t.notMatch(nat4, /PODWIRE-6-|fd00/, 'and nothing of IPv6');
  t.match(h.p.status(), { virtualServers: 7, realServers: 12, vips: 5 });

  // A restart adopts both families: the first sync changes nothing.
  await h.p.close();
  const calls = h.ipvs.calls.length;
  const restores = h.ipset.restores.length;
  const s2 = new MemoryState();
  const q = new IpvsProxier(
    { config: testConfig({ proxyMode: 'ipvs' }), section: buildProxySection({ healthzBindAddress: '', mode: 'ipvs', clusterCIDR: '10.244.0.0/16,fd00:10:244::/56' }, testConfig({ proxyMode: 'ipvs' })), state: s2, node: { patchAnnotations: async () => undefined, setCondition: async () => undefined, writesBack: false }, kernel: h.k, logger: silentLogger, clock: new FakeClock(), metrics: new Registry() },
    { ipvs: h.ipvs, ipset: h.ipset, probe: async () => 'loaded' },
  );
  await q.reconcileOnStart(signal);
  for (const x of DUAL) q.handleEvent(s2.apply(x));
  await q.sync(signal);
  t.equal(h.ipvs.calls.length, calls, 'after a restart: no IPVS change (the IPv6 virtual and real servers adopted)');
  t.same(h.ipset.restores.slice(restores).filter((r) => /^(add|del) /m.test(r)), [], 'and no set member change');
  t.equal(q.lastSync?.vipChanges, 0, 'and no VIP change (the /128s read back)');
  await q.close();
});

for (const [what, o] of [['a node without IPv6', { ipv6: false }], ['a node without an ip6tables nat table', { ip6tables: false }]] as const) t.test(`${what}: IPv6 Service ports skipped, no IPv6 set or ip6tables rule`, async (t) => {
  const h = await harness(o);
  await h.apply(...DUAL);
  t.same((await table(h.ipvs)).map((l) => l.split(' ').slice(0, 3).join(' ')), ['v4 tcp 10.96.0.10:80', 'v4 tcp 198.18.0.2:30080', 'v4 tcp 198.18.5.5:80']);
  t.same([...h.ipset.sets.keys()].filter((n) => n.startsWith('PODWIRE-6-')), [], 'no IPv6 set created');
  t.equal(h.k.iptables(6).restores.length, 0, 'ip6tables untouched');
  t.match(h.p.status(), { virtualServers: 3 });
  t.same((await h.k.net.listAddresses(VIP_DEVICE)).map((a) => a.cidr.toString()).sort(), ['10.96.0.10/32', '198.18.5.5/32']);
});

t.test('IPv6 endpoints changes and a Service going away (IPv6 VIP unbound, members removed)', async (t) => {
  const h = await harness();
  await h.apply(...DUAL);
  const before = h.ipvs.calls.length;
  await h.apply(slice('ns/web', local(['fd00:10:244:1::2', 'fd00:10:244:1::4']), [{ name: 'http', port: 8080 }], { name: 'web-v6' }));
  t.same(h.ipvs.calls.slice(before).map((c) => `${c.op} ${c.entry.kind} ${c.entry.kind === 'dest' ? destKey(c.entry.dest) : ''}`).sort(), [
    'add dest [fd00:10:244:1::4]:8080',
    'add dest [fd00:10:244:1::4]:8080',
    'add dest [fd00:10:244:1::4]:8080',
    'replace dest [fd00:10:244:1::3]:8080',
    'replace dest [fd00:10:244:1::3]:8080',
    'replace dest [fd00:10:244:1::3]:8080',
  ], 'per IPv6 virtual server: the new real server added, the gone one quiesced (weight 0, TCP)');
  await h.remove('Service', 'ns/empty6');
  t.notOk((await table(h.ipvs)).some((l) => l.includes('fd00:10:96::14')), 'the IPv6-only Service removed: its virtual server deleted');
  t.notOk((await h.k.net.listAddresses(VIP_DEVICE)).some((a) => a.cidr.toString() === 'fd00:10:96::14/128'), 'its /128 VIP unbound');
  t.same(members(h.ipset, SETS6.noEndpoint), [], 'its set members removed');
  t.same(members(h.ipset, SETS6.clusterIP), ['fd00:10:96::a,tcp:80']);
});

t.test('set names: both families, unique, within ipset\'s 31 characters; PODWIRE-6-* as kube-proxy\'s KUBE-6-*', async (t) => {
  const names = Object.keys(SET_TYPES);
  t.equal(names.length, 2 * Object.keys(SETS).length);
  t.equal(new Set(names).size, names.length, 'unique');
  t.same(names.filter((n) => n.length > 31), [], 'at most 31 characters');
  for (const [k, v] of Object.entries(SETS)) t.equal(SETS6[k as keyof typeof SETS], setName(v, 6));
  t.equal(SETS6.nodePortLocalSCTP, 'PODWIRE-6-NODE-PORT-LOC-SCTP-IP', 'shortened by hand, not truncated');
  for (const [n, type] of Object.entries(SET_TYPES)) {
    if (type.startsWith('bitmap:')) t.notMatch(type, /family/, `${n}: bitmap:port has no family`);
    else t.match(type, n.startsWith('PODWIRE-6-') ? / family inet6 / : / family inet /, `${n}: ${type.split(' ')[0]} of its family`);
  }
});

t.test('IPv6 loadBalancerSourceRanges members', async (t) => {
  t.same(sourceRangeMembers('fd00:198:18::/64', 6), ['fd00:198:18::/64']);
  t.same(sourceRangeMembers('fd00:198:18::7', 6), ['fd00:198:18::7'], 'a /128 without suffix, as ipset save prints it');
  t.same(sourceRangeMembers('fd00:198:18::7/128', 6), ['fd00:198:18::7']);
  t.same(sourceRangeMembers('fd00:198:18::1/40', 6), ['fd00:198::/40'], 'host bits cleared');
  t.same(sourceRangeMembers('::/0', 6), ['::/1', '8000::/1'], 'hash:*,net refuses /0');
  t.same(sourceRangeMembers('10.0.0.0/8', 6), [], 'the other family: none');
  t.same(sourceRangeMembers('fd00::/8'), [], 'IPv4 by default');
  const h = await harness();
  await h.apply(
    svc('ns/lb', ['10.96.0.30', 'fd00:10:96::30'], { type: 'LoadBalancer', loadBalancerIPs: ['198.18.9.1', 'fd00:198:19::1'], loadBalancerSourceRanges: ['203.0.113.0/24', 'fd00:198:18::/64'], ports: [{ port: 443, nodePort: 30443 }] }),
    slice('ns/lb', local(['fd00:10:244:1::2']), [{ port: 8080 }], { name: 'lb-v6' }),
  );
  t.same(members(h.ipset, SETS6.loadBalancerFW), ['fd00:198:19::1,tcp:443']);
  t.same(members(h.ipset, SETS6.loadBalancerSourceCIDR), ['fd00:198:19::1,tcp:443,fd00:198:18::/64']);
  t.same(members(h.ipset, SETS6.loadBalancerSourceIP), ['fd00:198:19::1,tcp:443,fd00:198:19::1'], 'the range holds the node IPv6 address: the node itself is let in');
  t.same(members(h.ipset, SETS.loadBalancerSourceCIDR), ['198.18.9.1,tcp:443,203.0.113.0/24']);
});

t.test('mode switch: the IPv6 virtual servers, ip6tables chains and inet6 sets are removed too', async (t) => {
  const h = await harness();
  await h.apply(...DUAL);
  await h.p.close();
  const foreign = { family: 6 as const, protocol: 'tcp' as const, address: NODE_IP6, port: 8443, scheduler: 'rr' };
  await h.ipvs.apply([{ op: 'add', entry: { kind: 'service', service: foreign } }]);
  t.ok((await h.k.iptables(6).save('nat')).includes(':PODWIRE-IPVS-SERVICES'), 'ip6tables chains there');
  const r = await removeIpvsLeftovers(h.k, silentLogger, { ipvs: h.ipvs, ipset: h.ipset });
  t.same(await table(h.ipvs), ['v6 tcp [fd00:198:18::2]:8443 rr -> '], 'every virtual server of ours gone (IPv6 ClusterIP, NodePort on the node IPv6 address, external IP); the foreign one on the node address stays');
  t.equal(r.virtualServers, 7);
  for (const tb of ['nat', 'filter', 'mangle']) t.notMatch(await h.k.iptables(6).save(tb), /PODWIRE/, `ip6tables ${tb}: chains and jumps gone`);
  t.same([...h.ipset.sets.keys()], [], 'every set gone, PODWIRE-6-* included');
  t.equal(await h.k.net.getLink(VIP_DEVICE), undefined);
});
