// Topology hints in the iptables and ipvs modes: they follow our Node's zone label, and a change of
// that label re-renders every Service (as nftables mode does, in topology.test.ts). And, in every
// mode (the shared pipeline), a label change that arrives while a sync is in flight is not lost.
import t, { type Test } from 'tap';
import { Cidr } from '../common/ip';
import { fakeKernel, FakeIpset, FakeIpvs } from '../kernel/testing';
import type { ClusterObject, EndpointSliceObject } from '../k8s/types';
import { ZONE_LABEL } from './model';
import { MemoryState, proxyContext, slice, svc, testConfig } from './testing';
import { IptablesProxier } from './iptables/proxier';
import { IpvsProxier } from './ipvs/proxier';
import { NftProxier } from './proxier';

const signal = new AbortController().signal;
const NODE = 'node-a';

const node = (zone: string): ClusterObject => ({
  kind: 'Node',
  meta: { key: NODE, name: NODE, namespace: '', uid: 'u-node-a', resourceVersion: zone, labels: { [ZONE_LABEL]: zone }, annotations: {} },
  podCIDRs: ['10.244.1.0/24'],
  addresses: [],
  unschedulable: false,
});

/** Two endpoints, one hinted for each zone. */
function hinted(): EndpointSliceObject {
  const s = slice('ns/a', [{ ip: '10.244.1.2', node: NODE }, { ip: '10.244.2.2', node: 'node-b' }], [{ name: 'http', port: 8080 }]);
  s.endpoints[0]!.hints = { forZones: ['z1'], forNodes: [] };
  s.endpoints[1]!.hints = { forZones: ['z2'], forNodes: [] };
  return s;
}
const service = svc('ns/a', '10.96.0.10', { ports: [{ name: 'http', port: 80 }] });
const deps = (state: MemoryState, config: ReturnType<typeof testConfig>, section: Record<string, unknown>, k: ReturnType<typeof fakeKernel>) => proxyContext(k, state, config, section);

type ModeProxier = Pick<IptablesProxier, 'handleEvent' | 'sync' | 'reconcileOnStart'>;

/** Our Node in zone z1, one Service with an endpoint hinted for each zone, synced; returns how to apply more. */
async function startInZ1(t: Test, p: ModeProxier, state: MemoryState, used: () => Promise<string[]>): Promise<(o: ClusterObject) => boolean> {
  await p.reconcileOnStart(signal);
  const apply = (o: ClusterObject): boolean => p.handleEvent(state.apply(o));
  apply(node('z1'));
  apply(service);
  apply(hinted());
  await p.sync(signal);
  t.same(await used(), ['10.244.1.2:8080'], 'only the endpoint hinted for zone z1');
  return apply;
}

/** The same scenario for each mode: what traffic uses follows our zone label, and only a zone change re-renders. */
async function zoneScenario(
  t: Test,
  p: ModeProxier,
  state: MemoryState,
  used: () => Promise<string[]>,
): Promise<void> {
  const apply = await startInZ1(t, p, state, used);
  t.equal(apply(node('z2')), true, 'a zone change requests a sync');
  await p.sync(signal);
  t.same(await used(), ['10.244.2.2:8080'], 'now only the zone-z2 endpoint');
  t.equal(apply({ ...node('z2'), meta: { ...node('z2').meta, resourceVersion: 'later' } } as ClusterObject), false, 'another Node update with the same zone is not a change');
}

/**
 * Makes the next call of `o[m]` wait until `release()`; `reached` resolves when that call starts.
 * (The kernel write of a sync, held so that events arrive while the sync is in flight.)
 */
function holdNext<O extends object>(o: O, m: keyof O): { reached: Promise<void>; release: () => void } {
  const f = o[m] as unknown as (...a: unknown[]) => Promise<unknown>;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let reached!: () => void;
  const started = new Promise<void>((r) => (reached = r));
  (o as Record<keyof O, unknown>)[m] = async (...a: unknown[]): Promise<unknown> => {
    (o as Record<keyof O, unknown>)[m] = f;
    reached();
    await gate;
    return f.apply(o, a);
  };
  return { reached: started, release };
}

/** A zone change while an endpoint change's kernel write is in flight: the next sync re-renders with the new zone. */
async function inflightScenario(t: Test, p: ModeProxier, state: MemoryState, hold: () => ReturnType<typeof holdNext>, used: () => Promise<string[]>): Promise<void> {
  const apply = await startInZ1(t, p, state, used);
  const more = hinted();
  more.endpoints.push({ ...more.endpoints[0]!, address: '10.244.1.3' });
  apply(more);
  const h = hold();
  const inflight = p.sync(signal);
  await h.reached;
  t.equal(apply(node('z2')), true, 'the zone changes while the sync writes to the kernel');
  h.release();
  await inflight;
  await p.sync(signal);
  t.same(await used(), ['10.244.2.2:8080'], 'the next sync re-rendered with zone z2');
}

const iptablesUsed = (k: ReturnType<typeof fakeKernel>) => async (): Promise<string[]> => {
  const out: string[] = [];
  for (const line of (await k.iptables(4).save('nat')).split('\n')) {
    const m = / --to-destination (\S+)/.exec(line);
    if (m) out.push(m[1]!);
  }
  return out.sort();
};

async function ipvsProxier(state: MemoryState): Promise<{ p: IpvsProxier; ipvs: FakeIpvs; used: () => Promise<string[]> }> {
  const k = fakeKernel();
  await k.net.createLink({ kind: 'bridge', name: 'eth0' });
  await k.net.addAddress('eth0', Cidr.parse('198.18.0.2/24'));
  const ipvs = new FakeIpvs();
  const p = new IpvsProxier(deps(state, testConfig({ nodeName: NODE, proxyMode: 'ipvs' }), { mode: 'ipvs' }, k), { ipvs, ipset: new FakeIpset(), probe: async () => 'loaded' });
  const used = async (): Promise<string[]> => {
    const out: string[] = [];
    for (const s of await ipvs.listServices()) if (s.address === '10.96.0.10') for (const d of await ipvs.listDests(s)) if (d.weight > 0) out.push(`${d.address}:${d.port}`);
    return out.sort();
  };
  return { p, ipvs, used };
}

t.test('iptables mode: endpoints follow our zone label, and a label change re-renders', async (t) => {
  const k = fakeKernel();
  const state = new MemoryState();
  const p = new IptablesProxier(deps(state, testConfig({ nodeName: NODE }), {}, k));
  await zoneScenario(t, p, state, iptablesUsed(k));
});

t.test('ipvs mode: real servers follow our zone label, and a label change re-renders', async (t) => {
  const state = new MemoryState();
  const { p, used } = await ipvsProxier(state);
  await zoneScenario(t, p, state, used);
});

t.test('every mode: a zone change during a sync is applied by the next sync', async (t) => {
  t.test('nftables', async (t) => {
    const k = fakeKernel();
    const state = new MemoryState();
    const p = new NftProxier(deps(state, testConfig({ nodeName: NODE }), {}, k));
    const used = async (): Promise<string[]> => [...p.ruleset.appliedOf('endpoints4-tcp').values()].map((v) => v.replace(' . ', ':')).sort();
    await inflightScenario(t, p, state, () => holdNext(k.nft, 'apply'), used);
  });
  t.test('iptables', async (t) => {
    const k = fakeKernel();
    const state = new MemoryState();
    const p = new IptablesProxier(deps(state, testConfig({ nodeName: NODE }), {}, k));
    await inflightScenario(t, p, state, () => holdNext(k.iptables(4), 'restore'), iptablesUsed(k));
  });
  t.test('ipvs', async (t) => {
    const state = new MemoryState();
    const { p, ipvs, used } = await ipvsProxier(state);
    await inflightScenario(t, p, state, () => holdNext(ipvs, 'apply'), used);
  });
});
