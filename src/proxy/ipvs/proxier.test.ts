import t from 'tap';
import { Registry } from 'prom-client';
import pino from 'pino';
import { Cidr } from '../../common/ip';
import { silentLogger } from '../../common/log';
import { fakeKernel, FakeIpset, FakeIpvs, type FakeKernel } from '../../kernel/testing';
import { FakeClock } from '../../daemon/testing/fake-clock';
import { buildProxySection } from '../config';
import { MemoryState, slice, svc, testConfig } from '../testing';
import type { ClusterKind, ClusterObject } from '../../k8s/types';
import { IpvsProxier, VIP_DEVICE, type ModuleProbe } from './proxier';
import { renderRules, missingJumps, renderCleanup, CHAINS } from './rules';
import { SETS, sourceRangeMembers } from './render';
import { removeIpvsLeftovers } from './leftovers';
import type { TracePacket } from '../../kernel/testing/fake-iptables';

const signal = new AbortController().signal;
const NODE_IP = '198.18.0.2';

interface H {
  k: FakeKernel;
  ipvs: FakeIpvs;
  ipset: FakeIpset;
  clock: FakeClock;
  state: MemoryState;
  p: IpvsProxier;
  registry: Registry;
  apply(...o: ClusterObject[]): Promise<void>;
  remove(kind: ClusterKind, key: string): Promise<void>;
}

async function world(): Promise<{ k: FakeKernel; ipvs: FakeIpvs; ipset: FakeIpset; clock: FakeClock; state: MemoryState }> {
  const k = fakeKernel();
  await k.net.createLink({ kind: 'bridge', name: 'eth0' });
  await k.net.addAddress('eth0', Cidr.parse(`${NODE_IP}/24`));
  return { k, ipvs: new FakeIpvs(), ipset: new FakeIpset(), clock: new FakeClock(), state: new MemoryState() };
}

async function harness(w: Awaited<ReturnType<typeof world>>, section: Record<string, unknown> = {}, probe: ModuleProbe = async () => 'loaded'): Promise<H> {
  const config = testConfig({ proxyMode: 'ipvs' });
  const registry = new Registry();
  const p = new IpvsProxier(
    { config, section: buildProxySection({ healthzBindAddress: '', mode: 'ipvs', ...section }, config), state: w.state, node: { patchAnnotations: async () => undefined, setCondition: async () => undefined, writesBack: false }, kernel: w.k, logger: silentLogger, clock: w.clock, metrics: registry },
    { ipvs: w.ipvs, ipset: w.ipset, probe },
  );
  await p.reconcileOnStart(signal);
  return {
    ...w,
    p,
    registry,
    apply: async (...objs) => {
      for (const o of objs) p.handleEvent(w.state.apply(o));
      await p.sync(signal);
    },
    remove: async (kind, key) => {
      const ev = w.state.remove(kind, key);
      if (ev) p.handleEvent(ev);
      await p.sync(signal);
    },
  };
}

/** The kernel's IPVS table as `proto addr:port sched [persistent T] -> ip:port weight ...` lines, sorted. */
async function table(ipvs: FakeIpvs): Promise<string[]> {
  const out: string[] = [];
  for (const s of await ipvs.listServices()) {
    const dests = (await ipvs.listDests(s)).map((d) => `${d.address}:${d.port}w${d.weight}`).sort();
    out.push(`${s.protocol} ${s.address}:${s.port} ${s.scheduler}${s.persistent ? ` persistent ${s.timeout}` : ''} -> ${dests.join(' ')}`);
  }
  return out.sort();
}

const members = (ipset: FakeIpset, name: string): string[] => [...(ipset.sets.get(name)?.members ?? [])].sort();
const eps = (ips: string[]) => ips.map((ip) => ({ ip, node: 'node-a' }));

t.test('golden desired state: ClusterIP, NodePort per node address, external IP, LB IP, affinity, eTP Local, no endpoints', async (t) => {
  const h = await harness(await world());
  await h.apply(
    svc('ns/web', '10.96.0.10', { type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }], externalIPs: ['198.18.5.5'] }),
    slice('ns/web', eps(['10.244.1.2', '10.244.1.3', '10.244.1.4']), [{ name: 'http', port: 8080 }]),
    svc('ns/sticky', '10.96.0.11', { sessionAffinity: 'ClientIP', affinityTimeout: 600 }),
    slice('ns/sticky', eps(['10.244.1.2'])),
    svc('ns/lb', '10.96.0.12', { type: 'LoadBalancer', loadBalancerIPs: ['198.18.9.9'], externalTrafficPolicy: 'Local', ports: [{ port: 443, nodePort: 30443, protocol: 'TCP' }] }),
    slice('ns/lb', [{ ip: '10.244.1.5', node: 'node-a' }, { ip: '10.244.2.5', node: 'node-b' }]),
    svc('ns/dns', '10.96.0.53', { ports: [{ port: 53, protocol: 'UDP' }] }),
    svc('ns/empty', '10.96.0.20'),
  );
  t.same(await table(h.ipvs), [
    'tcp 10.96.0.10:80 rr -> 10.244.1.2:8080w1 10.244.1.3:8080w1 10.244.1.4:8080w1',
    'tcp 10.96.0.11:80 rr persistent 600 -> 10.244.1.2:8080w1',
    'tcp 10.96.0.12:443 rr -> 10.244.1.5:8080w1 10.244.2.5:8080w1',
    'tcp 10.96.0.20:80 rr -> ',
    'tcp 198.18.0.2:30080 rr -> 10.244.1.2:8080w1 10.244.1.3:8080w1 10.244.1.4:8080w1',
    'tcp 198.18.0.2:30443 rr -> 10.244.1.5:8080w1',
    'tcp 198.18.5.5:80 rr -> 10.244.1.2:8080w1 10.244.1.3:8080w1 10.244.1.4:8080w1',
    'tcp 198.18.9.9:443 rr -> 10.244.1.5:8080w1',
    'udp 10.96.0.53:53 rr -> ',
  ], 'one virtual server per (VIP | node address, port, protocol); eTP Local uses local endpoints only outside the ClusterIP');
  t.same(members(h.ipset, SETS.clusterIP), ['10.96.0.10,tcp:80', '10.96.0.11,tcp:80', '10.96.0.12,tcp:443', '10.96.0.20,tcp:80', '10.96.0.53,udp:53']);
  t.same(members(h.ipset, SETS.nodePortTCP), ['30080', '30443']);
  t.same(members(h.ipset, SETS.nodePortLocalTCP), ['30443']);
  t.same(members(h.ipset, SETS.externalIP), ['198.18.5.5,tcp:80']);
  t.same(members(h.ipset, SETS.loadBalancer), ['198.18.9.9,tcp:443']);
  t.same(members(h.ipset, SETS.loadBalancerLocal), ['198.18.9.9,tcp:443']);
  t.same(members(h.ipset, SETS.noEndpoint), ['10.96.0.20,tcp:80', '10.96.0.53,udp:53'], 'Services without endpoints are rejected');
  t.same(members(h.ipset, SETS.loopBack), ['10.244.1.2,tcp:8080,10.244.1.2', '10.244.1.3,tcp:8080,10.244.1.3', '10.244.1.4,tcp:8080,10.244.1.4', '10.244.1.5,tcp:8080,10.244.1.5'], 'only local endpoints, once each');
  const vips = (await h.k.net.listAddresses(VIP_DEVICE)).map((a) => a.cidr.toString()).sort();
  t.same(vips, ['10.96.0.10/32', '10.96.0.11/32', '10.96.0.12/32', '10.96.0.20/32', '10.96.0.53/32', '198.18.5.5/32', '198.18.9.9/32'], `VIPs bound on ${VIP_DEVICE}`);
  t.equal((await h.k.net.getLink(VIP_DEVICE))?.kind, 'bridge', 'the VIP device is a port-less bridge (no dummy driver needed)');
  for (const [key, v] of [['net.ipv4.vs.conntrack', '1'], ['net.ipv4.vs.conn_reuse_mode', '0'], ['net.ipv4.vs.expire_nodest_conn', '1'], ['net.ipv4.vs.expire_quiescent_template', '1'], ['net.ipv4.conf.all.arp_ignore', '1'], ['net.ipv4.conf.all.arp_announce', '2']] as const) t.equal(await h.k.sysctl.read(key), v, key);
  const nat = await h.k.iptables(4).save('nat');
  t.match(nat, /-A PREROUTING -j PODWIRE-IPVS-SERVICES/);
  t.match(nat, /-A PODWIRE-IPVS-SERVICES ! -s 10\.244\.0\.0\/16 -m set --match-set PODWIRE-CLUSTER-IP dst,dst/);
  t.match(await h.k.iptables(4).save('filter'), /-A PODWIRE-IPVS-INPUT -p tcp -m set --match-set PODWIRE-NO-ENDPOINT dst,dst .*-j REJECT --reject-with tcp-reset/);
  const st = h.p.status();
  t.match(st, { mode: 'ipvs', virtualServers: 9, realServers: 14, vips: 7, scheduler: 'rr' });
  const metrics = await h.registry.metrics();
  t.match(metrics, /podwire_proxy_ipvs_virtual_servers 9/);
  t.match(metrics, /podwire_proxy_ipvs_real_servers 14/);
});

t.test('scheduler is configurable and validated', async (t) => {
  const h = await harness(await world(), { ipvsScheduler: 'wlc' });
  await h.apply(svc('ns/a', '10.96.0.5'), slice('ns/a', eps(['10.244.1.2'])));
  t.same(await table(h.ipvs), ['tcp 10.96.0.5:80 wlc -> 10.244.1.2:8080w1']);
  t.throws(() => buildProxySection({ ipvsScheduler: 'fastest' }, testConfig()), /proxy\.ipvsScheduler.*fastest/);
});

t.test('one endpoint change is one real-server change, no set or VIP work', async (t) => {
  const h = await harness(await world());
  await h.apply(svc('ns/a', '10.96.0.5'), slice('ns/a', eps(['10.244.1.2', '10.244.1.3'])));
  const before = h.ipvs.calls.length;
  const restores = h.ipset.restores.length;
  await h.apply(slice('ns/a', eps(['10.244.1.2', '10.244.1.3', '10.244.1.4'])));
  t.same(h.ipvs.calls.slice(before).map((c) => `${c.op} ${c.entry.kind}`), ['add dest'], 'only the new real server');
  t.equal(h.ipset.restores.length, restores + 1, 'one ipset restore (the hairpin member of the new local endpoint)');
  t.same(h.ipset.restores.at(-1)?.trim(), 'add PODWIRE-LOOP-BACK 10.244.1.4,tcp:8080,10.244.1.4 -exist');
  t.same(h.p.lastSync && { ipvs: h.p.lastSync.ipvsChanges, vips: h.p.lastSync.vipChanges }, { ipvs: 1, vips: 0 });
});

t.test('graceful termination: weight 0 while connections last, deleted when the dump shows none', async (t) => {
  const h = await harness(await world());
  await h.apply(svc('ns/a', '10.96.0.5'), slice('ns/a', eps(['10.244.1.2', '10.244.1.3'])));
  const key = { family: 4 as const, protocol: 'tcp' as const, address: '10.96.0.5', port: 80 };
  h.ipvs.setConns(key, '10.244.1.3', 8080, 2, 1);
  // the endpoint turns terminating (no longer ready), then disappears
  await h.apply(slice('ns/a', [{ ip: '10.244.1.2', node: 'node-a' }, { ip: '10.244.1.3', node: 'node-a', ready: false, serving: true, terminating: true }]));
  t.same(await table(h.ipvs), ['tcp 10.96.0.5:80 rr -> 10.244.1.2:8080w1 10.244.1.3:8080w0'], 'terminating endpoint quiesced (weight 0)');
  t.same(h.p.status().drainingRealServers, 1);
  await h.apply(slice('ns/a', eps(['10.244.1.2'])));
  t.same(await table(h.ipvs), ['tcp 10.96.0.5:80 rr -> 10.244.1.2:8080w1 10.244.1.3:8080w0'], 'kept while it has connections');
  h.ipvs.setConns(key, '10.244.1.3', 8080, 0, 1);
  await h.p.sync(signal);
  t.same(await table(h.ipvs), ['tcp 10.96.0.5:80 rr -> 10.244.1.2:8080w1 10.244.1.3:8080w0'], 'an inactive connection still counts');
  h.ipvs.setConns(key, '10.244.1.3', 8080, 0, 0);
  await h.p.sync(signal);
  t.same(await table(h.ipvs), ['tcp 10.96.0.5:80 rr -> 10.244.1.2:8080w1'], 'deleted once no connection is left');
  t.same(h.p.status().drainingRealServers, 0);
  // coming back while draining restores the weight
  await h.apply(slice('ns/a', eps(['10.244.1.2', '10.244.1.3'])));
  h.ipvs.setConns(key, '10.244.1.3', 8080, 1, 0);
  await h.apply(slice('ns/a', eps(['10.244.1.2'])));
  await h.apply(slice('ns/a', eps(['10.244.1.2', '10.244.1.3'])));
  t.same(await table(h.ipvs), ['tcp 10.96.0.5:80 rr -> 10.244.1.2:8080w1 10.244.1.3:8080w1'], 'a draining server that is wanted again gets its weight back');
  t.same(h.p.status().drainingRealServers, 0);
});

t.test('a sync that changed Services sends one IPVS batch: the drain check is left to the timer and the syncs without changes', async (t) => {
  const h = await harness(await world());
  await h.apply(svc('ns/a', '10.96.0.5'), slice('ns/a', eps(['10.244.1.2', '10.244.1.3'])), svc('ns/b', '10.96.0.6'), slice('ns/b', eps(['10.244.2.2', '10.244.2.3'])));
  h.ipvs.setConns({ family: 4, protocol: 'tcp', address: '10.96.0.5', port: 80 }, '10.244.1.3', 8080, 1);
  await h.apply(slice('ns/a', eps(['10.244.1.2'])));
  t.same(h.p.status().drainingRealServers, 1, 'ns/a drains one real server');
  const dumps: string[] = [];
  const list = h.ipvs.listDests.bind(h.ipvs);
  h.ipvs.listDests = async (s) => {
    dumps.push(s.address ?? 'fwmark');
    return list(s);
  };
  const batches: string[][] = [];
  const apply = h.ipvs.apply.bind(h.ipvs);
  h.ipvs.apply = async (changes) => {
    batches.push(changes.map((c) => `${c.op} ${c.entry.kind}${c.entry.kind === 'dest' ? ` ${c.entry.dest.address} w${c.entry.dest.weight}` : ''}`));
    return apply(changes);
  };
  await h.apply(slice('ns/b', eps(['10.244.2.4', '10.244.2.2'])));
  t.same(dumps, [], 'an endpoint change dumps nothing (not the draining ns/a either)');
  t.same(batches, [['add dest 10.244.2.4 w1', 'replace dest 10.244.2.3 w0']], 'one batch: the new real server, the removed one quiesced');
  t.same(h.p.status().drainingRealServers, 2);
  h.ipvs.setConns({ family: 4, protocol: 'tcp', address: '10.96.0.5', port: 80 }, '10.244.1.3', 8080, 0);
  batches.length = 0;
  await h.p.sync(signal);
  t.same(dumps.sort(), ['10.96.0.5', '10.96.0.6'], 'a sync without changes checks every draining virtual server');
  t.same(batches, [['delete dest 10.244.1.3 w0', 'delete dest 10.244.2.3 w0']], 'and deletes the ones without connections in one batch');
  t.same(await table(h.ipvs), ['tcp 10.96.0.5:80 rr -> 10.244.1.2:8080w1', 'tcp 10.96.0.6:80 rr -> 10.244.2.2:8080w1 10.244.2.4:8080w1']);
  t.same(h.p.status().drainingRealServers, 0);
  const metrics = await h.registry.metrics();
  t.match(metrics, /podwire_proxy_ipvs_virtual_servers 2/, 'gauges counted at scrape time');
  t.match(metrics, /podwire_proxy_ipvs_real_servers 3/);
});

t.test('UDP: a removed real server goes at once and its conntrack entries are flushed', async (t) => {
  const h = await harness(await world());
  await h.apply(svc('ns/dns', '10.96.0.53', { ports: [{ port: 53, protocol: 'UDP' }] }), slice('ns/dns', eps(['10.244.1.2', '10.244.1.3']), [{ port: 5353, protocol: 'UDP' }]));
  h.k.conntrack.deletes.length = 0;
  await h.apply(slice('ns/dns', eps(['10.244.1.2']), [{ port: 5353, protocol: 'UDP' }]));
  t.same(await table(h.ipvs), ['udp 10.96.0.53:53 rr -> 10.244.1.2:5353w1']);
  t.same(h.k.conntrack.deletes, [{ family: 4, protocol: 'udp', dst: '10.96.0.53', dstPort: 53, replySrc: '10.244.1.3' }], 'the shared staleUdp rule');
});

t.test('adoption: a restarted proxier makes no change for what is there and removes what is stale', async (t) => {
  const w = await world();
  const h1 = await harness(w);
  await h1.apply(svc('ns/a', '10.96.0.5', { type: 'NodePort', ports: [{ port: 80, nodePort: 30080 }] }), slice('ns/a', eps(['10.244.1.2', '10.244.1.3'])), svc('ns/gone', '10.96.0.6'), slice('ns/gone', eps(['10.244.1.9'])));
  await h1.p.close();
  const snapshot = await table(w.ipvs);
  // ns/gone was deleted while no proxier ran
  w.state.remove('Service', 'ns/gone');
  w.state.remove('EndpointSlice', 'ns/gone-abc');
  // a virtual server that is not ours (not on our VIPs or node addresses) stays
  await w.ipvs.apply([{ op: 'add', entry: { kind: 'service', service: { family: 4, protocol: 'tcp', address: '192.0.2.1', port: 1, scheduler: 'rr' } } }]);
  const h2 = await harness(w);
  const calls = w.ipvs.calls.length;
  const vipCalls = w.k.net.calls.length;
  await h2.p.sync(signal);
  t.same(w.ipvs.calls.slice(calls).map((c) => `${c.op} ${c.entry.kind} ${c.entry.service.address}`), ['delete service 10.96.0.6'], 'only the stale virtual server is deleted');
  t.same(w.k.net.calls.slice(vipCalls).filter((c) => /Address/.test(c.method)).map((c) => `${c.method} ${String(c.args[1])}`), ['deleteAddress 10.96.0.6/32'], 'only the stale VIP is unbound');
  t.same(await table(w.ipvs), [...snapshot.filter((l) => !l.includes('10.96.0.6')), 'tcp 192.0.2.1:1 rr -> '].sort());
  t.notOk(members(w.ipset, SETS.clusterIP).includes('10.96.0.6,tcp:80'), 'stale ipset member removed');
  t.ok(members(w.ipset, SETS.clusterIP).includes('10.96.0.5,tcp:80'));
});

t.test('a draining real server found at start-up keeps draining', async (t) => {
  const w = await world();
  const h1 = await harness(w);
  await h1.apply(svc('ns/a', '10.96.0.5'), slice('ns/a', eps(['10.244.1.2', '10.244.1.3'])));
  const key = { family: 4 as const, protocol: 'tcp' as const, address: '10.96.0.5', port: 80 };
  w.ipvs.setConns(key, '10.244.1.3', 8080, 1);
  await h1.apply(slice('ns/a', eps(['10.244.1.2'])));
  await h1.p.close();
  const h2 = await harness(w);
  await h2.p.sync(signal);
  t.same(await table(w.ipvs), ['tcp 10.96.0.5:80 rr -> 10.244.1.2:8080w1 10.244.1.3:8080w0']);
  w.ipvs.setConns(key, '10.244.1.3', 8080, 0);
  await h2.p.sync(signal);
  t.same(await table(w.ipvs), ['tcp 10.96.0.5:80 rr -> 10.244.1.2:8080w1']);
});

t.test('a failed IPVS batch is retried after re-reading the kernel', async (t) => {
  const h = await harness(await world());
  await h.apply(svc('ns/a', '10.96.0.5'), slice('ns/a', eps(['10.244.1.2'])));
  // someone deleted our virtual server behind our back: adding a dest fails with ESRCH
  await h.ipvs.apply([{ op: 'delete', entry: { kind: 'service', service: { family: 4, protocol: 'tcp', address: '10.96.0.5', port: 80, scheduler: 'rr' } } }]);
  await h.apply(slice('ns/a', eps(['10.244.1.2', '10.244.1.3'])));
  await h.p.sync(signal);
  t.same(await table(h.ipvs), ['tcp 10.96.0.5:80 rr -> 10.244.1.2:8080w1 10.244.1.3:8080w1'], 'recreated');
});

t.test('a VIP that failed to bind is retried at the next sync (as failed ipset and IPVS changes are)', async (t) => {
  const h = await harness(await world());
  await h.apply(svc('ns/a', '10.96.0.5'), slice('ns/a', eps(['10.244.1.2'])));
  const bind = h.k.net.applyLinkConfig.bind(h.k.net);
  h.k.net.applyLinkConfig = async (steps) => ({ applied: 0, failed: steps.map((step, index) => ({ index, change: { op: 'add' as const, entry: step }, errno: 12, message: 'ENOMEM' })) });
  await h.apply(svc('ns/b', '10.96.0.6'), slice('ns/b', eps(['10.244.1.3'])));
  t.notOk(h.p.appliedVips.has('10.96.0.6'), 'the bind failed');
  t.match(await h.registry.getSingleMetricAsString('kubeproxy_sync_proxy_rules_nftables_sync_failures_total'), / 1$/m, 'counted as a failed sync');
  h.k.net.applyLinkConfig = bind;
  await h.p.sync(signal); // no event, no syncPeriod elapsed: only the retry binds it
  t.ok(h.p.appliedVips.has('10.96.0.6'), 'bound by the retry');
  t.ok((await h.k.net.listAddresses(VIP_DEVICE, 4)).some((a) => a.cidr.ip.toString() === '10.96.0.6'), 'on the VIP device');
});

t.test('the periodic full sync repairs a virtual server and a real server deleted behind our back, also while events keep coming', async (t) => {
  const h = await harness(await world(), { syncPeriod: 1000 });
  await h.apply(svc('ns/a', '10.96.0.5'), slice('ns/a', eps(['10.244.1.2', '10.244.1.3'])), svc('ns/b', '10.96.0.6'), slice('ns/b', eps(['10.244.1.4'])));
  const want = await table(h.ipvs);
  const vs = (address: string) => ({ family: 4 as const, protocol: 'tcp' as const, address, port: 80, scheduler: 'rr' });
  await h.ipvs.apply([{ op: 'delete', entry: { kind: 'service', service: vs('10.96.0.6') } }]);
  await h.ipvs.apply([{ op: 'delete', entry: { kind: 'dest', service: vs('10.96.0.5'), dest: { address: '10.244.1.3', port: 8080, weight: 1 } } }]);
  t.not((await table(h.ipvs)).join('|'), want.join('|'), 'broken behind our back');
  // Events keep coming (an unrelated Service changes at every sync): the read-back still happens once syncPeriod has passed.
  for (let i = 0; i < 3; i++) {
    h.clock.advance(400);
    await h.apply(svc('ns/c', '10.96.0.7', { ports: [{ port: 80 + i }] }));
  }
  t.same((await table(h.ipvs)).filter((l) => !l.includes('10.96.0.7')), want, 'both repaired');
});

t.test('a read-back that takes longer than syncPeriod does not make every sync a full one: the next waits READBACK_SHARE times its duration', async (t) => {
  const h = await harness(await world(), { syncPeriod: 1000 });
  await h.apply(svc('ns/a', '10.96.0.5'), slice('ns/a', eps(['10.244.1.2'])));
  // Reading the kernel back takes 3 s (3 × syncPeriod), as ~30 s at 10,000 Services in the TCG bench guest.
  let dumps = 0;
  const list = h.ipvs.listServices.bind(h.ipvs);
  h.ipvs.listServices = async () => {
    dumps++;
    h.clock.advance(3000);
    return list();
  };
  h.clock.advance(1000);
  await h.apply(slice('ns/a', eps(['10.244.1.3'])));
  t.equal(dumps, 1, 'syncPeriod after the first sync: read back');
  t.same(h.p.lastSync?.readBack, { ms: 3000, nextInMs: 60_000 }, 'it took 3 s; the next one 20 × that after its start');
  for (let i = 0; i < 5; i++) {
    h.clock.advance(1000);
    await h.apply(slice('ns/a', eps([`10.244.1.${4 + i}`])));
  }
  t.equal(dumps, 1, 'the endpoint changes after it diff in memory (no read-back each, although syncPeriod passed)');
  t.equal(h.p.lastSync?.services, 1, 'each sync renders the one changed Service');
  t.notOk(h.p.lastSync?.readBack);
  h.clock.advance(60_000);
  await h.apply(slice('ns/a', eps(['10.244.1.20'])));
  t.equal(dumps, 2, 'read back again once 20 × its duration passed');
  t.match((await table(h.ipvs)).join('|'), /10\.244\.1\.20:8080w1/, 'and the change applied');
});

t.test('NodePorts on loopback: none, as kube-proxy\'s ipvs mode; a nodePortAddresses CIDR holding 127.0.0.1 is warned about', async (t) => {
  const w = await world();
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (l: string) => void lines.push(l) });
  const config = testConfig({ proxyMode: 'ipvs' });
  const p = new IpvsProxier(
    { config, section: buildProxySection({ healthzBindAddress: '', mode: 'ipvs', nodePortAddresses: ['127.0.0.0/8', '198.18.0.0/15'] }, config), state: w.state, node: { patchAnnotations: async () => undefined, setCondition: async () => undefined, writesBack: false }, kernel: w.k, logger, clock: w.clock, metrics: new Registry() },
    { ipvs: w.ipvs, ipset: w.ipset, probe: async () => 'loaded' },
  );
  await w.k.net.addAddress('lo', Cidr.parse('127.0.0.1/8')).catch(() => undefined);
  await p.reconcileOnStart(signal);
  t.ok(lines.some((l) => /NodePorts on loopback addresses are not supported in ipvs mode/.test(l) && l.includes('127.0.0.0/8') && !l.includes('198.18.0.0/15')), 'warned, naming the loopback CIDR only');
  p.handleEvent(w.state.apply(svc('ns/np', '10.96.0.9', { type: 'NodePort', ports: [{ port: 80, nodePort: 30009 }] })));
  p.handleEvent(w.state.apply(slice('ns/np', eps(['10.244.1.2']))));
  await p.sync(signal);
  const vss = (await w.ipvs.listServices()).map((s) => `${s.address}:${s.port}`).sort();
  t.same(vss, ['10.96.0.9:80', `${NODE_IP}:30009`], 'a NodePort virtual server on the node address only, none on 127.0.0.1');
  await p.close();
});

t.test('start-up module check names the missing module and suggests nftables mode', async (t) => {
  const w = await world();
  w.ipvs.unavailable = true;
  await t.rejects(harness(w), /ip_vs.*nftables/s);
  const w2 = await world();
  await t.rejects(harness(w2, { ipvsScheduler: 'mh' }, async (m) => (m === 'ip_vs_mh' ? 'missing' : 'loaded')), /ip_vs_mh.*scheduler "mh".*nftables/s);
  await t.resolves(harness(await world(), {}, async () => 'available'), 'loadable modules are fine (the kernel loads them on first use)');
});

t.test('fixed rules: jumps added once, cleanup removes them', async (t) => {
  const text = renderRules({ clusterCIDRs: ['10.244.0.0/16'], masqueradeAll: false, masqMark: 0x4000 });
  t.match(text, /-A PODWIRE-IPVS-POSTROUTING -m set --match-set PODWIRE-LOOP-BACK dst,dst,src .*-j MASQUERADE/);
  t.match(text, /-A PODWIRE-IPVS-NODE-PORT -p udp -m set --match-set PODWIRE-NODE-PORT-LOCAL-UDP dst .*-j RETURN/);
  const h = await harness(await world());
  await h.apply(svc('ns/a', '10.96.0.5'));
  const ipt = h.k.iptables(4);
  t.same(missingJumps(await ipt.save('nat'), await ipt.save('filter'), await ipt.save('mangle')), [], 'all jumps present');
  await h.p.sync(signal); // a second full setup (after syncPeriod) must not duplicate them
  h.clock.advance(60_000);
  await h.p.sync(signal);
  t.equal((await ipt.save('nat')).split('\n').filter((l) => l.includes(`-j ${CHAINS.services}`) && l.startsWith('-A PREROUTING')).length, 1, 'one jump');
  await h.p.cleanup(signal);
  const nat = await ipt.save('nat');
  t.notMatch(nat, /PODWIRE-IPVS/, 'chains and jumps gone');
  t.notMatch(await ipt.save('filter'), /PODWIRE-IPVS/, 'filter chains and jumps gone');
  t.notMatch(await ipt.save('mangle'), /PODWIRE-IPVS/, 'mangle chain and jump gone');
  t.equal(renderCleanup(nat, await ipt.save('filter'), await ipt.save('mangle')), '', 'nothing left to remove');
  t.same(await h.ipvs.listServices(), []);
  t.notOk(await h.k.net.getLink(VIP_DEVICE));
  t.equal(h.ipset.sets.size, 0, 'ipsets destroyed');
});

t.test('start-up notices a foreign FORWARD drop policy (Docker) in ipvs mode too', async (t) => {
  const w = await world();
  w.k.nft.list = async () => 'table ip filter {\n\tchain FORWARD {\n\t\ttype filter hook forward priority filter; policy drop;\n\t}\n}\n';
  const h = await harness(w);
  t.same(h.p.foreignForwardDrop, ['nft ip filter FORWARD']);
  t.same(h.p.status().foreignForwardDrop, ['nft ip filter FORWARD'], 'podwire status shows it');
});

/** One packet through our rules as the kernel walks them: filter INPUT (arriving) or mangle OUTPUT (from the node). */
function walk(h: H, hook: 'input' | 'output', p: TracePacket & { src: string; dst: string; protocol: 'tcp' | 'udp'; dport: number }): string {
  const ipset = (name: string, dims: string): boolean => h.ipset.test(name, dims, p);
  const [table, chain] = hook === 'input' ? ['filter', 'INPUT'] : ['mangle', 'OUTPUT'];
  return h.k.iptables(4).trace(table, chain, { ...p, ipset }).verdict;
}

t.test('loadBalancerSourceRanges: sets as kube-proxy fills them, traffic from outside the ranges dropped before IPVS', async (t) => {
  const h = await harness(await world());
  await h.apply(
    svc('ns/fw', '10.96.0.30', { type: 'LoadBalancer', loadBalancerIPs: ['198.18.9.1'], loadBalancerSourceRanges: ['203.0.113.0/24', '192.0.2.77/32'], ports: [{ port: 443, nodePort: 30443 }] }),
    slice('ns/fw', eps(['10.244.1.2'])),
    svc('ns/fwnode', '10.96.0.31', { type: 'LoadBalancer', loadBalancerIPs: ['198.18.9.2'], loadBalancerSourceRanges: ['198.18.0.0/24'], ports: [{ port: 80, nodePort: 30081 }] }),
    slice('ns/fwnode', eps(['10.244.1.3'])),
    svc('ns/any', '10.96.0.32', { type: 'LoadBalancer', loadBalancerIPs: ['198.18.9.3'], loadBalancerSourceRanges: ['0.0.0.0/0'], ports: [{ port: 80, nodePort: 30082 }] }),
    slice('ns/any', eps(['10.244.1.4'])),
    svc('ns/open', '10.96.0.33', { type: 'LoadBalancer', loadBalancerIPs: ['198.18.9.4'], ports: [{ port: 80, nodePort: 30083 }] }),
    slice('ns/open', eps(['10.244.1.5'])),
  );
  t.same(members(h.ipset, SETS.loadBalancerFW), ['198.18.9.1,tcp:443', '198.18.9.2,tcp:80', '198.18.9.3,tcp:80'], 'LB IP:port of each Service with source ranges, not the open one');
  t.same(members(h.ipset, SETS.loadBalancerSourceCIDR), ['198.18.9.1,tcp:443,192.0.2.77', '198.18.9.1,tcp:443,203.0.113.0/24', '198.18.9.2,tcp:80,198.18.0.0/24', '198.18.9.3,tcp:80,0.0.0.0/1', '198.18.9.3,tcp:80,128.0.0.0/1'], 'as ipset save prints them: /32 without suffix, 0.0.0.0/0 as two /1s');
  t.same(members(h.ipset, SETS.loadBalancerSourceIP), ['198.18.9.2,tcp:80,198.18.9.2', '198.18.9.3,tcp:80,198.18.9.3'], 'the node itself is let in where a range holds a node address (0.0.0.0/0 holds every one)');
  t.equal(h.ipset.sets.get(SETS.loadBalancerSourceCIDR)?.create.split(' ')[2], 'hash:ip,port,net');
  const tcp = (src: string, dst: string, dport: number) => ({ src, dst, protocol: 'tcp' as const, dport });
  t.equal(walk(h, 'input', tcp('203.0.113.9', '198.18.9.1', 443)), 'ACCEPT', 'a client inside a range passes (on to IPVS)');
  t.equal(walk(h, 'input', tcp('192.0.2.77', '198.18.9.1', 443)), 'ACCEPT', 'a /32 range');
  t.equal(walk(h, 'input', tcp('192.0.2.78', '198.18.9.1', 443)), 'DROP', 'a client outside every range is dropped');
  t.equal(walk(h, 'input', tcp('198.18.0.9', '198.18.9.2', 80)), 'ACCEPT', 'an underlay client inside 198.18.0.0/24');
  t.equal(walk(h, 'input', tcp('203.0.113.9', '198.18.9.2', 80)), 'DROP', "another Service's range does not count");
  t.equal(walk(h, 'input', tcp('8.8.8.8', '198.18.9.3', 80)), 'ACCEPT', '0.0.0.0/0 lets everyone in');
  t.equal(walk(h, 'input', tcp('8.8.8.8', '198.18.9.4', 80)), 'ACCEPT', 'an LB without source ranges is open');
  t.equal(walk(h, 'input', tcp('192.0.2.78', '10.96.0.30', 443)), 'ACCEPT', 'the ClusterIP of a firewalled Service is not firewalled');
  // From the node: the connection's source is the locally bound LB IP; IPVS rewrites it in LOCAL_OUT, so mangle OUTPUT decides.
  t.equal(walk(h, 'output', tcp('198.18.9.2', '198.18.9.2', 80)), 'ACCEPT', 'the node reaches an LB whose ranges hold its address');
  t.equal(walk(h, 'output', tcp('198.18.9.1', '198.18.9.1', 443)), 'DROP', 'and not one whose ranges do not');
  t.equal(walk(h, 'output', tcp('198.18.9.4', '198.18.9.4', 80)), 'ACCEPT', 'an open LB from the node');
  // The ranges change: the members follow, one ipset restore.
  await h.apply(svc('ns/fw', '10.96.0.30', { type: 'LoadBalancer', loadBalancerIPs: ['198.18.9.1'], loadBalancerSourceRanges: ['192.0.2.0/24'], ports: [{ port: 443, nodePort: 30443 }], rv: '2' }));
  t.equal(walk(h, 'input', tcp('192.0.2.78', '198.18.9.1', 443)), 'ACCEPT', 'the new range lets the client in');
  t.equal(walk(h, 'input', tcp('203.0.113.9', '198.18.9.1', 443)), 'DROP', 'the old one no longer does');
  await h.apply(svc('ns/fw', '10.96.0.30', { type: 'LoadBalancer', loadBalancerIPs: ['198.18.9.1'], ports: [{ port: 443, nodePort: 30443 }], rv: '3' }));
  t.notOk(members(h.ipset, SETS.loadBalancerFW).includes('198.18.9.1,tcp:443'), 'ranges removed: the LB is no longer firewalled');
  t.equal(walk(h, 'input', tcp('203.0.113.9', '198.18.9.1', 443)), 'ACCEPT');
  t.same(sourceRangeMembers('10.1.2.3/8'), ['10.0.0.0/8'], 'host bits cleared');
  t.same(sourceRangeMembers('2001:db8::/32'), [], 'IPv6 ranges are not for the IPv4 sets');
});

t.test('VIP filter: a VIP answers only on its Services ports (kube-proxy KUBE-IPVS-FILTER)', async (t) => {
  const h = await harness(await world());
  await h.apply(
    svc('ns/web', '10.96.0.10', { externalIPs: ['198.18.5.5'] }),
    slice('ns/web', eps(['10.244.1.2'])),
    svc('ns/lb', '10.96.0.12', { type: 'LoadBalancer', loadBalancerIPs: ['198.18.9.9'], externalTrafficPolicy: 'Local', healthCheckNodePort: 32000, ports: [{ port: 443, nodePort: 30443 }] }),
    slice('ns/lb', eps(['10.244.1.5'])),
  );
  t.same(members(h.ipset, SETS.ipvsIPs), ['10.96.0.10', '10.96.0.12', '198.18.5.5', '198.18.9.9'], 'every bound VIP');
  t.same(members(h.ipset, SETS.healthCheckNodePort), ['32000']);
  const pkt = (dst: string, dport: number, ctstate = 'NEW', protocol: 'tcp' | 'udp' = 'tcp') => ({ src: '198.18.0.50', dst, protocol, dport, ctstate });
  t.equal(walk(h, 'input', pkt('10.96.0.10', 22)), 'REJECT', 'sshd is not reachable through a ClusterIP');
  t.equal(walk(h, 'input', pkt('10.96.0.10', 80, 'NEW', 'udp')), 'REJECT', 'nor the Service port with another protocol');
  t.equal(walk(h, 'input', pkt('198.18.5.5', 10250)), 'REJECT', 'nor the kubelet through an external IP');
  t.equal(walk(h, 'input', pkt('198.18.9.9', 22)), 'REJECT', 'nor through an LB IP');
  t.equal(walk(h, 'input', pkt('10.96.0.10', 80)), 'ACCEPT', 'the Service port passes (to IPVS)');
  t.equal(walk(h, 'input', pkt('198.18.5.5', 80)), 'ACCEPT', 'the external IP Service port');
  t.equal(walk(h, 'input', pkt('198.18.9.9', 443)), 'ACCEPT', 'the LB Service port');
  t.equal(walk(h, 'input', pkt('198.18.9.9', 32000)), 'ACCEPT', 'the healthCheckNodePort on the LB IP (cloud LBs probe it there)');
  t.equal(walk(h, 'input', pkt('10.96.0.10', 22, 'ESTABLISHED')), 'ACCEPT', 'only new connections are refused');
  t.equal(walk(h, 'input', pkt(NODE_IP, 22)), 'ACCEPT', 'the node address itself is not filtered');
  await h.remove('Service', 'ns/web');
  t.same(members(h.ipset, SETS.ipvsIPs), ['10.96.0.12', '198.18.9.9'], 'an unbound VIP leaves the set');
  t.equal(walk(h, 'input', pkt('10.96.0.10', 22)), 'ACCEPT', 'an address that is no VIP any more is not filtered');
});

t.test('strict ARP (proxy.ipvsStrictARP, kube-proxy --ipvs-strict-arp): on by default; off leaves the ARP sysctls alone', async (t) => {
  const on = await harness(await world());
  await on.apply(svc('ns/a', '10.96.0.5'));
  t.equal(await on.k.sysctl.read('net.ipv4.conf.all.arp_ignore'), '1');
  t.equal(await on.k.sysctl.read('net.ipv4.conf.all.arp_announce'), '2');
  t.match(on.p.status(), { strictARP: true });
  const w = await world();
  await w.k.sysctl.write('net.ipv4.conf.all.arp_ignore', '0');
  await w.k.sysctl.write('net.ipv4.conf.all.arp_announce', '0');
  const off = await harness(w, { ipvsStrictARP: false });
  await off.apply(svc('ns/a', '10.96.0.5'));
  t.equal(await w.k.sysctl.read('net.ipv4.conf.all.arp_ignore'), '0', 'arp_ignore untouched');
  t.equal(await w.k.sysctl.read('net.ipv4.conf.all.arp_announce'), '0', 'arp_announce untouched');
  t.equal(await w.k.sysctl.read('net.ipv4.vs.conntrack'), '1', 'the IPVS sysctls are still set');
  t.match(off.p.status(), { strictARP: false });
  t.equal(buildProxySection({ ipvsStrictARP: false }, testConfig()).ipvsStrictARP, false);
  t.equal(buildProxySection({}, testConfig()).ipvsStrictARP, true, 'default on');
});

/** What is left of the ipvs mode in a fake world: virtual servers, our chains (all tables), the VIP device, our sets. */
async function ipvsState(w: Awaited<ReturnType<typeof world>>): Promise<{ vs: string[]; chains: string[]; device: boolean; sets: string[] }> {
  const ipt = w.k.iptables(4);
  const chains = ['nat', 'filter', 'mangle'].flatMap((tb) => ipt.chains(tb).filter((c) => c.startsWith('PODWIRE-IPVS')).map((c) => `${tb}:${c}`));
  const jumps = ['nat', 'filter', 'mangle'].flatMap((tb) => ipt.chains(tb).flatMap((c) => ipt.rules(tb, c).filter((r) => /-j PODWIRE-IPVS/.test(r) && !c.startsWith('PODWIRE-IPVS')).map((r) => `${tb}:${c} ${r}`)));
  return { vs: await table(w.ipvs), chains: [...chains, ...jumps].sort(), device: (await w.k.net.getLink(VIP_DEVICE)) !== undefined, sets: [...w.ipset.sets.keys()].sort() };
}

t.test('mode switch: the ipvs mode state is removed (ours only), also on a kernel without IPVS', async (t) => {
  for (const noIpvs of [false, true]) {
    const w = await world();
    const h = await harness(w);
    await h.apply(
      svc('ns/a', '10.96.0.5', { type: 'NodePort', ports: [{ port: 80, nodePort: 30080 }] }),
      slice('ns/a', eps(['10.244.1.2'])),
      svc('ns/s', '10.96.0.6', { type: 'NodePort', ports: [{ port: 90, protocol: 'SCTP', nodePort: 30090 }] }),
      svc('ns/ext', '10.96.0.7', { externalIPs: [NODE_IP], ports: [{ port: 8081 }] }),
    );
    await h.p.close();
    // Not ours: a virtual server on the node address on a port that is no NodePort of ours, one elsewhere, and a foreign ipset.
    const foreign = [
      { family: 4 as const, protocol: 'tcp' as const, address: NODE_IP, port: 8443, scheduler: 'rr' },
      { family: 4 as const, protocol: 'tcp' as const, address: '192.0.2.1', port: 80, scheduler: 'rr' },
    ];
    await w.ipvs.apply(foreign.map((service) => ({ op: 'add' as const, entry: { kind: 'service' as const, service } })));
    await w.ipset.restore('create KUBE-CLUSTER-IP hash:ip,port family inet');
    const before = await ipvsState(w);
    t.ok(before.vs.length === 8 && before.chains.length > 0 && before.device, `ipvs mode state there (${before.vs.length} virtual servers, ${before.chains.length} chains and jumps)`);
    t.ok(before.chains.includes('mangle:OUTPUT -j PODWIRE-IPVS-OUTPUT'), 'the mangle jump too');
    w.ipvs.unavailable = noIpvs;
    const r = await removeIpvsLeftovers(w.k, silentLogger, { ipvs: w.ipvs, ipset: w.ipset });
    w.ipvs.unavailable = false;
    const after = await ipvsState(w);
    const what = noIpvs ? 'kernel without IPVS' : 'kernel with IPVS';
    t.same(after.chains, [], `${what}: chains and jumps gone in nat, filter and mangle`);
    t.equal(after.device, false, `${what}: VIP device (and its addresses) gone`);
    t.same(after.sets, ['KUBE-CLUSTER-IP'], `${what}: our sets destroyed, the foreign one kept`);
    t.match(r, { chains: 18, vipDevice: true, ipvs: !noIpvs, sets: 36 }, 'the IPv4 and IPv6 chains and sets');
    if (noIpvs) t.equal(r.virtualServers, 0, 'no IPVS family: no virtual server was looked for');
    else t.same(after.vs, ['tcp 192.0.2.1:80 rr -> ', `tcp ${NODE_IP}:8443 rr -> `], 'ClusterIP, NodePort (TCP bitmap, SCTP hash), node-address external IP virtual servers gone; the foreign ones stay');
    const again = await removeIpvsLeftovers(w.k, silentLogger, { ipvs: w.ipvs, ipset: w.ipset });
    t.same(again, { virtualServers: 0, chains: 0, sets: 0, vipDevice: false, ipvs: true }, `${what}: a second run finds nothing (and makes no ipset or IPVS call)`);
  }
});

t.test('ipvs mode start removes the nftables and iptables modes\' leftovers', async (t) => {
  const w = await world();
  const applied: string[] = [];
  w.k.nft.list = async (what) => (what === 'table inet podwire' && applied.length === 0 ? 'table inet podwire {\n}\n' : '');
  w.k.nft.apply = async (script) => {
    applied.push(script);
  };
  await w.k.iptables(4).restore('*nat\n:PODWIRE-SERVICES - [0:0]\n-A PREROUTING -m comment --comment "podwire service portals" -j PODWIRE-SERVICES\nCOMMIT\n', { noflush: true });
  const h = await harness(w);
  t.same(applied, ['add table inet podwire\ndelete table inet podwire\n'], 'the nftables mode table deleted');
  t.notOk(w.k.iptables(4).chains('nat').includes('PODWIRE-SERVICES'), 'the iptables mode chain deleted');
  t.notMatch(await w.k.iptables(4).save('nat'), /-j PODWIRE-SERVICES/, 'with its jump');
  await h.apply(svc('ns/a', '10.96.0.5'));
  t.match(await w.k.iptables(4).save('nat'), /-A PREROUTING -j PODWIRE-IPVS-SERVICES/, 'the ipvs mode rules are in place');
});

t.test('an external IP that is a node address is not bound on the VIP device and not VIP-filtered (kube-proxy)', async (t) => {
  const h = await harness(await world());
  await h.apply(svc('ns/ext', '10.96.0.40', { externalIPs: [NODE_IP, '198.18.5.6'] }), slice('ns/ext', eps(['10.244.1.2'])));
  t.ok((await table(h.ipvs)).includes(`tcp ${NODE_IP}:80 rr -> 10.244.1.2:8080w1`), 'the virtual server on the node address exists');
  const bound = (await h.k.net.listAddresses(VIP_DEVICE)).map((a) => a.cidr.ip.toString()).sort();
  t.same(bound, ['10.96.0.40', '198.18.5.6'], 'the node address is not bound again');
  t.same(members(h.ipset, SETS.ipvsIPs), ['10.96.0.40', '198.18.5.6']);
  t.equal(walk(h, 'input', { src: '198.18.0.50', dst: NODE_IP, protocol: 'tcp', dport: 22 }), 'ACCEPT', 'sshd on the node address stays reachable');
  t.equal(walk(h, 'input', { src: '198.18.0.50', dst: '198.18.5.6', protocol: 'tcp', dport: 22 }), 'REJECT', 'the other external IP is a VIP');
});
