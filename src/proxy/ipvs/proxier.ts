/**
 * The IPVS Service proxier (kube-proxy's ipvs mode): the ipvs mode of the shared pipeline
 * (../pipeline.ts owns events, models, conntrack, health-check servers, metrics and
 * status), with its own renderer (render.ts) and applier (this file).
 *
 * Applied state lives in memory: the virtual/real servers (adopted from the kernel's dump
 * at start-up and re-read at every periodic full sync), the ipset members and the bound
 * VIPs. A sync recomputes only the changed Services, diffs them and sends the IPVS changes
 * as one batch of genetlink messages (IpvsKernel.apply), the ipset changes as one
 * `ipset restore`. A restart adopts what is there: the first sync is a diff.
 *
 * IPv4 and IPv6: each Service port per family (AF_INET / AF_INET6 virtual servers, the
 * family's sets and iptables / ip6tables rules); IPv6 only when the node's kernel has it.
 *
 * Graceful termination (kube-proxy's graceful_termination.go): a TCP/SCTP real server
 * that is no longer wanted is set to weight 0 (no new connections) and deleted once the
 * kernel's dump shows no active and no inactive connection; UDP ones are deleted at once
 * (their conntrack entries are flushed, expire_nodest_conn drops the rest).
 */
import { access, readFile } from 'node:fs/promises';
import { release } from 'node:os';
import { Cidr, IpAddress } from '../../common/ip';
import { KernelError, errorMessage } from '../../common/errors';
import { NetlinkIpvs, ipvsUnavailableMessage, type IpvsDest, type IpvsEntry, type IpvsKernel, type IpvsService } from '../../kernel/ipvs';
import { NetnsIpset, parseIpsetSave, type IpsetRunner } from '../../kernel/ipset';
import type { Change } from '../../kernel/types';
import type { ComponentContext, SyncReport } from '../../daemon/component';
import { Gauge } from 'prom-client';
import type { ProxySection } from '../config';
import type { ServicePortInfo } from '../model';
import { ProxyPipeline, type ApplyResult, type SyncStart } from '../pipeline';
import { READBACK_SHARE } from '../proxier';
import { destKey, LEGACY_SETS, renderIpvsService, SET_TYPES, setTypesOf, VIP_DEVICE, vsKey, type DesiredVS, type IpFamily, type IpvsContribution } from './render';
import { missingJumps, renderRules } from './rules';
import { removeIpvsLeftovers } from './leftovers';
import { removeIptablesLeftovers, removeNftLeftovers } from '../leftovers';
import type { ExpectedInfo } from '../expected';

/** Where the VIPs are bound (render.ts says why a port-less bridge). */
export { VIP_DEVICE } from './render';

/** The sysctls kube-proxy's ipvs mode sets, written inside the node's namespace only (net.ipv4.vs.* covers IPv6 too). */
export const IPVS_SYSCTLS: readonly [string, string][] = [
  ['net.ipv4.vs.conntrack', '1'], // netfilter (masquerade, conntrack) sees IPVS traffic
  ['net.ipv4.vs.conn_reuse_mode', '0'],
  ['net.ipv4.vs.expire_nodest_conn', '1'], // a deleted real server's connections die at their next packet
  ['net.ipv4.vs.expire_quiescent_template', '1'], // persistence templates of a weight-0 server expire
];

/** Strict ARP (proxy.ipvsStrictARP, kube-proxy's --ipvs-strict-arp), also node namespace only. */
export const STRICT_ARP_SYSCTLS: readonly [string, string][] = [
  ['net.ipv4.conf.all.arp_ignore', '1'], // answer ARP only for addresses of the asking interface
  ['net.ipv4.conf.all.arp_announce', '2'], // never announce a VIP as the ARP source
];

const DRAIN_CHECK_MS = 1000;

const familyOf = (a: string): IpFamily => (a.includes(':') ? 6 : 4);

/** A VIP as the address bound on the VIP device: a host route of its family. */
const vipCidr = (v: string): Cidr => Cidr.parse(`${v}/${familyOf(v) === 4 ? 32 : 128}`);

const LINK_LOCAL6 = Cidr.parse('fe80::/10');

/** Not a NodePort address: loopback, an IPv6 link-local (it needs a zone, one per link). */
function unusable(ip: IpAddress): boolean {
  return ip.family === 4 ? ip.toString().startsWith('127.') : ip.toString() === '::1' || LINK_LOCAL6.contains(ip);
}

/** Is a kernel module loaded, loadable, or missing? */
export type ModuleProbe = (name: string) => Promise<'loaded' | 'available' | 'missing'>;

export const probeModule: ModuleProbe = async (name) => {
  const exists = (p: string): Promise<boolean> => access(p).then(() => true, () => false);
  if (await exists(`/sys/module/${name}`)) return 'loaded';
  const dir = `/lib/modules/${release()}`;
  const text = async (f: string): Promise<string> => readFile(`${dir}/${f}`, 'utf8').catch(() => '');
  const re = new RegExp(`(^|/)${name.replace(/_/g, '[_-]')}\\.ko(\\.[a-z]+)?:?`, 'm');
  if (re.test(await text('modules.builtin')) || re.test(await text('modules.dep'))) return 'available';
  return 'missing';
};

export interface IpvsDeps {
  ipvs?: IpvsKernel;
  ipset?: IpsetRunner;
  probe?: ModuleProbe;
}

interface AppliedVS {
  service: IpvsService;
  dests: Map<string, IpvsDest>;
}

export interface IpvsSyncStats {
  services: number;
  ipvsChanges: number;
  ipsetChanges: number;
  vipChanges: number;
  renderMs: number;
  applyMs: number;
  /**
   * Set on a periodic full sync (the kernel read back and every Service diffed): what it took
   * (ms) and when the next one is due (ms from this one's start).
   */
  readBack?: { ms: number; nextInMs: number };
}

export class IpvsProxier extends ProxyPipeline<IpvsSyncStats> {
  protected readonly mode = 'ipvs';
  readonly ipvs: IpvsKernel;
  readonly ipset: IpsetRunner;
  private readonly probe: ModuleProbe;
  private readonly contributions = new Map<string, IpvsContribution>();
  /** Desired virtual servers by vsKey (from every contribution). */
  private readonly desiredVS = new Map<string, DesiredVS>();
  /** Desired set members and VIPs, reference-counted (two Services may share one). */
  private readonly setRefs = new Map<string, number>();
  private readonly vipRefs = new Map<string, number>();
  /** What the kernel has. */
  readonly appliedVS = new Map<string, AppliedVS>();
  readonly appliedSets = new Map<string, Set<string>>();
  /** Sets of an earlier build found at start-up (render.ts LEGACY_SETS): destroyed by setup(). */
  private legacySets: string[] = [];
  readonly appliedVips = new Set<string>();
  /** vsKey → destKeys at weight 0 waiting for their connections to end. */
  readonly draining = new Map<string, Set<string>>();
  private readonly vsGauge: Gauge;
  private readonly rsGauge: Gauge;
  private nodeAddresses: string[] = [];
  /** Every address of the node but loopback, link-locals and the VIP device (render.ts IpvsRenderOptions). */
  private hostAddresses: string[] = [];
  /**
   * The families proxied: IPv4, and IPv6 when the node's kernel has it (kube-proxy's ipvs mode
   * runs one proxier per family the node supports, dual-stack when both). Set at start-up.
   */
  private families: IpFamily[] = [4];
  private setupDone = false;
  /**
   * When (clock ms) the next periodic full sync is due: syncPeriod after the last one began,
   * or READBACK_SHARE times what it took if that is longer (as nftables mode spaces its
   * read-backs). At 10,000 Services one takes ~30 s under the bench's TCG guest (a dest dump per
   * virtual server, `ipset save`, every Service re-rendered), longer than syncPeriod: due from its
   * start alone, every sync (every endpoint change) was a full one.
   */
  private nextFull = 0;
  /** This sync's: start time, whether it diffs everything (and reads the kernel back), and what its Services touched. */
  private current = { started: 0, full: false, readBack: false, vs: new Set<string>(), sets: new Set<string>(), vips: new Set<string>() };
  private busy: Promise<unknown> = Promise.resolve();
  private drainTimer: NodeJS.Timeout | undefined;

  constructor(ctx: ComponentContext<ProxySection | undefined>, deps: IpvsDeps = {}) {
    super(ctx);
    this.ipvs = deps.ipvs ?? new NetlinkIpvs(ctx.kernel.netns);
    this.ipset = deps.ipset ?? new NetnsIpset(ctx.kernel.netns);
    this.probe = deps.probe ?? probeModule;
    const registers = [ctx.metrics];
    // Counted when scraped, not at every sync: the count walks every virtual server (10,000
    // and more), which measured as the largest cost of one endpoint change at 10,000 Services.
    this.vsGauge = new Gauge({ name: 'podwire_proxy_ipvs_virtual_servers', help: 'IPVS virtual servers Podwire has in the node namespace', registers, collect: () => this.vsGauge.set(this.appliedVS.size) });
    this.rsGauge = new Gauge({ name: 'podwire_proxy_ipvs_real_servers', help: 'IPVS real servers (destinations) of those virtual servers, draining ones included', registers, collect: () => this.rsGauge.set(this.realServerCount()) });
  }

  /** Runs `f` after every earlier sync / drain check (the drain timer runs beside the runner). */
  private serial<T>(f: () => Promise<T>): Promise<T> {
    const run = this.busy.then(f, f);
    this.busy = run.catch(() => undefined);
    return run;
  }

  /** The start-up module check: ip_vs (its genetlink family), the scheduler, nf_conntrack. */
  async checkModules(): Promise<void> {
    try {
      await this.ipvs.listServices();
    } catch (err) {
      if (err instanceof KernelError && /IPVS is not available/.test(err.message)) throw err;
      throw new KernelError('ipvs', ipvsUnavailableMessage('', errorMessage(err)), { cause: err });
    }
    const missing: string[] = [];
    for (const m of [`ip_vs_${this.section.ipvsScheduler}`, 'nf_conntrack']) if ((await this.probe(m)) === 'missing') missing.push(m);
    if (missing.length > 0) {
      throw new KernelError(
        'ipvs',
        `the IPVS proxy mode needs the kernel module${missing.length > 1 ? 's' : ''} ${missing.join(', ')} (scheduler "${this.section.ipvsScheduler}"), neither loaded nor installed for kernel ${release()}. ` +
          'Install/load it (`modprobe ' + missing.join(' ') + '`), pick another scheduler (proxy.ipvsScheduler), or run the proxy in nftables mode (proxy mode: nftables).',
      );
    }
  }

  async reconcileOnStart(_signal: AbortSignal): Promise<void> {
    await this.checkModules();
    // No /proc/sys/net/ipv6 (ipv6.disable=1), IPv6 disabled, or no ip6tables nat table (the
    // masquerade needs it): IPv4 only, IPv6 ports skipped, as kube-proxy runs single-stack
    // when the node lacks the second family. Decided once, at start-up.
    const v6 = await this.kernel.sysctl.read('net.ipv6.conf.all.disable_ipv6').then((v) => v.trim() === '0', () => false);
    const ip6nat = v6 && (await this.kernel.iptables(6).save('nat').then(() => true, (err: unknown) => {
      this.logger.warn({ err: errorMessage(err) }, 'ip6tables nat table unusable: the ipvs mode proxies IPv4 only');
      return false;
    }));
    this.families = ip6nat ? [4, 6] : [4];
    this.warnLoopbackNodePorts();
    // A switch from the nftables or iptables mode: their Service rules would answer first.
    await removeNftLeftovers(this.kernel, this.section.table, this.logger);
    await removeIptablesLeftovers(this.kernel, this.logger);
    await this.adopt();
    await this.checkForeignForwardDrop();
  }

  /**
   * kube-proxy's ipvs mode never puts a NodePort on a loopback address (its node-address
   * listing drops them, also when nodePortAddresses names 127.0.0.0/8) and sets no
   * route_localnet; so neither do we (docs/proxy.md says why). Said once, when asked for.
   */
  private warnLoopbackNodePorts(): void {
    const loopback = this.section.nodePortAddresses.filter((c) => {
      const cidr = Cidr.parse(c);
      return cidr.contains(IpAddress.parse(cidr.family === 4 ? '127.0.0.1' : '::1'));
    });
    if (loopback.length > 0) this.logger.warn({ nodePortAddresses: loopback }, 'NodePorts on loopback addresses are not supported in ipvs mode (as in kube-proxy\'s ipvs mode): these CIDRs give no NodePort on 127.0.0.1 / ::1');
  }

  /** Reads the kernel: our virtual servers (on our VIPs or node addresses), ipset members, bound VIPs. */
  private async adopt(): Promise<void> {
    this.appliedVips.clear();
    const link = await this.kernel.net.getLink(VIP_DEVICE);
    if (link) {
      for (const f of this.families) for (const a of await this.kernel.net.listAddresses(VIP_DEVICE, f)) if (!unusable(a.cidr.ip)) this.appliedVips.add(a.cidr.ip.toString());
    }
    await this.refreshNodeAddresses();
    const ours = new Set([...this.appliedVips, ...this.nodeAddresses]);
    this.appliedVS.clear();
    for (const s of await this.ipvs.listServices()) {
      if (s.fwmark !== undefined || !ours.has(s.address)) continue;
      const dests = await this.ipvs.listDests(s);
      this.appliedVS.set(vsKey(s), { service: s, dests: new Map(dests.map((d) => [destKey(d), d])) });
    }
    this.appliedSets.clear();
    const saved = parseIpsetSave(await this.ipset.save().catch(() => ''));
    for (const name of Object.keys(SET_TYPES)) {
      const s = saved.get(name);
      if (s) this.appliedSets.set(name, new Set(s.members));
    }
    this.legacySets = LEGACY_SETS.filter((n) => saved.has(n));
    let rs = 0;
    for (const v of this.appliedVS.values()) rs += v.dests.size;
    if (this.appliedVS.size > 0 || this.appliedVips.size > 0) this.logger.info({ virtualServers: this.appliedVS.size, realServers: rs, vips: this.appliedVips.size }, 'adopted the IPVS state in the kernel; the first sync is a diff');
  }

  override async start(signal: AbortSignal): Promise<void> {
    await super.start(signal);
    this.drainTimer = setInterval(() => {
      if (this.draining.size === 0 || this.closed) return;
      void this.serial(() => this.checkDraining()).catch((err: unknown) => this.logger.warn({ err: errorMessage(err) }, 'checking draining IPVS real servers failed'));
    }, DRAIN_CHECK_MS);
    this.drainTimer.unref();
  }

  protected override async quiesce(): Promise<void> {
    if (this.drainTimer) clearInterval(this.drainTimer);
    await this.busy;
  }

  override async close(): Promise<void> {
    await super.close();
    this.ipvs.close();
  }

  /**
   * `podwired --cleanup`: our virtual servers, VIP device, iptables chains and ipsets
   * (ipvs/leftovers.ts), and the other modes' leftovers as their own cleanup removes ours.
   */
  async cleanup(_signal: AbortSignal): Promise<void> {
    await removeIpvsLeftovers(this.kernel, this.logger, { ipvs: this.ipvs, ipset: this.ipset, always: true });
    await removeIptablesLeftovers(this.kernel, this.logger);
    await removeNftLeftovers(this.kernel, this.section.table, this.logger);
  }

  /** Sysctls, the VIP device, the ipsets and the fixed iptables rules. Idempotent. */
  private async setup(): Promise<void> {
    for (const [k, v] of [...IPVS_SYSCTLS, ...(this.section.ipvsStrictARP ? STRICT_ARP_SYSCTLS : [])]) {
      const cur = await this.kernel.sysctl.read(k).catch(() => undefined);
      if (cur?.trim() !== v) await this.kernel.sysctl.write(k, v);
    }
    if (!(await this.kernel.net.getLink(VIP_DEVICE))) await this.kernel.net.createLink({ kind: 'bridge', name: VIP_DEVICE });
    await this.kernel.net.setLinkUp(VIP_DEVICE, true);
    const types = this.families.flatMap((f) => Object.entries(setTypesOf(f)));
    await this.ipset.restore(types.map(([n, t]) => `create ${n} ${t} -exist`).join('\n'));
    for (const [n] of types) if (!this.appliedSets.has(n)) this.appliedSets.set(n, new Set());
    // The same fixed rules for each family: iptables on the IPv4 sets, ip6tables on the IPv6 ones.
    for (const f of this.families) {
      const ipt = this.kernel.iptables(f);
      const [nat, filter, mangle] = await Promise.all([ipt.save('nat').catch(() => ''), ipt.save('filter').catch(() => ''), ipt.save('mangle').catch(() => '')]);
      await ipt.restore(renderRules({ clusterCIDRs: this.section.clusterCIDRs, masqueradeAll: this.section.masqueradeAll, masqMark: 1 << this.section.masqueradeBit }, missingJumps(nat, filter, mangle), f), { noflush: true });
    }
    // The rules just rewritten no longer match on an earlier build's sets: they can go now.
    if (this.legacySets.length > 0) {
      await this.ipset.restore(this.legacySets.map((n) => `destroy ${n}`).join('\n'));
      this.logger.info({ sets: this.legacySets }, 'destroyed the ipsets of an earlier build');
      this.legacySets = [];
    }
    this.setupDone = true;
  }

  /**
   * Binds VIPs on the VIP device: one batched rtnetlink round trip (applyLinkConfig) when the
   * kernel handle has it (10,000 VIPs at a cold start), else one call each. Returns the failures.
   */
  private async bindVips(vips: readonly string[]): Promise<number> {
    if (vips.length === 0) return 0;
    let failed = 0;
    const net = this.kernel.net;
    if (net.applyLinkConfig) {
      const index = (await net.getLink(VIP_DEVICE))?.index;
      if (index !== undefined) {
        // IPv6 with nodad: on the carrier-less VIP device DAD never completes, and a tentative
        // address has no local route (the node would not accept the VIP).
        const r = await net.applyLinkConfig(vips.map((v) => ({ kind: 'address' as const, index, cidr: vipCidr(v), nodad: familyOf(v) === 6 })));
        const bad = new Set(r.failed.map((f) => f.index));
        vips.forEach((v, i) => {
          if (!bad.has(i)) this.appliedVips.add(v);
        });
        for (const f of r.failed.slice(0, 5)) this.logger.error({ err: f.message, vip: vips[f.index] }, 'binding a VIP failed');
        return r.failed.length;
      }
    }
    for (const v of vips) {
      try {
        await net.addAddress(VIP_DEVICE, vipCidr(v), { nodad: familyOf(v) === 6 });
        this.appliedVips.add(v);
      } catch (err) {
        failed++;
        this.logger.error({ err: errorMessage(err), vip: v }, 'binding a VIP failed');
      }
    }
    return failed;
  }

  /**
   * The addresses NodePorts answer on, of every family proxied; returns true when they
   * changed. Read at start-up and at every periodic full sync only: the dump includes every
   * bound VIP (10,000 at 10,000 Services), too much for every endpoint change.
   * nodePortAddresses per family, as kube-proxy: no CIDR of a family means all its addresses.
   */
  private async refreshNodeAddresses(): Promise<boolean> {
    const links = new Map((await this.kernel.net.listLinks()).map((l) => [l.index, l.name]));
    const out = new Set<string>();
    const host = new Set<string>();
    for (const f of this.families) {
      const allowed = this.section.nodePortAddresses.map((c) => Cidr.parse(c)).filter((c) => c.family === f);
      for (const a of await this.kernel.net.listAddresses(undefined, f)) {
        const name = links.get(a.linkIndex);
        if (name === undefined || name === 'lo' || name === VIP_DEVICE) continue;
        const ip = a.cidr.ip;
        if (unusable(ip)) continue;
        host.add(ip.toString());
        if (allowed.length > 0 && !allowed.some((c) => c.contains(ip))) continue;
        out.add(ip.toString());
      }
    }
    const list = [...out].sort();
    const hostList = [...host].sort();
    const changed = list.join(',') !== this.nodeAddresses.join(',') || hostList.join(',') !== this.hostAddresses.join(',');
    this.nodeAddresses = list;
    this.hostAddresses = hostList;
    return changed;
  }

  /** Syncs run after the drain checks the timer started (and the other way round). */
  override sync(signal: AbortSignal): Promise<SyncReport> {
    return this.serial(() => super.sync(signal));
  }

  protected async prepare(s: SyncStart): Promise<boolean> {
    // Periodic full sync: read the kernel back (someone may have changed it) and diff everything.
    // Also while events keep coming (a sync with changes of its own): under steady endpoint
    // churn every sync has some, and the repair must not wait for a quiet moment.
    let full = s.renderAll;
    const readBack = !s.renderAll && s.started >= this.nextFull;
    if (readBack) {
      await this.adopt(); // node addresses included
      full = true;
    }
    if (full || !this.setupDone) await this.setup();
    if (full && !readBack) await this.refreshNodeAddresses();
    this.current = { started: s.started, full, readBack, vs: new Set(), sets: new Set(), vips: new Set() };
    if (full) {
      for (const k of this.appliedVS.keys()) this.current.vs.add(k);
      for (const [set, members] of this.appliedSets) for (const m of members) this.current.sets.add(`${set} ${m}`);
      for (const v of this.appliedVips) this.current.vips.add(v);
    }
    return full;
  }

  protected override ownedKeys(): Iterable<string> {
    return this.contributions.keys();
  }

  protected async apply(keys: string[], render: (keys: readonly string[]) => void): Promise<ApplyResult<IpvsSyncStats>> {
    const r0 = performance.now();
    render(keys);
    const renderMs = performance.now() - r0;
    const { started, full, readBack, vs: touchedVS, sets: touchedSets, vips: touchedVips } = this.current;

    // ---- diff
    const changes: Change<IpvsEntry>[] = [];
    const drainAdds: [string, string][] = [];
    const drainDels: [string, string][] = [];
    for (const k of touchedVS) this.diffVS(k, changes, drainAdds, drainDels);
    const setLines: string[] = [];
    const setApplied: (() => void)[] = [];
    for (const t of touchedSets) {
      const sp = t.indexOf(' ');
      const set = t.slice(0, sp);
      const member = t.slice(sp + 1);
      const want = (this.setRefs.get(t) ?? 0) > 0;
      const applied = this.appliedSets.get(set) ?? new Set<string>();
      if (!this.appliedSets.has(set)) this.appliedSets.set(set, applied);
      if (want && !applied.has(member)) {
        setLines.push(`add ${set} ${member} -exist`);
        setApplied.push(() => applied.add(member));
      } else if (!want && applied.has(member)) {
        setLines.push(`del ${set} ${member} -exist`);
        setApplied.push(() => applied.delete(member));
      }
    }
    const vipAdd = [...touchedVips].filter((v) => (this.vipRefs.get(v) ?? 0) > 0 && !this.appliedVips.has(v));
    const vipDel = [...touchedVips].filter((v) => (this.vipRefs.get(v) ?? 0) === 0 && this.appliedVips.has(v));

    // ---- apply: sets (so the REJECT / masquerade match), VIPs, IPVS, then stale VIPs
    const a0 = performance.now();
    let failed = 0;
    if (setLines.length > 0) {
      try {
        await this.ipset.restore(setLines.join('\n'));
        for (const f of setApplied) f();
      } catch (err) {
        failed++;
        this.logger.error({ err: errorMessage(err), lines: setLines.length }, 'ipset restore failed; retrying at the next sync');
      }
    }
    failed += await this.bindVips(vipAdd);
    if (changes.length > 0) {
      const r = await this.ipvs.apply(changes);
      if (r.failed.length > 0) {
        failed += r.failed.length;
        this.logger.error({ failed: r.failed.slice(0, 5).map((f) => f.message), count: r.failed.length }, 'IPVS changes failed; re-reading the kernel');
        await this.rereadVS(new Set(r.failed.map((f) => vsKey(f.change.entry.service as { protocol: string; address: string; port: number }))));
      }
    }
    for (const [k, d] of drainAdds) {
      let s = this.draining.get(k);
      if (!s) this.draining.set(k, (s = new Set()));
      s.add(d);
    }
    for (const [k, d] of drainDels) {
      const s = this.draining.get(k);
      s?.delete(d);
      if (s?.size === 0) this.draining.delete(k);
    }
    for (const v of vipDel) {
      try {
        await this.kernel.net.deleteAddress(VIP_DEVICE, vipCidr(v));
        this.appliedVips.delete(v);
      } catch (err) {
        failed++;
        this.logger.error({ err: errorMessage(err), vip: v }, 'unbinding a VIP failed');
      }
    }
    // The drain check (a dump per draining virtual server, then a delete batch) is not part of
    // a sync that changed Services: one endpoint change stays one batch of genetlink messages
    // (what is quiesced has weight 0, so no new connection reaches it meanwhile). The 1 s timer
    // and the syncs without changes (quiet, full) check every draining real server.
    if (this.draining.size > 0 && (full || keys.length === 0)) await this.checkDraining();
    const applyMs = performance.now() - a0;
    // What this sync touched (after a full one: every virtual server, set member and VIP) is not
    // kept alive until the next sync.
    this.current = { started, full: false, readBack: false, vs: new Set(), sets: new Set(), vips: new Set() };
    // Any failure (ipset, VIP, IPVS) retries every Service of this sync (the pipeline does); the
    // next read-back keeps its spacing all the same (a failing kernel must not make every sync full).
    let rb: IpvsSyncStats['readBack'];
    if (readBack) {
      const ms = this.clock.now() - started;
      const nextInMs = Math.max(this.section.syncPeriodMs, READBACK_SHARE * ms);
      this.nextFull = started + nextInMs;
      rb = { ms, nextInMs };
    } else if (full && failed === 0) {
      // A full re-render (the first sync, our Node changed) diffed everything against what was
      // adopted or read back before: the next read-back syncPeriod after it.
      this.nextFull = Math.max(this.nextFull, this.clock.now() + this.section.syncPeriodMs);
    }
    return { stats: { services: keys.length, ipvsChanges: changes.length, ipsetChanges: setLines.length, vipChanges: vipAdd.length + vipDel.length, renderMs, applyMs, ...(rb ? { readBack: rb } : {}) }, failed };
  }

  /** The gauges count when scraped (collect), not here. */
  protected recordMetrics(): void {}

  private realServerCount(): number {
    let rs = 0;
    for (const v of this.appliedVS.values()) rs += v.dests.size;
    return rs;
  }

  /** One Service's ports into its contribution; moves its refcounts and records what it touched. */
  protected renderService(key: string, ports: ServicePortInfo[]): void {
    const { vs: touchedVS, sets: touchedSets, vips: touchedVips } = this.current;
    const before = this.contributions.get(key);
    const after = ports.length > 0 ? renderIpvsService(ports, { scheduler: this.section.ipvsScheduler, nodeAddresses: this.nodeAddresses, hostAddresses: this.hostAddresses, families: this.families }) : undefined;
    const move = (c: IpvsContribution | undefined, d: 1 | -1): void => {
      if (!c) return;
      for (const [set, members] of c.sets) {
        for (const mem of members) {
          const t = `${set} ${mem}`;
          this.setRefs.set(t, (this.setRefs.get(t) ?? 0) + d);
          if (this.setRefs.get(t)! <= 0) this.setRefs.delete(t);
          touchedSets.add(t);
        }
      }
      for (const v of c.vips) {
        this.vipRefs.set(v, (this.vipRefs.get(v) ?? 0) + d);
        if (this.vipRefs.get(v)! <= 0) this.vipRefs.delete(v);
        touchedVips.add(v);
      }
      for (const vs of c.vss) {
        const k = vsKey(vs.service);
        if (d < 0) {
          if (this.desiredVS.get(k) === vs) this.desiredVS.delete(k);
        } else this.desiredVS.set(k, vs);
        touchedVS.add(k);
      }
    };
    move(before, -1);
    move(after, 1);
    if (after) this.contributions.set(key, after);
    else this.contributions.delete(key);
  }

  /** The changes that bring one virtual server from what the kernel has to what is wanted. */
  private diffVS(k: string, changes: Change<IpvsEntry>[], drainAdds: [string, string][], drainDels: [string, string][]): void {
    const want = this.desiredVS.get(k);
    const have = this.appliedVS.get(k);
    if (!want) {
      if (!have) return;
      changes.push({ op: 'delete', entry: { kind: 'service', service: have.service } });
      this.appliedVS.delete(k);
      this.draining.delete(k);
      return;
    }
    const svc = want.service;
    if (!have) {
      changes.push({ op: 'add', entry: { kind: 'service', service: svc } });
      for (const d of want.dests) changes.push({ op: 'add', entry: { kind: 'dest', service: svc, dest: d } });
      this.appliedVS.set(k, { service: svc, dests: new Map(want.dests.map((d) => [destKey(d), d])) });
      return;
    }
    if (have.service.scheduler !== svc.scheduler || Boolean(have.service.persistent) !== Boolean(svc.persistent) || (have.service.timeout ?? 0) !== (svc.timeout ?? 0)) {
      changes.push({ op: 'replace', entry: { kind: 'service', service: svc } });
      have.service = svc;
    }
    const wanted = new Map(want.dests.map((d) => [destKey(d), d]));
    for (const [dk, d] of wanted) {
      const cur = have.dests.get(dk);
      if (!cur) changes.push({ op: 'add', entry: { kind: 'dest', service: svc, dest: d } });
      else if (cur.weight !== d.weight || (cur.forward ?? 'masq') !== 'masq') changes.push({ op: 'replace', entry: { kind: 'dest', service: svc, dest: d } });
      else continue;
      have.dests.set(dk, d);
      drainDels.push([k, dk]);
    }
    for (const [dk, cur] of have.dests) {
      if (wanted.has(dk)) continue;
      if (svc.protocol === 'udp') {
        changes.push({ op: 'delete', entry: { kind: 'dest', service: svc, dest: cur } });
        have.dests.delete(dk);
        drainDels.push([k, dk]);
        continue;
      }
      if (cur.weight !== 0) {
        const quiesced: IpvsDest = { address: cur.address, port: cur.port, family: cur.family, forward: 'masq', weight: 0 };
        changes.push({ op: 'replace', entry: { kind: 'dest', service: svc, dest: quiesced } });
        have.dests.set(dk, { ...cur, weight: 0 });
      }
      drainAdds.push([k, dk]);
    }
  }

  /** Deletes the weight-0 real servers whose connections have all ended (one dump per draining virtual server). */
  private async checkDraining(): Promise<void> {
    const changes: Change<IpvsEntry>[] = [];
    const done: [string, string][] = [];
    for (const [k, keys] of [...this.draining]) {
      const have = this.appliedVS.get(k);
      if (!have) {
        this.draining.delete(k);
        continue;
      }
      const dump = new Map((await this.ipvs.listDests(have.service)).map((d) => [destKey(d), d]));
      for (const dk of keys) {
        const d = dump.get(dk);
        if (!d) {
          done.push([k, dk]);
          continue;
        }
        if (d.weight !== 0) continue; // wanted again meanwhile
        if ((d.activeConns ?? 0) + (d.inactiveConns ?? 0) === 0) {
          changes.push({ op: 'delete', entry: { kind: 'dest', service: have.service, dest: d } });
          done.push([k, dk]);
        }
      }
    }
    if (changes.length > 0) {
      const r = await this.ipvs.apply(changes);
      for (const f of r.failed) this.logger.warn({ err: f.message }, 'deleting a drained IPVS real server failed');
      if (changes.length - r.failed.length > 0) this.logger.info({ realServers: changes.length - r.failed.length }, 'drained IPVS real servers deleted (no connection left)');
    }
    for (const [k, dk] of done) {
      this.appliedVS.get(k)?.dests.delete(dk);
      const s = this.draining.get(k);
      s?.delete(dk);
      if (s?.size === 0) this.draining.delete(k);
    }
  }

  /** After a failed batch: the kernel's truth for these virtual servers. */
  private async rereadVS(keys: Set<string>): Promise<void> {
    const all = new Map((await this.ipvs.listServices().catch(() => [] as IpvsService[])).filter((s) => s.fwmark === undefined).map((s) => [vsKey(s), s]));
    for (const k of keys) {
      const s = all.get(k);
      if (!s) {
        this.appliedVS.delete(k);
        continue;
      }
      const dests = await this.ipvs.listDests(s).catch(() => [] as IpvsDest[]);
      this.appliedVS.set(k, { service: s, dests: new Map(dests.map((d) => [destKey(d), d])) });
    }
  }

  protected expectedInfo(): Omit<ExpectedInfo, 'pending'> {
    return { mode: 'ipvs', families: [...this.families] };
  }

  protected modeStatus(): Record<string, unknown> {
    const realServers = this.realServerCount();
    let drainingServers = 0;
    for (const s of this.draining.values()) drainingServers += s.size;
    return {
      scheduler: this.section.ipvsScheduler,
      strictARP: this.section.ipvsStrictARP,
      vipDevice: VIP_DEVICE,
      virtualServers: this.appliedVS.size,
      realServers,
      drainingRealServers: drainingServers,
      vips: this.appliedVips.size,
    };
  }
}
