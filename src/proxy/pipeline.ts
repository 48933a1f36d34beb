/**
 * The mode-independent half of the Service proxy, shared by the nftables, iptables and
 * ipvs proxiers (a Component each, src/daemon/component.ts). The pipeline owns:
 *
 * - handleEvent: the change trackers (model.ts), and our own Node's podCIDRs/zone
 *   (ownNodeInputs) — a change there re-renders every Service;
 * - sync: draining the trackers into the dirty Services (plus the ones to retry), building
 *   each one's ServiceModel (locality, topology zone, invalid Services), the stale UDP
 *   conntrack flush after the apply, the healthCheckNodePort servers, the
 *   kube-proxy metrics, health (/healthz) and the common status counts;
 * - start/close of the health servers.
 *
 * A mode (subclass) supplies only what differs, the hooks below: `prepare` (its periodic
 * read-back of the kernel and set-up; may ask for a full re-render), `renderService` (one
 * Service's ports into its desired state), `apply` (diff against the applied state and
 * one atomic kernel transaction per batch), its gauges and status fields, and its own
 * reconcileOnStart (adoption) and cleanup.
 *
 * When syncs run is the daemon's runner's business (proxyRegistration's minSyncPeriod /
 * syncPeriod, backoff after a sync that throws); it never runs two at once. What a mode
 * does every syncPeriod (read the kernel back) it decides in `prepare`.
 *
 * Failure: a mode's `apply` throws when a transaction failed as a whole (nftables,
 * iptables: that transaction is not applied; the runner retries with backoff), or reports
 * `failed` changes (ipvs: the rest is applied, health is updated). Either way the sync
 * counts as failed, the Services not (surely) applied are retried, and a full re-render that
 * was due stays due.
 */
import { Cidr, IpAddress } from '../common/ip';
import { errorMessage } from '../common/errors';
import type { Clock } from '../common/clock';
import type { Logger } from '../common/log';
import type { Kernel } from '../kernel';
import type { ClusterEvent, ClusterState, EndpointSliceObject, ServiceObject } from '../k8s/types';
import type { Component, ComponentContext, ComponentStatus, ControlMount, SyncReport } from '../daemon/component';
import type { DaemonConfig } from '../daemon/config';
import { buildProxySection, type ProxySection } from './config';
import { mountExpectedRoute, type ExpectedInfo } from './expected';
import { dropForwardChains } from '../kernel/forward-drop';
import { ProxierHealth, ServiceHealthServers } from './health';
import { createProxyMetrics, type ProxyMetrics } from './metrics';
import { buildServiceModel, ChangeTracker, ownNodeInputs, ZONE_LABEL, serviceProjection, sliceProjection, type ServicePortInfo } from './model';
import { programmedPorts, type ProgrammedPort } from './programmed';

export const KUBERNETES_SERVICE = 'default/kubernetes';
const TRIGGER_TIME = 'endpoints.kubernetes.io/last-change-trigger-time';

export interface ConntrackWork {
  family: 4 | 6;
  protocol: 'udp';
  dst?: string;
  dstPort?: number;
  replySrc?: string;
}

/** Is this endpoint IP inside one of our Node's podCIDRs (locality of endpoints without nodeName)? */
export type LocalMatcher = (ip: string) => boolean;

/** A healthCheckNodePort server's target: the Service and its local endpoint count. */
export interface HealthCheckTarget {
  namespace: string;
  name: string;
  localEndpoints: number;
}

/** What the pipeline hands a mode's `prepare`. */
export interface SyncStart {
  /** clock.now() when the sync began. */
  started: number;
  /** The changed Services (and the ones to retry), before a full re-render adds every Service. */
  dirty: ReadonlySet<string>;
  /** Every Service is re-rendered: the first sync, our Node changed, or a mode asked for it. */
  renderAll: boolean;
}

/** What a mode's `apply` reports. */
export interface ApplyResult<S> {
  /** The mode's own numbers for this sync (status' lastSync, the bench). */
  stats: S;
  /**
   * Changes that failed without failing the sync (IPVS: one errno per message; the rest is
   * applied): counted as a failed sync, and every Service of this sync is retried next time.
   * A transaction that fails as a whole throws instead.
   */
  failed?: number;
}

/** Builds the podCIDR matchers of our Node (a bad podCIDR only loses locality by CIDR). */
export function localMatchers(podCIDRs: readonly string[] | undefined): LocalMatcher[] {
  const out: LocalMatcher[] = [];
  for (const c of podCIDRs ?? []) {
    try {
      const cidr = Cidr.parse(c);
      out.push((ip) => {
        const a = IpAddress.tryParse(ip);
        return a !== undefined && cidr.contains(a);
      });
    } catch {
      // ignore a bad podCIDR
    }
  }
  return out;
}

export abstract class ProxyPipeline<S> implements Component {
  readonly name = 'proxy';
  readonly section: ProxySection;
  readonly health: ProxierHealth;
  /** Stats of the last sync (bench, status). */
  lastSync: S | undefined;
  protected readonly metrics: ProxyMetrics;
  protected readonly state: ClusterState;
  protected readonly kernel: Kernel;
  protected readonly logger: Logger;
  protected readonly clock: Clock;
  protected readonly config: DaemonConfig;
  /** What the last sync programmed of each Service (the ones with at least one port). */
  protected readonly programmed = new Map<string, ProgrammedPort[]>();
  /** Invalid Services and why (logged once per reason, counted). */
  protected readonly invalid = new Map<string, string>();
  protected closed = false;
  private readonly hcServers: ServiceHealthServers;
  private readonly hcDesired = new Map<string, HealthCheckTarget & { port: number }>();
  private readonly services = new ChangeTracker<ServiceObject>((a, b) => serviceProjection(a) === serviceProjection(b));
  private readonly slices = new ChangeTracker<EndpointSliceObject>((a, b) => sliceProjection(a) === sliceProjection(b));
  private readonly retry = new Set<string>();
  /**
   * Every Service must be re-rendered at the next sync. A sync takes the flag when it starts
   * (and puts it back when it fails), so a Node change that arrives while a sync is in flight
   * is not lost when that sync ends.
   */
  private renderAllPending = true;
  private serving = false;
  private readonly control: ControlMount | undefined;
  private unmountExpected: (() => void) | undefined;

  /** `status().mode`. */
  protected abstract readonly mode: string;

  constructor(ctx: ComponentContext<ProxySection | undefined>) {
    this.config = ctx.config;
    this.control = ctx.control;
    this.section = ctx.section ?? buildProxySection({}, ctx.config);
    this.state = ctx.state;
    this.kernel = ctx.kernel;
    this.logger = ctx.logger;
    this.clock = ctx.clock;
    this.metrics = createProxyMetrics(ctx.metrics);
    this.health = new ProxierHealth(this.clock, 2 * this.section.syncPeriodMs);
    this.hcServers = new ServiceHealthServers(this.section.healthCheckBindAddress, this.logger);
  }

  // ---- the mode's hooks

  /**
   * Start of a sync, after the changes are collected and before any Service is rendered: the
   * mode's periodic read-back of the kernel, its set-up. Returns whether every Service is
   * re-rendered (at least `s.renderAll`), or 'skip' when there is nothing to program at all.
   */
  protected abstract prepare(s: SyncStart): Promise<boolean | 'skip'>;

  /** Keys a full re-render covers besides the cluster's Services and the programmed ones (adopted owners). */
  protected ownedKeys(): Iterable<string> {
    return [];
  }

  /**
   * One Service's new ports (none: remove it) into the mode's desired state; `before`: what
   * the last sync programmed of it. A mode may reorder a port's `cluster` and `local`.
   */
  protected abstract renderService(key: string, ports: ServicePortInfo[], before: readonly ProgrammedPort[]): void;

  /**
   * Render (`render(keys)`, when the mode wants: all at once, or batch by batch), diff
   * against the applied state and apply. Throws when a transaction failed as a whole,
   * after putting the Services it did not apply back with `retryLater`.
   */
  protected abstract apply(keys: string[], render: (keys: readonly string[]) => void, signal: AbortSignal, renderAll: boolean): Promise<ApplyResult<S>>;

  /** The mode's gauges after a sync; `seconds`: the sync's duration. */
  protected abstract recordMetrics(seconds: number): void;

  /** The mode's own status fields (table, backend, kernel object counts). */
  protected abstract modeStatus(): Record<string, unknown>;

  /** What `GET /v1/proxy/services` says about this mode (expected.ts; for `podwire doctor`). */
  protected abstract expectedInfo(): Omit<ExpectedInfo, 'pending'>;

  /** After close() marked the proxier closed, before the health servers close: stop the mode's own loops. */
  protected async quiesce(): Promise<void> {}

  // ---- for the modes

  /** Tables and chains of others that DROP forwarded traffic (Docker's FORWARD policy): our accept cannot override them. */
  foreignForwardDrop: string[] = [];

  /**
   * At start-up, in every mode: another nftables table (not `ourNftTable`) or the iptables
   * filter FORWARD chain with policy drop. Logged, counted in a metric and shown in the status.
   */
  protected async checkForeignForwardDrop(ourNftTable?: string): Promise<void> {
    const chains = await this.kernel.nft.list('chains').catch(() => '');
    const found = dropForwardChains(chains, new Set(ourNftTable ? [ourNftTable] : [])).map((c) => `nft ${c}`);
    for (const f of [4, 6] as const) {
      const saved = await this.kernel.iptables(f).save('filter').catch(() => '');
      if (/^:FORWARD DROP/m.test(saved)) found.push(`ip${f === 6 ? '6' : ''}tables filter FORWARD`);
    }
    this.foreignForwardDrop = [...new Set(found)];
    this.metrics.foreignForwardDrop.set(this.foreignForwardDrop.length > 0 ? 1 : 0);
    if (this.foreignForwardDrop.length > 0) {
      this.logger.warn({ chains: this.foreignForwardDrop }, 'another table drops forwarded traffic by policy (Docker does); Service traffic to other nodes may be dropped there, and our rules cannot override it');
    }
  }

  /** These Services are rendered again at the next sync. */
  protected retryLater(keys: Iterable<string>): void {
    for (const k of keys) this.retry.add(k);
  }

  /** The next sync re-renders every Service (after a mode re-read the kernel it no longer trusts). */
  protected requestRenderAll(): void {
    this.renderAllPending = true;
  }

  // ---- Component

  handleEvent(event: ClusterEvent): boolean {
    const now = this.clock.now();
    const prev = event.type === 'add' ? undefined : event.previous;
    const cur = event.type === 'delete' ? undefined : event.current;
    let changed = false;
    if (event.kind === 'Service') {
      changed = this.services.record((cur ?? prev)!.meta.key, prev as ServiceObject | undefined, cur as ServiceObject | undefined, now);
      if (changed) this.metrics.serviceChanges.inc();
    } else if (event.kind === 'EndpointSlice') {
      changed = this.slices.record((cur ?? prev)!.meta.key, prev as EndpointSliceObject | undefined, cur as EndpointSliceObject | undefined, now);
      if (changed) this.metrics.endpointChanges.inc();
    } else if (event.kind === 'Node' && (cur ?? prev)!.meta.name === this.config.nodeName) {
      // Our podCIDRs decide locality of endpoints without nodeName, our zone label the topology
      // hints: re-render everything, but only when they change (a Node's status is updated often).
      if (ownNodeInputs(prev) !== ownNodeInputs(cur)) {
        this.renderAllPending = true;
        changed = true;
      }
    }
    if (changed) {
      this.metrics.lastQueuedTimestamp.set(now / 1000);
      this.health.oldestPending ??= now;
      this.metrics.serviceChangesPending.set(this.services.size);
      this.metrics.endpointChangesPending.set(this.slices.size);
    }
    return changed;
  }

  async start(_signal: AbortSignal): Promise<void> {
    this.serving = true;
    await this.health.listen(this.section.healthzBindAddress);
    await this.hcServers.reconcile(this.hcPorts());
    this.unmountExpected = mountExpectedRoute(this.control, this.state, this.config.nodeName, () => ({
      ...this.expectedInfo(),
      pending: this.services.size + this.slices.size + this.retry.size,
    }));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unmountExpected?.();
    await this.quiesce();
    await this.health.close();
    await this.hcServers.close();
  }

  async sync(signal: AbortSignal): Promise<SyncReport> {
    const started = this.clock.now();
    const t0 = performance.now();
    const { dirty, triggers } = this.collect();
    const tookRenderAll = this.renderAllPending;
    this.renderAllPending = false;
    const conntrack: ConntrackWork[] = [];
    let result: ApplyResult<S>;
    try {
      const renderAll = await this.prepare({ started, dirty, renderAll: tookRenderAll });
      if (renderAll === 'skip') {
        this.renderAllPending ||= tookRenderAll;
        this.health.lastUpdated = this.clock.now();
        this.health.oldestPending = undefined;
        return { objects: 0 };
      }
      if (renderAll) {
        for (const svc of this.state.values('Service')) dirty.add(svc.meta.key);
        for (const k of this.ownedKeys()) dirty.add(k);
        for (const k of this.programmed.keys()) dirty.add(k);
      }
      const node = this.state.get('Node', this.config.nodeName);
      const local = localMatchers(node?.podCIDRs);
      const zone = node?.meta.labels[ZONE_LABEL];
      const render = (keys: readonly string[]): void => {
        for (const k of keys) this.update(k, local, zone, conntrack);
      };
      try {
        result = await this.apply([...dirty], render, signal, renderAll);
      } catch (err) {
        this.metrics.syncFailures.inc();
        throw err;
      }
    } catch (err) {
      this.renderAllPending ||= tookRenderAll;
      throw err;
    }
    if ((result.failed ?? 0) > 0) {
      this.metrics.syncFailures.inc();
      this.retryLater(dirty);
      this.renderAllPending ||= tookRenderAll;
    }
    const now = this.clock.now();
    this.health.lastUpdated = now;
    if (this.services.size === 0 && this.slices.size === 0) this.health.oldestPending = undefined;
    else this.health.oldestPending = Math.min(this.services.oldest() ?? now, this.slices.oldest() ?? now);
    const seconds = (performance.now() - t0) / 1000;
    this.metrics.syncDuration.observe(seconds);
    this.metrics.lastTimestamp.set(Date.now() / 1000);
    const wall = Date.now();
    for (const t of triggers) this.metrics.networkProgramming.observe(Math.max(0, wall - t) / 1000);
    this.metrics.invalidServices.set(this.invalid.size);
    this.recordMetrics(seconds);
    this.lastSync = result.stats;
    if (conntrack.length > 0) await this.flushConntrack(conntrack);
    if (this.serving && !this.closed) await this.hcServers.reconcile(this.hcPorts());
    return { objects: this.programmed.size };
  }

  status(): ComponentStatus {
    let endpoints = 0;
    for (const ports of this.programmed.values()) for (const p of ports) endpoints += p.cluster.ips.length;
    return {
      mode: this.mode,
      services: this.programmed.size,
      endpoints,
      invalidServices: this.invalid.size,
      ...this.modeStatus(),
      ...(this.foreignForwardDrop.length > 0 ? { foreignForwardDrop: this.foreignForwardDrop } : {}),
      healthy: this.health.healthy(),
      lastSync: this.lastSync,
      ...(this.health.lastUpdated !== undefined ? {} : { waitingFor: 'first proxy sync' }),
    };
  }

  // ---- internals

  /** Drains the trackers: the Services to render (retries first) and the EndpointSlices' trigger times. */
  private collect(): { dirty: Set<string>; triggers: number[] } {
    const svcChanges = this.services.drain();
    const sliceChanges = this.slices.drain();
    this.metrics.serviceChangesPending.set(0);
    this.metrics.endpointChangesPending.set(0);
    const dirty = new Set<string>(this.retry);
    this.retry.clear();
    for (const k of svcChanges.keys()) dirty.add(k);
    const triggers: number[] = [];
    for (const e of sliceChanges.values()) {
      for (const s of [e.previous, e.current]) if (s?.serviceName) dirty.add(`${s.meta.namespace}/${s.serviceName}`);
      const t = e.current?.meta.annotations[TRIGGER_TIME];
      if (t) {
        const ms = Date.parse(t);
        if (Number.isFinite(ms)) triggers.push(ms);
      }
    }
    return { dirty, triggers };
  }

  /** Recomputes one Service's model, hands its ports to the mode, records conntrack and health-check work. */
  private update(key: string, local: LocalMatcher[], zone: string | undefined, conntrack: ConntrackWork[]): void {
    const svc = this.state.get('Service', key);
    const m = svc ? buildServiceModel(svc, this.state.endpointSlicesByService(key), this.config.nodeName, local, { zone }) : undefined;
    if (m?.invalid) {
      if (this.invalid.get(key) !== m.invalid) this.logger.warn({ service: key, reason: m.invalid }, 'invalid Service skipped');
      this.invalid.set(key, m.invalid);
    } else this.invalid.delete(key);
    const ports = m && !m.invalid && !m.skipped ? m.ports : [];
    const before = this.programmed.get(key) ?? [];
    this.renderService(key, ports, before);
    const after = programmedPorts(ports);
    if (after.length > 0) this.programmed.set(key, after);
    else this.programmed.delete(key);
    staleUdp(before, after, conntrack);
    const hc = ports.find((p) => p.healthCheckNodePort !== undefined);
    if (hc) {
      const [namespace, name] = key.split('/') as [string, string];
      this.hcDesired.set(key, { port: hc.healthCheckNodePort!, namespace, name, localEndpoints: new Set(hc.all.filter((e) => e.local && (e.ready || (e.serving && e.terminating))).map((e) => e.ip)).size });
    } else this.hcDesired.delete(key);
  }

  private hcPorts(): Map<number, HealthCheckTarget> {
    const out = new Map<number, HealthCheckTarget>();
    for (const d of this.hcDesired.values()) out.set(d.port, d);
    return out;
  }

  private async flushConntrack(work: ConntrackWork[]): Promise<void> {
    for (const w of work) {
      try {
        const n = await this.kernel.conntrack.delete(w);
        if (n > 0) this.metrics.conntrackDeletes.inc(n);
      } catch (err) {
        this.logger.warn({ err: errorMessage(err), filter: w }, 'deleting stale UDP conntrack entries failed');
      }
    }
  }
}

/** kube-proxy's UDP rule: entries towards an endpoint that went away, and entries of a Service that had none. */
export function staleUdp(before: readonly ProgrammedPort[], after: readonly ProgrammedPort[], out: ConntrackWork[]): void {
  const byId = new Map(after.map((p) => [`${p.id}|${p.family}`, p]));
  for (const old of before) {
    if (old.protocol !== 'udp') continue;
    const cur = byId.get(`${old.id}|${old.family}`);
    const now = new Set(cur ? [...cur.cluster.ips, ...cur.local.ips] : []);
    const gone = new Set([...old.cluster.ips, ...old.local.ips].filter((ip) => !now.has(ip)));
    const vips = [old.clusterIP, ...old.externalIPs, ...old.loadBalancerIPs];
    for (const ip of gone) {
      for (const vip of vips) out.push({ family: old.family, protocol: 'udp', dst: vip, dstPort: old.port, replySrc: ip });
      if (old.nodePort !== undefined) out.push({ family: old.family, protocol: 'udp', dstPort: old.nodePort, replySrc: ip });
    }
  }
  const byOld = new Map(before.map((p) => [`${p.id}|${p.family}`, p]));
  for (const cur of after) {
    if (cur.protocol !== 'udp' || cur.cluster.ips.length === 0) continue;
    const old = byOld.get(`${cur.id}|${cur.family}`);
    if (old && old.cluster.ips.length > 0) continue;
    for (const vip of [cur.clusterIP, ...cur.externalIPs, ...cur.loadBalancerIPs]) out.push({ family: cur.family, protocol: 'udp', dst: vip, dstPort: cur.port });
  }
}
