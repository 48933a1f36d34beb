/**
 * The iptables Service proxier: the iptables mode of the shared pipeline (../pipeline.ts
 * owns events, models, conntrack, health-check servers, metrics and status).
 *
 * What is its own: each changed Service is re-rendered into its chains (render.ts); the
 * whole desired state of each family is diffed against the applied state kept in memory
 * and the changed chains are applied with one `iptables-restore --noflush` per family
 * (applier.ts). Every syncPeriod the applied state is read back from iptables-save (our
 * chains only) so drift is repaired by the same diff. A cold start programs the fixed
 * chains (masquerade included) and `default/kubernetes` in a first restore before the
 * rest (kubernetes #133773).
 */
import { errorMessage } from '../../common/errors';
import type { IptablesRunner } from '../../kernel/types';
import type { ComponentContext } from '../../daemon/component';
import type { ProxySection } from '../config';
import { ipFamily, type Family, type ServicePortInfo } from '../model';
import { KUBERNETES_SERVICE, ProxyPipeline, type ApplyResult, type SyncStart } from '../pipeline';
import { removeIptablesLeftovers, removeNftLeftovers } from '../leftovers';
import { removeIpvsLeftovers } from '../ipvs/leftovers';
import { IptablesApplier, Layers, NFT_CHUNK_SERVICES, TABLES, type Desired, type IptPlan, type TableName } from './applier';
import { createIptablesMetrics, type IptablesMetrics } from './metrics';
import type { ExpectedInfo } from '../expected';
import { assembleShared, fixedChainNames, LARGE_CLUSTER_ENDPOINTS, renderServiceRules, type ChainRules, type IptRenderOptions, type ServiceRules } from './render';

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
  /** Services per restore when iptables-nft programs many at once (default NFT_CHUNK_SERVICES). */
  nftChunkServices?: number;
}

export class IptablesProxier extends ProxyPipeline<IptSyncStats> {
  protected readonly mode = 'iptables';
  readonly appliers = new Map<Family, IptablesApplier>();
  private readonly contribs = new Map<Family, Map<string, ServiceRules>>([[4, new Map()], [6, new Map()]]);
  /** Every Service's own chains per family and table, kept across syncs (the desired state minus the fixed chains). */
  private readonly svcChains = new Map<Family, Record<'nat' | 'filter', ChainRules>>([[4, { nat: new Map(), filter: new Map() }], [6, { nat: new Map(), filter: new Map() }]]);
  /** Chains of Services changed since the last successful apply, per family and table. */
  private readonly touched = new Map<Family, Record<TableName, Set<string>>>([[4, { nat: new Set(), filter: new Set(), mangle: new Set() }], [6, { nat: new Set(), filter: new Set(), mangle: new Set() }]]);
  private sortedKeys = new Map<Family, string[] | undefined>();
  private readonly opts = new Map<Family, IptRenderOptions>();
  private readonly iptMetrics: IptablesMetrics;
  private readonly families = new Set<Family>([4]);
  private adopted = false;
  private lastFull = 0;
  /** This sync reads our chains back and compares every chain (the first sync, every syncPeriod). */
  private full = false;
  private started = 0;
  private readonly backend: string;
  private readonly nftChunkServices: number;

  constructor(ctx: ComponentContext<ProxySection | undefined>, options: IptablesProxierOptions = {}) {
    super(ctx);
    this.backend = options.backend ?? 'kernel default';
    this.nftChunkServices = options.nftChunkServices ?? NFT_CHUNK_SERVICES;
    this.iptMetrics = createIptablesMetrics(ctx.metrics);
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

  /** Adopt our chains from iptables-save; remove the nftables mode's table if one is left. */
  async reconcileOnStart(_signal: AbortSignal): Promise<void> {
    await removeNftLeftovers(this.kernel, this.section.table, this.logger);
    await removeIpvsLeftovers(this.kernel, this.logger); // IPVS would take Service traffic first (LOCAL_IN)
    await this.adoptAll();
    await this.checkForeignForwardDrop();
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

  /** `podwired --cleanup`: our chains and jumps in both families (and the nft table of the other mode). */
  async cleanup(_signal: AbortSignal): Promise<void> {
    await removeIptablesLeftovers(this.kernel, this.logger);
    await removeNftLeftovers(this.kernel, this.section.table, this.logger);
    await removeIpvsLeftovers(this.kernel, this.logger);
  }

  protected async prepare(s: SyncStart): Promise<boolean> {
    this.started = s.started;
    this.full = s.renderAll || s.started - this.lastFull >= this.section.syncPeriodMs;
    // The periodic full sync reads our chains back, so whatever changed them is repaired by
    // the diff. The Services themselves are re-rendered only on the first sync (or a Node
    // podCIDR change): the change trackers already account for every other change.
    if (this.full && (!s.renderAll || !this.adopted)) await this.adoptAll();
    return this.updateLargeCluster() || s.renderAll;
  }

  /**
   * kube-proxy's large-cluster mode, from the endpoint count in the cluster state (a pass over
   * the EndpointSlices, well under a millisecond at 10,000). True when it flipped: every
   * Service's endpoint rules change, so every Service is rendered again.
   */
  private updateLargeCluster(): boolean {
    let endpoints = 0;
    for (const sl of this.state.values('EndpointSlice')) endpoints += sl.endpoints.length;
    const large = endpoints > LARGE_CLUSTER_ENDPOINTS;
    if (large === (this.opts.get(4)!.largeCluster ?? false)) return false;
    for (const o of this.opts.values()) o.largeCluster = large;
    this.logger.info({ endpoints, threshold: LARGE_CLUSTER_ENDPOINTS }, large ? 'large cluster: endpoint rules without comments (as kube-proxy)' : 'endpoint rules with comments again');
    return true;
  }

  protected renderService(key: string, ports: ServicePortInfo[]): void {
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
  }

  /** The desired state of a family; `only`: just these Services (the cold start's first restores). */
  private desired(f: Family, only?: readonly string[]): Desired {
    const c = this.contribs.get(f)!;
    if (only !== undefined) {
      const some = only.map((k) => c.get(k)!);
      const shared = assembleShared(some, this.opts.get(f)!);
      return { nat: new Layers([shared.nat, ...some.map((x) => x.nat)]), filter: new Layers([shared.filter, ...some.map((x) => x.filter)]), mangle: shared.mangle };
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

  protected async apply(keys: string[], render: (keys: readonly string[]) => void, _signal: AbortSignal, renderAll: boolean): Promise<ApplyResult<IptSyncStats>> {
    const full = this.full;
    const r0 = performance.now();
    render(keys);
    const stats: IptSyncStats = { full, restores: 0, services: keys.length, changedChains: 0, inputBytes: 0, renderMs: performance.now() - r0, applyMs: 0 };
    try {
      for (const f of [...this.families].sort()) {
        const a = this.appliers.get(f)!;
        // Cold start: the fixed chains and default/kubernetes first (kubernetes #133773).
        const fixed = fixedChainNames(this.opts.get(f)!);
        if (a.counts().chains.nat === 0 && this.contribs.get(f)!.size > 1 && this.contribs.get(f)!.has(KUBERNETES_SERVICE)) {
          await this.applyPlan(a, a.plan(this.desired(f, [KUBERNETES_SERVICE])), stats);
        }
        if (a.runner.backend === 'nft') await this.applyInChunks(f, a, keys, stats);
        // A full sync compares every chain (after reading them back); a partial one only the touched ones.
        await this.applyPlan(a, a.plan(this.desired(f), full ? undefined : this.touched.get(f)!, fixed), stats);
        for (const set of Object.values(this.touched.get(f)!)) set.clear();
      }
    } catch (err) {
      this.retryLater(keys);
      (full ? this.iptMetrics.restoreFailures : this.iptMetrics.partialRestoreFailures).inc();
      // A failed periodic full sync re-renders every Service next time (the pipeline keeps a failed first one).
      if (full && !renderAll) this.requestRenderAll();
      this.logger.error({ err: errorMessage(err) }, 'iptables-restore failed; the previous rules stay, retrying');
      throw err;
    }
    if (full) this.lastFull = this.started;
    return { stats };
  }

  /** The nft backend's many new or changed Services: their own chains in restores of nftChunkServices Services (see NFT_CHUNK_SERVICES). */
  private async applyInChunks(f: Family, a: IptablesApplier, keys: readonly string[], stats: IptSyncStats): Promise<void> {
    const contribs = this.contribs.get(f)!;
    const mine = keys.filter((k) => contribs.has(k));
    if (mine.length <= this.nftChunkServices) return;
    // The chains the Services' rules jump to (masquerade marking) must exist first.
    if (a.counts().chains.nat === 0) await this.applyPlan(a, a.plan(this.desired(f, [])), stats);
    const own = this.svcChains.get(f)!;
    const ownOnly: Desired = { nat: own.nat, filter: own.filter, mangle: new Map() };
    for (let i = 0; i < mine.length; i += this.nftChunkServices) {
      const chunk: Record<TableName, Set<string>> = { nat: new Set(), filter: new Set(), mangle: new Set() };
      for (const k of mine.slice(i, i + this.nftChunkServices)) {
        const c = contribs.get(k)!;
        for (const ch of c.nat.keys()) chunk.nat.add(ch);
        for (const ch of c.filter.keys()) chunk.filter.add(ch);
      }
      await this.applyPlan(a, a.plan(ownOnly, chunk, undefined, { jumps: false }), stats);
    }
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

  protected recordMetrics(seconds: number): void {
    (this.full ? this.iptMetrics.fullDuration : this.iptMetrics.partialDuration).observe(seconds);
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
  }

  protected expectedInfo(): Omit<ExpectedInfo, 'pending'> {
    const backend = /-legacy-/.test(this.backend) ? 'legacy' : /-nft-/.test(this.backend) ? 'nft' : undefined;
    // Both families: IPv6 rules are programmed as soon as an IPv6 Service exists.
    return { mode: 'iptables', families: [4, 6], ...(backend ? { iptablesBackend: backend } : {}) };
  }

  protected modeStatus(): Record<string, unknown> {
    let chains = 0;
    let rules = 0;
    for (const a of this.appliers.values()) {
      const c = a.counts();
      for (const t of TABLES) {
        chains += c.chains[t];
        rules += c.rules[t];
      }
    }
    return { backend: this.backend, chains, rules };
  }
}
