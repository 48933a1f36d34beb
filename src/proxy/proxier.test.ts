import t from 'tap';
import { fakeKernel, type FakeKernel } from '../kernel/testing';
import { FakeClock } from '../daemon/testing/fake-clock';
import { buildServiceModel, ChangeTracker, serviceProjection } from './model';
import { proxierHarness, slice, svc, type ProxierHarness } from './testing';
import { parseTable } from './adopt';

const signal = new AbortController().signal;

function setup(section: Record<string, unknown> = {}): { k: FakeKernel; h: ProxierHarness; clock: FakeClock } {
  const k = fakeKernel();
  k.nft.listText = 'table inet podwire\n';
  const clock = new FakeClock();
  const h = proxierHarness(k, clock, { section });
  return { k, h, clock };
}

const lines = (s: string | undefined): string[] => (s ?? '').split('\n').filter((l) => l !== '');

t.test('change tracker keeps first previous and latest current, drops no-ops', async (t) => {
  const tr = new ChangeTracker<ServiceObjectLike>((a, b) => a.v === b.v);
  t.equal(tr.record('a', undefined, { v: 1 }), true);
  t.equal(tr.record('a', { v: 1 }, undefined), false, 'add then delete is a no-op');
  t.equal(tr.size, 0);
  t.equal(tr.record('b', { v: 1 }, { v: 2 }), true);
  t.equal(tr.record('b', { v: 2 }, { v: 1 }), false, 'update back to the original is a no-op');
  t.equal(tr.record('c', { v: 1 }, { v: 2 }), true);
  t.equal(tr.record('c', { v: 2 }, { v: 3 }), true);
  const d = tr.drain();
  t.same(d.get('c')?.previous, { v: 1 });
  t.same(d.get('c')?.current, { v: 3 });
  const s1 = svc('ns/a', '10.96.0.5', { rv: '1' });
  const s2 = svc('ns/a', '10.96.0.5', { rv: '2' });
  t.equal(serviceProjection(s1), serviceProjection(s2), 'resourceVersion alone is not a change');
  const { h } = setup();
  h.apply(s1);
  t.equal(h.apply(s2), true, 'first add is still pending');
  await h.proxier.sync(signal);
  t.equal(h.apply(svc('ns/a', '10.96.0.5', { rv: '3' })), false, 'a no-op update requests no sync');
});
interface ServiceObjectLike {
  v: number;
}

t.test('model: ready, serving-terminating fallback, targetPort by name, invalid and skipped Services', async (t) => {
  const s = svc('ns/a', '10.96.0.5', { ports: [{ name: 'http', port: 80, targetPort: 'web' }, { name: 'dns', port: 53, protocol: 'UDP' }] });
  const sl = slice('ns/a', [{ ip: '10.244.1.2', node: 'node-a' }, { ip: '10.244.2.2', ready: false, serving: true, terminating: true }], [{ name: 'http', port: 8080 }, { name: 'dns', port: 5353, protocol: 'UDP' }]);
  const m = buildServiceModel(s, [sl], 'node-a');
  t.equal(m.ports.length, 2);
  t.same(m.ports[0]!.cluster.map((e) => `${e.ip}:${e.port}`), ['10.244.1.2:8080'], 'ready only while one is ready; the named port resolves through the slice port name');
  t.same(m.ports[1]!.cluster.map((e) => `${e.ip}:${e.port}`), ['10.244.1.2:5353']);
  const term = buildServiceModel(s, [slice('ns/a', [{ ip: '10.244.2.2', ready: false, serving: true, terminating: true }, { ip: '10.244.2.3', ready: false, serving: false, terminating: true }], [{ name: 'http', port: 8080 }])], 'node-a');
  t.same(term.ports[0]!.cluster.map((e) => e.ip), ['10.244.2.2'], 'serving terminating endpoints when no ready one');
  t.equal(buildServiceModel(svc('ns/h', 'None'), [], 'n').skipped, 'headless');
  t.match(buildServiceModel(svc('ns/p', '10.96.0.9', { labels: { 'service.kubernetes.io/service-proxy-name': 'other' } }), [], 'n').skipped, /service-proxy-name/);
  t.match(buildServiceModel(svc('ns/bad', '10.96.0.999'), [], 'n').invalid, /clusterIPs/);
  t.match(buildServiceModel(svc('ns/bad', '10.96.0.9', { ports: [{ port: 70000 }] }), [], 'n').invalid, /port/);
});

t.test('cold start: skeleton with masquerade and default/kubernetes in the first transaction, then chunks', async (t) => {
  const { k, h } = setup({ coldChunk: 2 });
  for (let i = 0; i < 5; i++) {
    h.apply(svc(`ns/s${i}`, `10.96.1.${i + 1}`));
    h.apply(slice(`ns/s${i}`, [`10.244.3.${i + 1}`]));
  }
  h.apply(svc('default/kubernetes', '10.96.0.1', { ports: [{ name: 'https', port: 443 }] }));
  h.apply(slice('default/kubernetes', ['198.18.0.1'], [{ name: 'https', port: 6443 }]));
  await h.proxier.sync(signal);
  t.equal(k.nft.scripts.length, 4, 'skeleton+kubernetes, then 3 chunks of 2');
  const first = lines(k.nft.scripts[0]);
  t.equal(first[0], 'add table inet podwire { comment "podwire service proxy" ; }');
  t.ok(first.includes('add rule inet podwire masquerading masquerade fully-random'), 'masquerade in the first transaction');
  t.ok(first.includes('add element inet podwire services4 { 10.96.0.1 . tcp . 443 : goto lb4c-tcp-1 }'));
  t.ok(first.includes('add element inet podwire endpoints4-tcp { 10.96.0.1 . tcp . 443 . 0 : 198.18.0.1 . 6443 }'));
  t.notOk(k.nft.scripts[0]!.includes('10.96.1.'), 'no other Service in the first transaction');
  t.equal(h.proxier.status().services, 6);
});

t.test('golden: ClusterIP with 3 endpoints, then one endpoint change is an element-level transaction', async (t) => {
  const { k, h } = setup();
  h.apply(svc('ns/web', '10.96.0.10', { ports: [{ name: 'http', port: 80 }] }));
  h.apply(slice('ns/web', ['10.244.1.2', '10.244.1.3', '10.244.1.4'], [{ name: 'http', port: 8080 }]));
  await h.proxier.sync(signal);
  const s = k.nft.last!;
  t.match(s, 'add rule inet podwire lb4c-tcp-3 ip saddr != { 10.244.0.0/16 } jump mark-for-masquerade\n');
  t.match(s, 'add rule inet podwire lb4c-tcp-3 dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 3 map @endpoints4-tcp\n');
  t.match(s, 'add element inet podwire endpoints4-tcp { 10.96.0.10 . tcp . 80 . 0 : 10.244.1.2 . 8080, 10.96.0.10 . tcp . 80 . 1 : 10.244.1.3 . 8080, 10.96.0.10 . tcp . 80 . 2 : 10.244.1.4 . 8080 }\n');
  t.match(s, 'add element inet podwire services4 { 10.96.0.10 . tcp . 80 : goto lb4c-tcp-3 }\n');
  h.apply(slice('ns/web', ['10.244.1.2', '10.244.1.5', '10.244.1.4'], [{ name: 'http', port: 8080 }]));
  await h.proxier.sync(signal);
  // Order-insensitive check of the exact delta:
  const delta = lines(k.nft.last).sort();
  t.same(delta, ['add element inet podwire endpoints4-tcp { 10.96.0.10 . tcp . 80 . 1 : 10.244.1.5 . 8080 }', 'delete element inet podwire endpoints4-tcp { 10.96.0.10 . tcp . 80 . 1 }'], 'the replaced endpoint keeps its slot: one element');
  const before = k.nft.scripts.length;
  await h.proxier.sync(signal);
  t.equal(k.nft.scripts.length, before, 'nothing changed: no transaction');
});

t.test('no endpoints: REJECT on ClusterIP, NodePort and external IPs; endpoints appear: moved to the service maps', async (t) => {
  const { k, h } = setup();
  h.apply(svc('ns/e', '10.96.0.20', { type: 'NodePort', externalIPs: ['198.19.0.7'], ports: [{ port: 80, nodePort: 30080 }] }));
  await h.proxier.sync(signal);
  const s = k.nft.last!;
  t.match(s, 'add element inet podwire no-endpoints4 { 10.96.0.20 . tcp . 80 : goto reject-chain, 198.19.0.7 . tcp . 80 : goto reject-chain }');
  t.match(s, 'add element inet podwire no-endpoint-nodeports4 { tcp . 30080 : goto reject-chain }');
  t.notMatch(s, 'services4 {');
  h.apply(slice('ns/e', ['10.244.1.9']));
  await h.proxier.sync(signal);
  const d = k.nft.last!;
  t.match(d, 'delete element inet podwire no-endpoints4 { 10.96.0.20 . tcp . 80, 198.19.0.7 . tcp . 80 }');
  t.match(d, 'add element inet podwire services4 { 10.96.0.20 . tcp . 80 : goto lb4c-tcp-1, 198.19.0.7 . tcp . 80 : goto lb4x-tcp-1 }');
  t.match(d, 'add element inet podwire nodeports4 { tcp . 30080 : goto lb4nx-tcp-1 }');
  t.match(d, 'add element inet podwire np-endpoints4-tcp { tcp . 30080 . 0 : 10.244.1.9 . 8080 }');
  t.match(d, 'add rule inet podwire lb4x-tcp-1 jump mark-for-masquerade', 'external traffic is masqueraded');
});

t.test('LoadBalancer: ingress IPs, source ranges before DNAT, eTP Local drops without local endpoints and keeps the source', async (t) => {
  const { k, h } = setup();
  h.apply(svc('ns/lb', '10.96.0.30', { type: 'LoadBalancer', loadBalancerIPs: ['198.19.5.5'], loadBalancerSourceRanges: ['192.168.0.0/16'], externalTrafficPolicy: 'Local', healthCheckNodePort: 32100, ports: [{ port: 443, nodePort: 30443 }] }));
  h.apply(slice('ns/lb', [{ ip: '10.244.2.2', node: 'node-b' }]));
  await h.proxier.sync(signal);
  let s = k.nft.last!;
  t.match(s, 'add element inet podwire services4 { 10.96.0.30 . tcp . 443 : goto lb4c-tcp-1 }', 'cluster traffic uses every endpoint');
  t.match(s, 'add element inet podwire no-endpoints4 { 198.19.5.5 . tcp . 443 : drop }', 'no local endpoint: external traffic dropped');
  t.match(s, 'add element inet podwire no-endpoint-nodeports4 { tcp . 30443 : drop }');
  t.match(s, 'add element inet podwire firewall4 { 198.19.5.5 . tcp . 443 }');
  t.match(s, 'add element inet podwire firewall-allow4 { 198.19.5.5 . tcp . 443 . 192.168.0.0/16 }');
  h.apply(slice('ns/lb', [{ ip: '10.244.2.2', node: 'node-b' }, { ip: '10.244.1.2', node: 'node-a' }]));
  await h.proxier.sync(signal);
  s = k.nft.last!;
  t.match(s, '198.19.5.5 . tcp . 443 : goto lb4l-tcp-1');
  t.match(s, 'add element inet podwire nodeports4 { tcp . 30443 : goto lb4nl-tcp-1 }');
  t.match(s, 'add rule inet podwire lb4l-tcp-1 dnat ip to', 'eTP Local: no masquerade mark');
  t.notMatch(s, 'add rule inet podwire lb4l-tcp-1 jump mark-for-masquerade');
  t.match(s, 'add element inet podwire hairpin4 { 10.244.1.2 . 10.244.1.2 }', 'local endpoints can hairpin');
});

t.test('internalTrafficPolicy Local, masqueradeAll, nodePortAddresses', async (t) => {
  const { k, h } = setup({ masqueradeAll: true, nodePortAddresses: ['198.18.0.0/15'] });
  h.apply(svc('ns/i', '10.96.0.40', { internalTrafficPolicy: 'Local' }));
  h.apply(slice('ns/i', [{ ip: '10.244.2.2', node: 'node-b' }]));
  await h.proxier.sync(signal);
  const s = k.nft.last!;
  t.match(s, 'add element inet podwire no-endpoints4 { 10.96.0.40 . tcp . 80 : drop }', 'iTP Local with only remote endpoints drops');
  const all = k.nft.scripts.join('');
  t.match(all, 'add rule inet podwire services meta nfproto ipv4 ip daddr { 198.18.0.0/15 } meta l4proto . th dport vmap @nodeports4');
  t.notMatch(all, 'vmap @nodeports6', 'no IPv6 NodePorts when nodePortAddresses has no IPv6 CIDR');
  h.apply(svc('ns/j', '10.96.0.41'));
  h.apply(slice('ns/j', ['10.244.2.3']));
  await h.proxier.sync(signal);
  t.match(k.nft.last!, 'add rule inet podwire lb4c-tcp-1 jump mark-for-masquerade\n', 'masqueradeAll marks every ClusterIP connection');
});

t.test('ClientIP affinity: its own chain with one timeout set per endpoint', async (t) => {
  const { k, h } = setup();
  h.apply(svc('ns/a', '10.96.0.50', { sessionAffinity: 'ClientIP', affinityTimeout: 30 }));
  h.apply(slice('ns/a', ['10.244.1.2', '10.244.1.3']));
  await h.proxier.sync(signal);
  const s = lines(k.nft.last);
  const sets = s.filter((l) => l.startsWith('add set inet podwire affinity4-'));
  t.equal(sets.length, 2);
  t.match(sets[0], /\{ type ipv4_addr ; flags dynamic,timeout ; timeout 30s ; \}$/);
  const chain = s.find((l) => /^add chain inet podwire svc4c-/.test(l))!.split(' ')[4]!;
  const rules = s.filter((l) => l.startsWith(`add rule inet podwire ${chain} `)).map((l) => l.slice(`add rule inet podwire ${chain} `.length).replace(/affinity4-[a-z0-9]+/g, 'A'));
  t.same(rules, [
    'ip saddr != { 10.244.0.0/16 } jump mark-for-masquerade',
    'ip saddr @A update @A { ip saddr } meta l4proto tcp dnat ip to 10.244.1.2:8080',
    'ip saddr @A update @A { ip saddr } meta l4proto tcp dnat ip to 10.244.1.3:8080',
    'numgen random mod 2 0 update @A { ip saddr } meta l4proto tcp dnat ip to 10.244.1.2:8080',
    'update @A { ip saddr } meta l4proto tcp dnat ip to 10.244.1.3:8080',
  ]);
  t.ok(s.includes(`add element inet podwire services4 { 10.96.0.50 . tcp . 80 : goto ${chain} }`));
  h.remove('Service', 'ns/a');
  await h.proxier.sync(signal);
  const d = k.nft.last!;
  t.match(d, 'delete element inet podwire services4 { 10.96.0.50 . tcp . 80 }');
  t.match(d, `delete chain inet podwire ${chain}`);
  t.ok(d.indexOf('delete element inet podwire services4') < d.indexOf(`delete chain inet podwire ${chain}`), 'the element goes before its chain');
  t.match(d, /delete set inet podwire affinity4-/);
});

t.test('UDP: a removed endpoint deletes its conntrack entries; a Service getting its first endpoint clears entries to the VIP', async (t) => {
  const { k, h } = setup();
  h.apply(svc('ns/dns', '10.96.0.10', { ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] }));
  await h.proxier.sync(signal);
  h.apply(slice('ns/dns', ['10.244.1.2', '10.244.1.3'], [{ name: 'dns', port: 53, protocol: 'UDP' }]));
  await h.proxier.sync(signal);
  t.same(k.conntrack.deletes, [{ family: 4, protocol: 'udp', dst: '10.96.0.10', dstPort: 53 }]);
  k.conntrack.entries.push({ family: 4, protocol: 'udp', src: '10.244.9.9', dst: '10.96.0.10', srcPort: 4000, dstPort: 53, replySrc: '10.244.1.3', replySrcPort: 53, mark: 0 });
  h.apply(slice('ns/dns', ['10.244.1.2'], [{ name: 'dns', port: 53, protocol: 'UDP' }]));
  await h.proxier.sync(signal);
  t.same(k.conntrack.deletes.at(-1), { family: 4, protocol: 'udp', dst: '10.96.0.10', dstPort: 53, replySrc: '10.244.1.3' });
  t.equal(k.conntrack.entries.length, 0, 'the stale entry is gone');
});

t.test('a failed transaction keeps the applied state, logs, and the retry applies the same delta', async (t) => {
  const { k, h } = setup();
  h.apply(svc('ns/web', '10.96.0.10'));
  h.apply(slice('ns/web', ['10.244.1.2']));
  await h.proxier.sync(signal);
  h.apply(slice('ns/web', ['10.244.1.3']));
  k.nft.failNext(1, 'Error: Could not process rule: No such file or directory');
  await t.rejects(h.proxier.sync(signal), /No such file/);
  const m = await h.registry.getSingleMetricAsString('kubeproxy_sync_proxy_rules_nftables_sync_failures_total');
  t.match(m, /failures_total 1/);
  await h.proxier.sync(signal);
  t.same(lines(k.nft.last), ['delete element inet podwire endpoints4-tcp { 10.96.0.10 . tcp . 80 . 0 }', 'add element inet podwire endpoints4-tcp { 10.96.0.10 . tcp . 80 . 0 : 10.244.1.3 . 8080 }']);
});

t.test('invalid Services are skipped with a metric; the rest keep working', async (t) => {
  const { k, h } = setup();
  h.apply(svc('ns/bad', '10.96.0.300'));
  h.apply(svc('ns/good', '10.96.0.11'));
  await h.proxier.sync(signal);
  t.match(await h.registry.getSingleMetricAsString('podwire_proxy_invalid_services'), /invalid_services 1/);
  t.match(k.nft.last!, '10.96.0.11 . tcp . 80 : goto reject-chain');
  t.notMatch(k.nft.last!, '10.96.0.300');
  for (const name of ['kubeproxy_sync_proxy_rules_duration_seconds', 'kubeproxy_sync_proxy_rules_last_timestamp_seconds', 'kubeproxy_network_programming_duration_seconds', 'kubeproxy_sync_proxy_rules_endpoint_changes_total', 'kubeproxy_sync_proxy_rules_service_changes_total']) {
    t.ok(h.registry.getSingleMetric(name), name);
  }
});

t.test('restart: adopt the listed table, the first sync changes no element', async (t) => {
  const { k, h } = setup();
  h.apply(svc('ns/web', '10.96.0.10', { type: 'NodePort', ports: [{ port: 80, nodePort: 30080 }] }));
  h.apply(slice('ns/web', ['10.244.1.2', '10.244.1.3']));
  await h.proxier.sync(signal);
  // What `nft -j list table inet podwire` would print for that state.
  const applied = (name: string): Map<string, string> => h.proxier.ruleset.appliedOf(name);
  const elem = (k0: string, v: string): unknown => {
    const parse = (x: string): unknown => {
      const parts = x.split(' . ').map((p) => (/^\d+$/.test(p) ? Number(p) : p.startsWith('goto ') ? { goto: { target: p.slice(5) } } : p));
      return parts.length === 1 ? parts[0] : { concat: parts };
    };
    return v === '' ? parse(k0) : [parse(k0), parse(v)];
  };
  const nftables: unknown[] = [{ table: { family: 'inet', name: 'podwire' } }];
  for (const [name, d] of h.proxier.ruleset.appliedObjects) {
    if (d?.kind === 'chain') nftables.push({ chain: { family: 'inet', table: 'podwire', name } });
    else nftables.push({ [d?.keyword ?? 'set']: { family: 'inet', table: 'podwire', name, elem: [...applied(name)].map(([kk, v]) => elem(kk, v)) } });
  }
  const k2 = fakeKernel();
  // The restarted daemon's kernel holds what the first one applied.
  for (const script of k.nft.scripts) await k2.nft.apply(script);
  k2.nft.scripts.length = 0;
  k2.nft.listJsonValue = { nftables };
  const h2 = proxierHarness(k2, new FakeClock());
  h2.apply(svc('ns/web', '10.96.0.10', { type: 'NodePort', ports: [{ port: 80, nodePort: 30080 }] }));
  h2.apply(slice('ns/web', ['10.244.1.2', '10.244.1.3']));
  await h2.proxier.reconcileOnStart(signal);
  await h2.proxier.sync(signal);
  t.equal(k2.nft.scripts.length, 1);
  t.notMatch(k2.nft.last!, /element/, 'no element added or deleted');
  t.notMatch(k2.nft.last!, /add table|delete table/, 'the table is not rebuilt');
  t.equal(h2.proxier.lastSync?.elementChanges, 0);
  t.same(parseTable({ nftables: [] }, 'podwire', () => false).objects.size, 0);
});

t.test('/healthz freshness', async (t) => {
  const { h, clock } = setup({ syncPeriod: 1000 });
  t.equal(h.proxier.health.body().status, 503, 'unhealthy before the first sync');
  h.apply(svc('ns/a', '10.96.0.5'));
  await h.proxier.sync(signal);
  const b = h.proxier.health.body();
  t.equal(b.status, 200);
  t.same(Object.keys(JSON.parse(b.body)), ['lastUpdated', 'currentTime', 'nodeEligible']);
  h.apply(svc('ns/b', '10.96.0.6'));
  clock.advance(2500);
  t.equal(h.proxier.health.body().status, 503, 'a change waiting longer than 2 × syncPeriod');
  await h.proxier.sync(signal);
  t.equal(h.proxier.health.body().status, 200);
});

t.test('no Service at all: no table yet; the first Service creates it; cleanup removes it', async (t) => {
  const { k, h } = setup();
  await h.proxier.sync(signal);
  t.equal(k.nft.scripts.length, 0, 'nothing programmed without Services');
  t.equal(h.proxier.health.body().status, 200, 'healthy: nothing to program');
  h.apply(svc('ns/a', '10.96.0.5'));
  await h.proxier.sync(signal);
  t.match(k.nft.scripts[0]!, /^add table inet podwire/);
  await h.proxier.cleanup(signal);
  t.equal(k.nft.last, 'add table inet podwire\ndelete table inet podwire\n');
});

t.test('registration: feature proxy, section and intervals; only nftables is accepted', async (t) => {
  const { proxyRegistration, buildProxySection } = await import('./index');
  const reg = proxyRegistration();
  t.equal(reg.feature, 'proxy');
  t.equal(reg.section?.name, 'proxy');
  const s = buildProxySection({ minSyncPeriod: 0, syncPeriod: 30_000 }, { proxyMode: 'nftables', clusterCIDR: '10.244.0.0/16', serviceCIDR: '10.96.0.0/12' });
  t.same(reg.intervals?.(s, {} as never), { minIntervalMs: 0, maxIntervalMs: 30_000 });
  t.same(s.clusterCIDRs, ['10.244.0.0/16']);
  t.throws(() => buildProxySection({ mode: 'bogus' }, { proxyMode: 'nftables', clusterCIDR: '', serviceCIDR: '' }), /proxy.mode/);
  t.throws(() => buildProxySection({ nodePortAddresses: ['nope'] }, { proxyMode: 'nftables', clusterCIDR: '', serviceCIDR: '' }), /nodePortAddresses/);
});

t.test('start-up notices a foreign FORWARD drop policy (Docker) and says so', async (t) => {
  const { k, h } = setup();
  k.nft.list = async () => 'table ip filter {\n\tchain FORWARD {\n\t\ttype filter hook forward priority filter; policy drop;\n\t}\n}\ntable inet podwire {\n\tchain filter-forward {\n\t\ttype filter hook forward priority -110; policy accept;\n\t}\n}\n';
  await h.proxier.reconcileOnStart(signal);
  t.same(h.proxier.foreignForwardDrop, ['nft ip filter FORWARD']);
  t.match(await h.registry.getSingleMetricAsString('podwire_proxy_foreign_forward_drop'), /drop 1/);
  t.same(h.proxier.status().foreignForwardDrop, ['nft ip filter FORWARD']);
});

t.test('our Node: only a podCIDR change recomputes everything', async (t) => {
  const { nodeObject } = await import('../daemon/testing/fake-source');
  const { h } = setup();
  h.apply(svc('ns/a', '10.96.0.5'));
  await h.proxier.sync(signal);
  t.equal(h.apply(nodeObject('node-a', ['10.244.1.0/24'])), true, 'first sight of our podCIDRs');
  t.equal(h.apply({ ...nodeObject('node-a', ['10.244.1.0/24']), unschedulable: true }), false, 'a status-only update is ignored');
  t.equal(h.apply(nodeObject('node-b', ['10.244.2.0/24'])), false, 'another node is ignored');
});
