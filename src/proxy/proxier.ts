/**
 * The nftables Service proxier: the nftables mode of the shared pipeline (pipeline.ts owns
 * events, models, conntrack, health-check servers, metrics and status).
 *
 * What is its own: each changed Service becomes an element contribution (nft-render.ts);
 * the element-level diff against the applied state kept in memory (ruleset.ts) is applied
 * as one transaction. A cold start programs the table skeleton (masquerade included) and
 * `default/kubernetes` in the first transaction, then the other Services in chunks
 * (kubernetes #133773). A restart adopts the table that is there: one read of our own
 * table (readTable: over netlink), then a diff. Every syncPeriod the same read is the
 * periodic reconcile (readBack):
 * the kernel's content replaces the applied state in memory, so that sync's diff repairs
 * whatever was changed behind our back, element by element.
 */
import { errorMessage } from '../common/errors';
import { E } from '../kernel/errno';
import type { ComponentContext } from '../daemon/component';
import type { NftGeneration } from '../kernel';
import { parseTable, type AdoptedTable } from './adopt';
import { removeIptablesLeftovers } from './leftovers';
import { removeIpvsLeftovers } from './ipvs/leftovers';
import type { ProxySection } from './config';
import type { EndpointInfo, ServicePortInfo } from './model';
import { kernelSlotOrder, lbChainsOf, renderScript, renderService, renderSkeleton, type RenderOptions } from './nft-render';
import { KUBERNETES_SERVICE, ProxyPipeline, type ApplyResult, type SyncStart } from './pipeline';
import { portAt, type EndpointOrder, type ProgrammedPort } from './programmed';
import { driftSize, Ruleset, type ObjectDef, type Plan } from './ruleset';
import type { ExpectedInfo } from './expected';

export interface SyncStats {
  transactions: number;
  services: number;
  elementChanges: number;
  scriptBytes: number;
  renderMs: number;
  applyMs: number;
  /** Set on a periodic sync: the read-back of our table and what it found changed. */
  readBack?: ReadBackStats;
}

export interface ReadBackStats {
  /** Listing + parse + diff, in ms. */
  ms: number;
  /** Objects, chains and elements found changed behind our back (repaired by this sync). */
  drift: number;
  /** The table itself was gone (rebuilt). */
  tableGone?: boolean;
  /** When the next read-back is due: syncPeriod, or READBACK_SHARE × this one's time if longer. */
  nextInMs?: number;
  /**
   * Not listed: the nftables generation shows no transaction but our own since the last
   * read-back, so the kernel holds what we applied (`ms` is then the generation check's).
   */
  unchanged?: boolean;
}

/** A read-back waits at least this many times the last one's duration (it takes ≤ 1/20 of the time). */
export const READBACK_SHARE = 20;
/** With no foreign commit, the table is still read back after this many syncPeriods. */
export const READBACK_SAFETY_PERIODS = 10;

const ENOENT = E.ENOENT;
const isDynamicSet = (name: string): boolean => name.startsWith('affinity');
const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class NftProxier extends ProxyPipeline<SyncStats> {
  protected readonly mode = 'nftables';
  readonly ruleset = new Ruleset();
  private readonly renderOpts: RenderOptions;
  private readonly lbChains = new Map<string, ObjectDef>();
  private readonly appliedValue = (map: string, key: string): string | undefined => this.ruleset.appliedValue(map, key);
  private tableExists = false;
  /** This sync starts without our table: the skeleton and default/kubernetes go first. */
  private cold = false;
  private consecutiveFailures = 0;
  private lastTableCheck = 0;
  /** Clock ms the last read-back took: the next one waits READBACK_SHARE times that at least. */
  private lastReadBackCost = 0;
  /** This sync's read-back (prepare → apply's stats). */
  private readBackStats: ReadBackStats | undefined;
  /** When the last listing was taken (clock ms): listings keep READBACK_SHARE × their cost apart. */
  private lastListing = 0;
  /** The nftables generation and our runner's commit count when our table was last listed. */
  private listedAt: NftGeneration | undefined;
  /** Where the last read-back's rule prints came from (readTable). */
  private printSource: 'netlink' | 'listing' | undefined;

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
    await removeIpvsLeftovers(this.kernel, this.logger); // or from the ipvs mode
    await this.adopt();
    await this.checkForeignForwardDrop(`inet ${this.section.table}`);
  }

  /**
   * Our table as the kernel holds it. Over netlink when the runner can (nft-table.ts: the
   * elements decoded by us, ~4x cheaper at 10,000 Services than libnftables decoding and
   * formatting 120,000 of them, docs/proxy.md), else
   * one libnftables listing parsed (also when the netlink read fails for another reason than
   * the table being gone: logged). Rejects when the table is not there.
   */
  private async readTable(): Promise<AdoptedTable> {
    const t = this.section.table;
    const nft = this.kernel.nft;
    if (nft.readTable) {
      try {
        const k = await nft.readTable(t, isDynamicSet);
        this.printsFrom('netlink');
        return k;
      } catch (err) {
        if ((err as { errno?: number }).errno === ENOENT) throw err;
        this.logger.warn({ err: errorMessage(err), table: t }, 'reading our nftables table over netlink failed; listing it through libnftables instead');
      }
    }
    const json = await nft.listJson(`table inet ${t}`);
    // At 10,000 Services JSON.parse (inside listJson) and the parse are ~0.4 s each: let the
    // event loop (DNS, health, control socket) run in between.
    await yieldToLoop();
    this.printsFrom('listing');
    return parseTable(json, t, isDynamicSet);
  }

  /** Rule prints from netlink and from a listing differ for the same rule: a switch relearns them. */
  private printsFrom(source: 'netlink' | 'listing'): void {
    if (this.printSource !== undefined && this.printSource !== source) this.ruleset.forgetPrints();
    this.printSource = source;
  }

  private async adopt(): Promise<void> {
    const t = this.section.table;
    let adopted: AdoptedTable;
    const gen = await this.generation();
    this.lastListing = this.clock.now();
    try {
      adopted = await this.readTable();
    } catch {
      this.tableExists = false;
      this.listedAt = gen; // what the kernel holds of ours is known: nothing
      return; // no table yet: a cold start
    }
    this.listedAt = gen;
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
    await removeIpvsLeftovers(this.kernel, this.logger);
  }

  /**
   * One read of our table (readTable, as at adoption), then Ruleset.reconcile: the kernel's
   * content becomes the applied state and only the differences are touched for this sync's
   * plan. A failed read leaves the
   * in-memory state as it is (tried again at the next periodic sync), unless the table
   * is gone: then everything is planned again.
   */
  private async readBack(): Promise<ReadBackStats> {
    const t = this.section.table;
    const r0 = performance.now();
    let kernelTable: AdoptedTable;
    // Read before listing: a commit by anyone in between makes the next check list again.
    const gen = await this.generation();
    try {
      kernelTable = await this.readTable();
    } catch (err) {
      const tables = await this.kernel.nft.list('tables').catch(() => undefined);
      if (tables !== undefined && !new RegExp(`^table inet ${t}$`, 'm').test(tables)) {
        this.logger.warn({ table: t }, 'our nftables table is gone; rebuilding it');
        this.tableExists = false;
        this.ruleset.resetApplied();
        return { ms: performance.now() - r0, drift: 0, tableGone: true };
      }
      this.logger.warn({ err: errorMessage(err), table: t }, 'reading our nftables table back failed; the next periodic sync tries again');
      return { ms: performance.now() - r0, drift: 0 };
    }
    // At 10,000 Services the read and the diff below are each a few hundred ms of JavaScript:
    // let the event loop (DNS, health, control socket) run between them.
    // Safe: handleEvent only records, and syncs never overlap.
    await yieldToLoop();
    const drift = this.ruleset.reconcile(kernelTable, isDynamicSet);
    this.listedAt = gen;
    const n = driftSize(drift);
    if (n > 0) {
      this.logger.warn(
        { table: `inet ${t}`, missingObjects: drift.missingObjects, foreignObjects: drift.foreignObjects, chains: drift.chains, elements: drift.elements },
        'our nftables table was changed behind our back; this sync repairs the difference',
      );
    }
    if (drift.unreadable.length > 0) this.logger.debug({ sets: drift.unreadable }, 'elements of these sets could not be read back; not diffed');
    return { ms: performance.now() - r0, drift: n };
  }

  protected async prepare(s: SyncStart): Promise<boolean | 'skip'> {
    // The periodic reconcile (every syncPeriod, also while events keep coming): read our
    // table back and diff the desired state against what the kernel really holds, so what
    // was changed behind our back is repaired by this sync's one transaction. Event syncs
    // in between diff against the applied state kept in memory (no listing: cheap).
    // Its spacing: syncPeriod, or READBACK_SHARE times what the last read-back took if that is
    // longer, so reading a huge table back (0.3–2 s of CPU at 10,000 Services) never takes more than
    // 1/READBACK_SHARE of the time.
    // Every syncPeriod the nftables generation (one small netlink request) tells whether any
    // program but us committed a transaction since our last listing; only then is the table
    // read back. Reading at 10,000 Services costs 0.5–2 s and holds the sync loop meanwhile.
    this.readBackStats = undefined;
    if (!s.renderAll && this.tableExists && s.started - this.lastTableCheck >= this.section.syncPeriodMs) {
      const g0 = performance.now();
      let unchanged = await this.unchangedSinceListing();
      if (unchanged && this.ruleset.needsPrints()) unchanged = await this.learnPrints();
      const listingDue = s.started - this.lastListing >= READBACK_SHARE * this.lastReadBackCost;
      // A safety net for our own bookkeeping (the generation only tells of others' commits).
      const safetyDue = s.started - this.lastListing >= READBACK_SAFETY_PERIODS * this.section.syncPeriodMs;
      if (unchanged && !safetyDue) {
        this.lastTableCheck = s.started;
        this.readBackStats = { ms: performance.now() - g0, drift: 0, unchanged: true, nextInMs: this.section.syncPeriodMs };
      } else if (listingDue) {
        this.lastTableCheck = s.started;
        this.lastListing = s.started;
        const readBack = await this.readBack();
        this.lastReadBackCost = this.clock.now() - s.started;
        readBack.nextInMs = Math.max(this.section.syncPeriodMs, READBACK_SHARE * this.lastReadBackCost);
        this.readBackStats = readBack;
      }
    }
    this.cold = !this.tableExists;
    if (s.renderAll) this.ruleset.set('#base', renderSkeleton(this.renderOpts));
    // Nothing to proxy and no table of ours yet: program nothing (the table and its
    // skeleton come with the first Service; a real cluster always has default/kubernetes).
    if (this.cold && this.state.size('Service') === 0 && this.programmed.size === 0) return 'skip';
    return s.renderAll;
  }

  /** The runner's generation reading, or undefined when it cannot be read (then every check lists). */
  private async generation(): Promise<NftGeneration | undefined> {
    try {
      return await this.kernel.nft.generation();
    } catch (err) {
      this.logger.debug({ err: errorMessage(err) }, 'reading the nftables generation failed; the table is listed instead');
      return undefined;
    }
  }

  /** The rules of the chains we wrote since, as the kernel prints them (one rule dump, no listing). */
  private async learnPrints(): Promise<boolean> {
    // Only where the read-back reads over netlink too: prints are compared within one source.
    if (!this.kernel.nft.readTable || this.printSource === 'listing') return false;
    try {
      const rules = await this.kernel.nft.rulePrints('inet', this.section.table);
      this.printsFrom('netlink');
      return this.ruleset.learnPrints(rules);
    } catch (err) {
      this.logger.debug({ err: errorMessage(err) }, 'dumping our nftables rules failed; the table is listed instead');
      return false;
    }
  }

  /** No transaction but ours was committed (by anyone, in any table) since our table was last listed. */
  private async unchangedSinceListing(): Promise<boolean> {
    const base = this.listedAt;
    if (base === undefined) return false;
    const now = await this.generation();
    if (now === undefined) return false;
    // The generation is a u32 that every committed transaction increments once.
    return ((now.generation - base.generation) >>> 0) === now.ownCommits - base.ownCommits;
  }

  protected override ownedKeys(): Iterable<string> {
    return [...this.ruleset.owners()].filter((o) => !o.startsWith('#'));
  }

  protected renderService(key: string, ports: ServicePortInfo[], before: readonly ProgrammedPort[]): void {
    // Keep surviving endpoints in their slots, so one endpoint change is one element change:
    // the slots the last sync programmed, or (a port this proxier has not programmed yet, as
    // after a restart) the ones the kernel holds.
    const old = before.length > 0 ? new Map(before.map((p) => [`${p.id}|${p.family}`, p])) : undefined;
    for (const p of ports) {
      const o = old?.get(`${p.id}|${p.family}`);
      const same = p.local === p.cluster;
      if (o) {
        p.cluster = stableOrder(o.cluster, p.cluster);
        p.local = same ? p.cluster : stableOrder(o.local, p.local);
        continue;
      }
      const k = this.cold ? undefined : kernelSlotOrder(p, this.appliedValue); // cold: the kernel holds nothing of ours
      if (!k) continue;
      if (p.internalLocal) p.local = stableOrder(k, p.local);
      else {
        p.cluster = stableOrder(k, p.cluster);
        if (same) p.local = p.cluster;
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
    const stats: SyncStats = { transactions: 0, services: keys.length, elementChanges: 0, scriptBytes: 0, renderMs: 0, applyMs: 0, ...(this.readBackStats ? { readBack: this.readBackStats } : {}) };
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
export function stableOrder(old: EndpointOrder, cur: EndpointInfo[]): EndpointInfo[] {
  if (old.ips.length === 0 || cur.length === 0) return cur;
  const id = (ip: string, port: number): string => `${ip}|${port}`;
  const byId = new Map(cur.map((e) => [id(e.ip, e.port), e]));
  const out: (EndpointInfo | undefined)[] = new Array<EndpointInfo | undefined>(cur.length).fill(undefined);
  for (let i = 0; i < Math.min(old.ips.length, cur.length); i++) {
    const k = id(old.ips[i]!, portAt(old, i));
    const e = byId.get(k);
    if (e) {
      out[i] = e;
      byId.delete(k);
    }
  }
  const rest = [...byId.values()];
  let r = 0;
  for (let i = 0; i < out.length; i++) if (out[i] === undefined) out[i] = rest[r++];
  return out as EndpointInfo[];
}
