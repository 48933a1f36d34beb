/**
 * The iptables Service proxier: a Component (src/daemon/component.ts), sharing the
 * mode-independent parts with the nftables one (model.ts's ServiceModel and change
 * trackers, health.ts, metrics.ts, staleUdp + the kernel's conntrack).
 *
 * handleEvent records {previous, current} per Service and EndpointSlice (no-ops dropped);
 * sync re-renders the changed Services (render.ts), assembles the whole desired state of
 * each family, diffs it against the applied state kept in memory and applies the changed
 * chains with one `iptables-restore --noflush` per family (applier.ts). Every syncPeriod
 * the applied state is read back from iptables-save (our chains only) so drift is repaired
 * by the same diff. A cold start programs the fixed chains (masquerade included) and
 * `default/kubernetes` in a first restore before the rest (kubernetes #133773).
 */
import { Cidr, IpAddress } from '../../common/ip';
import { errorMessage } from '../../common/errors';
import type { Clock } from '../../common/clock';
import type { Logger } from '../../common/log';
import type { Kernel } from '../../kernel';
import type { IptablesRunner } from '../../kernel/types';
import type { ClusterEvent, ClusterState, EndpointSliceObject, ServiceObject } from '../../k8s/types';
import type { Component, ComponentContext, ComponentStatus, SyncReport } from '../../daemon/component';
import type { DaemonConfig } from '../../daemon/config';
import { buildProxySection, type ProxySection } from '../config';
import { ProxierHealth, ServiceHealthServers } from '../health';
import { createProxyMetrics, type ProxyMetrics } from '../metrics';
import { buildServiceModel, ChangeTracker, ownNodeInputs, ZONE_LABEL, ipFamily, serviceProjection, sliceProjection, type Family, type ServiceModel } from '../model';
import { KUBERNETES_SERVICE, staleUdp, type ConntrackWork } from '../proxier';
import { removeIptablesLeftovers, removeNftLeftovers } from '../leftovers';
import { IptablesApplier, Layers, TABLES, type Desired, type IptPlan, type TableName } from './applier';
import { createIptablesMetrics, type IptablesMetrics } from './metrics';
import { mountExpectedRoute } from '../expected';
import type { ControlMount } from '../../daemon/component';
import { assembleShared, fixedChainNames, renderServiceRules, type ChainRules, type IptRenderOptions, type ServiceRules } from './render';

const TRIGGER_TIME = 'endpoints.kubernetes.io/last-change-trigger-time';

export interface IptSyncStats {
  full: boolean;
  restores: number;
  services: number;
  changedChains: number;
  inputBytes: number;
  renderMs: number;
  applyMs: number;
}

export interface IptablesProxierOptions {
  /** iptables runner per family (default: the kernel's, whose backend is chosen at openKernel). */
  runner?: (family: Family) => IptablesRunner;
  /** What status() reports as the backend (e.g. `iptables-legacy-restore`). */
  backend?: string;
}

export class IptablesProxier implements Component {
  readonly name = 'proxy';
  readonly section: ProxySection;
  readonly health: ProxierHealth;
  readonly appliers = new Map<Family, IptablesApplier>();
  private readonly hcServers: ServiceHealthServers;
  private readonly services = new ChangeTracker<ServiceObject>((a, b) => serviceProjection(a) === serviceProjection(b));
  private readonly slices = new ChangeTracker<EndpointSliceObject>((a, b) => sliceProjection(a) === sliceProjection(b));
  private readonly models = new Map<string, ServiceModel>();
  private readonly contribs = new Map<Family, Map<string, ServiceRules>>([[4, new Map()], [6, new Map()]]);
  /** Every Service's own chains per family and table, kept across syncs (the desired state minus the fixed chains). */
  private readonly svcChains = new Map<Family, Record<'nat' | 'filter', ChainRules>>([[4, { nat: new Map(), filter: new Map() }], [6, { nat: new Map(), filter: new Map() }]]);
  /** Chains of Services changed since the last successful apply, per family and table. */
  private readonly touched = new Map<Family, Record<TableName, Set<string>>>([[4, { nat: new Set(), filter: new Set(), mangle: new Set() }], [6, { nat: new Set(), filter: new Set(), mangle: new Set() }]]);
  private sortedKeys = new Map<Family, string[] | undefined>();
  private readonly invalid = new Map<string, string>();
  private readonly retry = new Set<string>();
  private readonly hcDesired = new Map<string, { port: number; namespace: string; name: string; localEndpoints: number }>();
  private readonly opts = new Map<Family, IptRenderOptions>();
  private readonly metrics: ProxyMetrics;
  private readonly iptMetrics: IptablesMetrics;
  private readonly state: ClusterState;
  private readonly kernel: Kernel;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly config: DaemonConfig;
  private readonly families = new Set<Family>([4]);
  private initialized = false;
  private adopted = false;
  private lastFull = 0;
  private serving = false;
  private closed = false;
  private readonly control: ControlMount | undefined;
  private unmountExpected: (() => void) | undefined;
  lastSync: IptSyncStats | undefined;
  private readonly backend: string;

  constructor(ctx: ComponentContext<ProxySection | undefined>, options: IptablesProxierOptions = {}) {
    this.backend = options.backend ?? 'kernel default';
    this.control = ctx.control;
    this.config = ctx.config;
    this.section = ctx.section ?? buildProxySection({}, ctx.config);
    this.state = ctx.state;
    this.kernel = ctx.kernel;
    this.logger = ctx.logger;
    this.clock = ctx.clock;
    this.metrics = createProxyMetrics(ctx.metrics);
    this.iptMetrics = createIptablesMetrics(ctx.metrics);
    this.health = new ProxierHealth(this.clock, 2 * this.section.syncPeriodMs);
    this.hcServers = new ServiceHealthServers(this.section.healthCheckBindAddress, this.logger);
    const runner = options.runner ?? ((f: Family) => this.kernel.iptables(f));
    for (const f of [4, 6] as const) {
      this.appliers.set(f, new IptablesApplier(runner(f)));
      const ofFamily = (l: string[]): string[] => l.filter((c) => ipFamily(c.split('/')[0]!) === f);
      this.opts.set(f, {
        family: f,
        clusterCIDR: ofFamily(this.section.clusterCIDRs)[0],
        masqueradeAll: this.section.masqueradeAll,
        nodePortAddresses: ofFamily(this.section.nodePortAddresses),
        masqMark: 1 << this.section.masqueradeBit,
      });
    }
    // IPv6 rules are programmed when the cluster has IPv6 (or an IPv6 Service shows up).
    if ([...this.section.clusterCIDRs, ...this.section.serviceCIDRs].some((c) => ipFamily(c.split('/')[0]!) === 6)) this.families.add(6);
  }

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
      // Our podCIDRs (locality) and our zone label (topology hints): re-render everything.
      if (ownNodeInputs(prev) !== ownNodeInputs(cur)) {
        this.initialized = false;
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

  /** Adopt our chains from iptables-save; remove the nftables mode's table if one is left. */
  async reconcileOnStart(_signal: AbortSignal): Promise<void> {
    await removeNftLeftovers(this.kernel, this.section.table, this.logger);
    await this.adoptAll();
  }

  private async adoptAll(): Promise<void> {
    let chains = 0;
    for (const [f, a] of this.appliers) {
      const r = await a.adopt();
      if (r.chains > 0 && f === 6) this.families.add(6);
      chains += r.chains;
    }
    this.adopted = true;
    if (chains > 0) this.logger.info({ chains }, 'adopted the existing iptables chains; the first sync is a diff');
  }

  async start(_signal: AbortSignal): Promise<void> {
    this.serving = true;
    await this.health.listen(this.section.healthzBindAddress);
    await this.hcServers.reconcile(this.hcPorts());
    const backend = /-legacy-/.test(this.backend) ? 'legacy' : /-nft-/.test(this.backend) ? 'nft' : undefined;
    // Both families: IPv6 rules are programmed as soon as an IPv6 Service exists (update()).
    this.unmountExpected = mountExpectedRoute(this.control, this.state, this.config.nodeName, () => ({
      mode: 'iptables',
      families: [4, 6],
      ...(backend ? { iptablesBackend: backend } : {}),
      pending: this.services.size + this.slices.size + this.retry.size,
    }));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unmountExpected?.();
    await this.health.close();
    await this.hcServers.close();
  }

  /** `podwired --cleanup`: our chains and jumps in both families (and the nft table of the other mode). */
  async cleanup(_signal: AbortSignal): Promise<void> {
    await removeIptablesLeftovers(this.kernel, this.logger);
    await removeNftLeftovers(this.kernel, this.section.table, this.logger);
  }

  private localMatchers(): ((ip: string) => boolean)[] {
    const out: ((ip: string) => boolean)[] = [];
    for (const c of this.state.get('Node', this.config.nodeName)?.podCIDRs ?? []) {
      try {
        const cidr = Cidr.parse(c);
        out.push((ip) => {
          const a = IpAddress.tryParse(ip);
          return a !== undefined && cidr.contains(a);
        });
      } catch {
        // a bad podCIDR only loses locality by CIDR
      }
    }
    return out;
  }

  private update(key: string, local: ((ip: string) => boolean)[], conntrack: ConntrackWork[]): void {
    const svc = this.state.get('Service', key);
    const m = svc ? buildServiceModel(svc, this.state.endpointSlicesByService(key), this.config.nodeName, local, { zone: this.state.get('Node', this.config.nodeName)?.meta.labels[ZONE_LABEL] }) : undefined;
    const old = this.models.get(key);
    if (m?.invalid) {
      if (this.invalid.get(key) !== m.invalid) this.logger.warn({ service: key, reason: m.invalid }, 'invalid Service skipped');
      this.invalid.set(key, m.invalid);
    } else this.invalid.delete(key);
    const ports = m && !m.invalid && !m.skipped ? m.ports : [];
    if (m && ports.length > 0) this.models.set(key, m);
    else this.models.delete(key);
    staleUdp(old?.ports ?? [], ports, conntrack);
    for (const f of [4, 6] as const) {
      const mine = ports.filter((p) => p.family === f);
      const contribs = this.contribs.get(f)!;
      const before = contribs.get(key);
      const after = mine.length > 0 ? renderServiceRules(mine, this.opts.get(f)!) : undefined;
      if ((before === undefined) !== (after === undefined)) this.sortedKeys.set(f, undefined);
      const chains = this.svcChains.get(f)!;
      const touched = this.touched.get(f)!;
      for (const t of ['nat', 'filter'] as const) {
        for (const c of before?.[t].keys() ?? []) {
          chains[t].delete(c);
          touched[t].add(c);
        }
        for (const [c, r] of after?.[t] ?? []) {
          chains[t].set(c, r);
          touched[t].add(c);
        }
      }
      if (after) {
        this.families.add(f);
        contribs.set(key, after);
      } else contribs.delete(key);
    }
    const hc = ports.find((p) => p.healthCheckNodePort !== undefined);
    if (hc) {
      const [namespace, name] = key.split('/') as [string, string];
      this.hcDesired.set(key, { port: hc.healthCheckNodePort!, namespace, name, localEndpoints: new Set(hc.all.filter((e) => e.local && (e.ready || (e.serving && e.terminating))).map((e) => e.ip)).size });
    } else this.hcDesired.delete(key);
  }

  /** The desired state of a family; `only`: just these Services (the cold start's first restore). */
  private desired(f: Family, only?: string): Desired {
    const c = this.contribs.get(f)!;
    if (only !== undefined) {
      const one = c.get(only)!;
      const shared = assembleShared([one], this.opts.get(f)!);
      return { nat: new Layers([shared.nat, one.nat]), filter: new Layers([shared.filter, one.filter]), mangle: shared.mangle };
    }
    let keys = this.sortedKeys.get(f);
    if (keys === undefined) {
      keys = [...c.keys()].sort();
      this.sortedKeys.set(f, keys);
    }
    const shared = assembleShared(keys.map((k) => c.get(k)!), this.opts.get(f)!);
    const own = this.svcChains.get(f)!;
    return { nat: new Layers([shared.nat, own.nat]), filter: new Layers([shared.filter, own.filter]), mangle: shared.mangle };
  }

  async sync(_signal: AbortSignal): Promise<SyncReport> {
    const started = this.clock.now();
    const t0 = performance.now();
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
      if (t && Number.isFinite(Date.parse(t))) triggers.push(Date.parse(t));
    }
    const full = !this.initialized || started - this.lastFull >= this.section.syncPeriodMs;
    // The periodic full sync reads our chains back, so whatever changed them is repaired by
    // the diff. The Services themselves are re-rendered only on the first sync (or a Node
    // podCIDR change): the change trackers already account for every other change.
    if (full && (this.initialized || !this.adopted)) await this.adoptAll();
    if (!this.initialized) {
      for (const s of this.state.values('Service')) dirty.add(s.meta.key);
      for (const k of this.models.keys()) dirty.add(k);
    }
    const r0 = performance.now();
    const local = this.localMatchers();
    const conntrack: ConntrackWork[] = [];
    for (const k of dirty) this.update(k, local, conntrack);
    const stats: IptSyncStats = { full, restores: 0, services: dirty.size, changedChains: 0, inputBytes: 0, renderMs: performance.now() - r0, applyMs: 0 };
    try {
      for (const f of [...this.families].sort()) {
        const a = this.appliers.get(f)!;
        // Cold start: the fixed chains and default/kubernetes first (kubernetes #133773).
        const fixed = fixedChainNames(this.opts.get(f)!);
        if (a.counts().chains.nat === 0 && this.contribs.get(f)!.size > 1 && this.contribs.get(f)!.has(KUBERNETES_SERVICE)) {
          await this.applyPlan(a, a.plan(this.desired(f, KUBERNETES_SERVICE)), stats);
        }
        // A full sync compares every chain (after reading them back); a partial one only the touched ones.
        await this.applyPlan(a, a.plan(this.desired(f), full ? undefined : this.touched.get(f)!, fixed), stats);
        for (const set of Object.values(this.touched.get(f)!)) set.clear();
      }
    } catch (err) {
      for (const k of dirty) this.retry.add(k);
      this.metrics.syncFailures.inc();
      (full ? this.iptMetrics.restoreFailures : this.iptMetrics.partialRestoreFailures).inc();
      this.initialized = this.initialized && !full;
      this.logger.error({ err: errorMessage(err) }, 'iptables-restore failed; the previous rules stay, retrying');
      throw err;
    }
    this.initialized = true;
    if (full) this.lastFull = started;
    const now = this.clock.now();
    this.health.lastUpdated = now;
    if (this.services.size === 0 && this.slices.size === 0) this.health.oldestPending = undefined;
    else this.health.oldestPending = Math.min(this.services.oldest() ?? now, this.slices.oldest() ?? now);
    const seconds = (performance.now() - t0) / 1000;
    this.metrics.syncDuration.observe(seconds);
    (full ? this.iptMetrics.fullDuration : this.iptMetrics.partialDuration).observe(seconds);
    this.metrics.lastTimestamp.set(Date.now() / 1000);
    const wall = Date.now();
    for (const t of triggers) this.metrics.networkProgramming.observe(Math.max(0, wall - t) / 1000);
    this.metrics.invalidServices.set(this.invalid.size);
    for (const t of TABLES) {
      let chains = 0;
      let rules = 0;
      for (const a of this.appliers.values()) {
        const c = a.counts();
        chains += c.chains[t];
        rules += c.rules[t];
      }
      this.iptMetrics.chains.set({ table: t }, chains);
      this.iptMetrics.rules.set({ table: t }, rules);
    }
    this.lastSync = stats;
    if (conntrack.length > 0) await this.flushConntrack(conntrack);
    if (this.serving && !this.closed) await this.hcServers.reconcile(this.hcPorts());
    return { objects: this.models.size };
  }

  private async applyPlan(a: IptablesApplier, plan: IptPlan, stats: IptSyncStats): Promise<IptPlan> {
    if (plan.text === '') return plan;
    const a0 = performance.now();
    await a.apply(plan);
    stats.applyMs += performance.now() - a0;
    stats.restores++;
    stats.changedChains += plan.changedChains;
    stats.inputBytes += plan.text.length;
    return plan;
  }

  private hcPorts(): Map<number, { namespace: string; name: string; localEndpoints: number }> {
    const out = new Map<number, { namespace: string; name: string; localEndpoints: number }>();
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

  status(): ComponentStatus {
    let endpoints = 0;
    for (const m of this.models.values()) for (const p of m.ports) endpoints += p.cluster.length;
    let chains = 0;
    let rules = 0;
    for (const a of this.appliers.values()) {
      const c = a.counts();
      for (const t of TABLES) {
        chains += c.chains[t];
        rules += c.rules[t];
      }
    }
    return {
      mode: 'iptables',
      backend: this.backend,
      services: this.models.size,
      endpoints,
      chains,
      rules,
      invalidServices: this.invalid.size,
      healthy: this.health.healthy(),
      lastSync: this.lastSync,
      ...(this.health.lastUpdated !== undefined ? {} : { waitingFor: 'first proxy sync' }),
    };
  }
}
