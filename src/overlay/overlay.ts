/**
 * The overlay component (flannel's job): this node's lease from `spec.podCIDRs`, the
 * backend's device, one route (host-gw, direct) or neighbour + FDB + onlink route (vxlan)
 * per peer, egress masquerade in our own nftables table, ip_forward in this node's
 * namespace, flannel's subnet.env, and flannel's annotations on our Node.
 *
 * Each sync renders the whole desired state, diffs it against the kernel (ours only: our
 * route protocol, our device) and applies the difference in three batches. So a periodic
 * sync re-adds what went missing and deletes what is stale, and a restart changes nothing.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { KernelError, TryAgainError, errorMessage } from '../common/errors';
import { Cidr, type IpAddress } from '../common/ip';
import type { Component, ComponentContext, ComponentRegistration, ComponentStatus, SyncReport } from '../daemon/component';
import type { ClusterEvent } from '../k8s/types';
import type { FdbEntry, NeighborEntry } from '../kernel';
import { getBackend, type Lease, type Network, type Underlay } from './backend';
import { defaultOverlaySection, overlaySection, type OverlaySection } from './config';
import { renderCleanup, renderEgress, renderIptablesCleanup, renderIptablesEgress, renderSubnetEnv, writeAtomic } from './egress';
import { applyTxChecksum, type TxChecksumState } from './offload';
import { ANNOTATIONS, collectPeers, createPeerCache, nodePodCidrs, nodePublicIp, nodePublicIp6, preferFamily, type PeerCache, type PeerInfo, type PeerProblem } from './peers';
import { applyChangeSet, diff, indexState, keyPlan, stateOfPlans, type IndexedState, type KeyedPlan } from './reconcile';
import { readFile, rm } from 'node:fs/promises';

export const OVERLAY_CONDITION = 'NetworkUnavailable';

/**
 * The per-family keys the overlay writes on its own Node: removed when it no longer writes them.
 * backend-type and kube-subnet-manager are always written; the `-overwrite` keys are the
 * operator's and never touched.
 */
const PUBLISHED_KEYS = [ANNOTATIONS.backendData, ANNOTATIONS.publicIp, ANNOTATIONS.underlayCidr, ANNOTATIONS.backendV6Data, ANNOTATIONS.publicIpv6, ANNOTATIONS.underlayCidr6] as const;

interface OverlayMetrics {
  peers: Gauge<'mode'>;
  invalidPeers: Gauge;
  syncDuration: Histogram;
  added: Counter<'kind'>;
  removed: Counter<'kind'>;
  errors: Counter<'reason'>;
}

function metric<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

function createMetrics(registry: Registry): OverlayMetrics {
  const registers = [registry];
  return {
    peers: metric(registry, 'podwire_overlay_peers', () => new Gauge({ name: 'podwire_overlay_peers', help: 'Peers programmed, by mode (vxlan, direct, host-gw)', labelNames: ['mode'], registers })),
    invalidPeers: metric(registry, 'podwire_overlay_invalid_peers', () => new Gauge({ name: 'podwire_overlay_invalid_peers', help: 'Nodes skipped because of bad input (see the log and podwire status)', registers })),
    syncDuration: metric(registry, 'podwire_overlay_sync_duration_seconds', () => new Histogram({ name: 'podwire_overlay_sync_duration_seconds', help: 'Duration of one overlay sync', buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5], registers })),
    added: metric(registry, 'podwire_overlay_entries_added_total', () => new Counter({ name: 'podwire_overlay_entries_added_total', help: 'Routes, neighbour and FDB entries added or replaced', labelNames: ['kind'], registers })),
    removed: metric(registry, 'podwire_overlay_entries_removed_total', () => new Counter({ name: 'podwire_overlay_entries_removed_total', help: 'Stale routes, neighbour and FDB entries removed', labelNames: ['kind'], registers })),
    errors: metric(registry, 'podwire_overlay_errors_total', () => new Counter({ name: 'podwire_overlay_errors_total', help: 'Overlay errors: invalid_peer (bad input), kernel (a failed entry), egress, annotations', labelNames: ['reason'], registers })),
  };
}

export interface PeerStatus {
  node: string;
  podCIDRs: string[];
  via: string;
  /** Dual-stack: the IPv6 pod CIDR's path. */
  via6?: string;
  encapsulated: boolean;
  mode: string;
  modes: { ipv4?: string; ipv6?: string };
}

export class OverlayComponent implements Component {
  readonly name = 'overlay';
  readonly section: OverlaySection;
  private readonly metrics: OverlayMetrics;
  private network: Network | undefined;
  private waitingFor: string | undefined;
  /** The peers programmed by the last sync; status() renders them (not every sync). */
  private okPlans: KeyedPlan[] = [];
  private problems: PeerProblem[] = [];
  private readonly loggedProblems = new Map<string, string>();
  private failedPeers: { node: string; error: string }[] = [];
  private lastEgress: string | undefined;
  private lastEgressAt = 0;
  private lastSubnetEnv: string | undefined;
  private lastAnnotations: string | undefined;
  /** Stale keys removed by our last PATCHes, until our Node no longer shows any. */
  private readonly withdrawn = new Set<string>();
  private lastCondition: string | undefined;
  private lastSync: { durationMs: number; added: number; removed: number; phasesMs: Record<string, number> } | undefined;
  private syncs = 0;
  /** What we programmed, as last dumped and then applied (undefined: dump at the next sync). */
  private applied: { state: IndexedState; deviceIndex: number | undefined; device6Index: number | undefined; underlayIndex: number; underlay6Index: number | undefined } | undefined;
  private readonly peerCache: PeerCache = createPeerCache();
  private readonly planCache = new Map<string, { info: PeerInfo; netKey: string; plan: KeyedPlan | PeerProblem }>();
  private lastDumpAt: number | undefined;
  /** Why this node's IPv6 pod CIDR is not routed (host-gw without an IPv6 node IP), for the status. */
  private ipv6Note: string | undefined;
  private loggedIpv6Note: string | undefined;
  /** TX checksum offload of our VXLAN device, decided once per device (ifindex). */
  private txChecksum: (TxChecksumState & { deviceIndex: number | undefined }) | undefined;
  private txChecksum6: (TxChecksumState & { deviceIndex: number | undefined }) | undefined;

  constructor(private readonly ctx: ComponentContext<OverlaySection | undefined>) {
    this.section = ctx.section ?? defaultOverlaySection(ctx.config, process.env);
    this.metrics = createMetrics(ctx.metrics);
  }

  handleEvent(event: ClusterEvent): boolean {
    return event.kind === 'Node';
  }

  async reconcileOnStart(): Promise<void> {
    const routes = await this.ctx.kernel.net.listRoutes({ protocol: this.section.routeProtocol });
    const dev = await this.ctx.kernel.net.getLink(this.section.vxlan.device);
    const dev6 = await this.ctx.kernel.net.getLink(this.section.vxlan.deviceV6);
    this.ctx.logger.info({ routes: routes.length, device: dev ? this.section.vxlan.device : undefined, device6: dev6 ? this.section.vxlan.deviceV6 : undefined }, 'found overlay state in the kernel; the first sync diffs against it');
  }

  private wait(reason: string, field: string, value: unknown): never {
    this.waitingFor = reason;
    this.setCondition('True', 'PodwireNotReady', reason);
    throw new TryAgainError(reason, { field, value });
  }

  private setCondition(status: 'True' | 'False', reason: string, message: string): void {
    const key = `${status}|${reason}|${message}`;
    if (key === this.lastCondition) return;
    this.lastCondition = key;
    this.ctx.node.setCondition({ type: OVERLAY_CONDITION, status, reason, message }).catch((err: unknown) => {
      this.lastCondition = undefined;
      this.ctx.logger.warn({ err }, 'could not set the Node condition');
    });
  }

  /** This node's lease: pod CIDRs, node IP and the underlay interface holding it. */
  private async lease(): Promise<Lease> {
    const { config } = this.ctx;
    const node = this.ctx.state.get('Node', config.nodeName);
    if (!node) this.wait(`Node ${JSON.stringify(config.nodeName)} is not in the cluster state yet`, 'nodeName', config.nodeName);
    const { cidrs, problem } = nodePodCidrs(node);
    if (problem) this.wait(`own Node ${node.meta.name}: ${problem.field} ${JSON.stringify(problem.value)}: ${problem.reason}`, problem.field, problem.value);
    if (cidrs.length === 0) this.wait(`Node ${JSON.stringify(node.meta.name)} has no spec.podCIDRs yet (kube-controller-manager --allocate-node-cidrs assigns them)`, 'spec.podCIDRs', []);
    // The families routed: the cluster CIDR's (an IPv6-only cluster has no IPv4 range, and needs no IPv4 pod CIDR).
    const clusterFamilies = new Set(config.clusterCIDR.split(',').map((c) => (c.includes(':') ? 6 : 4)));
    const v4 = clusterFamilies.has(4) ? cidrs.find((c) => c.family === 4) : undefined;
    let v6 = clusterFamilies.has(6) ? cidrs.find((c) => c.family === 6) : undefined;
    if (!v4 && !v6) this.wait(`Node ${JSON.stringify(node.meta.name)} has no pod CIDR of the cluster CIDR ${config.clusterCIDR}`, 'spec.podCIDRs', node.podCIDRs);
    // Per family from status.addresses (any order): IPv4 first unless the cluster is IPv6-only.
    const pub = nodePublicIp(node, { self: true, prefer: preferFamily(config.clusterCIDR) });
    if (!pub.ip) this.wait(`own Node ${node.meta.name}: ${pub.field}: ${pub.reason ?? 'missing'}`, pub.field, pub.value);
    const net = this.ctx.kernel.net;
    const addrs = await net.listAddresses();
    const links = await net.listLinks();
    const underlayOf = (ip: IpAddress, field: string, value: unknown): Underlay => {
      const addr = addrs.find((a) => a.cidr.ip.equals(ip));
      if (!addr) this.wait(`node IP ${ip.toString()} (${field}) is on no interface of this node`, field, value);
      const link = links.find((l) => l.index === addr.linkIndex);
      if (!link) this.wait(`the interface holding ${ip.toString()} vanished`, field, value);
      return { name: link.name, index: link.index, mtu: link.mtu, cidr: addr.cidr };
    };
    const underlay = underlayOf(pub.ip, pub.field, pub.value);
    // The IPv6 node IP: the node IP itself over an IPv6 underlay, else public-ipv6 / an IPv6 InternalIP.
    let publicIp6: IpAddress | undefined;
    let underlay6: Underlay | undefined;
    this.ipv6Note = undefined;
    if (pub.ip.family === 6) {
      publicIp6 = pub.ip;
      underlay6 = underlay;
    } else if (v6) {
      const p6 = nodePublicIp6(node, { self: true });
      if (p6.reason) this.wait(`own Node ${node.meta.name}: ${p6.field}: ${p6.reason}`, p6.field, p6.value);
      const held = p6.ip && addrs.some((a) => a.cidr.ip.equals(p6.ip!));
      if (p6.ip && (held || config.backend === 'host-gw')) {
        publicIp6 = p6.ip;
        underlay6 = underlayOf(p6.ip, p6.field, p6.value);
      } else if (p6.ip) {
        // vxlan carries the v6 pods through pw.1 without it; only v6 DirectRouting needs it.
        this.ipv6Note = `IPv6 node IP ${p6.ip.toString()} (${p6.field}) is on no interface of this node: no IPv6 DirectRouting`;
      } else if (config.backend === 'host-gw') {
        // host-gw routes a v6 pod CIDR via a v6 node IP; without one the v6 pods are not routed (v4 keeps working).
        this.ipv6Note = `the IPv6 pod CIDR ${v6.toString()} is not routed: host-gw needs an IPv6 node IP (public-ipv6 annotation or an IPv6 InternalIP) and Node ${node.meta.name} has none`;
        v6 = undefined;
      }
    }
    if (this.ipv6Note && this.ipv6Note !== this.loggedIpv6Note) this.ctx.logger.warn({ node: node.meta.name }, this.ipv6Note);
    this.loggedIpv6Note = this.ipv6Note;
    return { node: node.meta.name, podCIDRs: cidrs, v4, v6, publicIp: pub.ip, underlay, publicIp6, underlay6 };
  }

  async sync(signal: AbortSignal): Promise<SyncReport> {
    const t0 = performance.now();
    const { config, kernel, logger } = this.ctx;
    const backend = getBackend(config.backend);
    if (!backend) throw new TryAgainError(`unknown overlay backend ${JSON.stringify(config.backend)}`, { field: 'backend', value: config.backend });
    const phases: Record<string, number> = {};
    let tp = t0;
    const phase = (name: string): void => {
      const now = performance.now();
      phases[name] = Math.round((now - tp) * 10) / 10;
      tp = now;
    };
    const lease = await this.lease();
    this.waitingFor = undefined;
    const network = await backend.register(lease, { kernel, section: this.section, logger, mtuOverride: config.mtu });
    this.network = network;
    if (network.device && (!this.txChecksum || this.txChecksum.deviceIndex !== network.deviceIndex)) {
      const st = await applyTxChecksum(kernel, network.device, this.section.vxlan.txChecksumOffload, this.section.masquerade, logger);
      this.txChecksum = { ...st, deviceIndex: network.deviceIndex };
    }
    // The IPv6 device gets the same decision (the old kernels' checksum bug is in the NAT of the inner packet).
    if (network.device6 && (!this.txChecksum6 || this.txChecksum6.deviceIndex !== network.device6Index)) {
      const st = await applyTxChecksum(kernel, network.device6, this.section.vxlan.txChecksumOffload, this.section.masquerade, logger);
      this.txChecksum6 = { ...st, deviceIndex: network.device6Index };
    }
    phase('lease+device');
    if (signal.aborted) return {};

    const clusterCIDRs = config.clusterCIDR.split(',').map((c) => Cidr.parse(c.trim()));
    const serviceCIDRs = config.serviceCIDR.split(',').map((c) => Cidr.parse(c.trim()));
    const { peers, problems } = collectPeers(
      this.ctx.state.values('Node'),
      lease.node,
      { backend: config.backend, vni: this.section.vxlan.vni, clusterCIDRs, serviceCIDRs, ownPodCIDRs: lease.podCIDRs, ownMac: network.ownMac, ownMac6: network.ownMac6, underlayFamily: lease.publicIp.family, preferFamily: preferFamily(config.clusterCIDR), families: { v4: lease.v4 !== undefined, v6: lease.v6 !== undefined } },
      this.peerCache,
    );
    // Plans are cached per peer (same PeerInfo object and same network = same plan, keys computed once).
    const netKey = `${network.backend}|${network.device ?? ''}|${network.device6 ?? ''}|${lease.underlay.name}|${lease.underlay.cidr.toString()}|${lease.v4?.toString() ?? ''}|${lease.v6?.toString() ?? ''}|${lease.underlay6?.name ?? ''}|${lease.underlay6?.cidr.toString() ?? ''}|${this.section.routeProtocol}|${this.section.directRouting}`;
    const plans = new Map<string, KeyedPlan>();
    for (const p of peers) {
      const c = this.planCache.get(p.node);
      let plan: KeyedPlan | PeerProblem;
      if (c && c.info === p && c.netKey === netKey) plan = c.plan;
      else {
        const raw = network.plan(p);
        plan = 'reason' in raw ? raw : keyPlan(raw);
        this.planCache.set(p.node, { info: p, netKey, plan });
      }
      if ('reason' in plan) problems.push(plan);
      else plans.set(p.node, plan);
    }
    if (this.planCache.size > peers.length) {
      const names = new Set(peers.map((p) => p.node));
      for (const k of this.planCache.keys()) if (!names.has(k)) this.planCache.delete(k);
    }
    this.reportProblems(problems);
    phase('peers');

    // Forwarding and egress before routes: a pod's first packet already leaves correctly.
    for (const key of [...(lease.v4 ? ['net.ipv4.ip_forward'] : []), ...(lease.v6 ? ['net.ipv6.conf.all.forwarding'] : [])]) {
      if ((await kernel.sysctl.read(key)).trim() !== '1') {
        await kernel.sysctl.write(key, '1');
        logger.info({ sysctl: key }, 'set forwarding in this node\'s namespace');
      }
    }
    await this.syncEgress(clusterCIDRs, lease.podCIDRs);
    phase('egress');

    const actual = await this.readKernel(network);
    phase('read');
    const set = diff([...plans.values()], actual);
    phase('diff');
    const outcome = await applyChangeSet(kernel.net, set, plans);
    phase('apply');
    this.applied =
      outcome.failedNodes.size === 0 && outcome.failedDeletes.length === 0
        ? { state: stateOfPlans(plans.values()), deviceIndex: network.deviceIndex, device6Index: network.device6Index, underlayIndex: lease.underlay.index, underlay6Index: lease.underlay6?.index }
        : undefined;
    for (const k of ['route', 'neigh', 'fdb'] as const) {
      if (outcome.added[k]) this.metrics.added.inc({ kind: k }, outcome.added[k]);
      if (outcome.removed[k]) this.metrics.removed.inc({ kind: k }, outcome.removed[k]);
    }
    this.failedPeers = [...outcome.failedNodes].map(([node, error]) => ({ node, error }));
    for (const f of this.failedPeers) logger.error({ node: f.node, error: f.error }, 'programming the peer failed; its entries were rolled back');
    for (const d of outcome.failedDeletes) logger.error({ error: d }, 'removing a stale entry failed');
    const kernelFailures = outcome.failedNodes.size + outcome.failedDeletes.length;
    if (kernelFailures) this.metrics.errors.inc({ reason: 'kernel' }, kernelFailures);

    const ok = [...plans.values()].filter((p) => !outcome.failedNodes.has(p.node));
    this.okPlans = ok;
    for (const mode of ['vxlan', 'direct', 'host-gw']) this.metrics.peers.set({ mode }, ok.filter((p) => p.mode === mode).length);

    await this.writeSubnetEnv(clusterCIDRs, lease, network);
    await this.publish(network);
    this.setCondition('False', 'PodwireIsUp', `overlay ${network.backend} up, ${ok.length} peer(s)`);
    phase('files+status');

    const durationMs = performance.now() - t0;
    this.metrics.syncDuration.observe(durationMs / 1000);
    const added = outcome.added.route + outcome.added.neigh + outcome.added.fdb;
    const removed = outcome.removed.route + outcome.removed.neigh + outcome.removed.fdb;
    this.lastSync = { durationMs: Math.round(durationMs * 10) / 10, added, removed, phasesMs: phases };
    this.syncs++;
    if (added || removed) logger.info({ peers: ok.length, added, removed, durationMs: this.lastSync.durationMs }, 'overlay synced');
    if (kernelFailures) {
      throw new KernelError('overlay sync', `${kernelFailures} entr${kernelFailures === 1 ? 'y' : 'ies'} failed: ${[...outcome.failedNodes.entries()].map(([n, e]) => `${n}: ${e}`).concat(outcome.failedDeletes).slice(0, 5).join('; ')}`);
    }
    return { objects: ok.length };
  }

  /**
   * Ours in the kernel: dumped at the first sync, once per periodic interval (the full
   * reconcile: what went missing is re-added, what is stale is removed), after a failure and
   * when the device is new; in between, what the last sync applied (a dump of 10k routes costs
   * more than the sync itself).
   */
  private async readKernel(network: Network): Promise<IndexedState> {
    const now = this.ctx.clock.now();
    const a = this.applied;
    if (a && this.lastDumpAt !== undefined && now - this.lastDumpAt < this.ctx.config.syncInterval * 0.9 && a.deviceIndex === network.deviceIndex && a.device6Index === network.device6Index && a.underlayIndex === network.lease.underlay.index && a.underlay6Index === network.lease.underlay6?.index) {
      return a.state;
    }
    this.lastDumpAt = now;
    const net = this.ctx.kernel.net;
    const routes = await net.listRoutes({ family: network.lease.v6 ? (network.lease.v4 ? undefined : 6) : 4, protocol: this.section.routeProtocol });
    if (!network.device) return indexState({ routes, neigh: [], fdb: [] });
    const neigh: NeighborEntry[] = [];
    const fdb: FdbEntry[] = [];
    // Both our devices (pw.1 and, dual-stack with an IPv6 node IP, pw-v6.1): every entry on them is ours.
    for (const dev of network.device6 ? [network.device, network.device6] : [network.device]) {
      neigh.push(...(await net.listNeighbors(dev)));
      fdb.push(...(await net.listFdb(dev)));
    }
    // Ours: our VTEP entries. Link-local v6 neighbours the kernel learns on pw.1 are not.
    return indexState({ routes, neigh: neigh.filter((n) => n.ip.family === 4 || (network.lease.v6 !== undefined && !n.ip.toString().startsWith('fe80:'))), fdb });
  }

  private reportProblems(problems: PeerProblem[]): void {
    this.problems = problems;
    this.metrics.invalidPeers.set(problems.length);
    const seen = new Set<string>();
    for (const p of problems) {
      seen.add(p.node);
      const key = `${p.field}|${JSON.stringify(p.value)}|${p.reason}`;
      if (this.loggedProblems.get(p.node) === key) continue;
      this.loggedProblems.set(p.node, key);
      this.metrics.errors.inc({ reason: 'invalid_peer' });
      this.ctx.logger.warn({ node: p.node, field: p.field, value: p.value, reason: p.reason }, `skipping node ${p.node}: ${p.field}: ${p.reason}`);
    }
    for (const node of [...this.loggedProblems.keys()]) if (!seen.has(node)) this.loggedProblems.delete(node);
  }

  private async syncEgress(clusterCIDRs: Cidr[], own: Cidr[]): Promise<void> {
    const iptables = this.section.egressMode === 'iptables';
    const script = iptables ? `iptables:${clusterCIDRs.join(',')}|${own.join(',')}|${this.section.masquerade}` : renderEgress(this.section.nftTable, clusterCIDRs, own, this.section.masquerade);
    const now = this.ctx.clock.now();
    // Re-applied when it changes, and once per periodic interval (someone may have flushed it).
    if (script === this.lastEgress && now - this.lastEgressAt < this.ctx.config.syncInterval) return;
    try {
      if (iptables) {
        for (const family of [4, 6] as const) {
          const cidrs = clusterCIDRs.filter((c) => c.family === family);
          if (cidrs.length === 0) continue;
          const ipt = this.ctx.kernel.iptables(family);
          const saved = `${await ipt.save('nat')}\n${await ipt.save('filter')}`;
          await ipt.restore(renderIptablesEgress(cidrs, own, this.section.masquerade, saved), { noflush: true });
        }
        // Switching from nftables: our table goes.
        if (this.lastEgress === undefined) await this.ctx.kernel.nft.apply(renderCleanup(this.section.nftTable)).catch(() => undefined);
      } else {
        await this.ctx.kernel.nft.apply(script);
      }
    } catch (err) {
      this.metrics.errors.inc({ reason: 'egress' });
      throw err;
    }
    if (script !== this.lastEgress) this.ctx.logger.info({ mode: this.section.egressMode, table: iptables ? 'PODWIRE-OVL-*' : `inet ${this.section.nftTable}`, masquerade: this.section.masquerade }, 'applied the egress rules');
    this.lastEgress = script;
    this.lastEgressAt = now;
  }

  private async writeSubnetEnv(clusterCIDRs: Cidr[], lease: Lease, network: Network): Promise<void> {
    const content = renderSubnetEnv(clusterCIDRs, lease.podCIDRs, network.mtu, this.section.masquerade);
    if (content === this.lastSubnetEnv) return;
    const file = this.section.subnetFile;
    const existing = await readFile(file, 'utf8').catch(() => undefined);
    if (existing !== content) {
      await writeAtomic(file, content);
      this.ctx.logger.info({ path: file }, 'wrote subnet.env');
    }
    this.lastSubnetEnv = content;
  }

  private async publish(network: Network): Promise<void> {
    if (!this.section.publishAnnotations) return;
    const desired = network.annotations();
    // A family this node no longer has (no IPv6 node IP or v6 pod CIDR any more, no v6 VTEP, an
    // IPv6-only node's v4 keys) must not stay announced: peers would keep routing that family
    // to it. Each key of ours that we no longer write is removed from our Node (null in a merge
    // patch), also one left before a restart. Only when writes reach the API server: in manifest
    // mode the Node is the operator's file and nothing is written.
    const own = this.ctx.state.get('Node', this.ctx.config.nodeName)?.meta.annotations;
    const stale = this.ctx.node.writesBack && own ? PUBLISHED_KEYS.filter((k) => !(k in desired) && own[k] !== undefined) : [];
    if (stale.length === 0) this.withdrawn.clear();
    const key = JSON.stringify(desired);
    // Unchanged, and every stale key already withdrawn (the watch has not shown it yet): nothing to send.
    if (key === this.lastAnnotations && stale.every((k) => this.withdrawn.has(k))) return;
    const patch: Record<string, string | null> = { ...desired };
    for (const k of stale) patch[k] = null;
    try {
      await this.ctx.node.patchAnnotations(patch);
      this.lastAnnotations = key;
      for (const k of stale) this.withdrawn.add(k);
      if (stale.length) this.ctx.logger.info({ annotations: stale }, 'withdrew annotations this node no longer publishes');
    } catch (err) {
      this.metrics.errors.inc({ reason: 'annotations' });
      this.ctx.logger.warn({ err: errorMessage(err) }, 'could not publish the backend annotations; retrying next sync');
    }
  }

  private peerStatus(): PeerStatus[] {
    const n = this.network;
    const via = (p: KeyedPlan, mode: string | undefined, ip: string, underlay: string | undefined): string =>
      mode === 'vxlan' ? `${p.peer.publicIpText} (vxlan ${n?.device ?? ''}, VTEP ${p.peer.vtepText} ${p.peer.vtepMac})` : `${ip} (${mode === 'direct' ? 'direct' : 'host-gw'} ${underlay ?? ''})`;
    return this.okPlans.map((p) => {
      const m4 = p.modes.ipv4;
      const m6 = p.modes.ipv6;
      // Over the IPv6 device: the peer's v6 node IP, v6 VTEP address and v6 VTEP MAC.
      const v6 = p.fdb6
        ? `${p.fdb6.dst?.toString() ?? ''} (vxlan ${p.fdb6.dev}, VTEP ${p.peer.podCIDR6?.network.toString() ?? ''} ${p.fdb6.mac})`
        : m6
          ? via(p, m6, p.peer.publicIp6?.toString() ?? '', n?.lease.underlay6?.name)
          : undefined;
      return {
        node: p.node,
        podCIDRs: [...p.peer.podCIDRs],
        // The IPv4 path, else (IPv6-only) the IPv6 one.
        via: m4 ? via(p, m4, p.peer.publicIpText, n?.lease.underlay.name) : (v6 ?? ''),
        ...(m4 && v6 ? { via6: v6 } : {}),
        encapsulated: p.mode === 'vxlan',
        mode: p.mode,
        modes: p.modes,
      };
    });
  }

  status(): ComponentStatus {
    const n = this.network;
    return {
      backend: this.ctx.config.backend,
      subnet: n ? n.lease.podCIDRs.map(String) : [],
      mtu: n?.mtu,
      device: n?.device,
      vtepMac: n?.ownMac,
      device6: n?.device6,
      // vxlan.ipv6Device=false: the IPv6 pod CIDRs ride in the IPv4 device, and peers are told so.
      ipv6PodsIn: this.ctx.config.backend === 'vxlan' && !this.section.vxlan.ipv6Device && n?.device ? `${n.device} (vxlan.ipv6Device false)` : undefined,
      vtepMac6: n?.ownMac6,
      underlay: n ? `${n.lease.underlay.name} ${n.lease.underlay.cidr.toString()} mtu ${n.lease.underlay.mtu}` : undefined,
      underlay6: n?.lease.underlay6 && n.lease.underlay6 !== n.lease.underlay ? `${n.lease.underlay6.name} ${n.lease.underlay6.cidr.toString()}` : undefined,
      ipv6: this.ipv6Note,
      directRouting: this.ctx.config.backend === 'vxlan' ? this.section.directRouting : undefined,
      txChecksumOffload: this.txChecksum && n?.device
        ? { enabled: this.txChecksum.enabled, mode: this.txChecksum.mode, action: this.txChecksum.action, kernel: this.txChecksum.kernel, reason: this.txChecksum.reason, ...(this.txChecksum.error ? { error: this.txChecksum.error } : {}) }
        : undefined,
      waitingFor: this.waitingFor,
      peers: this.peerStatus(),
      invalidPeers: this.problems,
      failedPeers: this.failedPeers,
      lastSync: this.lastSync,
      syncs: this.syncs,
      subnetFile: this.section.subnetFile,
      egress: this.section.egressMode === 'iptables' ? 'iptables PODWIRE-OVL-POSTRTG / PODWIRE-OVL-FWD' : `nftables inet ${this.section.nftTable}`,
      routeProtocol: this.section.routeProtocol,
    };
  }

  /** `podwired --cleanup`: our routes, our devices (pw.1, pw-v6.1), our table, subnet.env. Every removal is attempted. */
  async cleanup(): Promise<void> {
    const net = this.ctx.kernel.net;
    const errors: string[] = [];
    const attempt = async (what: string, fn: () => Promise<unknown>): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        errors.push(`${what}: ${errorMessage(err)}`);
      }
    };
    await attempt('routes', async () => {
      const routes = await net.listRoutes({ protocol: this.section.routeProtocol });
      const r = await net.applyRoutes(routes.map((entry) => ({ op: 'delete' as const, entry })));
      if (r.failed.length) throw new Error(r.failed.map((f) => f.message).join('; '));
    });
    await attempt('device', () => net.deleteLink(this.section.vxlan.device));
    await attempt('IPv6 device', () => net.deleteLink(this.section.vxlan.deviceV6));
    await attempt('nftables', () => this.ctx.kernel.nft.apply(renderCleanup(this.section.nftTable)));
    // iptables only in iptables mode: reading a legacy table that is not there creates it.
    for (const family of this.section.egressMode === 'iptables' ? ([4, 6] as const) : []) {
      await attempt(`iptables (IPv${family})`, async () => {
        const ipt = this.ctx.kernel.iptables(family);
        const script = renderIptablesCleanup(`${await ipt.save('nat')}\n${await ipt.save('filter')}`);
        if (script) await ipt.restore(script, { noflush: true });
      });
    }
    await attempt('subnet.env', () => rm(this.section.subnetFile, { force: true }));
    if (errors.length) throw new Error(`overlay cleanup: ${errors.join('; ')}`);
  }
}

export function overlayRegistration(): ComponentRegistration<OverlaySection> {
  return {
    feature: 'overlay',
    name: 'overlay',
    section: overlaySection,
    create: (ctx) => new OverlayComponent(ctx),
  };
}
