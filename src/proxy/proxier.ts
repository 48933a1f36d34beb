/**
 * The nftables Service proxier: the nftables mode of the shared pipeline (pipeline.ts owns
 * events, models, conntrack, health-check servers, metrics and status).
 *
 * What is its own: each changed Service becomes an element contribution (nft-render.ts);
 * the element-level diff against the applied state kept in memory (ruleset.ts) is applied
 * as one transaction. A cold start programs the table skeleton (masquerade included) and
 * `default/kubernetes` in the first transaction, then the other Services in chunks
 * (kubernetes #133773). A restart adopts the table that is there: one listing of our own
 * table, then a diff. Every syncPeriod a quiet sync checks that the table still exists.
 */
import { errorMessage } from '../common/errors';
import type { ComponentContext } from '../daemon/component';
import { parseTable } from './adopt';
import { removeIptablesLeftovers } from './leftovers';
import type { ProxySection } from './config';
import type { EndpointInfo, ServicePortInfo } from './model';
import { lbChainsOf, renderScript, renderService, renderSkeleton, type RenderOptions } from './nft-render';
import { KUBERNETES_SERVICE, ProxyPipeline, type ApplyResult, type SyncStart } from './pipeline';
import { Ruleset, type ObjectDef, type Plan } from './ruleset';
import type { ExpectedInfo } from './expected';

export interface SyncStats {
  transactions: number;
  services: number;
  elementChanges: number;
  scriptBytes: number;
  renderMs: number;
  applyMs: number;
}

export class NftProxier extends ProxyPipeline<SyncStats> {
  protected readonly mode = 'nftables';
  readonly ruleset = new Ruleset();
  private readonly renderOpts: RenderOptions;
  private readonly lbChains = new Map<string, ObjectDef>();
  private tableExists = false;
  /** This sync starts without our table: the skeleton and default/kubernetes go first. */
  private cold = false;
  private consecutiveFailures = 0;
  private lastTableCheck = 0;

  constructor(ctx: ComponentContext<ProxySection | undefined>) {
    super(ctx);
    this.renderOpts = {
      table: this.section.table,
      clusterCIDRs: this.section.clusterCIDRs,
      serviceCIDRs: this.section.serviceCIDRs,
      masqueradeAll: this.section.masqueradeAll,
      nodePortAddresses: this.section.nodePortAddresses,
      masqMark: 1 << this.section.masqueradeBit,
    };
  }

  async reconcileOnStart(_signal: AbortSignal): Promise<void> {
    await removeIptablesLeftovers(this.kernel, this.logger); // a switch from the iptables mode
    await this.adopt();
    await this.checkForeignForwardDrop(`inet ${this.section.table}`);
  }

  private async adopt(): Promise<void> {
    const t = this.section.table;
    let json: unknown;
    try {
      json = await this.kernel.nft.listJson(`table inet ${t}`);
    } catch {
      this.tableExists = false;
      return; // no table yet: a cold start
    }
    const adopted = parseTable(json, t, (name) => name.startsWith('affinity'));
    if (adopted.objects.size === 0) return;
    this.ruleset.adopt(adopted.objects, adopted.elements, adopted.unknown);
    this.tableExists = true;
    let n = 0;
    for (const m of adopted.elements.values()) n += m.size;
    this.logger.info({ table: `inet ${t}`, objects: adopted.objects.size, elements: n, unreadable: adopted.unknown }, 'adopted the existing nftables table; the first sync is a diff');
  }

  async cleanup(_signal: AbortSignal): Promise<void> {
    const t = this.section.table;
    try {
      await this.kernel.nft.apply(`add table inet ${t}\ndelete table inet ${t}\n`);
    } catch (err) {
      this.logger.warn({ err }, 'removing the proxy table failed');
    }
    await removeIptablesLeftovers(this.kernel, this.logger);
  }

  protected async prepare(s: SyncStart): Promise<boolean | 'skip'> {
    // Periodic check: is our table still there? (`nft list tables` is cheap; listing the table is not.)
    if (!s.renderAll && s.dirty.size === 0 && this.tableExists && s.started - this.lastTableCheck >= this.section.syncPeriodMs) {
      this.lastTableCheck = s.started;
      const tables = await this.kernel.nft.list('tables').catch(() => undefined);
      if (tables !== undefined && !new RegExp(`^table inet ${this.section.table}$`, 'm').test(tables)) {
        this.logger.warn({ table: this.section.table }, 'our nftables table is gone; rebuilding it');
        this.tableExists = false;
        this.ruleset.resetApplied();
      }
    }
    this.cold = !this.tableExists;
    if (s.renderAll) this.ruleset.set('#base', renderSkeleton(this.renderOpts));
    // Nothing to proxy and no table of ours yet: program nothing (the table and its
    // skeleton come with the first Service; a real cluster always has default/kubernetes).
    if (this.cold && this.state.size('Service') === 0 && this.models.size === 0) return 'skip';
    return s.renderAll;
  }

  protected override ownedKeys(): Iterable<string> {
    return [...this.ruleset.owners()].filter((o) => !o.startsWith('#'));
  }

  protected renderService(key: string, ports: ServicePortInfo[], before: readonly ServicePortInfo[]): void {
    if (before.length > 0) {
      // Keep surviving endpoints in their slots, so one endpoint change is one element change.
      const old = new Map(before.map((p) => [`${p.id}|${p.family}`, p]));
      for (const p of ports) {
        const o = old.get(`${p.id}|${p.family}`);
        if (!o) continue;
        p.cluster = stableOrder(o.cluster, p.cluster);
        p.local = stableOrder(o.local, p.local);
      }
    }
    const c = ports.length > 0 ? renderService(ports, this.renderOpts) : undefined;
    this.ruleset.set(key, c);
    // Shared load-balancing chains stay once created: adding chains is what this kernel
    // makes expensive, an idle chain costs nothing.
    if (c && lbChainsOf(c, this.renderOpts, this.lbChains)) this.ruleset.set('#lb', { elements: [], objects: [...this.lbChains] });
  }

  protected async apply(keys: string[], render: (keys: readonly string[]) => void, signal: AbortSignal): Promise<ApplyResult<SyncStats>> {
    const cold = this.cold;
    // Cold start: skeleton + default/kubernetes first, then chunks.
    const batches: string[][] = [];
    if (cold) {
      const first = keys.filter((k) => k === KUBERNETES_SERVICE);
      const rest = keys.filter((k) => k !== KUBERNETES_SERVICE);
      batches.push(first);
      for (let i = 0; i < rest.length; i += this.section.coldChunk) batches.push(rest.slice(i, i + this.section.coldChunk));
    } else batches.push(keys);
    const stats: SyncStats = { transactions: 0, services: keys.length, elementChanges: 0, scriptBytes: 0, renderMs: 0, applyMs: 0 };
    let createTable = cold;
    // Cold batches are pipelined: the next batch renders while nft applies this one (nft is
    // another process, so on two cores the two overlap). A transaction starts only after the
    // previous one is live, so the order of the kernel's view is the batch order.
    let inflight: { done: Promise<unknown>; plan: Plan; script: string; b: number } | undefined;
    let planned: Plan | undefined;
    const fail = async (err: unknown, script: string, from: number): Promise<never> => {
      if (planned) this.ruleset.restore(planned);
      for (const bb of batches.slice(from)) this.retryLater(bb);
      this.consecutiveFailures++;
      this.logger.error({ err: errorMessage(err), lines: script.split('\n').length }, 'nftables transaction failed; the previous rules stay, retrying');
      if (this.consecutiveFailures >= 2 && this.tableExists) {
        // Maybe the kernel is not what we think: read it back once before the next try.
        this.ruleset.resetApplied();
        this.tableExists = false;
        await this.adopt();
        this.requestRenderAll();
      }
      throw err;
    };
    const settle = async (): Promise<void> => {
      const f = inflight;
      inflight = undefined;
      if (!f) return;
      const a0 = performance.now();
      const err = await f.done;
      stats.applyMs += performance.now() - a0;
      if (err !== null) {
        this.ruleset.restore(f.plan);
        await fail(err, f.script, f.b + 1);
      }
      stats.transactions++;
      stats.scriptBytes += f.script.length;
      stats.elementChanges += f.plan.elementChanges;
      this.ruleset.commit(f.plan);
      this.metrics.elementChanges.inc(f.plan.elementChanges);
      this.tableExists = true;
    };
    for (let b = 0; b < batches.length; b++) {
      if (signal.aborted && b > 0) {
        await settle();
        for (const bb of batches.slice(b)) this.retryLater(bb);
        break;
      }
      const r0 = performance.now();
      render(batches[b]!);
      planned = this.ruleset.plan();
      const script = renderScript(planned, this.section.table, { createTable });
      stats.renderMs += performance.now() - r0;
      await settle();
      if (script === '') {
        planned = undefined;
        continue;
      }
      createTable = false;
      const a0 = performance.now();
      const done = this.kernel.nft.apply(script).then(
        () => null,
        (e: unknown) => e ?? new Error('nft apply failed'),
      );
      stats.applyMs -= performance.now() - a0; // settle() adds the wait; count only the time we waited
      inflight = { done, plan: planned, script, b };
      planned = undefined;
    }
    await settle();
    this.consecutiveFailures = 0;
    this.lastTableCheck = this.lastTableCheck || this.clock.now();
    return { stats };
  }

  protected recordMetrics(): void {
    this.metrics.elements.set(this.ruleset.elementCount());
    let chains = 0;
    for (const [, d] of this.ruleset.appliedObjects) if (d?.kind === 'chain') chains++;
    this.metrics.chains.set(chains);
  }

  protected expectedInfo(): Omit<ExpectedInfo, 'pending'> {
    return { mode: 'nftables', families: [4, 6], table: `inet ${this.section.table}` };
  }

  protected modeStatus(): Record<string, unknown> {
    return {
      table: `inet ${this.section.table}`,
      elements: this.ruleset.elementCount(),
    };
  }
}

/** `cur` reordered so that every endpoint also in `old` below cur.length keeps its index. */
export function stableOrder(old: readonly EndpointInfo[], cur: EndpointInfo[]): EndpointInfo[] {
  if (old.length === 0 || cur.length === 0) return cur;
  const id = (e: EndpointInfo): string => `${e.ip}|${e.port}`;
  const byId = new Map(cur.map((e) => [id(e), e]));
  const out: (EndpointInfo | undefined)[] = new Array<EndpointInfo | undefined>(cur.length).fill(undefined);
  for (let i = 0; i < Math.min(old.length, cur.length); i++) {
    const e = byId.get(id(old[i]!));
    if (e) {
      out[i] = e;
      byId.delete(id(e));
    }
  }
  const rest = [...byId.values()];
  let r = 0;
  for (let i = 0; i < out.length; i++) if (out[i] === undefined) out[i] = rest[r++];
  return out as EndpointInfo[];
}
