/**
 * The `dns` component: the node-local cluster DNS server.
 *
 *   handleEvent: records which Services changed (Service, EndpointSlice, Pod subdomain),
 *                and whether the kube-dns ConfigMap or the Namespaces changed;
 *   sync:        re-encodes the changed Services' answers into the zone's slab,
 *                applies the ConfigMap (last good kept), refreshes the upstream list;
 *   start:       puts the listen addresses on `dns.bindInterface`, binds UDP+TCP (SO_REUSEPORT);
 *                The sockets are handed to the socket keeper (keeper.ts); after a crash the
 *                restarted podwired takes them back and serves them after its first sync.
 *   close:       keeps serving until a successor serves (at most dns.drainTimeout), then closes.
 * Before the first sync, cluster names get SERVFAIL; other names are forwarded already.
 */
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { Cidr } from '../common/ip';
import type { Component, ComponentContext, ComponentRegistration, ComponentStatus, SyncReport } from '../daemon/component';
import { parseHostPort } from '../daemon/config';
import type { ClusterEvent } from '../k8s/types';
import { DnsCache } from './cache';
import { AutopathHandler } from './autopath';
import { dnsSection, type DnsSection, parseKubeDnsConfigMap, parseResolvConf, parseResolvSearch } from './config';
import { type DnsController, stateController } from './controller';
import { Forwarder, ForwardHandler, type ForwardOptions, formatUpstream, StubHandler, type UpstreamAddr } from './forward';
import { buildChain, type Handler, logHandler, metricsHandler, type Next } from './handler';
import { KubernetesHandler } from './kubernetes';
import { DnsStats, registerDnsMetrics } from './metrics';
import { SocketKeeper } from './keeper';
import { closeFd } from '../kernel/native';
import { DnsServer, type ListenAddr } from './server';
import { applySteer, removeSteer } from './steer';
import { DnsWorkers } from './workers';
import { ClusterZone } from './zone';

export interface DnsComponentOptions {
  /** Read through this controller instead of one over ctx.state (tests). */
  controller?: DnsController;
}

export class DnsComponent implements Component {
  readonly name = 'dns';
  readonly section: DnsSection;
  readonly stats = new DnsStats();
  readonly zone: ClusterZone;
  readonly cache: DnsCache;
  readonly listen: ListenAddr[];
  private readonly controller: DnsController;
  private readonly stub: StubHandler;
  private readonly forward: ForwardHandler;
  private readonly fwdOpts: ForwardOptions;
  private readonly handle: Next;
  private server: DnsServer | undefined;
  private workers: DnsWorkers | undefined;
  private zoneGeneration = 0;
  private dirty = new Set<string>();
  private full = true;
  private configDirty = true;
  private configMapError: string | undefined;
  private lastGoodConfig: ReturnType<typeof parseKubeDnsConfigMap> = { stubDomains: new Map(), upstreamNameservers: undefined };
  private resolvConfUpstreams: UpstreamAddr[] = [];
  private hostSearch: string[] = [];
  private excludedUpstreams: string[] = [];
  private addedAddresses: Cidr[] = [];
  private synced = false;
  /** The kube-dns ClusterIPs steered and served now (undefined: not applied yet). */
  private steered: string[] | undefined;
  private steerError: string | undefined;
  private bindAfterSync = false;
  private keeper: SocketKeeper | undefined;
  /** Sockets a crashed predecessor left with the keeper, served from the first sync on. */
  private adopted: Map<string, number> | undefined;
  private adoptTimer: NodeJS.Timeout | undefined;
  private keeperRetryAt = 0;

  constructor(
    private readonly ctx: ComponentContext<DnsSection>,
    options: DnsComponentOptions = {},
  ) {
    this.section = ctx.section;
    const s = this.section;
    this.controller = options.controller ?? stateController(ctx.state);
    this.listen = ctx.config.dnsListen.map((a) => parseHostPort('dnsListen', a));
    this.zone = new ClusterZone(this.controller, { zones: [ctx.config.clusterDomain, ...s.zones.filter((z) => z !== ctx.config.clusterDomain)], ttl: s.ttl, podRecords: s.podRecords });
    this.fwdOpts = { policy: s.policy, maxFails: s.maxFails, readTimeoutMs: s.readTimeoutMs, healthCheckMs: s.healthCheckMs, maxConcurrent: s.maxConcurrent, stats: this.stats, logger: ctx.logger };
    this.cache = new DnsCache({
      capacity: s.cacheSize,
      maxTtl: s.cacheMaxTtl,
      staleMs: s.serveStaleMs,
      staleAnswerTimeoutMs: s.staleAnswerTimeoutMs,
      prefetch: s.prefetch,
      ourSize: s.udpSize,
      clock: ctx.clock,
      stats: this.stats,
      bypass: (q) => this.zone.owns(q),
    });
    this.stub = new StubHandler(this.fwdOpts, s.udpSize);
    this.forward = new ForwardHandler(new Forwarder([], this.fwdOpts), s.udpSize, ctx.logger);
    const handlers: Record<string, Handler> = {
      metrics: metricsHandler(this.stats),
      cache: this.cache,
      kubernetes: new KubernetesHandler(this.zone, s.udpSize),
      stub: this.stub,
      forward: this.forward,
    };
    if (s.log) handlers.log = logHandler(ctx.logger);
    if (s.autopath) {
      const zones = this.zone.options.zones;
      handlers.autopath = new AutopathHandler({
        zones,
        nodeName: ctx.config.nodeName,
        podsByIP: (ip) => this.controller.podsByIP(ip),
        // The node's search domains, minus any cluster zone (kubelet lists those already).
        hostSearch: () => this.hostSearch.filter((d) => !zones.some((z) => d === z || d.endsWith(`.${z}`))),
        ttl: s.ttl,
        ourSize: s.udpSize,
      });
    }
    this.handle = buildChain(handlers);
    registerDnsMetrics(ctx.metrics, this.stats, `dns://${ctx.config.dnsListen[0] ?? ''}`);
  }

  /** The chain's entry, for tests that drive it without sockets. */
  get handler(): Next {
    return this.handle;
  }

  handleEvent(event: ClusterEvent): boolean {
    const prev = event.type === 'add' ? undefined : event.previous;
    const cur = event.type === 'delete' ? undefined : event.current;
    switch (event.kind) {
      case 'Service':
        this.dirty.add((cur ?? prev)!.meta.key);
        return true;
      case 'EndpointSlice': {
        let any = false;
        for (const s of [prev, cur] as ({ meta: { namespace?: string }; serviceName?: string } | undefined)[]) {
          if (s?.serviceName) {
            this.dirty.add(`${s.meta.namespace}/${s.serviceName}`);
            any = true;
          }
        }
        return any;
      }
      case 'Pod': {
        const keys = this.zone.trackPod(prev as never, cur as never);
        for (const k of keys) this.dirty.add(k);
        return keys.length > 0;
      }
      case 'Namespace':
        this.full = true;
        return true;
      case 'ConfigMap':
        if ((cur ?? prev)!.meta.key !== this.section.configMap) return false;
        this.configDirty = true;
        return true;
      default:
        return false;
    }
  }

  async sync(signal: AbortSignal): Promise<SyncReport> {
    if (signal.aborted) return {};
    let changed = true;
    if (this.full || !this.zone.ready) {
      this.full = false;
      this.dirty.clear();
      this.zone.rebuild();
    } else if (this.dirty.size > 0) {
      const keys = this.dirty;
      this.dirty = new Set();
      this.zone.update(keys);
    } else changed = false;
    this.synced = true;
    if (changed) this.workers?.publish(this.zone.snapshot(++this.zoneGeneration));
    await this.applyConfig();
    if (this.bindAfterSync && !signal.aborted) await this.bind();
    if (!signal.aborted) await this.steer();
    if (!signal.aborted) await this.checkKeeper();
    return { objects: this.zone.stats().names };
  }

  /**
   * The keeper still answers, or our sockets go to a new one (a keeper killed, or the old
   * pod's sidecar gone after a rolling update). Retried at most every KEEPER_RETRY_MS.
   */
  private async checkKeeper(): Promise<void> {
    if (!this.section.keeper || !this.section.nativeUdp || !this.server || this.keeper?.alive()) return;
    const now = Date.now();
    if (now < this.keeperRetryAt) return;
    this.keeperRetryAt = now + KEEPER_RETRY_MS;
    this.keeper?.close();
    this.keeper = await SocketKeeper.open(this.section.keeper, this.ctx.logger);
    if (!this.keeper || !this.server) return;
    this.server.useKeeper(this.keeper);
    this.ctx.logger.info({ keeper: this.keeper.name }, 'DNS sockets handed to a new socket keeper');
  }

  /** kube-dns ConfigMap + own config + resolv.conf → stub domains and upstreams. */
  private async applyConfig(): Promise<void> {
    if (this.configDirty) {
      this.configDirty = false;
      const cm = this.controller.configMap(this.section.configMap);
      try {
        this.lastGoodConfig = cm ? parseKubeDnsConfigMap(cm.data) : { stubDomains: new Map(), upstreamNameservers: undefined };
        this.configMapError = undefined;
      } catch (err) {
        this.configMapError = `ConfigMap ${this.section.configMap}: ${(err as Error).message}`;
        this.ctx.logger.error({ err, configMap: this.section.configMap }, 'bad kube-dns ConfigMap; keeping the last good configuration');
      }
    }
    const stubs = new Map(this.lastGoodConfig.stubDomains);
    for (const [d, ups] of this.section.stubDomains) stubs.set(d, [...(stubs.get(d) ?? []), ...ups]);
    for (const [d, ups] of stubs) stubs.set(d, this.withoutLoops(ups));
    const before = JSON.stringify(this.stub.list());
    this.stub.set(stubs);
    // Answers cached from servers we no longer use must not outlive the change.
    if (JSON.stringify(this.stub.list()) !== before) this.cache.clear();
    const needUpstreams = this.section.upstreams.length === 0 && !this.lastGoodConfig.upstreamNameservers;
    if (needUpstreams || this.section.autopath) {
      try {
        const text = await readFile(this.section.resolvConf, 'utf8');
        if (needUpstreams) this.resolvConfUpstreams = parseResolvConf(text);
        this.hostSearch = parseResolvSearch(text);
      } catch (err) {
        this.ctx.logger.warn({ err, file: this.section.resolvConf }, 'cannot read resolv.conf; keeping the upstreams we had');
      }
    }
    const wanted = this.withoutLoops(this.lastGoodConfig.upstreamNameservers ?? (this.section.upstreams.length > 0 ? this.section.upstreams : this.resolvConfUpstreams));
    const have = this.forward.forwarder.upstreams.map(formatUpstream).join();
    if (wanted.map(formatUpstream).join() !== have) {
      const old = this.forward.forwarder;
      this.forward.forwarder = new Forwarder(wanted, this.fwdOpts);
      old.close();
      this.cache.clear();
      this.ctx.logger.info({ upstreams: wanted.map(formatUpstream), excluded: this.excludedUpstreams }, 'DNS upstreams');
    }
  }

  /** The kube-dns Service's ClusterIPs (none before the first sync, or when `dns.kubeDnsService` is ''). */
  private kubeDnsIPs(): string[] {
    if (!this.section.kubeDnsService || !this.synced) return [];
    const svc = this.controller.service(this.section.kubeDnsService);
    return [...new Set((svc?.clusterIPs ?? []).filter((ip) => isIP(ip) !== 0))].sort();
  }

  /** Our listen addresses that get the NOTRACK rules: specific addresses on port 53. */
  private steeredListen(): string[] {
    return this.listen.filter((l) => l.port === 53 && !isWildcardOrLoopback(l.host)).map((l) => l.host);
  }

  /**
   * The kube-dns VIP steering (steer.ts): the VIPs on `dns.bindInterface`, NOTRACK for
   * port 53 to them and to our listen addresses, and the server bound on them. A failure
   * is logged and shown in the status, and retried at the next sync.
   */
  private async steer(): Promise<void> {
    const vips = this.kubeDnsIPs();
    if (this.steered && this.steered.join() === vips.join() && !this.steerError) return;
    try {
      const iface = this.section.bindInterface;
      const kernel = this.ctx.kernel;
      if (kernel && iface) {
        for (const ip of vips) await this.ensureAddress(iface, ip);
        for (const ip of this.steered ?? []) if (!vips.includes(ip)) await this.dropAddress(iface, ip);
      }
      if (kernel && (vips.length > 0 || this.steered !== undefined || this.steeredListen().length > 0)) await applySteer(kernel.nft, [...this.steeredListen(), ...vips]);
      await this.server?.setExtra(vips.map((host) => ({ host, port: 53 })));
      this.workers?.setExtra(vips.map((host) => ({ host, port: 53 })));
      if (vips.join() !== (this.steered ?? []).join()) this.ctx.logger.info({ vips }, 'kube-dns Service IPs served here (NOTRACK for port 53)');
      this.steered = vips;
      this.steerError = undefined;
    } catch (err) {
      this.steerError = err instanceof Error ? err.message : String(err);
      this.ctx.logger.warn({ err, vips }, 'cannot steer the kube-dns Service IPs to this server; retrying at the next sync');
    }
  }

  private async ensureAddress(iface: string, ip: string): Promise<void> {
    const kernel = this.ctx.kernel;
    const cidr = Cidr.parse(`${ip}/${isIP(ip) === 6 ? 128 : 32}`);
    const present = (await kernel.net.listAddresses(iface)).some((a) => a.cidr.toString() === cidr.toString());
    if (!present) {
      await kernel.net.addAddress(iface, cidr);
      this.addedAddresses.push(cidr);
    }
  }

  private async dropAddress(iface: string, ip: string): Promise<void> {
    const i = this.addedAddresses.findIndex((c) => c.toString() === Cidr.parse(`${ip}/${isIP(ip) === 6 ? 128 : 32}`).toString());
    if (i < 0) return; // not ours
    const [cidr] = this.addedAddresses.splice(i, 1);
    await this.ctx.kernel.net.deleteAddress(iface, cidr!).catch(() => undefined);
  }

  /** Never forward to ourselves: our listen addresses, the kube-dns Service IPs. */
  private withoutLoops(ups: readonly UpstreamAddr[]): UpstreamAddr[] {
    const self = new Set<string>();
    for (const l of this.listen) {
      self.add(formatUpstream(l));
      if (l.host === '0.0.0.0' || l.host === '::') {
        for (const h of ['127.0.0.1', '::1', '0.0.0.0', '::']) self.add(formatUpstream({ host: h, port: l.port }));
      }
    }
    const kubeDnsKeys = new Set([this.section.configMap, this.section.kubeDnsService].filter((k) => k !== ''));
    for (const key of kubeDnsKeys) for (const ip of this.controller.service(key)?.clusterIPs ?? []) if (isIP(ip)) self.add(formatUpstream({ host: ip, port: 53 }));
    const out: UpstreamAddr[] = [];
    this.excludedUpstreams = [];
    for (const u of ups) {
      const k = formatUpstream(u);
      const loopback127 = u.host.startsWith('127.') && this.listen.some((l) => l.port === u.port && (l.host === '0.0.0.0' || l.host.startsWith('127.')));
      if (self.has(k) || loopback127) this.excludedUpstreams.push(k);
      else out.push(u);
    }
    if (this.excludedUpstreams.length > 0) this.ctx.logger.warn({ excluded: this.excludedUpstreams }, 'upstreams that point back at this server are not used (loop)');
    return out;
  }

  async start(_signal: AbortSignal): Promise<void> {
    const iface = this.section.bindInterface;
    if (iface && this.ctx.kernel) {
      for (const l of this.listen) {
        if (l.host === '0.0.0.0' || l.host === '::' || l.host.startsWith('127.') || l.host === '::1') continue;
        const cidr = Cidr.parse(`${l.host}/${isIP(l.host) === 6 ? 128 : 32}`);
        const present = (await this.ctx.kernel.net.listAddresses(iface)).some((a) => a.cidr.toString() === cidr.toString());
        if (!present) {
          await this.ctx.kernel.net.addAddress(iface, cidr);
          this.addedAddresses.push(cidr);
        }
      }
    }
    await this.applyConfig();
    if (this.section.keeper && this.section.nativeUdp) {
      this.keeper = await SocketKeeper.open(this.section.keeper, this.ctx.logger);
      const kept = this.keeper?.take();
      if (kept && kept.size > 0) this.adopted = kept;
    }
    // Sockets kept across a crash: queries have been queueing in them. Answer them once we
    // have state (so none gets our before-the-first-sync SERVFAIL), but wait for that at most
    // ADOPT_WAIT_MS: a resolver gives up on a query after a few seconds.
    if (this.adopted && !this.zone.ready) {
      this.bindAfterSync = true;
      this.ctx.logger.info({ sockets: [...this.adopted.keys()] }, 'DNS sockets kept across a crash; serving them after the first sync');
      this.adoptTimer = setTimeout(() => {
        if (this.bindAfterSync) this.bind().catch((err: unknown) => this.ctx.logger.error({ err }, 'cannot serve the kept DNS sockets'));
      }, ADOPT_WAIT_MS);
      this.adoptTimer.unref();
      return;
    }
    // A predecessor still serving (a restart): bind only once we have state, so no client
    // ever gets our before-the-first-sync SERVFAIL. Otherwise serve at once.
    if (!this.zone.ready && this.listen[0] && (await DnsServer.otherServing(this.listen[0]))) {
      this.bindAfterSync = true;
      this.ctx.logger.info('another DNS server answers on our address; binding after the first sync');
      return;
    }
    await this.bind();
  }

  private async bind(): Promise<void> {
    this.bindAfterSync = false;
    clearTimeout(this.adoptTimer);
    const adopted = this.adopted;
    this.adopted = undefined;
    this.server = new DnsServer({
      listen: this.listen,
      handle: this.handle,
      udpSize: this.section.udpSize,
      tcpIdleMs: this.section.tcpIdleMs,
      logger: this.ctx.logger,
      stats: this.stats,
      nativeUdp: this.section.nativeUdp,
      answersInline: (q) => this.zone.owns(q),
      keeper: this.keeper,
      adopted,
    });
    await this.server.start();
    if (this.steered?.length) await this.server.setExtra(this.steered.map((host) => ({ host, port: 53 })));
    if (this.section.workers > 1 && this.section.nativeUdp) {
      const server = this.server;
      this.workers = new DnsWorkers({
        count: this.section.workers - 1,
        listen: this.listen,
        udpSize: this.section.udpSize,
        tcpIdleMs: this.section.tcpIdleMs,
        handOff: (to, msg, client, addr) => server.handOff(to, msg, client, addr),
        answerTcp: (msg, client) => server.answerTcp(msg, client),
        onCounts: (c) => this.stats.merge(c),
        logger: this.ctx.logger,
      });
      if (this.steered?.length) this.workers.setExtra(this.steered.map((host) => ({ host, port: 53 })));
      if (this.zone.ready) this.workers.publish(this.zone.snapshot(++this.zoneGeneration));
      await this.workers.start();
    }
    this.ctx.logger.info({ listen: this.server.addresses, zones: this.zone.options.zones, kept: adopted ? 'sockets kept across a crash' : undefined, keeper: this.keeper?.name }, 'DNS serving');
  }

  async close(): Promise<void> {
    // Workers stop with the main socket (after the drain), so a successor takes their share too.
    const workers = this.workers;
    this.workers = undefined;
    clearTimeout(this.adoptTimer);
    this.bindAfterSync = false;
    await this.server?.close(this.section.drainMs);
    await workers?.stop();
    this.server = undefined;
    // Stopped before serving what a crashed predecessor left: those stay with the keeper.
    for (const fd of this.adopted?.values() ?? []) closeFd(fd);
    this.adopted = undefined;
    this.keeper?.close();
    this.keeper = undefined;
    this.stub.close();
    this.forward.forwarder.close();
  }

  /** `--cleanup`: remove our nftables table, and the listen and kube-dns addresses this component put on the interface. */
  async cleanup(): Promise<void> {
    if (!this.ctx.kernel) return;
    let steered: string[] = [];
    try {
      steered = await removeSteer(this.ctx.kernel.nft);
    } catch (err) {
      this.ctx.logger.warn({ err }, 'cannot remove the DNS NOTRACK table');
    }
    const iface = this.section.bindInterface;
    if (!iface) return;
    const hosts = new Set([...this.listen.map((l) => l.host), ...steered]);
    for (const host of hosts) {
      if (isWildcardOrLoopback(host)) continue;
      const cidr = Cidr.parse(`${host}/${isIP(host) === 6 ? 128 : 32}`);
      try {
        await this.ctx.kernel.net.deleteAddress(iface, cidr);
      } catch (err) {
        this.ctx.logger.debug({ err, cidr: cidr.toString() }, 'address already gone');
      }
    }
  }

  status(): ComponentStatus {
    const st: ComponentStatus = {
      queries: this.stats.totalRequests,
      cacheHits: this.stats.cacheHitsSuccess + this.stats.cacheHitsDenial,
      cacheMisses: this.stats.cacheMisses,
      errors: this.stats.errors,
      listen: this.server?.addresses ?? [],
      workers: 1 + (this.workers?.size ?? 0),
      zones: this.zone.options.zones,
      names: this.zone.stats().names,
      upstreams: this.forward.forwarder.status(),
      stubDomains: this.stub.list(),
    };
    if (this.excludedUpstreams.length > 0) st.excludedUpstreams = this.excludedUpstreams;
    if (this.configMapError) st.configMapError = this.configMapError;
    if (this.steered?.length) st.kubeDnsIPs = this.steered;
    if (this.steerError) st.steerError = this.steerError;
    if (!this.section.keeper || !this.section.nativeUdp) st.socketKeeper = 'off';
    else if (this.keeper) st.socketKeeper = this.keeper.name;
    else if (this.server) st.socketKeeper = 'unavailable: DNS sockets are not kept across a crash (see the log)';
    if (!this.synced) st.waitingFor = 'first sync of the cluster state (cluster names get SERVFAIL)';
    return st;
  }
}

const ADOPT_WAIT_MS = 3000;
const KEEPER_RETRY_MS = 10_000;

function isWildcardOrLoopback(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host.startsWith('127.') || host === '::1';
}

export function dnsRegistration(options: DnsComponentOptions = {}): ComponentRegistration<DnsSection> {
  return {
    feature: 'dns',
    name: 'dns',
    section: dnsSection,
    // A zone update is cheap (only the changed Services are re-encoded), and an answer may be
    // stale for at most the TTL after a change: sync at most 100 ms after an event, whatever
    // the daemon-wide --min-sync-interval (which paces the kernel-programming components).
    intervals: (_section, config) => ({ minIntervalMs: Math.min(config.minSyncInterval, 100), maxIntervalMs: config.syncInterval }),
    create: (ctx) => new DnsComponent(ctx, options),
  };
}
