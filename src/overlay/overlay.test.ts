import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import t, { type Test } from 'tap';
import { Cidr, IpAddress } from '../common/ip';
import { silentLogger } from '../common/log';
import { loadConfig, type DaemonConfig } from '../daemon/config';
import { FakeClock } from '../daemon/testing/fake-clock';
import { FakeSource, nodeObject } from '../daemon/testing/fake-source';
import { clusterStateOf, RecordingNodeWriter } from '../k8s';
import type { NodeConditionInput, NodeObject, NodeWriter } from '../k8s/types';
import { E } from '../kernel/errno';
import { fakeKernel, type FakeKernel } from '../kernel/testing';
import {
  ANNOTATIONS,
  collectPeers,
  defaultOverlaySection,
  isDirect,
  nodePublicIp,
  OverlayComponent,
  overlaySection,
  podMtu,
  renderEgress,
  renderSubnetEnv,
  vtepMacFor,
  type OverlaySection,
} from './index';

interface Env {
  comp: OverlayComponent;
  kernel: FakeKernel;
  source: FakeSource;
  writer: RecordingNodeWriter | ApiNodeWriter;
  registry: Registry;
  config: DaemonConfig;
  dir: string;
  clock: FakeClock;
}

/** The Kubernetes NodeWriter's contract (writes reach the API server), recording every patch sent. */
class ApiNodeWriter implements NodeWriter {
  readonly writesBack = true;
  private readonly rec = new RecordingNodeWriter();
  readonly annotations = this.rec.annotations;
  readonly conditions = this.rec.conditions;
  readonly patches: Record<string, string | null>[] = [];
  async patchAnnotations(annotations: Readonly<Record<string, string | null>>): Promise<void> {
    this.patches.push({ ...annotations });
    await this.rec.patchAnnotations(annotations);
  }
  async setCondition(condition: NodeConditionInput): Promise<void> {
    await this.rec.setCondition(condition);
  }
}

function node(name: string, podCIDR: string | string[], ip: string | string[], annotations: Record<string, string> = {}): NodeObject {
  const ips = Array.isArray(ip) ? ip : [ip];
  const n = nodeObject(name, Array.isArray(podCIDR) ? podCIDR : [podCIDR], ips[0]);
  // Dual-stack nodes: one InternalIP per family, as the kubelet reports them.
  return { ...n, meta: { ...n.meta, annotations }, addresses: ips.map((address) => ({ type: 'InternalIP', address })) };
}

async function setup(t: Test, opts: { backend?: string; section?: Partial<OverlaySection>; ownCidr?: string[]; underlay?: string; underlay6?: string; clusterCIDR?: string; v6First?: boolean; writesBack?: boolean } = {}): Promise<Env> {
  const dir = mkdtempSync(path.join(tmpdir(), 'pwo-unit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = loadConfig({
    argv: ['--node-name', 'n1', '--control-socket', path.join(dir, 'run', 'podwire.sock'), '--state-dir', path.join(dir, 'state'), '--backend', opts.backend ?? 'vxlan', ...(opts.clusterCIDR ? ['--cluster-cidr', opts.clusterCIDR] : [])],
    env: {},
    readFile: () => {
      throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    },
  }).config;
  const kernel = fakeKernel();
  await kernel.net.createLink({ kind: 'bridge', name: 'eth0', mtu: 1500 });
  await kernel.net.addAddress('eth0', Cidr.parse(opts.underlay ?? '198.18.0.1/24'));
  if (opts.underlay6) await kernel.net.addAddress('eth0', Cidr.parse(opts.underlay6));
  await kernel.net.setLinkUp('eth0', true);
  const source = new FakeSource();
  const ownIps = [(opts.underlay ?? '198.18.0.1/24').split('/')[0]!, ...(opts.underlay6 ? [opts.underlay6.split('/')[0]!] : [])];
  source.apply(node('n1', opts.ownCidr ?? ['10.244.1.0/24'], opts.v6First ? [...ownIps].reverse() : ownIps));
  source.markSynced();
  const writer = opts.writesBack ? new ApiNodeWriter() : new RecordingNodeWriter();
  const registry = new Registry();
  const section = { ...defaultOverlaySection(config), ...opts.section };
  const clock = new FakeClock();
  const comp = new OverlayComponent({ config, section, state: clusterStateOf(source), node: writer, kernel, logger: silentLogger, clock, metrics: registry });
  return { comp, kernel, source, writer, registry, config, dir, clock };
}

const ac = new AbortController();
function fieldOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { field?: string }).field;
  }
  return undefined;
}
const sync = (e: Env) => e.comp.sync(ac.signal);

async function entries(k: FakeKernel) {
  const routes = (await k.net.listRoutes({ protocol: 77 })).map((r) => `${r.dst} via ${r.gateway} dev ${r.dev}${r.onlink ? ' onlink' : ''}`).sort();
  const dev = await k.net.getLink('pw.1');
  const neigh = dev ? (await k.net.listNeighbors('pw.1')).map((n) => `${n.ip} ${n.mac}${n.permanent ? ' permanent' : ''}`).sort() : [];
  const fdb = dev ? (await k.net.listFdb('pw.1')).map((f) => `${f.mac} dst ${f.dst}`).sort() : [];
  return { routes, neigh, fdb };
}

/**
 * The kernel's check the fake does not make: an IPv6 onlink route is refused (EINVAL, "Nexthop
 * has invalid gateway or device mismatch") while the route its gateway resolves through, here the
 * route being replaced, is on another device. Seeded from the kernel's routes, kept up to date
 * from the batches; returns the refusals seen.
 */
async function emulateV6OnlinkCheck(k: FakeKernel): Promise<string[]> {
  const devOf = new Map<string, string | undefined>();
  for (const r of await k.net.listRoutes({ family: 6 })) devOf.set(r.dst.toString(), r.dev);
  const refused: string[] = [];
  k.net.batchFailure = (kind, change) => {
    if (kind !== 'route') return 0;
    const r = change.entry as { dst: Cidr; dev?: string; onlink?: boolean };
    const dst = r.dst.toString();
    if (change.op === 'delete') {
      devOf.delete(dst);
      return 0;
    }
    if (r.dst.family === 6 && r.onlink && devOf.has(dst) && devOf.get(dst) !== r.dev) {
      refused.push(`${dst} dev ${r.dev ?? ''}`);
      return E.EINVAL;
    }
    devOf.set(dst, r.dev);
    return 0;
  };
  return refused;
}

/** The neighbour and FDB entries on the IPv6 VXLAN device (`pw-v6.1`), as `entries` prints pw.1's. */
async function entries6(k: FakeKernel, dev = 'pw-v6.1') {
  if (!(await k.net.getLink(dev))) return { neigh: [], fdb: [] };
  const neigh = (await k.net.listNeighbors(dev)).map((n) => `${n.ip} ${n.mac}${n.permanent ? ' permanent' : ''}`).sort();
  const fdb = (await k.net.listFdb(dev)).map((f) => `${f.mac} dst ${f.dst}`).sort();
  return { neigh, fdb };
}

t.test('config section: defaults, pw.<VNI>, subnet.env next to the control socket, validation names the field', async (t) => {
  const { config } = await setup(t);
  const s = defaultOverlaySection(config);
  t.same(s.vxlan, { vni: 1, port: 8472, device: 'pw.1', deviceV6: 'pw-v6.1', ipv6Device: true, txChecksumOffload: 'auto' });
  t.equal(defaultOverlaySection(config, { PODWIRE_VXLAN_IPV6_DEVICE: 'false' }).vxlan.ipv6Device, false, 'PODWIRE_VXLAN_IPV6_DEVICE=false');
  t.equal(overlaySection.build({ 'vxlan.vni': 42 }, config).vxlan.deviceV6, 'pw-v6.42');
  t.equal(fieldOf(() => overlaySection.build({ 'vxlan.deviceV6': 'pw.1' }, config)), 'overlay.vxlan.deviceV6', 'the v6 device must differ from pw.1');
  t.equal(s.routeProtocol, 77);
  t.equal(s.directRouting, false);
  t.equal(s.masquerade, true);
  t.equal(s.subnetFile, path.join(path.dirname(config.controlSocket), 'subnet.env'));
  t.equal(overlaySection.build({ 'vxlan.vni': 42 }, config).vxlan.device, 'pw.42');
  t.equal(fieldOf(() => overlaySection.build({ 'vxlan.vni': 0 }, config)), 'overlay.vxlan.vni');
  t.equal(fieldOf(() => overlaySection.build({ subnetFile: 'rel/x' }, config)), 'overlay.subnetFile');
  t.equal(overlaySection.build({ 'vxlan.txChecksumOffload': 'off' }, config).vxlan.txChecksumOffload, 'off');
  t.equal(fieldOf(() => overlaySection.build({ 'vxlan.txChecksumOffload': 'maybe' }, config)), 'overlay.vxlan.txChecksumOffload');
});

t.test('pod MTU: vxlan -50 over IPv4, -70 over IPv6, host-gw the underlay MTU', async (t) => {
  t.equal(podMtu('vxlan', 1500, 4), 1450);
  t.equal(podMtu('vxlan', 1500, 6), 1430);
  t.equal(podMtu('host-gw', 1500, 4), 1500);
  t.equal(vtepMacFor(IpAddress.parse('198.18.0.1')), '0a:58:c6:12:00:01', 'locally administered, from the IP');
});

t.test('without spec.podCIDRs the component waits and says why', async (t) => {
  const e = await setup(t, { ownCidr: [] });
  await t.rejects(sync(e), { code: 'PW_TRY_AGAIN', field: 'spec.podCIDRs' });
  t.match(String(e.comp.status().waitingFor), /no spec\.podCIDRs/);
  t.equal(e.writer.conditions.get('NetworkUnavailable')?.status, 'True');
  t.same(await entries(e.kernel), { routes: [], neigh: [], fdb: [] }, 'nothing programmed');
  e.source.apply(node('n1', '10.244.1.0/24', '198.18.0.1'));
  await sync(e);
  t.equal(e.comp.status().waitingFor, undefined);
  t.equal(e.writer.conditions.get('NetworkUnavailable')?.status, 'False');
});

t.test('vxlan: device, per-peer neighbour + FDB + onlink route, annotation MAC wins, annotations, subnet.env, egress, ip_forward', async (t) => {
  const e = await setup(t);
  e.source.apply(node('n2', '10.244.2.0/24', '198.18.0.2'));
  e.source.apply(node('n3', '10.244.3.0/24', '198.18.0.3', { [ANNOTATIONS.backendType]: 'vxlan', [ANNOTATIONS.backendData]: '{"VNI":1,"VtepMAC":"AA:BB:CC:00:00:03"}', [ANNOTATIONS.publicIp]: '198.18.0.33' }));
  const r = await sync(e);
  t.equal(r.objects, 2);
  const dev = await e.kernel.net.getLink('pw.1');
  t.equal(dev?.kind, 'vxlan');
  t.same(dev?.vxlan, { vni: 1, port: 8472, local: '198.18.0.1', learning: false, underlayIndex: (await e.kernel.net.getLink('eth0'))!.index });
  t.equal(dev?.mtu, 1450);
  t.equal(dev?.mac, '0a:58:c6:12:00:01');
  t.equal(dev?.up, true);
  t.same((await e.kernel.net.listAddresses('pw.1')).map((a) => a.cidr.toString()), ['10.244.1.0/32'], "flannel's VTEP address");
  t.same(await entries(e.kernel), {
    routes: ['10.244.2.0/24 via 10.244.2.0 dev pw.1 onlink', '10.244.3.0/24 via 10.244.3.0 dev pw.1 onlink'],
    neigh: ['10.244.2.0 0a:58:c6:12:00:02 permanent', '10.244.3.0 aa:bb:cc:00:00:03 permanent'],
    fdb: ['0a:58:c6:12:00:02 dst 198.18.0.2', 'aa:bb:cc:00:00:03 dst 198.18.0.33'],
  });
  t.same(Object.fromEntries(e.writer.annotations), {
    [ANNOTATIONS.backendType]: 'vxlan',
    [ANNOTATIONS.backendData]: '{"VNI":1,"VtepMAC":"0a:58:c6:12:00:01"}',
    [ANNOTATIONS.publicIp]: '198.18.0.1',
    [ANNOTATIONS.kubeSubnetManager]: 'true',
    [ANNOTATIONS.underlayCidr]: '198.18.0.1/24',
  });
  t.equal(readFileSync(e.comp.section.subnetFile, 'utf8'), 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
  t.equal(e.kernel.sysctl.get('net.ipv4.ip_forward'), '1');
  t.match(e.kernel.nft.last, /ip saddr 10\.244\.0\.0\/16 masquerade fully-random/);
  const st = e.comp.status();
  t.same((st.peers as { node: string; encapsulated: boolean }[]).map((p) => [p.node, p.encapsulated]), [['n2', true], ['n3', true]]);
  t.match(await e.registry.getSingleMetricAsString('podwire_overlay_peers'), /mode="vxlan"} 2/);

  // A second sync with nothing changed applies nothing.
  const before = e.kernel.net.calls.length;
  await sync(e);
  t.same(e.kernel.net.calls.slice(before).map((c) => c.method), [], 'no kernel writes when nothing changed');
});

t.test('replace semantics and cleanup in one sync: deleted node, changed MAC, changed podCIDR, changed IP', async (t) => {
  const e = await setup(t);
  for (let i = 2; i <= 5; i++) e.source.apply(node(`n${i}`, `10.244.${i}.0/24`, `198.18.0.${i}`));
  await sync(e);
  e.source.remove('Node', 'n2');
  e.source.apply(node('n3', '10.244.3.0/24', '198.18.0.3', { [ANNOTATIONS.backendData]: '{"VNI":1,"VtepMAC":"02:00:00:00:00:03"}' }));
  e.source.apply(node('n4', '10.244.40.0/24', '198.18.0.4'));
  e.source.apply(node('n5', '10.244.5.0/24', '198.18.0.55'));
  await sync(e);
  t.same(await entries(e.kernel), {
    routes: ['10.244.3.0/24 via 10.244.3.0 dev pw.1 onlink', '10.244.40.0/24 via 10.244.40.0 dev pw.1 onlink', '10.244.5.0/24 via 10.244.5.0 dev pw.1 onlink'],
    neigh: ['10.244.3.0 02:00:00:00:00:03 permanent', '10.244.40.0 0a:58:c6:12:00:04 permanent', '10.244.5.0 0a:58:c6:12:00:37 permanent'],
    fdb: ['02:00:00:00:00:03 dst 198.18.0.3', '0a:58:c6:12:00:04 dst 198.18.0.4', '0a:58:c6:12:00:37 dst 198.18.0.55'],
  });
  t.match(await e.registry.getSingleMetricAsString('podwire_overlay_entries_removed_total'), /kind="route"} 2/);
});

t.test('stale entries: ours (our proto, our device) removed, foreign kept', async (t) => {
  const e = await setup(t);
  e.source.apply(node('n2', '10.244.2.0/24', '198.18.0.2'));
  await sync(e);
  const net = e.kernel.net;
  await net.replaceRoute({ dst: Cidr.parse('10.244.98.0/24'), gateway: IpAddress.parse('10.244.98.0'), dev: 'pw.1', onlink: true, protocol: 77 });
  await net.replaceRoute({ dst: Cidr.parse('10.244.99.0/24'), gateway: IpAddress.parse('198.18.0.9'), dev: 'eth0', protocol: 4 });
  await net.replaceNeighbor({ dev: 'pw.1', ip: IpAddress.parse('10.244.98.0'), mac: '02:00:00:00:00:98', permanent: true });
  await net.replaceFdb({ dev: 'pw.1', mac: '02:00:00:00:00:98', dst: IpAddress.parse('198.18.0.98'), permanent: true });
  await net.replaceNeighbor({ dev: 'eth0', ip: IpAddress.parse('198.18.0.9'), mac: '02:00:00:00:00:09', permanent: true });
  await sync(e);
  t.equal((await net.listRoutes({ protocol: 77 })).length, 2, 'an event-driven sync diffs against what it applied (no dump)');
  e.clock.advance(e.config.syncInterval);
  await sync(e);
  t.same(await entries(e.kernel), { routes: ['10.244.2.0/24 via 10.244.2.0 dev pw.1 onlink'], neigh: ['10.244.2.0 0a:58:c6:12:00:02 permanent'], fdb: ['0a:58:c6:12:00:02 dst 198.18.0.2'] });
  t.ok((await net.listRoutes({ protocol: 4 })).some((r) => r.dst.toString() === '10.244.99.0/24'), 'foreign route kept');
  t.equal((await net.listNeighbors('eth0')).length, 1, 'neighbour on another device kept');
});

t.test('bad input skips that node only, names node and field, counts it', async (t) => {
  const e = await setup(t);
  e.source.apply(node('good', '10.244.2.0/24', '198.18.0.2'));
  e.source.apply(node('bad-cidr', 'banana', '198.18.0.3'));
  e.source.apply(node('own-overlap', '10.244.1.128/25', '198.18.0.4'));
  e.source.apply(node('svc-overlap', '10.96.0.0/24', '198.18.0.5'));
  e.source.apply(node('no-ip', '10.244.6.0/24', 'not-an-ip'));
  e.source.apply(node('bad-ann-ip', '10.244.7.0/24', '198.18.0.7', { [ANNOTATIONS.publicIp]: '1.2.3' }));
  e.source.apply(node('vni', '10.244.8.0/24', '198.18.0.8', { [ANNOTATIONS.backendData]: '{"VNI":2,"VtepMAC":"02:00:00:00:00:08"}' }));
  e.source.apply(node('mac-a', '10.244.9.0/24', '198.18.0.9', { [ANNOTATIONS.backendData]: '{"VNI":1,"VtepMAC":"02:00:00:00:00:99"}' }));
  e.source.apply(node('mac-b', '10.244.10.0/24', '198.18.0.10', { [ANNOTATIONS.backendData]: '{"VNI":1,"VtepMAC":"02:00:00:00:00:99"}' }));
  e.source.apply(node('mac-own', '10.244.11.0/24', '198.18.0.11', { [ANNOTATIONS.backendData]: '{"VNI":1,"VtepMAC":"0a:58:c6:12:00:01"}' }));
  e.source.apply(node('dup-a', '10.244.12.0/24', '198.18.0.12'));
  e.source.apply(node('dup-b', '10.244.12.0/23', '198.18.0.13'));
  const r = await sync(e);
  t.equal(r.objects, 1, 'only the good node is programmed');
  const problems = e.comp.status().invalidPeers as { node: string; field: string }[];
  t.same(Object.fromEntries(problems.map((p) => [p.node, p.field])), {
    'bad-ann-ip': `metadata.annotations[${ANNOTATIONS.publicIp}]`,
    'bad-cidr': 'spec.podCIDRs[0]',
    'dup-a': 'spec.podCIDRs',
    'dup-b': 'spec.podCIDRs',
    'mac-a': `metadata.annotations[${ANNOTATIONS.backendData}].VtepMAC`,
    'mac-b': `metadata.annotations[${ANNOTATIONS.backendData}].VtepMAC`,
    'mac-own': `metadata.annotations[${ANNOTATIONS.backendData}].VtepMAC`,
    'no-ip': 'status.addresses',
    'own-overlap': 'spec.podCIDRs[0]',
    'svc-overlap': 'spec.podCIDRs[0]',
    vni: `metadata.annotations[${ANNOTATIONS.backendData}].VNI`,
  });
  t.match(await e.registry.getSingleMetricAsString('podwire_overlay_invalid_peers'), / 11/);
  t.same((await entries(e.kernel)).routes, ['10.244.2.0/24 via 10.244.2.0 dev pw.1 onlink']);
});

t.test('a failed step rolls that node back; others are programmed; the sync reports the failure', async (t) => {
  const e = await setup(t);
  for (let i = 2; i <= 4; i++) e.source.apply(node(`n${i}`, `10.244.${i}.0/24`, `198.18.0.${i}`));
  e.kernel.net.batchFailure = (kind, change) => (kind === 'fdb' && change.op !== 'delete' && String((change.entry as { dst?: unknown }).dst) === '198.18.0.3' ? E.ENOBUFS : 0);
  await t.rejects(sync(e), { code: 'PW_KERNEL' });
  t.same(await entries(e.kernel), {
    routes: ['10.244.2.0/24 via 10.244.2.0 dev pw.1 onlink', '10.244.4.0/24 via 10.244.4.0 dev pw.1 onlink'],
    neigh: ['10.244.2.0 0a:58:c6:12:00:02 permanent', '10.244.4.0 0a:58:c6:12:00:04 permanent'],
    fdb: ['0a:58:c6:12:00:02 dst 198.18.0.2', '0a:58:c6:12:00:04 dst 198.18.0.4'],
  }, 'n3 has no half-programmed entries');
  t.same((e.comp.status().failedPeers as { node: string }[]).map((f) => f.node), ['n3']);
  e.kernel.net.batchFailure = undefined;
  await sync(e);
  t.equal((await entries(e.kernel)).routes.length, 3, 'the next sync programs it');
});

t.test('host-gw: one route via the node IP; an off-link peer is an error on that peer alone', async (t) => {
  const e = await setup(t, { backend: 'host-gw' });
  e.source.apply(node('n2', '10.244.2.0/24', '198.18.0.2'));
  e.source.apply(node('far', '10.244.3.0/24', '198.19.0.3'));
  await sync(e);
  t.same((await entries(e.kernel)).routes, ['10.244.2.0/24 via 198.18.0.2 dev eth0']);
  t.equal(await e.kernel.net.getLink('pw.1'), undefined, 'no VXLAN device');
  const p = (e.comp.status().invalidPeers as { node: string; reason: string }[])[0]!;
  t.equal(p.node, 'far');
  t.match(p.reason, /not on-link/);
  t.equal(e.writer.annotations.get(ANNOTATIONS.backendType), 'host-gw');
  t.match(readFileSync(e.comp.section.subnetFile, 'utf8'), /FLANNEL_MTU=1500/);
});

t.test('DirectRouting: same-subnet peers direct, others encapsulated; the decision is symmetric', async (t) => {
  const e = await setup(t, { section: { directRouting: true } });
  e.source.apply(node('n2', '10.244.2.0/24', '198.18.0.2'));
  e.source.apply(node('far', '10.244.3.0/24', '198.19.0.3'));
  await sync(e);
  t.same(await entries(e.kernel), { routes: ['10.244.2.0/24 via 198.18.0.2 dev eth0', '10.244.3.0/24 via 10.244.3.0 dev pw.1 onlink'], neigh: ['10.244.3.0 0a:58:c6:13:00:03 permanent'], fdb: ['0a:58:c6:13:00:03 dst 198.19.0.3'] });
  // Switching a peer from vxlan to direct removes its neighbour and FDB entries.
  e.source.apply(node('far', '10.244.3.0/24', '198.18.0.3'));
  await sync(e);
  t.same(await entries(e.kernel), { routes: ['10.244.2.0/24 via 198.18.0.2 dev eth0', '10.244.3.0/24 via 198.18.0.3 dev eth0'], neigh: [], fdb: [] });
  // Symmetry: a /16 node and a /24 node agree (both say encapsulated) when only one contains the other.
  const a = Cidr.parse('198.18.0.1/16');
  const b = Cidr.parse('198.18.5.1/24');
  t.equal(isDirect(a, b.ip, b), isDirect(b, a.ip, a));
  t.equal(isDirect(a, b.ip, b), false);
  t.equal(isDirect(Cidr.parse('198.18.0.1/24'), IpAddress.parse('198.18.0.2'), undefined), true);
});

t.test('a restart (new component on the same kernel) changes nothing', async (t) => {
  const e = await setup(t);
  e.source.apply(node('n2', '10.244.2.0/24', '198.18.0.2'));
  await sync(e);
  const again = new OverlayComponent({ config: e.config, section: e.comp.section, state: clusterStateOf(e.source), node: e.writer, kernel: e.kernel, logger: silentLogger, clock: e.clock, metrics: e.registry });
  await again.reconcileOnStart();
  const before = e.kernel.net.calls.length;
  await again.sync(ac.signal);
  t.same(e.kernel.net.calls.slice(before).map((c) => c.method), [], 'no link, route, neighbour or FDB write');
});

t.test('cleanup removes our routes, device, table and subnet.env', async (t) => {
  const e = await setup(t);
  e.source.apply(node('n2', '10.244.2.0/24', '198.18.0.2'));
  await sync(e);
  await e.comp.cleanup();
  t.same(await entries(e.kernel), { routes: [], neigh: [], fdb: [] });
  t.equal(await e.kernel.net.getLink('pw.1'), undefined);
  t.match(e.kernel.nft.last, /^table inet podwire-overlay \{\}\ndelete table inet podwire-overlay\n$/);
});

t.test('egress table and subnet.env render as golden text', async (t) => {
  t.equal(
    renderEgress('podwire-overlay', [Cidr.parse('10.244.0.0/16')], [Cidr.parse('10.244.1.0/24')], true),
    `table inet podwire-overlay {}
flush table inet podwire-overlay
table inet podwire-overlay {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr 10.244.0.0/16 ip daddr 10.244.0.0/16 return
    ip saddr 10.244.0.0/16 ip daddr 224.0.0.0/4 return
    ip saddr 10.244.0.0/16 masquerade fully-random
    ip saddr != 10.244.0.0/16 ip daddr 10.244.1.0/24 return
    ip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/16 masquerade fully-random
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    ip saddr 10.244.0.0/16 accept
    ip daddr 10.244.0.0/16 accept
  }
}
`,
  );
  t.equal(renderSubnetEnv([Cidr.parse('10.244.0.0/16')], [Cidr.parse('10.244.7.0/24')], 1450, true), 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
});

t.test('egress in iptables by choice: own chains, jumps added once, masquerade only leaving the cluster, cleanup removes them', async (t) => {
  const e = await setup(t, { section: { egressMode: 'iptables' } });
  e.source.apply(node('n2', '10.244.2.0/24', '198.18.0.2'));
  await sync(e);
  e.clock.advance(e.config.syncInterval); // the periodic re-apply
  await sync(e);
  const ipt = e.kernel.iptables(4);
  t.same(ipt.rules('nat', 'POSTROUTING').filter((r) => r.includes('PODWIRE-OVL-POSTRTG')).length, 1, 'one jump from POSTROUTING, after two applies');
  t.same(ipt.rules('filter', 'FORWARD').filter((r) => r.includes('PODWIRE-OVL-FWD')).length, 1, 'one jump from FORWARD');
  t.equal(ipt.trace('nat', 'POSTROUTING', { src: '10.244.1.5', dst: '8.8.8.8' }).verdict, 'MASQUERADE', 'pod -> outside: masqueraded');
  t.match(ipt.trace('nat', 'POSTROUTING', { src: '10.244.1.5', dst: '8.8.8.8' }).args.join(' '), /--random-fully/);
  t.not(ipt.trace('nat', 'POSTROUTING', { src: '10.244.1.5', dst: '10.244.2.7' }).verdict, 'MASQUERADE', 'pod -> pod: never NATed');
  t.equal(ipt.trace('filter', 'FORWARD', { src: '10.244.1.5', dst: '8.8.8.8' }).verdict, 'ACCEPT', 'pod traffic forwarded');
  await e.comp.cleanup();
  t.notOk(ipt.chains('nat').includes('PODWIRE-OVL-POSTRTG'), 'cleanup removes the nat chain');
  t.same(ipt.rules('nat', 'POSTROUTING'), [], 'and the jump');
});

t.test('dual-stack over an IPv4 underlay (vxlan): the v6 pod CIDR through the same device and FDB entry', async (t) => {
  const e = await setup(t, { clusterCIDR: '10.244.0.0/16,fd00:10:244::/56', ownCidr: ['10.244.1.0/24', 'fd00:10:244:1::/64'] });
  e.source.apply(node('n2', ['10.244.2.0/24', 'fd00:10:244:2::/64'], '198.18.0.2'));
  e.source.apply(node('bad6', ['10.244.3.0/24', 'fd00:99::/64'], '198.18.0.3'));
  await sync(e);
  const routes = (await e.kernel.net.listRoutes({ protocol: 77, family: 6 })).map((r) => `${r.dst} via ${r.gateway} dev ${r.dev}${r.onlink ? ' onlink' : ''}`);
  t.same(routes, ['fd00:10:244:2::/64 via fd00:10:244:2:: dev pw.1 onlink']);
  t.same((await e.kernel.net.listNeighbors('pw.1')).map((n) => `${n.ip} ${n.mac}`).sort(), ['10.244.2.0 0a:58:c6:12:00:02', 'fd00:10:244:2:: 0a:58:c6:12:00:02']);
  t.equal((await e.kernel.net.listFdb('pw.1')).length, 1, 'one FDB entry serves both families');
  t.same((await e.kernel.net.listAddresses('pw.1')).map((a) => a.cidr.toString()).sort(), ['10.244.1.0/32', 'fd00:10:244:1::/128']);
  t.equal(e.kernel.sysctl.get('net.ipv6.conf.all.forwarding'), '1');
  t.match(e.kernel.nft.last, /ip6 saddr fd00:10:244::\/56 masquerade fully-random/);
  t.match(readFileSync(e.comp.section.subnetFile, 'utf8'), /FLANNEL_IPV6_SUBNET=fd00:10:244:1::1\/64/);
  const bad = (e.comp.status().invalidPeers as { node: string; field: string; reason: string }[])[0];
  t.equal(bad?.node, 'bad6');
  t.match(bad?.reason, /outside the cluster CIDR/);
  e.source.remove('Node', 'n2');
  await sync(e);
  t.same(await e.kernel.net.listRoutes({ protocol: 77, family: 6 }), [], 'v6 route removed with the node');
  t.same(await e.kernel.net.listNeighbors('pw.1'), []);
});

// IPv6 (issue #8): v6 host-gw, v6 DirectRouting, IPv6-only clusters, v6 pod CIDR overlaps.
const DS = '10.244.0.0/16,fd00:10:244::/56';
type PeerSt = { node: string; mode: string; modes: { ipv4?: string; ipv6?: string }; via: string; via6?: string };

t.test('host-gw dual-stack: a v4 and a v6 route per peer, the v6 on-link check uses the v6 underlay subnet', async (t) => {
  const e = await setup(t, { backend: 'host-gw', clusterCIDR: DS, ownCidr: ['10.244.1.0/24', 'fd00:10:244:1::/64'], underlay6: 'fd00:198:18::1/64' });
  e.source.apply(node('n2', ['10.244.2.0/24', 'fd00:10:244:2::/64'], ['198.18.0.2', 'fd00:198:18::2']));
  // On the v4 subnet, but its v6 node IP is behind a router: host-gw cannot route its v6 pods.
  e.source.apply(node('far6', ['10.244.3.0/24', 'fd00:10:244:3::/64'], ['198.18.0.3', 'fd00:198:19::3']));
  e.source.apply(node('no-ip6', ['10.244.4.0/24', 'fd00:10:244:4::/64'], '198.18.0.4'));
  // flannel's annotation wins over the InternalIP.
  e.source.apply(node('ann6', ['10.244.5.0/24', 'fd00:10:244:5::/64'], ['198.18.0.5', 'fd00:198:19::5'], { [ANNOTATIONS.publicIpv6]: 'fd00:198:18::5' }));
  await sync(e);
  t.same((await entries(e.kernel)).routes, [
    '10.244.2.0/24 via 198.18.0.2 dev eth0',
    '10.244.5.0/24 via 198.18.0.5 dev eth0',
    'fd00:10:244:2::/64 via fd00:198:18::2 dev eth0',
    'fd00:10:244:5::/64 via fd00:198:18::5 dev eth0',
  ]);
  const bad = e.comp.status().invalidPeers as { node: string; field: string; value: string; reason: string }[];
  t.match(bad, [
    { node: 'far6', field: 'status.addresses', value: 'fd00:198:19::3', reason: /not on-link: .*outside this node's underlay subnet fd00:198:18::\/64/ },
    { node: 'no-ip6', field: 'status.addresses', reason: /no IPv6 node IP/ },
  ]);
  t.same(bad.map((b) => b.node), ['far6', 'no-ip6']);
  const routes = await e.kernel.net.listRoutes({ protocol: 77, family: 6 });
  t.ok(routes.every((r) => r.protocol === 77), 'our route protocol on the v6 routes');
  t.equal(e.kernel.sysctl.get('net.ipv6.conf.all.forwarding'), '1');
  t.same(Object.fromEntries(e.writer.annotations), {
    [ANNOTATIONS.backendType]: 'host-gw',
    [ANNOTATIONS.backendData]: 'null',
    [ANNOTATIONS.publicIp]: '198.18.0.1',
    [ANNOTATIONS.kubeSubnetManager]: 'true',
    [ANNOTATIONS.underlayCidr]: '198.18.0.1/24',
    [ANNOTATIONS.backendV6Data]: 'null',
    [ANNOTATIONS.publicIpv6]: 'fd00:198:18::1',
    [ANNOTATIONS.underlayCidr6]: 'fd00:198:18::1/64',
  }, "flannel's v6 keys for host-gw");
  const st = e.comp.status().peers as PeerSt[];
  t.match(st.find((p) => p.node === 'n2'), { mode: 'host-gw', modes: { ipv4: 'host-gw', ipv6: 'host-gw' }, via: '198.18.0.2 (host-gw eth0)', via6: 'fd00:198:18::2 (host-gw eth0)' });
});

t.test('host-gw dual-stack pods without an own IPv6 node IP: v4 routed, v6 not, and the status says why', async (t) => {
  const e = await setup(t, { backend: 'host-gw', clusterCIDR: DS, ownCidr: ['10.244.1.0/24', 'fd00:10:244:1::/64'] });
  e.source.apply(node('n2', ['10.244.2.0/24', 'fd00:10:244:2::/64'], ['198.18.0.2', 'fd00:198:18::2']));
  await sync(e);
  t.same((await entries(e.kernel)).routes, ['10.244.2.0/24 via 198.18.0.2 dev eth0']);
  t.match(e.comp.status().ipv6, /not routed: host-gw needs an IPv6 node IP/);
});

t.test('IPv6-only host-gw: no IPv4 pod CIDR needed, v6 routes, ip6 masquerade only, flannel v6 subnet.env and annotations', async (t) => {
  const e = await setup(t, { backend: 'host-gw', clusterCIDR: 'fd00:10:244::/56', ownCidr: ['fd00:10:244:1::/64'], underlay: 'fd00:198:18::1/64' });
  e.source.apply(node('n2', ['fd00:10:244:2::/64'], 'fd00:198:18::2'));
  e.source.apply(node('far', ['fd00:10:244:3::/64'], 'fd00:198:19::3'));
  await sync(e);
  t.equal(e.comp.status().waitingFor, undefined, 'not waiting for an IPv4 pod CIDR');
  t.same((await entries(e.kernel)).routes, ['fd00:10:244:2::/64 via fd00:198:18::2 dev eth0']);
  t.match(e.comp.status().invalidPeers, [{ node: 'far', reason: /not on-link/ }]);
  t.equal(readFileSync(e.comp.section.subnetFile, 'utf8'), 'FLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:1::1/64\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=true\n');
  t.match(e.kernel.nft.last, /ip6 saddr fd00:10:244::\/56 masquerade fully-random/);
  t.notMatch(e.kernel.nft.last, /\bip saddr/, 'no IPv4 rules');
  t.equal(e.kernel.sysctl.get('net.ipv6.conf.all.forwarding'), '1');
  t.notOk(e.writer.annotations.has(ANNOTATIONS.publicIp), 'no public-ip: the node has no IPv4 node IP');
  t.equal(e.writer.annotations.get(ANNOTATIONS.publicIpv6), 'fd00:198:18::1');
  t.equal(e.writer.annotations.get(ANNOTATIONS.backendV6Data), 'null');
});

t.test('IPv6-only vxlan: v6 VTEP only, neighbour + FDB + onlink route for the v6 pod CIDR, backend-v6-data', async (t) => {
  const e = await setup(t, { clusterCIDR: 'fd00:10:244::/56', ownCidr: ['fd00:10:244:1::/64'], underlay: 'fd00:198:18::1/64' });
  e.source.apply(node('n2', ['fd00:10:244:2::/64'], 'fd00:198:18::2'));
  // A flannel IPv6-only node: public-ipv6 and backend-v6-data, no public-ip, no backend-data.
  e.source.apply(node('fl', ['fd00:10:244:3::/64'], 'fd00:198:18::30', { [ANNOTATIONS.backendType]: 'vxlan', [ANNOTATIONS.publicIpv6]: 'fd00:198:18::3', [ANNOTATIONS.backendV6Data]: '{"VNI":1,"VtepMAC":"aa:bb:cc:00:00:03"}' }));
  await sync(e);
  const dev = await e.kernel.net.getLink('pw.1');
  t.equal(dev?.vxlan?.local, 'fd00:198:18::1');
  t.equal(dev?.mtu, 1430);
  t.same((await e.kernel.net.listAddresses('pw.1')).map((a) => a.cidr.toString()), ['fd00:10:244:1::/128'], 'no IPv4 VTEP address');
  t.same(await entries(e.kernel), {
    routes: ['fd00:10:244:2::/64 via fd00:10:244:2:: dev pw.1 onlink', 'fd00:10:244:3::/64 via fd00:10:244:3:: dev pw.1 onlink'],
    neigh: ['fd00:10:244:2:: 0a:58:00:00:00:02 permanent', 'fd00:10:244:3:: aa:bb:cc:00:00:03 permanent'],
    fdb: ['0a:58:00:00:00:02 dst fd00:198:18::2', 'aa:bb:cc:00:00:03 dst fd00:198:18::3'],
  });
  t.equal(e.kernel.sysctl.get('net.ipv4.ip_forward'), '0', 'IPv4 forwarding left alone: nothing IPv4 is routed');
  t.same(Object.fromEntries(e.writer.annotations), {
    [ANNOTATIONS.backendType]: 'vxlan',
    [ANNOTATIONS.kubeSubnetManager]: 'true',
    [ANNOTATIONS.backendV6Data]: '{"VNI":1,"VtepMAC":"0a:58:00:00:00:01"}',
    [ANNOTATIONS.publicIpv6]: 'fd00:198:18::1',
    [ANNOTATIONS.underlayCidr6]: 'fd00:198:18::1/64',
  });
  t.match(e.comp.status().peers, [{ node: 'fl', via: /fd00:198:18::3 \(vxlan pw\.1, VTEP fd00:10:244:3:: aa:bb:cc:00:00:03\)/ }, { node: 'n2' }].sort((a, b) => (a.node < b.node ? -1 : 1)));
  // Our own annotations read back (a second podwire node sees the same node IP and MAC).
  const self = node('self', ['fd00:10:244:9::/64'], 'fd00:198:18::99', Object.fromEntries(e.writer.annotations));
  e.source.apply(self);
  await sync(e);
  t.ok((await entries(e.kernel)).fdb.includes('0a:58:00:00:00:01 dst fd00:198:18::1') === false, 'MAC clash with our own VTEP MAC is refused');
  t.match(e.comp.status().invalidPeers, [{ node: 'self', field: `metadata.annotations[${ANNOTATIONS.backendV6Data}].VtepMAC`, reason: /MAC clash/ }]);
});

t.test('IPv6 DirectRouting: per peer from both ends\' v6 subnets, independent of the v4 decision', async (t) => {
  const e = await setup(t, { clusterCIDR: DS, ownCidr: ['10.244.1.0/24', 'fd00:10:244:1::/64'], underlay6: 'fd00:198:18::1/64', section: { directRouting: true } });
  e.source.apply(node('n2', ['10.244.2.0/24', 'fd00:10:244:2::/64'], ['198.18.0.2', 'fd00:198:18::2']));
  e.source.apply(node('far', ['10.244.3.0/24', 'fd00:10:244:3::/64'], ['198.19.0.3', 'fd00:198:19::3']));
  // v4 on-link, v6 not: v4 direct, v6 through pw-v6.1 (with the v6 FDB entry it needs).
  e.source.apply(node('half', ['10.244.4.0/24', 'fd00:10:244:4::/64'], ['198.18.0.4', 'fd00:198:19::4']));
  // Its v6 underlay subnet (/56) contains ours but ours does not contain its IP: symmetric rule says encapsulate.
  e.source.apply(node('wide', ['10.244.5.0/24', 'fd00:10:244:5::/64'], ['198.19.0.5', 'fd00:198:18:100::5'], { [ANNOTATIONS.underlayCidr6]: 'fd00:198:18:100::5/56' }));
  await sync(e);
  t.same(await entries(e.kernel), {
    routes: [
      '10.244.2.0/24 via 198.18.0.2 dev eth0',
      '10.244.3.0/24 via 10.244.3.0 dev pw.1 onlink',
      '10.244.4.0/24 via 198.18.0.4 dev eth0',
      '10.244.5.0/24 via 10.244.5.0 dev pw.1 onlink',
      'fd00:10:244:2::/64 via fd00:198:18::2 dev eth0',
      'fd00:10:244:3::/64 via fd00:10:244:3:: dev pw-v6.1 onlink',
      'fd00:10:244:4::/64 via fd00:10:244:4:: dev pw-v6.1 onlink',
      'fd00:10:244:5::/64 via fd00:10:244:5:: dev pw-v6.1 onlink',
    ],
    neigh: ['10.244.3.0 0a:58:c6:13:00:03 permanent', '10.244.5.0 0a:58:c6:13:00:05 permanent'],
    fdb: ['0a:58:c6:13:00:03 dst 198.19.0.3', '0a:58:c6:13:00:05 dst 198.19.0.5'],
  });
  // The encapsulated v6 pod CIDRs ride the IPv6 device: v6 VTEP MAC (from the v6 node IP) -> v6 node IP.
  t.same(await entries6(e.kernel), {
    neigh: ['fd00:10:244:3:: 0a:58:00:00:00:03 permanent', 'fd00:10:244:4:: 0a:58:00:00:00:04 permanent', 'fd00:10:244:5:: 0a:58:00:00:00:05 permanent'],
    fdb: ['0a:58:00:00:00:03 dst fd00:198:19::3', '0a:58:00:00:00:04 dst fd00:198:19::4', '0a:58:00:00:00:05 dst fd00:198:18:100::5'],
  });
  const st = Object.fromEntries((e.comp.status().peers as PeerSt[]).map((p) => [p.node, [p.mode, p.modes]]));
  t.same(st, { far: ['vxlan', { ipv4: 'vxlan', ipv6: 'vxlan' }], half: ['vxlan', { ipv4: 'direct', ipv6: 'vxlan' }], n2: ['direct', { ipv4: 'direct', ipv6: 'direct' }], wide: ['vxlan', { ipv4: 'vxlan', ipv6: 'vxlan' }] });
  const a = Cidr.parse('fd00:198:18::1/64');
  const b = Cidr.parse('fd00:198:18:100::5/56');
  t.equal(isDirect(a, b.ip, b), isDirect(b, a.ip, a), 'v6: both ends decide the same');
  t.equal(e.writer.annotations.get(ANNOTATIONS.underlayCidr6), 'fd00:198:18::1/64', 'our v6 subnet is published for the peers\' decision');
  t.equal(e.writer.annotations.get(ANNOTATIONS.backendV6Data), '{"VNI":1,"VtepMAC":"0a:58:00:00:00:01"}', 'backend-v6-data: our IPv6 VTEP');
  // n2 moves off our v6 subnet: its v6 route switches to pw-v6.1 and gets a v6 FDB entry.
  e.source.apply(node('n2', ['10.244.2.0/24', 'fd00:10:244:2::/64'], ['198.18.0.2', 'fd00:198:19::2']));
  const refused = await emulateV6OnlinkCheck(e.kernel);
  await sync(e);
  t.same(refused, [], 'direct -> onlink over pw-v6.1: the direct route goes first, so the kernel takes the onlink one');
  e.kernel.net.batchFailure = undefined;
  const r = (await entries(e.kernel)).routes;
  t.ok(r.includes('fd00:10:244:2::/64 via fd00:10:244:2:: dev pw-v6.1 onlink') && r.includes('10.244.2.0/24 via 198.18.0.2 dev eth0'), 'v6 encapsulated, v4 still direct', { r });
  t.ok((await entries6(e.kernel)).fdb.includes('0a:58:00:00:00:02 dst fd00:198:19::2'));
  t.notOk((await entries(e.kernel)).fdb.some((l) => l.startsWith('0a:58:c6:12:00:02')), 'no v4 FDB entry for a peer only encapsulated over IPv6');
});

t.test('overlapping IPv6 pod CIDRs: both peers skipped, named with the field, counted', async (t) => {
  const e = await setup(t, { clusterCIDR: DS, ownCidr: ['10.244.1.0/24', 'fd00:10:244:1::/64'] });
  e.source.apply(node('good', ['10.244.2.0/24', 'fd00:10:244:2::/64'], '198.18.0.2'));
  e.source.apply(node('dup6-a', ['10.244.3.0/24', 'fd00:10:244:4::/64'], '198.18.0.3'));
  e.source.apply(node('dup6-b', ['10.244.4.0/24', 'fd00:10:244:4::/63'], '198.18.0.4'));
  await sync(e);
  const bad = e.comp.status().invalidPeers as { node: string; field: string; value: string; reason: string }[];
  t.same(bad, [
    { node: 'dup6-a', field: 'spec.podCIDRs', value: 'fd00:10:244:4::/64', reason: "overlaps node dup6-b's pod CIDR fd00:10:244:4::/63" },
    { node: 'dup6-b', field: 'spec.podCIDRs', value: 'fd00:10:244:4::/63', reason: "overlaps node dup6-a's pod CIDR fd00:10:244:4::/64" },
  ]);
  t.match(await e.registry.getSingleMetricAsString('podwire_overlay_invalid_peers'), / 2/);
  t.match(await e.registry.getSingleMetricAsString('podwire_overlay_errors_total'), /reason="invalid_peer"} 2/);
  t.same((await entries(e.kernel)).routes, ['10.244.2.0/24 via 10.244.2.0 dev pw.1 onlink', 'fd00:10:244:2::/64 via fd00:10:244:2:: dev pw.1 onlink'], 'the good node is programmed, neither overlapping one');
  // IPv6-only too (no v4 sweep to catch it).
  const e6 = await setup(t, { backend: 'host-gw', clusterCIDR: 'fd00:10:244::/56', ownCidr: ['fd00:10:244:1::/64'], underlay: 'fd00:198:18::1/64' });
  e6.source.apply(node('a', ['fd00:10:244:8::/64'], 'fd00:198:18::8'));
  e6.source.apply(node('b', ['fd00:10:244:8::/64'], 'fd00:198:18::9'));
  await sync(e6);
  t.same((e6.comp.status().invalidPeers as { node: string }[]).map((p) => p.node), ['a', 'b']);
  t.same((await entries(e6.kernel)).routes, []);
});

t.test('IPv6-only vxlan + DirectRouting: over an IPv6 underlay the v6 pod CIDR goes direct on a shared subnet', async (t) => {
  const e = await setup(t, { clusterCIDR: 'fd00:10:244::/56', ownCidr: ['fd00:10:244:1::/64'], underlay: 'fd00:198:18::1/64', section: { directRouting: true } });
  e.source.apply(node('n2', ['fd00:10:244:2::/64'], 'fd00:198:18::2'));
  e.source.apply(node('far', ['fd00:10:244:3::/64'], 'fd00:198:19::3'));
  await sync(e);
  t.same(await entries(e.kernel), {
    routes: ['fd00:10:244:2::/64 via fd00:198:18::2 dev eth0', 'fd00:10:244:3::/64 via fd00:10:244:3:: dev pw.1 onlink'],
    neigh: ['fd00:10:244:3:: 0a:58:00:00:00:03 permanent'],
    fdb: ['0a:58:00:00:00:03 dst fd00:198:19::3'],
  });
  t.same((e.comp.status().peers as PeerSt[]).map((p) => [p.node, p.mode, p.via]), [
    ['far', 'vxlan', 'fd00:198:19::3 (vxlan pw.1, VTEP fd00:10:244:3:: 0a:58:00:00:00:03)'],
    ['n2', 'direct', 'fd00:198:18::2 (direct eth0)'],
  ]);
});

t.test('a public-ipv6 that is not an IPv6 address: that peer is skipped, named with the annotation', async (t) => {
  const e = await setup(t, { backend: 'host-gw', clusterCIDR: DS, ownCidr: ['10.244.1.0/24', 'fd00:10:244:1::/64'], underlay6: 'fd00:198:18::1/64' });
  e.source.apply(node('n2', ['10.244.2.0/24', 'fd00:10:244:2::/64'], ['198.18.0.2', 'fd00:198:18::2']));
  e.source.apply(node('bad', ['10.244.3.0/24', 'fd00:10:244:3::/64'], ['198.18.0.3', 'fd00:198:18::3'], { [ANNOTATIONS.publicIpv6]: '198.18.0.3' }));
  await sync(e);
  t.match(e.comp.status().invalidPeers, [{ node: 'bad', field: `metadata.annotations[${ANNOTATIONS.publicIpv6}]`, value: '198.18.0.3', reason: 'not an IPv6 address' }]);
  t.equal((e.comp.status().peers as PeerSt[]).length, 1, 'n2 still programmed');
});

// Dual-stack vxlan with an IPv6 node IP: flannel's layout, flannel.1 over IPv4 and flannel-v6.1 over IPv6.
t.test('dual-stack vxlan with an IPv6 node IP: pw-v6.1 over the IPv6 underlay, decided per peer, backend-v6-data', async (t) => {
  const e = await setup(t, { clusterCIDR: DS, ownCidr: ['10.244.1.0/24', 'fd00:10:244:1::/64'], underlay6: 'fd00:198:18::1/64' });
  const flannel = {
    [ANNOTATIONS.backendType]: 'vxlan',
    [ANNOTATIONS.backendData]: '{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:04"}',
    [ANNOTATIONS.backendV6Data]: '{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:64"}',
    [ANNOTATIONS.publicIp]: '198.18.0.4',
    [ANNOTATIONS.publicIpv6]: 'fd00:198:18::4',
    [ANNOTATIONS.kubeSubnetManager]: 'true',
  };
  // A flannel node: its v6 node IP from public-ipv6, its v6 VTEP MAC from backend-v6-data.
  e.source.apply(node('fl', ['10.244.4.0/24', 'fd00:10:244:4::/64'], '198.18.0.4', flannel));
  // A Podwire node in manifest mode (no annotations) with a v6 InternalIP: runs pw-v6.1 too, derived MAC.
  e.source.apply(node('n2', ['10.244.2.0/24', 'fd00:10:244:2::/64'], ['198.18.0.2', 'fd00:198:18::2']));
  // An older Podwire node (backend-data, public-ipv6, no backend-v6-data): its v6 pods ride in pw.1.
  e.source.apply(node('old', ['10.244.5.0/24', 'fd00:10:244:5::/64'], ['198.18.0.5', 'fd00:198:18::5'], { [ANNOTATIONS.backendType]: 'vxlan', [ANNOTATIONS.backendData]: '{"VNI":1,"VtepMAC":"0a:58:c6:12:00:05"}', [ANNOTATIONS.publicIpv6]: 'fd00:198:18::5' }));
  // A dual-stack peer without an IPv6 node IP: today's path, v6 inside pw.1.
  e.source.apply(node('nov6', ['10.244.6.0/24', 'fd00:10:244:6::/64'], '198.18.0.6'));
  e.source.apply(node('vni', ['10.244.7.0/24', 'fd00:10:244:7::/64'], '198.18.0.7', { ...flannel, [ANNOTATIONS.backendV6Data]: '{"VNI":2,"VtepMAC":"aa:bb:cc:dd:ee:67"}', [ANNOTATIONS.publicIpv6]: 'fd00:198:18::7' }));
  await sync(e);

  const dev6 = await e.kernel.net.getLink('pw-v6.1');
  t.same(dev6?.vxlan, { vni: 1, port: 8472, local: 'fd00:198:18::1', learning: false, underlayIndex: (await e.kernel.net.getLink('eth0'))?.index }, 'pw-v6.1: VNI 1, port 8472, local = the IPv6 node IP, nolearning, on the v6 underlay');
  t.equal(dev6?.mtu, 1430, 'pw-v6.1 MTU = v6 underlay - 70');
  t.equal(dev6?.mac, '0a:58:00:00:00:01', 'its MAC derived from the IPv6 node IP');
  t.equal((await e.kernel.net.getLink('pw.1'))?.mtu, 1450, 'pw.1 MTU = v4 underlay - 50');
  t.equal(e.comp.status().mtu, 1430, 'pod MTU: the smaller of the two devices');
  t.match(readFileSync(e.comp.section.subnetFile, 'utf8'), /FLANNEL_MTU=1430/);
  t.same((await e.kernel.net.listAddresses('pw-v6.1')).map((a) => a.cidr.toString()), ['fd00:10:244:1::/128'], 'the v6 VTEP address on pw-v6.1');
  t.same((await e.kernel.net.listAddresses('pw.1')).map((a) => a.cidr.toString()), ['10.244.1.0/32'], 'and only the v4 one on pw.1');
  t.equal(e.writer.annotations.get(ANNOTATIONS.backendV6Data), '{"VNI":1,"VtepMAC":"0a:58:00:00:00:01"}', 'backend-v6-data: the v6 device\'s MAC');
  t.equal(e.writer.annotations.get(ANNOTATIONS.backendData), '{"VNI":1,"VtepMAC":"0a:58:c6:12:00:01"}', 'backend-data: pw.1\'s');
  t.equal(e.writer.annotations.get(ANNOTATIONS.publicIpv6), 'fd00:198:18::1');

  t.same(await entries(e.kernel), {
    routes: [
      '10.244.2.0/24 via 10.244.2.0 dev pw.1 onlink',
      '10.244.4.0/24 via 10.244.4.0 dev pw.1 onlink',
      '10.244.5.0/24 via 10.244.5.0 dev pw.1 onlink',
      '10.244.6.0/24 via 10.244.6.0 dev pw.1 onlink',
      'fd00:10:244:2::/64 via fd00:10:244:2:: dev pw-v6.1 onlink',
      'fd00:10:244:4::/64 via fd00:10:244:4:: dev pw-v6.1 onlink',
      'fd00:10:244:5::/64 via fd00:10:244:5:: dev pw.1 onlink',
      'fd00:10:244:6::/64 via fd00:10:244:6:: dev pw.1 onlink',
    ],
    neigh: [
      '10.244.2.0 0a:58:c6:12:00:02 permanent',
      '10.244.4.0 aa:bb:cc:dd:ee:04 permanent',
      '10.244.5.0 0a:58:c6:12:00:05 permanent',
      '10.244.6.0 0a:58:c6:12:00:06 permanent',
      'fd00:10:244:5:: 0a:58:c6:12:00:05 permanent',
      'fd00:10:244:6:: 0a:58:c6:12:00:06 permanent',
    ],
    fdb: ['0a:58:c6:12:00:02 dst 198.18.0.2', '0a:58:c6:12:00:05 dst 198.18.0.5', '0a:58:c6:12:00:06 dst 198.18.0.6', 'aa:bb:cc:dd:ee:04 dst 198.18.0.4'],
  }, 'pw.1: every v4 pod CIDR, and the v6 ones of the peers without a v6 VTEP');
  t.same(await entries6(e.kernel), {
    neigh: ['fd00:10:244:2:: 0a:58:00:00:00:02 permanent', 'fd00:10:244:4:: aa:bb:cc:dd:ee:64 permanent'],
    fdb: ['0a:58:00:00:00:02 dst fd00:198:18::2', 'aa:bb:cc:dd:ee:64 dst fd00:198:18::4'],
  }, 'pw-v6.1: v6 neighbour -> v6 VTEP MAC, FDB v6 VTEP MAC -> v6 node IP');
  const bad = (e.comp.status().invalidPeers as { node: string; field: string; reason: string }[]).find((x) => x.node === 'vni');
  t.equal(bad?.field, `metadata.annotations[${ANNOTATIONS.backendV6Data}].VNI`, 'a VNI clash in backend-v6-data names that field');
  const peers = Object.fromEntries((e.comp.status().peers as PeerSt[]).map((p) => [p.node, p.via6]));
  t.equal(peers.fl, 'fd00:198:18::4 (vxlan pw-v6.1, VTEP fd00:10:244:4:: aa:bb:cc:dd:ee:64)');
  t.match(peers.old, /vxlan pw\.1,/);
  t.equal(e.comp.status().device6, 'pw-v6.1');

  // Stale entries on pw-v6.1 are ours: a planted one goes at the next periodic dump; a deleted node's go at once.
  const net = e.kernel.net;
  await net.replaceNeighbor({ dev: 'pw-v6.1', ip: IpAddress.parse('fd00:10:244:98::'), mac: '02:00:00:00:00:98', permanent: true });
  await net.replaceFdb({ dev: 'pw-v6.1', mac: '02:00:00:00:00:98', dst: IpAddress.parse('fd00:198:18::98'), permanent: true });
  e.source.remove('Node', 'n2');
  await sync(e);
  e.clock.advance(e.config.syncInterval);
  await sync(e);
  t.same(await entries6(e.kernel), { neigh: ['fd00:10:244:4:: aa:bb:cc:dd:ee:64 permanent'], fdb: ['aa:bb:cc:dd:ee:64 dst fd00:198:18::4'] }, 'n2 and the planted entries removed from pw-v6.1');
  t.notOk((await entries(e.kernel)).routes.some((r) => r.startsWith('fd00:10:244:2::')), 'n2\'s v6 route removed');

  // A failed v6 FDB entry rolls that node back (its v4 entries too); the others stay.
  e.kernel.net.batchFailure = (kind, change) => (kind === 'fdb' && change.op !== 'delete' && String((change.entry as { dst?: unknown }).dst) === 'fd00:198:18::3' ? E.ENOBUFS : 0);
  e.source.apply(node('n3', ['10.244.3.0/24', 'fd00:10:244:3::/64'], ['198.18.0.3', 'fd00:198:18::3']));
  await t.rejects(sync(e), { code: 'PW_KERNEL' });
  const after = await entries(e.kernel);
  t.notOk(after.routes.some((r) => r.startsWith('10.244.3.') || r.startsWith('fd00:10:244:3:')), 'n3: no routes left', { routes: after.routes });
  t.notOk(after.neigh.some((r) => r.startsWith('10.244.3.')) || after.fdb.some((r) => r.includes('198.18.0.3')), 'n3: no pw.1 entries left');
  t.same((await entries6(e.kernel)).neigh, ['fd00:10:244:4:: aa:bb:cc:dd:ee:64 permanent'], 'n3: no v6 neighbour left');
  e.kernel.net.batchFailure = undefined;
  await sync(e);
  t.ok((await entries6(e.kernel)).fdb.includes('0a:58:00:00:00:03 dst fd00:198:18::3'), 'the next sync programs it');

  await e.comp.cleanup();
  t.equal(await e.kernel.net.getLink('pw-v6.1'), undefined, 'cleanup removes pw-v6.1');
  t.equal(await e.kernel.net.getLink('pw.1'), undefined, 'and pw.1');
});

t.test('the IPv6 device goes when the node loses its IPv6 node IP; peers fall back to pw.1', async (t) => {
  const e = await setup(t, { clusterCIDR: DS, ownCidr: ['10.244.1.0/24', 'fd00:10:244:1::/64'], underlay6: 'fd00:198:18::1/64', writesBack: true });
  e.source.apply(node('n2', ['10.244.2.0/24', 'fd00:10:244:2::/64'], ['198.18.0.2', 'fd00:198:18::2']));
  await sync(e);
  t.ok(await e.kernel.net.getLink('pw-v6.1'));
  e.source.apply(node('n1', ['10.244.1.0/24', 'fd00:10:244:1::/64'], ['198.18.0.1']));
  await sync(e);
  t.equal(await e.kernel.net.getLink('pw-v6.1'), undefined, 'pw-v6.1 removed');
  t.same((await entries(e.kernel)).routes, ['10.244.2.0/24 via 10.244.2.0 dev pw.1 onlink', 'fd00:10:244:2::/64 via fd00:10:244:2:: dev pw.1 onlink'], 'v6 inside pw.1 again');
  t.same((await e.kernel.net.listAddresses('pw.1')).map((a) => a.cidr.toString()).sort(), ['10.244.1.0/32', 'fd00:10:244:1::/128'], 'the v6 VTEP address back on pw.1');
  t.equal(e.comp.status().mtu, 1450);
  t.equal(e.writer.annotations.get(ANNOTATIONS.backendV6Data), '{"VNI":1,"VtepMAC":"0a:58:00:00:00:01"}', 'announced while pw-v6.1 ran');
  // Our Node as the API server now has it (the fake source does not feed our PATCHes back).
  e.source.apply(node('n1', ['10.244.1.0/24', 'fd00:10:244:1::/64'], ['198.18.0.1'], { [ANNOTATIONS.backendV6Data]: '{"VNI":1,"VtepMAC":"0a:58:00:00:00:01"}' }));
  await sync(e);
  t.notOk(e.writer.annotations.has(ANNOTATIONS.backendV6Data), 'backend-v6-data removed from our Node: no v6 VTEP any more');
  // The IPv6 node IP comes back: the v6 route moves from pw.1 to the new pw-v6.1 (the old one goes first).
  e.source.apply(node('n1', ['10.244.1.0/24', 'fd00:10:244:1::/64'], ['198.18.0.1', 'fd00:198:18::1']));
  const refused = await emulateV6OnlinkCheck(e.kernel);
  await sync(e);
  e.kernel.net.batchFailure = undefined;
  t.same(refused, [], 'the kernel takes the moved onlink route');
  t.same((await entries(e.kernel)).routes, ['10.244.2.0/24 via 10.244.2.0 dev pw.1 onlink', 'fd00:10:244:2::/64 via fd00:10:244:2:: dev pw-v6.1 onlink']);
});

t.test('dual-stack with pw-v6.1: a restart changes nothing; v6 VTEP MAC clashes skip the peers by name', async (t) => {
  const e = await setup(t, { clusterCIDR: DS, ownCidr: ['10.244.1.0/24', 'fd00:10:244:1::/64'], underlay6: 'fd00:198:18::1/64' });
  e.source.apply(node('n2', ['10.244.2.0/24', 'fd00:10:244:2::/64'], ['198.18.0.2', 'fd00:198:18::2']));
  // Two peers claiming one v6 VTEP MAC, and one claiming ours.
  const v6data = (mac: string) => ({ [ANNOTATIONS.backendType]: 'vxlan', [ANNOTATIONS.backendData]: `{"VNI":1,"VtepMAC":"02:00:00:00:00:${mac.slice(-2)}"}`, [ANNOTATIONS.backendV6Data]: `{"VNI":1,"VtepMAC":"${mac}"}` });
  e.source.apply(node('c1', ['10.244.3.0/24', 'fd00:10:244:3::/64'], ['198.18.0.3', 'fd00:198:18::3'], v6data('02:00:00:00:66:03')));
  e.source.apply(node('c2', ['10.244.4.0/24', 'fd00:10:244:4::/64'], ['198.18.0.4', 'fd00:198:18::4'], { ...v6data('02:00:00:00:66:03'), [ANNOTATIONS.backendData]: '{"VNI":1,"VtepMAC":"02:00:00:00:00:04"}' }));
  e.source.apply(node('mine', ['10.244.5.0/24', 'fd00:10:244:5::/64'], ['198.18.0.5', 'fd00:198:18::5'], v6data('0a:58:00:00:00:01')));
  await sync(e);
  const bad = Object.fromEntries((e.comp.status().invalidPeers as { node: string; field: string; reason: string }[]).map((p) => [p.node, [p.field, p.reason]]));
  const f6 = `metadata.annotations[${ANNOTATIONS.backendV6Data}].VtepMAC`;
  t.same(bad, { c1: [f6, 'IPv6 VTEP MAC clash with node c2'], c2: [f6, 'IPv6 VTEP MAC clash with node c1'], mine: [f6, "MAC clash with this node's own IPv6 VTEP MAC"] });
  t.same((e.comp.status().peers as PeerSt[]).map((p) => p.node), ['n2']);
  const again = new OverlayComponent({ config: e.config, section: e.comp.section, state: clusterStateOf(e.source), node: e.writer, kernel: e.kernel, logger: silentLogger, clock: e.clock, metrics: e.registry });
  await again.reconcileOnStart();
  const before = e.kernel.net.calls.length;
  await again.sync(ac.signal);
  t.same(e.kernel.net.calls.slice(before).map((c) => c.method), [], 'no link, address, route, neighbour or FDB write: both devices kept');
});

// Node IPs per family (issue #8): a dual-stack Node may list its IPv6 InternalIP first.
const V6FIRST_CIDRS = ['10.244.1.0/24', 'fd00:10:244:1::/64'];

t.test('node IP per family: the v6 InternalIP listed first, vxlan still runs pw.1 over IPv4 and pw-v6.1 over IPv6', async (t) => {
  const e = await setup(t, { clusterCIDR: DS, ownCidr: V6FIRST_CIDRS, underlay6: 'fd00:198:18::1/64', v6First: true });
  t.same(e.source.get('Node', 'n1')?.addresses.map((a) => a.address), ['fd00:198:18::1', '198.18.0.1'], 'our Node lists the IPv6 InternalIP first');
  // Peers listing theirs v6 first too, one of them with only an IPv4 ExternalIP besides.
  e.source.apply(node('n2', ['10.244.2.0/24', 'fd00:10:244:2::/64'], ['fd00:198:18::2', '198.18.0.2']));
  const ext = node('n3', ['10.244.3.0/24', 'fd00:10:244:3::/64'], ['fd00:198:18::3']);
  e.source.apply({ ...ext, addresses: [...ext.addresses, { type: 'ExternalIP', address: '198.18.0.3' }] });
  await sync(e);
  t.same(e.comp.status().invalidPeers, [], 'no peer refused');
  t.match((await e.kernel.net.getLink('pw.1'))?.vxlan, { local: '198.18.0.1' }, 'pw.1: local = the IPv4 node IP');
  t.match((await e.kernel.net.getLink('pw-v6.1'))?.vxlan, { local: 'fd00:198:18::1' }, 'pw-v6.1: local = the IPv6 node IP');
  t.equal(e.comp.status().mtu, 1430, 'pod MTU: the smaller of pw.1 (1450) and pw-v6.1 (1430)');
  t.same((await entries(e.kernel)).fdb, ['0a:58:c6:12:00:02 dst 198.18.0.2', '0a:58:c6:12:00:03 dst 198.18.0.3'], 'pw.1 FDB: the peers\' IPv4 node IPs (n3: its IPv4 ExternalIP)');
  t.same((await entries6(e.kernel)).fdb, ['0a:58:00:00:00:02 dst fd00:198:18::2', '0a:58:00:00:00:03 dst fd00:198:18::3'], 'pw-v6.1 FDB: their IPv6 node IPs');
  t.same((await entries(e.kernel)).routes, [
    '10.244.2.0/24 via 10.244.2.0 dev pw.1 onlink',
    '10.244.3.0/24 via 10.244.3.0 dev pw.1 onlink',
    'fd00:10:244:2::/64 via fd00:10:244:2:: dev pw-v6.1 onlink',
    'fd00:10:244:3::/64 via fd00:10:244:3:: dev pw-v6.1 onlink',
  ]);
  t.same(Object.fromEntries(e.writer.annotations), {
    [ANNOTATIONS.backendType]: 'vxlan',
    [ANNOTATIONS.kubeSubnetManager]: 'true',
    [ANNOTATIONS.backendData]: '{"VNI":1,"VtepMAC":"0a:58:c6:12:00:01"}',
    [ANNOTATIONS.publicIp]: '198.18.0.1',
    [ANNOTATIONS.underlayCidr]: '198.18.0.1/24',
    [ANNOTATIONS.backendV6Data]: '{"VNI":1,"VtepMAC":"0a:58:00:00:00:01"}',
    [ANNOTATIONS.publicIpv6]: 'fd00:198:18::1',
    [ANNOTATIONS.underlayCidr6]: 'fd00:198:18::1/64',
  }, 'public-ip is the IPv4 node IP, public-ipv6 the IPv6 one');
  // flannel's annotations still win over the addresses, per family.
  e.source.apply(node('fl', ['10.244.4.0/24', 'fd00:10:244:4::/64'], ['fd00:198:18::40', '198.18.0.40'], { [ANNOTATIONS.publicIp]: '198.18.0.4', [ANNOTATIONS.publicIpv6]: 'fd00:198:18::4' }));
  await sync(e);
  const fdb = [...(await entries(e.kernel)).fdb, ...(await entries6(e.kernel)).fdb];
  t.ok(fdb.includes('0a:58:c6:12:00:04 dst 198.18.0.4') && fdb.includes('0a:58:00:00:00:04 dst fd00:198:18::4'), 'fl: public-ip and public-ipv6 over its addresses', { fdb });
});

t.test('node IP per family: host-gw and DirectRouting route IPv4 via the IPv4 node IPs when the v6 InternalIPs come first', async (t) => {
  const e = await setup(t, { backend: 'host-gw', clusterCIDR: DS, ownCidr: V6FIRST_CIDRS, underlay6: 'fd00:198:18::1/64', v6First: true });
  e.source.apply(node('n2', ['10.244.2.0/24', 'fd00:10:244:2::/64'], ['fd00:198:18::2', '198.18.0.2']));
  await sync(e);
  t.same(e.comp.status().invalidPeers, [], 'no peer refused');
  t.same((await entries(e.kernel)).routes, ['10.244.2.0/24 via 198.18.0.2 dev eth0', 'fd00:10:244:2::/64 via fd00:198:18::2 dev eth0'], 'host-gw: v4 via the v4 node IP, v6 via the v6 one');
  t.equal(e.comp.status().mtu, 1500);

  const d = await setup(t, { clusterCIDR: DS, ownCidr: V6FIRST_CIDRS, underlay6: 'fd00:198:18::1/64', v6First: true, section: { directRouting: true } });
  d.source.apply(node('n2', ['10.244.2.0/24', 'fd00:10:244:2::/64'], ['fd00:198:18::2', '198.18.0.2']));
  await sync(d);
  t.same((await entries(d.kernel)).routes, ['10.244.2.0/24 via 198.18.0.2 dev eth0', 'fd00:10:244:2::/64 via fd00:198:18::2 dev eth0'], 'DirectRouting: both families direct');
  t.match((d.comp.status().peers as PeerSt[])[0], { node: 'n2', mode: 'direct', modes: { ipv4: 'direct', ipv6: 'direct' } });
});

t.test('node IP per family: IPv6-only cluster prefers the IPv6 node IP (pw.1 over IPv6) when the Node lists an IPv4 one first', async (t) => {
  // An IPv6-only cluster whose Nodes also list an IPv4 InternalIP (first): the node IP is the IPv6 one.
  const e = await setup(t, { clusterCIDR: 'fd00:10:244::/56', ownCidr: ['fd00:10:244:1::/64'], underlay6: 'fd00:198:18::1/64' });
  e.source.apply(node('n2', ['fd00:10:244:2::/64'], ['198.18.0.2', 'fd00:198:18::2']));
  await sync(e);
  t.same(e.comp.status().invalidPeers, []);
  t.match((await e.kernel.net.getLink('pw.1'))?.vxlan, { local: 'fd00:198:18::1' }, 'pw.1 over the IPv6 node IP');
  t.equal(await e.kernel.net.getLink('pw-v6.1'), undefined, 'one device');
  t.same((await entries6(e.kernel, 'pw.1')).fdb, ['0a:58:00:00:00:02 dst fd00:198:18::2'], 'FDB: n2\'s IPv6 node IP');
  t.notOk(e.writer.annotations.has(ANNOTATIONS.publicIp), 'no public-ip');
});

t.test('node IP per family: our own public-ip/public-ipv6 are outputs, not input; a malformed family annotation names its field', async (t) => {
  const e = await setup(t, { clusterCIDR: DS, ownCidr: V6FIRST_CIDRS, underlay6: 'fd00:198:18::1/64', v6First: true });
  // Stale values we once published (the addresses moved since): status.addresses decides.
  e.source.apply(node('n1', V6FIRST_CIDRS, ['fd00:198:18::1', '198.18.0.1'], { [ANNOTATIONS.publicIp]: '198.18.0.99', [ANNOTATIONS.publicIpv6]: 'fd00:198:18::99' }));
  await sync(e);
  t.equal(e.comp.status().waitingFor, undefined, 'not waiting for 198.18.0.99 to appear on an interface');
  t.match((await e.kernel.net.getLink('pw-v6.1'))?.vxlan, { local: 'fd00:198:18::1' });
  // The operator's -overwrite still wins for this node.
  e.source.apply(node('n1', V6FIRST_CIDRS, ['fd00:198:18::1', '198.18.0.1'], { [ANNOTATIONS.publicIpOverwrite]: '198.18.0.99' }));
  await t.rejects(sync(e), { message: /198\.18\.0\.99 .*public-ip-overwrite.*on no interface/ }, 'public-ip-overwrite is read (and 198.18.0.99 is on no interface)');
  e.source.apply(node('n1', V6FIRST_CIDRS, ['fd00:198:18::1', '198.18.0.1']));
  e.source.apply(node('v6inv4', ['10.244.2.0/24', 'fd00:10:244:2::/64'], ['198.18.0.2', 'fd00:198:18::2'], { [ANNOTATIONS.publicIp]: 'fd00:198:18::2' }));
  await sync(e);
  t.match(e.comp.status().invalidPeers, [{ node: 'v6inv4', field: `metadata.annotations[${ANNOTATIONS.publicIp}]`, reason: /not an IPv4 address/ }]);
  t.same(nodePublicIp(node('x', [], ['fd00::1', '10.0.0.1'])).ip?.toString(), '10.0.0.1', 'nodePublicIp: IPv4 first');
  t.same(nodePublicIp(node('x', [], ['10.0.0.1', 'fd00::1']), { prefer: 6 }).ip?.toString(), 'fd00::1', 'prefer 6');
  t.same(nodePublicIp(node('x', [], ['fd00::1'])).ip?.toString(), 'fd00::1', 'no IPv4: the IPv6 one');
  t.same(nodePublicIp(node('x', [], ['fd00::1', '10.0.0.1'], { [ANNOTATIONS.publicIp]: '10.0.0.9' }), { self: true }).ip?.toString(), '10.0.0.1', 'self: public-ip ignored while addresses exist');
  t.same(nodePublicIp(node('x', [], [], { [ANNOTATIONS.publicIp]: '10.0.0.9' }), { self: true }).ip?.toString(), '10.0.0.9', 'self without addresses: public-ip used');
});

// Withdrawing stale annotations (issue #8): only with a writer that reaches the API server.
async function feedBack(e: Env, cidrs: string[], ips: string[]): Promise<void> {
  // Our Node as the API server has it after our PATCHes.
  e.source.apply(node('n1', cidrs, ips, Object.fromEntries(e.writer.annotations)));
  await sync(e);
}

t.test('stale annotations: the v6 keys are withdrawn when the node loses its IPv6 node IP or v6 pod CIDR, the v4 keys on an IPv6-only node', async (t) => {
  const e = await setup(t, { clusterCIDR: DS, ownCidr: V6FIRST_CIDRS, underlay6: 'fd00:198:18::1/64', writesBack: true });
  const w = e.writer as ApiNodeWriter;
  await feedBack(e, V6FIRST_CIDRS, ['198.18.0.1', 'fd00:198:18::1']);
  const v6keys = [ANNOTATIONS.backendV6Data, ANNOTATIONS.publicIpv6, ANNOTATIONS.underlayCidr6];
  t.ok(v6keys.every((k) => e.writer.annotations.has(k)), 'v6 keys published');
  const before = w.patches.length;
  await sync(e);
  t.equal(w.patches.length, before, 'nothing changed: no PATCH');
  // The IPv6 InternalIP disappears: every v6 key goes in one merge patch.
  await feedBack(e, V6FIRST_CIDRS, ['198.18.0.1']);
  const last = w.patches.at(-1)!;
  t.same(v6keys.map((k) => last[k]), [null, null, null], 'backend-v6-data, public-ipv6 and underlay-ipv6-cidr set to null');
  t.equal(last[ANNOTATIONS.publicIp], '198.18.0.1', 'the v4 keys stay');
  t.ok(v6keys.every((k) => !e.writer.annotations.has(k)), 'gone from our Node');
  const n = w.patches.length;
  await sync(e);
  await feedBack(e, V6FIRST_CIDRS, ['198.18.0.1']);
  t.equal(w.patches.length, n, 'withdrawn once: no repeated PATCH while the watch catches up, none after');

  // v6 back, then the v6 pod CIDR goes (the node IP stays): the v6 keys go again.
  await feedBack(e, V6FIRST_CIDRS, ['198.18.0.1', 'fd00:198:18::1']);
  await feedBack(e, V6FIRST_CIDRS, ['198.18.0.1', 'fd00:198:18::1']);
  t.ok(v6keys.every((k) => e.writer.annotations.has(k)), 'v6 keys published again');
  await feedBack(e, ['10.244.1.0/24'], ['198.18.0.1', 'fd00:198:18::1']);
  t.ok(v6keys.every((k) => !e.writer.annotations.has(k)), 'no v6 pod CIDR: the v6 keys withdrawn');

  // A left-over from before a restart, and a backend change: host-gw writes backend-v6-data "null".
  await feedBack(e, V6FIRST_CIDRS, ['198.18.0.1', 'fd00:198:18::1']);
  const hg = await setup(t, { backend: 'host-gw', clusterCIDR: DS, ownCidr: V6FIRST_CIDRS, writesBack: true });
  hg.source.apply(node('n1', V6FIRST_CIDRS, ['198.18.0.1'], Object.fromEntries(e.writer.annotations)));
  await sync(hg);
  const p = (hg.writer as ApiNodeWriter).patches.at(-1)!;
  t.same(v6keys.map((k) => p[k]), [null, null, null], 'a new host-gw podwired without an IPv6 node IP withdraws the vxlan node\'s v6 keys');
  t.equal(p[ANNOTATIONS.backendType], 'host-gw');

  // IPv6-only node with v4 keys left over: they go.
  const v4keys = [ANNOTATIONS.backendData, ANNOTATIONS.publicIp, ANNOTATIONS.underlayCidr];
  const o = await setup(t, { clusterCIDR: 'fd00:10:244::/56', ownCidr: ['fd00:10:244:1::/64'], underlay: 'fd00:198:18::1/64', writesBack: true });
  o.source.apply(node('n1', ['fd00:10:244:1::/64'], ['fd00:198:18::1'], { [ANNOTATIONS.backendData]: '{"VNI":1,"VtepMAC":"0a:58:c6:12:00:01"}', [ANNOTATIONS.publicIp]: '198.18.0.1', [ANNOTATIONS.underlayCidr]: '198.18.0.1/24', [ANNOTATIONS.publicIpOverwrite]: '' }));
  await sync(o);
  const q = (o.writer as ApiNodeWriter).patches.at(-1)!;
  t.same(v4keys.map((k) => q[k]), [null, null, null], 'backend-data, public-ip and underlay-cidr set to null');
  t.equal(q[ANNOTATIONS.publicIpv6], 'fd00:198:18::1');
  t.notOk(ANNOTATIONS.publicIpOverwrite in q, 'the operator\'s -overwrite key is never touched');
});

t.test('stale annotations: manifest mode (the recorder) writes no removal', async (t) => {
  const e = await setup(t, { clusterCIDR: DS, ownCidr: V6FIRST_CIDRS });
  e.source.apply(node('n1', V6FIRST_CIDRS, ['198.18.0.1'], { [ANNOTATIONS.backendV6Data]: '{"VNI":1,"VtepMAC":"0a:58:00:00:00:01"}', [ANNOTATIONS.publicIpv6]: 'fd00:198:18::1' }));
  let sent: Record<string, string | null> | undefined;
  const rec = e.writer as RecordingNodeWriter;
  const orig = rec.patchAnnotations.bind(rec);
  rec.patchAnnotations = async (a) => {
    sent = { ...a };
    await orig(a);
  };
  await sync(e);
  t.ok(sent, 'published');
  t.notOk(Object.values(sent ?? {}).includes(null), 'no null in what the recorder got', { sent });
});

t.test('vxlan.ipv6Device=false: no pw-v6.1 with an IPv6 node IP, every v6 pod CIDR inside pw.1, backend-v6-data withdrawn', async (t) => {
  const e = await setup(t, { clusterCIDR: DS, ownCidr: V6FIRST_CIDRS, underlay6: 'fd00:198:18::1/64', writesBack: true });
  const peerAnn = (last: string) => ({
    [ANNOTATIONS.backendType]: 'vxlan',
    [ANNOTATIONS.backendData]: `{"VNI":1,"VtepMAC":"0a:58:c6:12:00:${last}"}`,
    [ANNOTATIONS.backendV6Data]: `{"VNI":1,"VtepMAC":"0a:58:00:00:00:${last}"}`,
    [ANNOTATIONS.publicIp]: `198.18.0.${Number(last)}`,
    [ANNOTATIONS.publicIpv6]: `fd00:198:18::${Number(last)}`,
  });
  // A Podwire peer with pw-v6.1 (it publishes backend-v6-data).
  e.source.apply(node('n2', ['10.244.2.0/24', 'fd00:10:244:2::/64'], ['198.18.0.2', 'fd00:198:18::2'], peerAnn('02')));
  await sync(e);
  await feedBack(e, V6FIRST_CIDRS, ['198.18.0.1', 'fd00:198:18::1']);
  t.ok(e.source.get('Node', 'n1')?.meta.annotations[ANNOTATIONS.backendV6Data], 'our Node (as the API server has it) announces our IPv6 VTEP');
  t.ok(await e.kernel.net.getLink('pw-v6.1'), 'default: pw-v6.1 runs');
  t.ok(e.writer.annotations.has(ANNOTATIONS.backendV6Data));

  // The same node restarted with vxlan.ipv6Device=false.
  const section = { ...e.comp.section, vxlan: { ...e.comp.section.vxlan, ipv6Device: false } };
  const off = new OverlayComponent({ config: e.config, section, state: clusterStateOf(e.source), node: e.writer, kernel: e.kernel, logger: silentLogger, clock: e.clock, metrics: new Registry() });
  await off.sync(ac.signal);
  t.equal(await e.kernel.net.getLink('pw-v6.1'), undefined, 'pw-v6.1 removed');
  t.same((await entries(e.kernel)).routes, ['10.244.2.0/24 via 10.244.2.0 dev pw.1 onlink', 'fd00:10:244:2::/64 via fd00:10:244:2:: dev pw.1 onlink'], 'n2\'s v6 pods inside pw.1, although n2 runs pw-v6.1');
  t.same((await entries(e.kernel)).fdb, ['0a:58:c6:12:00:02 dst 198.18.0.2'], 'one FDB entry toward n2\'s IPv4 node IP');
  t.same((await e.kernel.net.listAddresses('pw.1')).map((a) => a.cidr.toString()).sort(), ['10.244.1.0/32', 'fd00:10:244:1::/128'], 'the v6 VTEP address on pw.1');
  t.equal(off.status().mtu, 1450, 'pod MTU: pw.1\'s alone');
  t.equal(off.status().ipv6PodsIn, 'pw.1 (vxlan.ipv6Device false)', 'podwire status says where the v6 pods ride');
  t.equal(e.comp.status().ipv6PodsIn, undefined, 'the default says nothing');
  const last = (e.writer as ApiNodeWriter).patches.at(-1)!;
  t.equal(last[ANNOTATIONS.backendV6Data], null, 'backend-v6-data withdrawn: peers put our v6 pods inside pw.1 too');
  t.equal(last[ANNOTATIONS.publicIpv6], 'fd00:198:18::1', 'public-ipv6 stays (IPv6 DirectRouting and host-gw use it)');
  // The peer's side: n2 sees us without backend-v6-data and decides the same.
  e.source.apply(node('n1', V6FIRST_CIDRS, ['198.18.0.1', 'fd00:198:18::1'], Object.fromEntries(e.writer.annotations)));
  const seen = collectPeers(e.source.list('Node'), 'n2', { backend: 'vxlan', vni: 1, clusterCIDRs: DS.split(',').map((c) => Cidr.parse(c)), serviceCIDRs: [Cidr.parse('10.96.0.0/12')], ownPodCIDRs: [Cidr.parse('10.244.2.0/24'), Cidr.parse('fd00:10:244:2::/64')], ownMac: '0a:58:c6:12:00:02', ownMac6: '0a:58:00:00:00:02' });
  t.equal(seen.peers.find((p) => p.node === 'n1')?.vtepMac6, undefined, 'n2 sees no IPv6 VTEP on n1: n1\'s v6 pods go inside pw.1 from n2 as well');
});
