/**
 * The nftables Service proxier: a Component (src/daemon/component.ts).
 *
 * handleEvent records {previous, current} per Service and EndpointSlice (no-ops
 * dropped); sync turns the changed Services into element contributions (model.ts →
 * nft-render.ts), plans the element-level diff against the applied state kept in
 * memory (ruleset.ts) and applies it as one transaction. A cold start programs the
 * table skeleton (masquerade included) and `default/kubernetes` in the first
 * transaction, then the other Services in chunks (kubernetes #133773). A restart
 * adopts the table that is there: one listing of our own table, then a diff. Every
 * syncPeriod the same listing is the periodic reconcile (readBack): the kernel's content
 * replaces the applied state in memory, so that sync's diff repairs whatever was changed
 * behind our back, element by element.
 */
import { Cidr, IpAddress } from '../common/ip';
import { errorMessage } from '../common/errors';
import type { Clock } from '../common/clock';
import type { Logger } from '../common/log';
import type { Kernel } from '../kernel';
import type { ClusterEvent, ClusterState, EndpointSliceObject, ServiceObject } from '../k8s/types';
import type { Component, ComponentContext, ComponentStatus, SyncReport } from '../daemon/component';
import type { DaemonConfig } from '../daemon/config';
import { parseTable } from './adopt';
import { removeIptablesLeftovers } from './leftovers';
import { buildProxySection, type ProxySection } from './config';
import { ProxierHealth, ServiceHealthServers } from './health';
import { createProxyMetrics, type ProxyMetrics } from './metrics';
import { buildServiceModel, ChangeTracker, ownNodeInputs, ZONE_LABEL, serviceProjection, sliceProjection, type EndpointInfo, type ServiceModel, type ServicePortInfo } from './model';
import { lbChainsOf, renderScript, renderService, renderSkeleton, type RenderOptions } from './nft-render';
import { driftSize, Ruleset, type ObjectDef, type Plan } from './ruleset';
import { mountExpectedRoute } from './expected';
import type { ControlMount } from '../daemon/component';

export const KUBERNETES_SERVICE = 'default/kubernetes';
const TRIGGER_TIME = 'endpoints.kubernetes.io/last-change-trigger-time';

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
}

/** A read-back waits at least this many times the last one's duration (it takes ≤ 1/20 of the time). */
export const READBACK_SHARE = 20;

const isDynamicSet = (name: string): boolean => name.startsWith('affinity');
const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class NftProxier implements Component {
  readonly name = 'proxy';
  readonly section: ProxySection;
  readonly ruleset = new Ruleset();
  readonly health: ProxierHealth;
  private readonly hcServers: ServiceHealthServers;
  private readonly services = new ChangeTracker<ServiceObject>((a, b) => serviceProjection(a) === serviceProjection(b));
  private readonly slices = new ChangeTracker<EndpointSliceObject>((a, b) => sliceProjection(a) === sliceProjection(b));
  private readonly models = new Map<string, ServiceModel>();
  private readonly invalid = new Map<string, string>();
  private readonly retry = new Set<string>();
  private readonly hcDesired = new Map<string, { port: number; namespace: string; name: string; localEndpoints: number }>();
  private readonly renderOpts: RenderOptions;
  private readonly lbChains = new Map<string, ObjectDef>();
  private readonly metrics: ProxyMetrics;
  private readonly state: ClusterState;
  private readonly kernel: Kernel;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly config: DaemonConfig;
  private initialized = false;
  /** Our Node's topology.kubernetes.io/zone label, read at each sync. */
  private zone: string | undefined;
  private tableExists = false;
  private consecutiveFailures = 0;
  private lastTableCheck = 0;
  /** Clock ms the last read-back took: the next one waits READBACK_SHARE times that at least. */
  private lastReadBackCost = 0;
  private serving = false;
  private closed = false;
  private readonly control: ControlMount | undefined;
  private unmountExpected: (() => void) | undefined;
  /** Stats of the last sync (bench, status). */
  lastSync: SyncStats | undefined;

  constructor(ctx: ComponentContext<ProxySection | undefined>) {
    this.config = ctx.config;
    this.section = ctx.section ?? buildProxySection({}, ctx.config);
    this.state = ctx.state;
    this.kernel = ctx.kernel;
    this.logger = ctx.logger;
    this.clock = ctx.clock;
    this.control = ctx.control;
    this.metrics = createProxyMetrics(ctx.metrics);
    this.health = new ProxierHealth(this.clock, 2 * this.section.syncPeriodMs);
    this.hcServers = new ServiceHealthServers(this.section.healthCheckBindAddress, this.logger);
    this.renderOpts = {
      table: this.section.table,
      clusterCIDRs: this.section.clusterCIDRs,
      serviceCIDRs: this.section.serviceCIDRs,
      masqueradeAll: this.section.masqueradeAll,
      nodePortAddresses: this.section.nodePortAddresses,
      masqMark: 1 << this.section.masqueradeBit,
    };
  }

  handleEvent(event: ClusterEvent): boolean {
    const now = this.clock.now();
    const prev = event.type === 'add' ? undefined : event.previous;
    const cur = event.type === 'delete' ? undefined : event.current;
    let changed = false;
    if (event.kind === 'Service') {
      const key = (cur ?? prev)!.meta.key;
      changed = this.services.record(key, prev as ServiceObject | undefined, cur as ServiceObject | undefined, now);
      if (changed) this.metrics.serviceChanges.inc();
    } else if (event.kind === 'EndpointSlice') {
      const key = (cur ?? prev)!.meta.key;
      changed = this.slices.record(key, prev as EndpointSliceObject | undefined, cur as EndpointSliceObject | undefined, now);
      if (changed) this.metrics.endpointChanges.inc();
    } else if (event.kind === 'Node' && (cur ?? prev)!.meta.name === this.config.nodeName) {
      // Our podCIDRs decide locality of endpoints without nodeName: recompute everything,
      // but only when they change (a Node's status is updated often).
      // So does our zone label (topology hints).
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

  async reconcileOnStart(_signal: AbortSignal): Promise<void> {
    await removeIptablesLeftovers(this.kernel, this.logger); // a switch from the iptables mode
    await this.adopt();
    await this.checkForeignForwardDrop();
  }

  /** Tables and chains of others that DROP forwarded traffic (Docker's FORWARD policy): our accept cannot override them. */
  foreignForwardDrop: string[] = [];

  private async checkForeignForwardDrop(): Promise<void> {
    const found: string[] = [];
    const chains = await this.kernel.nft.list('chains').catch(() => '');
    let table = '';
    let chain = '';
    for (const line of chains.split('\n')) {
      const t = /^table (\S+ \S+) \{/.exec(line);
      if (t) table = t[1]!;
      const c = /^\s*chain (\S+) \{/.exec(line);
      if (c) chain = c[1]!;
      if (/hook forward/.test(line) && /policy drop/.test(line) && table !== `inet ${this.section.table}`) found.push(`nft ${table} ${chain}`);
    }
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

  private async adopt(): Promise<void> {
    const t = this.section.table;
    let json: unknown;
    try {
      json = await this.kernel.nft.listJson(`table inet ${t}`);
    } catch {
      this.tableExists = false;
      return; // no table yet: a cold start
    }
    const adopted = parseTable(json, t, isDynamicSet);
    if (adopted.objects.size === 0) return;
    this.ruleset.adopt(adopted.objects, adopted.elements, adopted.unknown);
    this.tableExists = true;
    let n = 0;
    for (const m of adopted.elements.values()) n += m.size;
    this.logger.info({ table: `inet ${t}`, objects: adopted.objects.size, elements: n, unreadable: adopted.unknown }, 'adopted the existing nftables table; the first sync is a diff');
  }

  /**
   * One listing of our table (libnftables in-process, or `nft -j list`), parsed as at
   * adoption, then Ruleset.reconcile: the kernel's content becomes the applied state and
   * only the differences are touched for this sync's plan. A failed listing leaves the
   * in-memory state as it is (tried again at the next periodic sync), unless the table
   * is gone: then everything is planned again.
   */
  private async readBack(): Promise<ReadBackStats> {
    const t = this.section.table;
    const r0 = performance.now();
    let json: unknown;
    try {
      json = await this.kernel.nft.listJson(`table inet ${t}`);
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
    // At 10,000 Services each step below is ~0.4 s of JavaScript (JSON.parse inside listJson,
    // the parse, the diff): let the event loop (DNS, health, control socket) run between them.
    // Safe: handleEvent only records, and syncs never overlap.
    await yieldToLoop();
    const kernelTable = parseTable(json, t, isDynamicSet);
    await yieldToLoop();
    const drift = this.ruleset.reconcile(kernelTable, isDynamicSet);
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

  async start(_signal: AbortSignal): Promise<void> {
    this.serving = true;
    await this.health.listen(this.section.healthzBindAddress);
    await this.hcServers.reconcile(this.hcPorts());
    // Both families: the inet table's maps serve IPv4 and IPv6.
    this.unmountExpected = mountExpectedRoute(this.control, this.state, this.config.nodeName, () => ({
      mode: 'nftables',
      families: [4, 6],
      table: `inet ${this.section.table}`,
      pending: this.services.size + this.slices.size + this.retry.size,
    }));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unmountExpected?.();
    await this.health.close();
    await this.hcServers.close();
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

  private localMatchers(): ((ip: string) => boolean)[] {
    const node = this.state.get('Node', this.config.nodeName);
    const out: ((ip: string) => boolean)[] = [];
    for (const c of node?.podCIDRs ?? []) {
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

  private model(key: string, local: ((ip: string) => boolean)[]): ServiceModel | undefined {
    const svc = this.state.get('Service', key);
    if (!svc) return undefined;
    return buildServiceModel(svc, this.state.endpointSlicesByService(key), this.config.nodeName, local, { zone: this.zone });
  }

  /** Returns the contribution for `key` after recomputing its model; records conntrack work. */
  private update(key: string, local: ((ip: string) => boolean)[], conntrack: ConntrackWork[]): void {
    const m = this.model(key, local);
    const old = this.models.get(key);
    if (m?.invalid) {
      if (this.invalid.get(key) !== m.invalid) this.logger.warn({ service: key, reason: m.invalid }, 'invalid Service skipped');
      this.invalid.set(key, m.invalid);
    } else this.invalid.delete(key);
    const ports = m && !m.invalid && !m.skipped ? m.ports : [];
    if (old) {
      // Keep surviving endpoints in their slots, so one endpoint change is one element change.
      const before = new Map(old.ports.map((p) => [`${p.id}|${p.family}`, p]));
      for (const p of ports) {
        const o = before.get(`${p.id}|${p.family}`);
        if (!o) continue;
        p.cluster = stableOrder(o.cluster, p.cluster);
        p.local = stableOrder(o.local, p.local);
      }
    }
    if (m && ports.length > 0) this.models.set(key, m);
    else this.models.delete(key);
    staleUdp(old?.ports ?? [], ports, conntrack);
    const c = ports.length > 0 ? renderService(ports, this.renderOpts) : undefined;
    this.ruleset.set(key, c);
    // Shared load-balancing chains stay once created: adding chains is what this kernel
    // makes expensive, an idle chain costs nothing.
    if (c && lbChainsOf(c, this.renderOpts, this.lbChains)) this.ruleset.set('#lb', { elements: [], objects: [...this.lbChains] });
    const hc = ports.find((p) => p.healthCheckNodePort !== undefined);
    if (hc) {
      const [namespace, name] = key.split('/') as [string, string];
      this.hcDesired.set(key, { port: hc.healthCheckNodePort!, namespace, name, localEndpoints: new Set(hc.all.filter((e) => e.local && (e.ready || (e.serving && e.terminating))).map((e) => e.ip)).size });
    } else this.hcDesired.delete(key);
  }

  async sync(signal: AbortSignal): Promise<SyncReport> {
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
      if (t) {
        const ms = Date.parse(t);
        if (Number.isFinite(ms)) triggers.push(ms);
      }
    }
    // The periodic reconcile (every syncPeriod, also while events keep coming): read our
    // table back and diff the desired state against what the kernel really holds, so what
    // was changed behind our back is repaired by this sync's one transaction. Event syncs
    // in between diff against the applied state kept in memory (no listing: cheap).
    // Its spacing: syncPeriod, or READBACK_SHARE times what the last read-back took if that is
    // longer, so listing a huge table (seconds of CPU at 10,000 Services) never takes more than
    // 1/READBACK_SHARE of the time.
    let readBack: ReadBackStats | undefined;
    const spacing = Math.max(this.section.syncPeriodMs, READBACK_SHARE * this.lastReadBackCost);
    if (this.initialized && this.tableExists && started - this.lastTableCheck >= spacing) {
      this.lastTableCheck = started;
      readBack = await this.readBack();
      this.lastReadBackCost = this.clock.now() - started;
      readBack.nextInMs = Math.max(this.section.syncPeriodMs, READBACK_SHARE * this.lastReadBackCost);
    }
    const cold = !this.tableExists;
    const full = !this.initialized;
    if (full) {
      this.ruleset.set('#base', renderSkeleton(this.renderOpts));
      for (const svc of this.state.values('Service')) dirty.add(svc.meta.key);
      for (const o of [...this.ruleset.owners()]) if (!o.startsWith('#')) dirty.add(o);
      for (const k of this.models.keys()) dirty.add(k);
    }
    if (cold && this.state.size('Service') === 0 && this.models.size === 0) {
      // Nothing to proxy and no table of ours yet: program nothing (the table and its
      // skeleton come with the first Service; a real cluster always has default/kubernetes).
      this.health.lastUpdated = this.clock.now();
      this.health.oldestPending = undefined;
      return { objects: 0 };
    }
    const local = this.localMatchers();
    this.zone = this.state.get('Node', this.config.nodeName)?.meta.labels[ZONE_LABEL];
    const conntrack: ConntrackWork[] = [];
    const keys = [...dirty];
    // Cold start: skeleton + default/kubernetes first, then chunks.
    const batches: string[][] = [];
    if (cold) {
      const first = keys.filter((k) => k === KUBERNETES_SERVICE);
      const rest = keys.filter((k) => k !== KUBERNETES_SERVICE);
      batches.push(first);
      for (let i = 0; i < rest.length; i += this.section.coldChunk) batches.push(rest.slice(i, i + this.section.coldChunk));
    } else batches.push(keys);
    const stats: SyncStats = { transactions: 0, services: keys.length, elementChanges: 0, scriptBytes: 0, renderMs: 0, applyMs: 0, ...(readBack ? { readBack } : {}) };
    let createTable = cold;
    // Cold batches are pipelined: the next batch renders while nft applies this one (nft is
    // another process, so on two cores the two overlap). A transaction starts only after the
    // previous one is live, so the order of the kernel's view is the batch order.
    let inflight: { done: Promise<unknown>; plan: Plan; script: string; b: number } | undefined;
    let planned: Plan | undefined;
    const fail = async (err: unknown, script: string, from: number): Promise<never> => {
      if (planned) this.ruleset.restore(planned);
      for (const bb of batches.slice(from)) for (const k of bb) this.retry.add(k);
      this.consecutiveFailures++;
      this.metrics.syncFailures.inc();
      this.logger.error({ err: errorMessage(err), lines: script.split('\n').length }, 'nftables transaction failed; the previous rules stay, retrying');
      if (this.consecutiveFailures >= 2 && this.tableExists) {
        // Maybe the kernel is not what we think: read it back once before the next try.
        this.ruleset.resetApplied();
        this.tableExists = false;
        await this.adopt();
        this.initialized = false;
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
        for (const bb of batches.slice(b)) for (const k of bb) this.retry.add(k);
        break;
      }
      const r0 = performance.now();
      for (const k of batches[b]!) this.update(k, local, conntrack);
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
    this.initialized = true;
    const now = this.clock.now();
    this.lastTableCheck = this.lastTableCheck || now;
    this.health.lastUpdated = now;
    if (this.services.size === 0 && this.slices.size === 0) this.health.oldestPending = undefined;
    else this.health.oldestPending = Math.min(this.services.oldest() ?? now, this.slices.oldest() ?? now);
    const seconds = (performance.now() - t0) / 1000;
    this.metrics.syncDuration.observe(seconds);
    this.metrics.lastTimestamp.set(Date.now() / 1000);
    const wall = Date.now();
    for (const t of triggers) this.metrics.networkProgramming.observe(Math.max(0, wall - t) / 1000);
    this.metrics.invalidServices.set(this.invalid.size);
    this.metrics.elements.set(this.ruleset.elementCount());
    let chains = 0;
    for (const [, d] of this.ruleset.appliedObjects) if (d?.kind === 'chain') chains++;
    this.metrics.chains.set(chains);
    this.lastSync = stats;
    if (conntrack.length > 0) await this.flushConntrack(conntrack);
    if (this.serving && !this.closed) await this.hcServers.reconcile(this.hcPorts());
    return { objects: this.models.size };
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
    return {
      mode: 'nftables',
      table: `inet ${this.section.table}`,
      services: this.models.size,
      endpoints,
      elements: this.ruleset.elementCount(),
      invalidServices: this.invalid.size,
      ...(this.foreignForwardDrop.length > 0 ? { foreignForwardDrop: this.foreignForwardDrop } : {}),
      healthy: this.health.healthy(),
      lastSync: this.lastSync,
      ...(this.health.lastUpdated !== undefined ? {} : { waitingFor: 'first proxy sync' }),
    };
  }
}

export interface ConntrackWork {
  family: 4 | 6;
  protocol: 'udp';
  dst?: string;
  dstPort?: number;
  replySrc?: string;
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

/** kube-proxy's UDP rule: entries towards an endpoint that went away, and entries of a Service that had none. */
export function staleUdp(before: readonly ServicePortInfo[], after: readonly ServicePortInfo[], out: ConntrackWork[]): void {
  const byId = new Map(after.map((p) => [`${p.id}|${p.family}`, p]));
  for (const old of before) {
    if (old.protocol !== 'udp') continue;
    const cur = byId.get(`${old.id}|${old.family}`);
    const now = new Set((cur ? [...cur.cluster, ...cur.local] : []).map((e) => e.ip));
    const gone = new Set([...old.cluster, ...old.local].map((e) => e.ip).filter((ip) => !now.has(ip)));
    const vips = [old.clusterIP, ...old.externalIPs, ...old.loadBalancerIPs];
    for (const ip of gone) {
      for (const vip of vips) out.push({ family: old.family, protocol: 'udp', dst: vip, dstPort: old.port, replySrc: ip });
      if (old.nodePort !== undefined) out.push({ family: old.family, protocol: 'udp', dstPort: old.nodePort, replySrc: ip });
    }
  }
  const byOld = new Map(before.map((p) => [`${p.id}|${p.family}`, p]));
  for (const cur of after) {
    if (cur.protocol !== 'udp' || cur.cluster.length === 0) continue;
    const old = byOld.get(`${cur.id}|${cur.family}`);
    if (old && old.cluster.length > 0) continue;
    for (const vip of [cur.clusterIP, ...cur.externalIPs, ...cur.loadBalancerIPs]) out.push({ family: cur.family, protocol: 'udp', dst: vip, dstPort: cur.port });
  }
}
