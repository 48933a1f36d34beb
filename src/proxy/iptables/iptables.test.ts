import t from 'tap';
import { Registry } from 'prom-client';
import { fakeKernel, type FakeKernel, type TracePacket } from '../../kernel/testing';
import { FakeClock } from '../../daemon/testing/fake-clock';
import { silentLogger } from '../../common/log';
import { buildProxySection } from '../config';
import { MemoryState, slice, svc, testConfig } from '../testing';
import type { ClusterObject } from '../../k8s/types';
import { IptablesProxier } from './proxier';
import { endpointChain, hash16, owned, serviceChain } from './names';
import { parseSave, removeOwnChains } from './applier';
import { probability } from './render';

const signal = new AbortController().signal;

function setup(section: Record<string, unknown> = {}, config: Record<string, unknown> = {}) {
  const k = fakeKernel();
  const clock = new FakeClock();
  const cfg = testConfig(config);
  const state = new MemoryState();
  const registry = new Registry();
  const p = new IptablesProxier({ config: cfg, section: buildProxySection({ healthzBindAddress: '', ...section }, cfg), state, node: { patchAnnotations: async () => undefined, setCondition: async () => undefined, writesBack: false }, kernel: k, logger: silentLogger, clock, metrics: registry });
  const apply = async (...objs: ClusterObject[]): Promise<void> => {
    for (const o of objs) p.handleEvent(state.apply(o));
    await p.sync(signal);
  };
  return { k, p, state, clock, registry, apply };
}

const POD = '10.244.1.10';
const OUT = '198.18.0.99';
const ids = { web: 'ns/web:http/tcp' };

/** Where a new packet goes: nat PREROUTING (or OUTPUT for a local process), then filter. */
function where(k: FakeKernel, pkt: TracePacket & { local?: boolean }, family: 4 | 6 = 4): { nat: string; filter: string; mark: number } {
  const ipt = k.iptables(family);
  const mangle = ipt.trace('mangle', pkt.local ? 'OUTPUT' : 'PREROUTING', pkt);
  if (mangle.verdict === 'DROP') return { nat: 'DROP', filter: 'DROP', mark: 0 };
  const nat = ipt.trace('nat', pkt.local ? 'OUTPUT' : 'PREROUTING', pkt);
  const dnat = nat.verdict === 'DNAT' ? nat.args[nat.args.indexOf('--to-destination') + 1]! : nat.verdict;
  const fchain = pkt.local ? 'OUTPUT' : pkt.localDst ? 'INPUT' : 'FORWARD';
  const filter = ipt.trace('filter', fchain, { ...pkt, dst: nat.verdict === 'DNAT' ? dnat.replace(/^\[?([^\]]*?)\]?:\d+$/, '$1') : pkt.dst, mark: nat.mark });
  return { nat: dnat, filter: filter.verdict === 'REJECT' ? 'REJECT' : filter.verdict, mark: nat.mark };
}

const always = (): boolean => true;

t.test('names: kube-proxy style hashed chain names, and only ours are owned', async (t) => {
  t.match(serviceChain('SVC', ids.web), /^PW-SVC-[A-Z2-7]{16}$/);
  t.equal(hash16('x'), hash16('x'));
  t.not(serviceChain('SVC', 'ns/a:/tcp'), serviceChain('SVC', 'ns/a:/udp'));
  t.ok(owned('PODWIRE-SERVICES') && owned(endpointChain(ids.web, '10.244.1.2:8080')));
  t.notOk(owned('KUBE-SERVICES') || owned('PODWIRE-OVL-POSTRTG') || owned('PW-MASQ-ABCDEFGHIJKLMNOP') || owned('DOCKER'));
  t.equal(probability(3), '0.33333333349', 'probability as iptables-save prints it');
  t.equal(probability(2), '0.50000000000');
});

t.test('ClusterIP: jumps, statistic spreading, masquerade only off-cluster, golden SVC chain', async (t) => {
  const { k, p, apply } = setup();
  await p.reconcileOnStart(signal);
  await apply(
    svc('ns/web', '10.96.0.10', { ports: [{ name: 'http', port: 80, targetPort: 'web' }] }),
    slice('ns/web', ['10.244.1.2', '10.244.1.3', '10.244.2.4'], [{ name: 'http', port: 8080 }]),
  );
  const ipt = k.iptables(4);
  t.match(ipt.rules('nat', 'PREROUTING'), [/-j PODWIRE-SERVICES/]);
  t.match(ipt.rules('nat', 'OUTPUT'), [/-j PODWIRE-SERVICES/]);
  t.match(ipt.rules('nat', 'POSTROUTING'), [/-j PODWIRE-POSTROUTING/]);
  t.match(ipt.rules('filter', 'FORWARD').join('\n'), /PODWIRE-FORWARD/);
  const svcC = serviceChain('SVC', ids.web);
  const sep = (ep: string): string => endpointChain(ids.web, ep);
  t.same(ipt.rules('nat', svcC), [
    `! -s 10.244.0.0/16 -d 10.96.0.10/32 -p tcp -m comment --comment "ns/web:http cluster IP" -m tcp --dport 80 -j PODWIRE-MARK-MASQ`,
    `-m comment --comment "ns/web:http -> 10.244.1.2:8080" -m statistic --mode random --probability 0.33333333349 -j ${sep('10.244.1.2:8080')}`,
    `-m comment --comment "ns/web:http -> 10.244.1.3:8080" -m statistic --mode random --probability 0.50000000000 -j ${sep('10.244.1.3:8080')}`,
    `-m comment --comment "ns/web:http -> 10.244.2.4:8080" -j ${sep('10.244.2.4:8080')}`,
  ], 'golden SVC chain');
  t.same(ipt.rules('nat', sep('10.244.1.2:8080')), [
    '-s 10.244.1.2/32 -m comment --comment "ns/web:http" -j PODWIRE-MARK-MASQ',
    '-p tcp -m comment --comment "ns/web:http" -m tcp -j DNAT --to-destination 10.244.1.2:8080',
  ], 'golden SEP chain: hairpin mark, DNAT to the named targetPort\'s number');
  t.same(ipt.rules('nat', 'PODWIRE-SERVICES'), [
    `-d 10.96.0.10/32 -p tcp -m comment --comment "ns/web:http cluster IP" -m tcp --dport 80 -j ${svcC}`,
    '! -d 127.0.0.0/8 -m comment --comment "podwire service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j PODWIRE-NODEPORTS',
  ]);
  const pkt = { src: POD, dst: '10.96.0.10', protocol: 'tcp' as const, dport: 80 };
  t.same(where(k, pkt), { nat: '10.244.2.4:8080', filter: 'ACCEPT', mark: 0 }, 'last endpoint when no coin wins; pod source not marked');
  t.equal(where(k, { ...pkt, coin: always }).nat, '10.244.1.2:8080', 'first endpoint when the first coin wins');
  let n = 0;
  t.equal(where(k, { ...pkt, coin: () => n++ === 1 }).nat, '10.244.1.3:8080', 'second endpoint');
  t.equal(where(k, { ...pkt, src: OUT }).mark, 0x4000, 'an off-cluster source is marked for SNAT');
  t.equal(where(k, { ...pkt, src: '10.244.1.2', coin: always }).mark, 0x4000, 'hairpin is marked');
  t.equal(where(k, { ...pkt, dport: 81 }).nat, 'ACCEPT', 'other port: untouched');
  t.same(k.iptables(4).trace('nat', 'POSTROUTING', { src: POD, dst: '10.244.1.2', mark: 0x4000 }).verdict, 'MASQUERADE');
  t.same(k.iptables(4).trace('nat', 'POSTROUTING', { src: POD, dst: '10.244.1.2', mark: 0 }).verdict, 'ACCEPT');
  t.equal(k.iptables(4).trace('filter', 'FORWARD', { src: POD, dst: '10.244.1.2', ctstate: 'INVALID' }).verdict, 'DROP', 'ctstate INVALID is dropped in forward');
});

t.test('masqueradeAll marks every ClusterIP packet', async (t) => {
  const { k, apply } = setup({ masqueradeAll: true });
  await apply(svc('ns/web', '10.96.0.10', { ports: [{ name: 'http', port: 80 }] }), slice('ns/web', ['10.244.1.2'], [{ name: 'http', port: 8080 }]));
  t.equal(where(k, { src: POD, dst: '10.96.0.10', protocol: 'tcp', dport: 80 }).mark, 0x4000);
});

t.test('no endpoints: REJECT in filter for ClusterIP, NodePort, externalIP and LB IP', async (t) => {
  const { k, apply } = setup();
  await apply(svc('ns/e', '10.96.0.20', { type: 'LoadBalancer', loadBalancerIPs: ['198.19.0.10'], externalIPs: ['198.19.0.11'], ports: [{ port: 80, nodePort: 30099 }] }));
  t.same(k.iptables(4).rules('filter', 'PODWIRE-SERVICES'), ['-d 10.96.0.20/32 -p tcp -m comment --comment "ns/e: has no endpoints" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable']);
  t.equal(where(k, { src: POD, dst: '10.96.0.20', protocol: 'tcp', dport: 80 }).filter, 'REJECT');
  t.equal(where(k, { src: POD, dst: '10.96.0.20', protocol: 'tcp', dport: 80, local: true }).filter, 'REJECT', 'from the node itself');
  t.equal(where(k, { src: OUT, dst: '198.18.0.1', protocol: 'tcp', dport: 30099, localDst: true }).filter, 'REJECT', 'NodePort');
  t.equal(where(k, { src: OUT, dst: '198.19.0.11', protocol: 'tcp', dport: 80 }).filter, 'REJECT', 'externalIP');
  t.equal(where(k, { src: OUT, dst: '198.19.0.10', protocol: 'tcp', dport: 80 }).filter, 'REJECT', 'LB IP');
  t.equal(k.iptables(4).chains('nat').filter((c) => c.startsWith('PW-')).length, 0, 'no per-Service nat chain');
});

t.test('NodePort, externalIP, LB IP with eTP Cluster: marked, DNATed', async (t) => {
  const { k, apply } = setup();
  await apply(
    svc('ns/web', '10.96.0.10', { type: 'LoadBalancer', loadBalancerIPs: ['198.19.0.10'], externalIPs: ['198.19.0.11'], ports: [{ name: 'http', port: 80, nodePort: 30080 }] }),
    slice('ns/web', [{ ip: '10.244.2.2', node: 'node-b' }], [{ name: 'http', port: 8080 }]),
  );
  for (const [dst, dport, localDst] of [['198.18.0.1', 30080, true], ['198.19.0.11', 80, false], ['198.19.0.10', 80, false]] as const) {
    t.same(where(k, { src: OUT, dst, protocol: 'tcp', dport, localDst }), { nat: '10.244.2.2:8080', filter: 'ACCEPT', mark: 0x4000 }, `${dst}:${dport}`);
  }
  t.equal(where(k, { src: OUT, dst: '198.18.0.1', protocol: 'tcp', dport: 30080, localDst: false }).nat, 'ACCEPT', 'not a local address: no NodePort');
  t.equal(where(k, { src: OUT, dst: '127.0.0.1', protocol: 'tcp', dport: 30080, localDst: true, local: true }).nat, 'ACCEPT', 'no localhost NodePorts');
  t.equal(k.iptables(4).trace('filter', 'FORWARD', { src: OUT, dst: '10.244.2.2', ctstate: 'NEW', mark: 0x4000 }).verdict, 'ACCEPT', 'marked Service traffic is accepted in forward');
});

t.test('nodePortAddresses limits the NodePort jump', async (t) => {
  const { k, apply } = setup({ nodePortAddresses: ['198.18.0.0/24'] });
  await apply(svc('ns/web', '10.96.0.10', { type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }] }), slice('ns/web', ['10.244.2.2'], [{ name: 'http', port: 8080 }]));
  t.equal(where(k, { src: OUT, dst: '198.18.0.1', protocol: 'tcp', dport: 30080 }).nat, '10.244.2.2:8080');
  t.equal(where(k, { src: OUT, dst: '198.19.9.9', protocol: 'tcp', dport: 30080, localDst: true }).nat, 'ACCEPT');
});

t.test('eTP Local: source kept, local endpoints only, DROP without local endpoints, health check port accepted', async (t) => {
  const { k, apply, p } = setup();
  const lb = (eps: { ip: string; node: string }[]) => [
    svc('ns/lb', '10.96.0.10', { type: 'LoadBalancer', loadBalancerIPs: ['198.19.0.10'], externalTrafficPolicy: 'Local', healthCheckNodePort: 32080, ports: [{ name: 'http', port: 80, nodePort: 30080 }] }),
    slice('ns/lb', eps, [{ name: 'http', port: 8080 }]),
  ];
  await apply(...lb([{ ip: '10.244.1.2', node: 'node-a' }, { ip: '10.244.2.2', node: 'node-b' }]));
  const ext = { src: OUT, dst: '198.19.0.10', protocol: 'tcp' as const, dport: 80 };
  t.same(where(k, ext), { nat: '10.244.1.2:8080', filter: 'ACCEPT', mark: 0 }, 'local endpoint, not marked (client IP kept)');
  t.same(where(k, { ...ext, coin: always }).nat, '10.244.1.2:8080', 'never the remote one');
  t.equal(where(k, { ...ext, src: POD, coin: always }).nat, '10.244.1.2:8080', 'a pod goes cluster-wide (first endpoint)');
  t.equal(where(k, { ...ext, src: POD }).nat, '10.244.2.2:8080', 'a pod goes cluster-wide (last endpoint)');
  t.equal(where(k, { ...ext, src: '198.18.0.1', localSrc: true, local: true }).mark, 0x4000, 'the node itself is masqueraded');
  t.equal(k.iptables(4).trace('filter', 'INPUT', { src: OUT, dst: '198.18.0.1', protocol: 'tcp', dport: 32080 }).verdict, 'ACCEPT', 'healthCheckNodePort accepted');
  t.equal(p.status().services, 1);
  await apply(...lb([{ ip: '10.244.2.2', node: 'node-b' }]));
  t.equal(where(k, ext).filter, 'DROP', 'no local endpoint: DROP');
  t.equal(where(k, { src: OUT, dst: '198.18.0.1', protocol: 'tcp', dport: 30080, localDst: true }).filter, 'DROP', 'NodePort: DROP');
  t.equal(where(k, { src: POD, dst: '10.96.0.10', protocol: 'tcp', dport: 80 }).nat, '10.244.2.2:8080', 'the ClusterIP still works cluster-wide');
});

t.test('iTP Local: ClusterIP uses local endpoints; none here: DROP', async (t) => {
  const { k, apply } = setup();
  const s = svc('ns/i', '10.96.0.30', { internalTrafficPolicy: 'Local', ports: [{ name: 'http', port: 80 }] });
  await apply(s, slice('ns/i', [{ ip: '10.244.1.2', node: 'node-a' }, { ip: '10.244.2.2', node: 'node-b' }], [{ name: 'http', port: 8080 }]));
  const pkt = { src: POD, dst: '10.96.0.30', protocol: 'tcp' as const, dport: 80 };
  t.equal(where(k, pkt).nat, '10.244.1.2:8080');
  t.equal(where(k, { ...pkt, coin: always }).nat, '10.244.1.2:8080');
  await apply(slice('ns/i', [{ ip: '10.244.2.2', node: 'node-b' }], [{ name: 'http', port: 8080 }]));
  t.same(where(k, pkt), { nat: 'ACCEPT', filter: 'DROP', mark: 0 });
});

t.test('loadBalancerSourceRanges: allowed sources DNATed, others dropped before DNAT', async (t) => {
  const { k, apply } = setup();
  await apply(
    svc('ns/fw', '10.96.0.12', { type: 'LoadBalancer', loadBalancerIPs: ['198.19.0.12'], loadBalancerSourceRanges: ['203.0.113.0/24'], ports: [{ name: 'http', port: 80, nodePort: 30081 }] }),
    slice('ns/fw', ['10.244.1.2'], [{ name: 'http', port: 8080 }]),
  );
  t.same(where(k, { src: '203.0.113.5', dst: '198.19.0.12', protocol: 'tcp', dport: 80 }), { nat: '10.244.1.2:8080', filter: 'ACCEPT', mark: 0x4000 });
  t.same(where(k, { src: OUT, dst: '198.19.0.12', protocol: 'tcp', dport: 80 }), { nat: 'DROP', filter: 'DROP', mark: 0 }, 'dropped in mangle, before DNAT');
  t.equal(k.iptables(4).trace('mangle', 'PREROUTING', { src: OUT, dst: '198.19.0.12', protocol: 'tcp', dport: 80 }).verdict, 'DROP');
  t.equal(where(k, { src: OUT, dst: '10.96.0.12', protocol: 'tcp', dport: 80 }).nat, '10.244.1.2:8080', 'the ClusterIP is not restricted');
});

t.test('ClientIP affinity: recent match first, --set in the DNAT rule', async (t) => {
  const { k, apply } = setup();
  await apply(svc('ns/aff', '10.96.0.30', { sessionAffinity: 'ClientIP', affinityTimeout: 60, ports: [{ name: 'http', port: 80 }] }), slice('ns/aff', ['10.244.1.2', '10.244.1.3'], [{ name: 'http', port: 8080 }]));
  const id = 'ns/aff:http/tcp';
  const sep3 = endpointChain(id, '10.244.1.3:8080');
  const rules = k.iptables(4).rules('nat', serviceChain('SVC', id));
  t.match(rules[1], `-m recent --rcheck --seconds 60 --reap --name ${endpointChain(id, '10.244.1.2:8080')} --mask 255.255.255.255 --rsource -j`);
  t.match(k.iptables(4).rules('nat', sep3)[1], `-m recent --set --name ${sep3} --mask 255.255.255.255 --rsource -m tcp -j DNAT --to-destination 10.244.1.3:8080`);
  const pkt = { src: POD, dst: '10.96.0.30', protocol: 'tcp' as const, dport: 80, coin: always };
  t.equal(where(k, pkt).nat, '10.244.1.2:8080', 'no recent entry: random');
  t.equal(where(k, { ...pkt, recent: [sep3] }).nat, '10.244.1.3:8080', 'the recorded endpoint wins');
});

t.test('service-proxy-name, headless and invalid Services are skipped; named targetPort per endpoint', async (t) => {
  const { k, apply, p } = setup();
  await apply(
    svc('ns/other', '10.96.0.40', { labels: { 'service.kubernetes.io/service-proxy-name': 'foo' } }),
    slice('ns/other', ['10.244.1.2']),
    svc('ns/bad', '10.96.0.999'),
    svc('ns/named', '10.96.0.41', { ports: [{ name: 'http', port: 80, targetPort: 'web' }] }),
    slice('ns/named', ['10.244.1.2'], [{ name: 'http', port: 8080 }], { name: 'named-a' }),
    slice('ns/named', ['10.244.1.3'], [{ name: 'http', port: 9090 }], { name: 'named-b' }),
  );
  t.notMatch(k.iptables(4).rules('nat', 'PODWIRE-SERVICES').join('\n'), /10\.96\.0\.40|10\.96\.0\.999/);
  t.equal(p.status().invalidServices, 1);
  const pkt = { src: POD, dst: '10.96.0.41', protocol: 'tcp' as const, dport: 80 };
  t.equal(where(k, { ...pkt, coin: always }).nat, '10.244.1.2:8080');
  t.equal(where(k, pkt).nat, '10.244.1.3:9090', 'each endpoint with its own port number');
});

t.test('dual-stack: IPv6 rules in ip6tables', async (t) => {
  const { k, apply } = setup({}, { clusterCIDR: '10.244.0.0/16,fd00:244::/56', serviceCIDR: '10.96.0.0/12,fd00:96::/112' });
  await apply(
    svc('ns/ds', ['10.96.0.50', 'fd00:96::50'], { ports: [{ name: 'http', port: 80 }] }),
    slice('ns/ds', ['10.244.1.2'], [{ name: 'http', port: 8080 }], { name: 'ds-4' }),
    slice('ns/ds', ['fd00:244::2'], [{ name: 'http', port: 8080 }], { name: 'ds-6', addressType: 'IPv6' }),
    svc('ns/e6', ['fd00:96::51'], { ports: [{ port: 80 }] }),
  );
  t.equal(where(k, { src: 'fd00:244::9', dst: 'fd00:96::50', protocol: 'tcp', dport: 80 }, 6).nat, '[fd00:244::2]:8080');
  t.equal(where(k, { src: POD, dst: '10.96.0.50', protocol: 'tcp', dport: 80 }, 4).nat, '10.244.1.2:8080');
  t.match(k.iptables(6).rules('filter', 'PODWIRE-SERVICES'), [/-d fd00:96::51\/128 .*REJECT --reject-with icmp6-port-unreachable/]);
  t.notMatch(k.iptables(4).rules('nat', 'PODWIRE-SERVICES').join('\n'), /fd00/);
});

t.test('partial sync: an endpoint change rewrites only that Service\'s chains; vanished chains are deleted', async (t) => {
  const { k, apply, p } = setup();
  const objs: ClusterObject[] = [];
  for (let i = 0; i < 20; i++) objs.push(svc(`ns/s${i}`, `10.96.1.${i}`, { ports: [{ name: 'http', port: 80 }] }), slice(`ns/s${i}`, [`10.244.1.${i + 2}`, `10.244.2.${i + 2}`], [{ name: 'http', port: 8080 }]));
  await apply(...objs);
  const before = k.iptables(4).restores.length;
  await apply(slice('ns/s3', ['10.244.1.5', '10.244.3.5'], [{ name: 'http', port: 8080 }]));
  const text = k.iptables(4).restores.at(-1)!.text;
  t.equal(k.iptables(4).restores.length, before + 1, 'one restore');
  const declared = text.split('\n').filter((l) => l.startsWith(':'));
  t.same(declared.sort(), [`:${endpointChain('ns/s3:http/tcp', '10.244.2.5:8080')} - [0:0]`, `:${endpointChain('ns/s3:http/tcp', '10.244.3.5:8080')} - [0:0]`, `:${serviceChain('SVC', 'ns/s3:http/tcp')} - [0:0]`].sort(), 'only the changed chains are declared');
  t.match(text, `-X ${endpointChain('ns/s3:http/tcp', '10.244.2.5:8080')}`, 'the gone endpoint\'s chain is deleted');
  t.notMatch(text, /PODWIRE-SERVICES/, 'the services chain is untouched');
  t.equal(p.lastSync?.changedChains, 3);
  await apply();
  t.equal(k.iptables(4).restores.length, before + 1, 'nothing changed: no restore');
  t.equal(where(k, { src: POD, dst: '10.96.1.3', protocol: 'tcp', dport: 80 }).nat, '10.244.3.5:8080');
});

t.test('restart adopts: the first sync after a restart writes nothing; others\' rules untouched; failures keep rules', async (t) => {
  const { k, apply } = setup();
  await k.iptables(4).restore('*filter\n:DOCKER-USER - [0:0]\n-A DOCKER-USER -j RETURN\n-A FORWARD -j DOCKER-USER\nCOMMIT\n*nat\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\nCOMMIT\n');
  await apply(svc('default/kubernetes', '10.96.0.1', { ports: [{ name: 'https', port: 443 }] }), slice('default/kubernetes', ['198.18.0.1'], [{ name: 'https', port: 6443 }]), svc('ns/web', '10.96.0.10'), slice('ns/web', ['10.244.1.2']));
  t.equal(k.iptables(4).restores.length, 3, 'cold start: the docker fixture, then default/kubernetes + masquerade first, then the rest');
  t.match(k.iptables(4).restores[1]!.text, /PODWIRE-POSTROUTING[\s\S]*10\.96\.0\.1\//);
  t.notMatch(k.iptables(4).restores[1]!.text, /10\.96\.0\.10\//);
  // A second daemon over the same kernel.
  const n = k.iptables(4).restores.length;
  const cfg = testConfig();
  const state = new MemoryState();
  const p2 = new IptablesProxier({ config: cfg, section: buildProxySection({ healthzBindAddress: '' }, cfg), state, node: { patchAnnotations: async () => undefined, setCondition: async () => undefined, writesBack: false }, kernel: k, logger: silentLogger, clock: new FakeClock(), metrics: new Registry() });
  await p2.reconcileOnStart(signal);
  for (const o of [svc('default/kubernetes', '10.96.0.1', { ports: [{ name: 'https', port: 443 }] }), slice('default/kubernetes', ['198.18.0.1'], [{ name: 'https', port: 6443 }]), svc('ns/web', '10.96.0.10'), slice('ns/web', ['10.244.1.2'])]) p2.handleEvent(state.apply(o));
  await p2.sync(signal);
  t.equal(k.iptables(4).restores.length, n, 'adopted: no restore at all');
  // A bad restore keeps the previous rules.
  const real = k.iptables(4).restore.bind(k.iptables(4));
  k.iptables(4).restore = async () => { throw new Error('iptables-restore: line 3 failed'); };
  p2.handleEvent(state.apply(slice('ns/web', ['10.244.1.9'])));
  await t.rejects(p2.sync(signal));
  k.iptables(4).restore = real;
  t.equal(where(k, { src: POD, dst: '10.96.0.10', protocol: 'tcp', dport: 80 }).nat, '10.244.1.2:8080', 'old rules still there');
  await p2.sync(signal);
  t.equal(where(k, { src: POD, dst: '10.96.0.10', protocol: 'tcp', dport: 80 }).nat, '10.244.1.9:8080', 'retried');
  t.same(k.iptables(4).rules('filter', 'DOCKER-USER'), ['-j RETURN'], 'others\' chains untouched');
  t.ok(k.iptables(4).chains('nat').includes('KUBE-SERVICES'));
  // Cleanup removes ours only.
  t.ok((await removeOwnChains(k.iptables(4))) > 0);
  t.same(k.iptables(4).chains('nat').filter(owned), []);
  t.same(k.iptables(4).rules('nat', 'PREROUTING'), ['-j KUBE-SERVICES']);
  t.same(k.iptables(4).rules('filter', 'FORWARD'), ['-j DOCKER-USER']);
  t.equal(parseSave(await k.iptables(4).save('filter')).chains.size, 0);
});

t.test('UDP: a removed endpoint\'s conntrack entries are deleted; metrics', async (t) => {
  const { k, apply, registry } = setup();
  await apply(svc('ns/dns', '10.96.0.53', { ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] }), slice('ns/dns', ['10.244.1.3'], [{ name: 'dns', port: 5353, protocol: 'UDP' }]));
  await apply(slice('ns/dns', ['10.244.1.4'], [{ name: 'dns', port: 5353, protocol: 'UDP' }]));
  t.ok(k.conntrack.deletes.some((d) => d.protocol === 'udp' && d.dst === '10.96.0.53' && d.dstPort === 53 && d.replySrc === '10.244.1.3'), 'entries towards the gone endpoint deleted');
  const text = await registry.metrics();
  t.match(text, /kubeproxy_sync_proxy_rules_iptables_total\{table="nat"\} \d+/);
  t.match(text, /podwire_proxy_iptables_chains\{table="nat"\} \d+/);
  t.match(text, /kubeproxy_sync_proxy_rules_duration_seconds_count 2/);
});

t.test('starting in iptables mode removes the nftables mode\'s table', async (t) => {
  const { k, p } = setup();
  k.nft.listText = 'table inet podwire\ntable inet other\n';
  await p.reconcileOnStart(signal);
  t.match(k.nft.scripts.join('\n'), /delete table inet podwire/);
  t.notMatch(k.nft.scripts.join('\n'), /other/);
});

t.test('periodic full sync: chains changed behind our back are read back and repaired', async (t) => {
  const { k, apply, clock, p } = setup();
  await apply(svc('ns/web', '10.96.0.10', { ports: [{ name: 'http', port: 80 }] }), slice('ns/web', ['10.244.1.2'], [{ name: 'http', port: 8080 }]));
  const chain = serviceChain('SVC', 'ns/web:http/tcp');
  const want = k.iptables(4).rules('nat', chain);
  await k.iptables(4).restore(`*nat\n:${chain} - [0:0]\nCOMMIT\n*nat\n-D PREROUTING ${k.iptables(4).rules('nat', 'PREROUTING')[0]}\nCOMMIT\n`);
  t.same(k.iptables(4).rules('nat', chain), []);
  await p.sync(signal);
  t.same(k.iptables(4).rules('nat', chain), [], 'a partial sync trusts its memory');
  clock.advance(30_000);
  await p.sync(signal);
  t.equal(p.lastSync?.full, true);
  t.same(k.iptables(4).rules('nat', chain), want, 'the full sync rewrote the flushed chain');
  t.match(k.iptables(4).rules('nat', 'PREROUTING'), [/-j PODWIRE-SERVICES/], 'and re-inserted the deleted jump');
  t.equal(p.lastSync?.changedChains, 1);
});

t.test('registration: each proxy.mode creates its proxier, an unknown mode is refused by name', async (t) => {
  const { proxyRegistration, NftProxier, IpvsProxier } = await import('../index');
  const reg = proxyRegistration();
  const ctx = (mode: string) => {
    const config = testConfig({ proxyMode: mode as 'nftables' });
    return { config, section: buildProxySection({ healthzBindAddress: '' }, config), state: new MemoryState(), node: { patchAnnotations: async () => undefined, setCondition: async () => undefined, writesBack: false }, kernel: fakeKernel(), logger: silentLogger, clock: new FakeClock(), metrics: new Registry() };
  };
  t.ok(reg.create(ctx('iptables')) instanceof IptablesProxier);
  t.ok(reg.create(ctx('nftables')) instanceof NftProxier);
  t.ok(reg.create(ctx('ipvs')) instanceof IpvsProxier);
  t.throws(() => reg.create(ctx('userspace')), /proxy\.mode.*userspace/);
  t.throws(() => buildProxySection({ iptablesBackend: 'xtables' }, testConfig()), /proxy\.iptablesBackend.*xtables/);
});

t.test('start-up notices a foreign FORWARD drop policy (Docker) in iptables mode too', async (t) => {
  const { k, p, registry } = setup();
  const ipt = k.iptables(4);
  const save = ipt.save.bind(ipt);
  ipt.save = async (table: string) => (table === 'filter' ? `*filter\n:FORWARD DROP [0:0]\n${(await save(table)).replace(/^\*filter\n/, '')}` : save(table));
  await p.reconcileOnStart(signal);
  t.same(p.foreignForwardDrop, ['iptables filter FORWARD']);
  t.match(await registry.getSingleMetricAsString('podwire_proxy_foreign_forward_drop'), /drop 1/);
  t.same(p.status().foreignForwardDrop, ['iptables filter FORWARD'], 'podwire status shows it');
});

t.test("kube-proxy's large-cluster mode: over 1,000 endpoints the endpoint rules lose their comments", async (t) => {
  const { k, apply, state, p } = setup();
  const svcs: ClusterObject[] = [];
  for (let i = 0; i < 100; i++) {
    svcs.push(svc(`ns/s${i}`, `10.96.1.${i + 1}`, { ports: [{ name: 'http', port: 80 }] }));
    svcs.push(slice(`ns/s${i}`, Array.from({ length: 10 }, (_, j) => `10.244.${i}.${j + 1}`), [{ name: 'http', port: 8080 }]));
  }
  await apply(...svcs);
  const sepRules = async (): Promise<string[]> => (await k.iptables(4).save('nat')).split('\n').filter((l) => /^-A PW-SEP-|^-A PW-SVC-.*-j PW-SEP-/.test(l));
  let rules = await sepRules();
  t.equal(rules.length, 100 * 10 * 3, '1,000 endpoints: 3 rules each');
  t.ok(rules.every((l) => l.includes('-m comment')), 'at 1,000 endpoints (the threshold) every endpoint rule has its comment');
  await apply(svc('ns/big', '10.96.2.1', { ports: [{ name: 'http', port: 80 }] }), slice('ns/big', ['10.244.200.1'], [{ name: 'http', port: 8080 }]));
  rules = await sepRules();
  t.equal(rules.length, 1001 * 3, 'one more endpoint');
  t.same(rules.filter((l) => l.includes('-m comment')), [], 'over 1,000: no endpoint rule has a comment, old Services included');
  t.match((await k.iptables(4).save('nat')), /-A PODWIRE-SERVICES -d 10\.96\.2\.1\/32 -p tcp -m comment --comment "ns\/big:http cluster IP"/, 'the Service rules keep theirs');
  const ev = state.remove('EndpointSlice', 'ns/big-abc');
  if (ev) p.handleEvent(ev);
  await p.sync(signal);
  rules = await sepRules();
  t.ok(rules.length === 1000 * 3 && rules.every((l) => l.includes('-m comment')), 'back to 1,000: comments again');
});

t.test('iptables-nft: a cold start of many Services goes in chunks of Services, then one restore of the top chains; the same rules as one restore', async (t) => {
  const objects = (withKubernetes: boolean): ClusterObject[] => {
    const out: ClusterObject[] = withKubernetes ? [svc('default/kubernetes', '10.96.0.1', { ports: [{ name: 'https', port: 443 }] }), slice('default/kubernetes', ['198.18.0.1'], [{ name: 'https', port: 6443 }])] : [];
    for (let i = 0; i < 7; i++) out.push(svc(`ns/s${i}`, `10.96.1.${i + 1}`), slice(`ns/s${i}`, [`10.244.1.${i + 2}`, `10.244.2.${i + 2}`]));
    return out;
  };
  const run = async (backend: 'nft' | undefined, withKubernetes: boolean): Promise<FakeKernel> => {
    const k = fakeKernel();
    k.iptables(4).backend = backend;
    const cfg = testConfig();
    const state = new MemoryState();
    const p = new IptablesProxier({ config: cfg, section: buildProxySection({ healthzBindAddress: '' }, cfg), state, node: { patchAnnotations: async () => undefined, setCondition: async () => undefined, writesBack: false }, kernel: k, logger: silentLogger, clock: new FakeClock(), metrics: new Registry() }, { nftChunkServices: 2 });
    await p.reconcileOnStart(signal);
    for (const o of objects(withKubernetes)) p.handleEvent(state.apply(o));
    await p.sync(signal);
    return k;
  };
  for (const withKubernetes of [true, false]) {
    const one = await run(undefined, withKubernetes);
    const chunked = await run('nft', withKubernetes);
    const restores = chunked.iptables(4).restores;
    const services = withKubernetes ? 8 : 7;
    // default/kubernetes (or the top chains alone), ceil(services / 2) chunks, the top chains.
    t.equal(restores.length, 1 + Math.ceil(services / 2) + 1, `${withKubernetes ? 'with' : 'without'} default/kubernetes: restores`);
    for (const r of restores.slice(1, -1)) {
      t.notMatch(r.text, /^-I /m, 'a chunk inserts no jump from a built-in chain');
      t.notMatch(r.text, /^-A PODWIRE-SERVICES /m, 'a chunk leaves the top chains alone');
    }
    for (const table of ['nat', 'filter']) t.equal(await chunked.iptables(4).save(table), await one.iptables(4).save(table), `${table}: the same rules as one restore`);
    for (let i = 0; i < 7; i++) t.match(where(chunked, { src: POD, dst: `10.96.1.${i + 1}`, protocol: 'tcp', dport: 80 }).nat, /^10\.244\.[12]\./, `ns/s${i} is reached`);
  }
});
