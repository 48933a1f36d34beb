/**
 * The `cni` component (feature `cni`, first in start-up order, independent of the
 * overlay, so a node may run another CNI and only Podwire's proxy and DNS):
 *
 * - start: mounts the CNI fast path (`POST /v1/cni`) on the control socket; the shim
 *   forwards each CNI call there and runCni runs with warm netlink sockets. close:
 *   unmounts it (later calls get 404 → the shim answers "try again later") and closes
 *   those sockets.
 * - sync, once this node's Node object has its podCIDR(s): install the CNI binary into
 *   the CNI bin dir with `podwire.conf` beside it (the control socket the shim must
 *   use, and the state dir for fallback records), and write 10-podwire.conflist into
 *   the CNI conf dir, all atomically (see atomic-file.ts) and only when the content
 *   changed. Until the conflist exists the runtime reports the node's network as not
 *   ready, which is what we want before the pod CIDR is known (flannel's order too).
 * - sync, every time: put the pods the IPAM store knows back on the bridge if it went
 *   away (cni-plugin/reattach.ts), and read the fast-path fallback records
 *   (`podwire_cni_fallback_total`, `fallbacks` in status).
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import path from 'node:path';
import { Counter } from 'prom-client';
import { InvalidInputError, NotFoundError, TryAgainError, errorMessage } from '../common/errors';
import { Cidr } from '../common/ip';
import type { ClusterEvent, NodeObject } from '../k8s/types';
import {
  CNI_CONF_NAME,
  DiskIpamStore,
  FALLBACK_FILE,
  FAST_PATH_ROUTE,
  FallbackReader,
  createCniFastPathHandler,
  createRealDeps,
  decodeJson,
  parseNetConf,
  reattachPods,
  renderShimConf,
  type CniDeps,
  type FallbackSummary,
  type NetConf,
  type ReattachReport,
} from '../cni-plugin';
import { copyFileAtomic, readIfExists, removeFile, sha256, writeFileAtomic } from './atomic-file';
import type { Component, ComponentContext, ComponentRegistration, ComponentStatus, SyncReport } from './component';
import type { DaemonConfig } from './config';
import { defineSection } from './config-section';
import { CniChainResolver, type CniChain } from './cni-chain';
import { nodePublicIp, nodePublicIp6, overlaySection, podMtu, preferFamily } from '../overlay';

export const CONFLIST_NAME = '10-podwire.conflist';
/** The CNI `type`, hence the binary's file name in the CNI bin dir. */
export const CNI_TYPE = 'podwire';
export const BRIDGE_NAME = 'pw0';
/** VXLAN: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14). */
export const VXLAN_OVERHEAD = 50;

/** The fast-path shim built by `npm run build:native` (native/cni-shim), relative to dist/src/daemon/. */
export const DEFAULT_SHIM = path.resolve(__dirname, '../../../native/cni-shim/build/Release/podwire-cni-shim');

/** The cni component's own configuration section. */
export interface CniSection {
  /** Serve CNI calls on the control socket (else every call runs in-process). */
  fastPath: boolean;
  /** Periodic sync: bridge reattach, conflist and binary check. */
  reconcileIntervalMs: number;
}

export const CNI_SECTION = defineSection<CniSection>({
  name: 'cni',
  options: [
    { key: 'fastPath', flag: 'cni-fast-path', env: 'PODWIRE_CNI_FAST_PATH', kind: 'bool', default: true, help: 'serve CNI calls on the control socket (the shim forwards them); off: every call runs in-process' },
    {
      key: 'reconcileInterval',
      flag: 'cni-reconcile-interval',
      env: 'PODWIRE_CNI_RECONCILE_INTERVAL',
      kind: 'duration',
      default: 10_000,
      help: 'how often the cni component re-checks the bridge, its pods\' veths, the conflist and the binary',
    },
  ],
  build(values, config) {
    const ms = values.reconcileInterval as number;
    if (!(ms > 0)) throw new InvalidInputError('cni.reconcileInterval', ms, 'must be positive');
    if (ms < config.minSyncInterval) throw new InvalidInputError('cni.reconcileInterval', ms, `must be >= minSyncInterval (${config.minSyncInterval}ms)`);
    return { fastPath: values.fastPath as boolean, reconcileIntervalMs: ms };
  },
});

export interface CniInstallerOptions {
  /** Underlay MTU of the interface holding `nodeIp`; default reads /sys/class/net. */
  underlayMtu?: (nodeIp: string | undefined) => Promise<number | undefined>;
  /** Binary to install; default config.cniBinSource, else the built shim if it exists. */
  binSource?: string | undefined;
  /** Decides the chained plugins and the list's cniVersion; default probes the CNI bin dir. */
  chain?: CniChainResolver;
  /**
   * The fast path's CNI deps; default: real ones (warm netlink sockets in podwired's
   * namespace), opened on the first call. Tests pass fakes; `false` turns it off.
   */
  fastPathDeps?: (() => CniDeps & { close?(): void }) | false;
  /** How long close() waits for fast-path calls in flight (default 10 s). */
  closeTimeoutMs?: number;
}

/** The cni component: feature `cni`, section `cni`, synced every `cni.reconcileInterval`. */
export function cniRegistration(options: CniInstallerOptions = {}): ComponentRegistration<CniSection> {
  return {
    feature: 'cni',
    name: 'cni',
    section: CNI_SECTION,
    intervals: (section, config) => ({ minIntervalMs: config.minSyncInterval, maxIntervalMs: section.reconcileIntervalMs }),
    create: (ctx) => new CniInstaller(ctx, options),
  };
}

/** @deprecated the old name of cniRegistration. */
export const cniInstallerRegistration = cniRegistration;

export function renderConflist(
  config: Pick<DaemonConfig, 'stateDir'>,
  podCIDRs: readonly string[],
  mtu: number,
  chain: Pick<CniChain, 'cniVersion' | 'plugins'>,
): string {
  const subnets = podCIDRs.map((c, i) => Cidr.parse(c, `node.spec.podCIDRs[${i}]`).masked);
  const chained: Record<string, Record<string, unknown>> = {
    portmap: { type: 'portmap', capabilities: { portMappings: true } },
  };
  const conf = {
    cniVersion: chain.cniVersion,
    name: 'podwire',
    plugins: [
      {
        type: CNI_TYPE,
        bridge: BRIDGE_NAME,
        mtu,
        isGateway: true,
        isDefaultGateway: true,
        ipMasq: false,
        hairpinMode: true,
        ipam: {
          type: 'host-local',
          ranges: subnets.map((s) => [{ subnet: s.toString() }]),
          routes: subnets.map((s) => ({ dst: s.family === 4 ? '0.0.0.0/0' : '::/0' })),
          dataDir: path.join(config.stateDir, 'ipam'),
        },
      },
      ...chain.plugins.map((p) => chained[p]!),
    ],
  };
  return JSON.stringify(conf, null, 2) + '\n';
}

export class CniInstaller implements Component {
  readonly name = 'cni';
  private readonly config: DaemonConfig;
  private podCIDRs: string[] | undefined;
  private nodeIp: string | undefined;
  /** vxlan, dual-stack, an IPv4 node IP: the IPv6 node IP, whose underlay carries the IPv6 VXLAN device (pw-v6.1). */
  private nodeIp6: string | undefined;
  private lastWritten: string | undefined;
  private conflistHash: string | undefined;
  private binary: { source: string | undefined; installed: boolean; hash?: string } = { source: undefined, installed: false };
  private writes = 0;
  private mtu: number | undefined;
  private chain: CniChain | undefined;
  private readonly chainResolver: CniChainResolver;
  private readonly section: CniSection;
  private fastPath: { deps: CniDeps & { close?(): void }; unmount: () => void } | undefined;
  /** Fast-path requests being served; close() waits for them before closing their sockets. */
  private inflight = 0;
  private idleWaiters: (() => void)[] = [];
  private readonly reattachedCounter: Counter;
  private shimConfHash: string | undefined;
  private readonly fallbacks: FallbackReader;
  private fallbackSeen = 0;
  private lastReattach: (Omit<ReattachReport, 'reattached'> & { reattached: number; at: string }) | undefined;
  private reattachedTotal = 0;
  private pods = 0;

  constructor(
    private readonly ctx: ComponentContext,
    private readonly options: CniInstallerOptions = {},
  ) {
    this.config = ctx.config;
    this.chainResolver = options.chain ?? new CniChainResolver();
    this.section = (ctx.section as CniSection | undefined) ?? { fastPath: true, reconcileIntervalMs: ctx.config.syncInterval };
    this.fallbacks = new FallbackReader(path.join(this.config.stateDir, FALLBACK_FILE));
    this.reattachedCounter = new Counter({
      name: 'podwire_cni_veths_reattached_total',
      help: 'Pod host veths the cni component put back on the bridge (the bridge had been deleted or the veth detached)',
      registers: [ctx.metrics],
    });
    const reader = this.fallbacks;
    let seen = 0;
    new Counter({
      name: 'podwire_cni_fallback_total',
      help: 'CNI calls the installed shim ran in-process because podwired did not answer on its control socket (recorded in <stateDir>/cni-fallbacks)',
      registers: [ctx.metrics],
      collect() {
        const { count } = reader.read();
        if (count < seen) {
          this.reset();
          seen = 0;
        }
        if (count > seen) this.inc(count - seen);
        seen = count;
      },
    });
  }

  get shimConfPath(): string {
    return path.join(this.config.cniBinDir, CNI_CONF_NAME);
  }

  /** Mounts the CNI fast path on the control socket. */
  async start(): Promise<void> {
    if (!this.section.fastPath || this.options.fastPathDeps === false) {
      this.ctx.logger.info('CNI fast path off: every CNI call runs in-process');
      return;
    }
    if (!this.ctx.control) {
      this.ctx.logger.warn('no control socket: the CNI fast path is not served');
      return;
    }
    const deps = this.options.fastPathDeps ? this.options.fastPathDeps() : createRealDeps(this.ctx.logger);
    try {
      const handler = createCniFastPathHandler(deps);
      const unmount = this.ctx.control.routeRaw(FAST_PATH_ROUTE, (req, res) => {
        this.inflight++;
        res.once('close', () => {
          if (--this.inflight === 0) for (const w of this.idleWaiters.splice(0)) w();
        });
        handler(req, res);
      });
      this.fastPath = { deps, unmount };
    } catch (err) {
      deps.close?.();
      throw err;
    }
    this.ctx.logger.info({ route: FAST_PATH_ROUTE, socket: this.config.controlSocket }, 'CNI fast path mounted');
  }

  /**
   * Unmounts the fast path (later calls: 404, the shim answers "try again later"), lets
   * the calls in flight finish (bounded: `closeTimeoutMs`), then closes their sockets.
   */
  async close(): Promise<void> {
    const fp = this.fastPath;
    this.fastPath = undefined;
    if (!fp) return;
    fp.unmount();
    if (this.inflight > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.idleWaiters.push(resolve)),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, this.options.closeTimeoutMs ?? 10_000))),
      ]);
      clearTimeout(timer);
      if (this.inflight > 0) this.ctx.logger.warn({ inflight: this.inflight }, 'closing the CNI fast path with calls still in flight');
    }
    fp.deps.close?.();
  }

  get conflistPath(): string {
    return path.join(this.config.cniConfDir, CONFLIST_NAME);
  }

  get binaryPath(): string {
    return path.join(this.config.cniBinDir, CNI_TYPE);
  }

  handleEvent(event: ClusterEvent): boolean {
    if (event.kind !== 'Node') return false;
    const node = (event.type === 'delete' ? event.previous : event.current) as NodeObject;
    if (node.meta.name !== this.config.nodeName) return false;
    const cidrs = event.type === 'delete' ? [] : [...node.podCIDRs];
    const ip = event.type === 'delete' ? undefined : this.primaryNodeIp(node);
    const ip6 = event.type === 'delete' ? undefined : this.v6NodeIp(node, ip);
    const changed = this.podCIDRs === undefined || cidrs.join(',') !== this.podCIDRs.join(',') || ip !== this.nodeIp || ip6 !== this.nodeIp6;
    this.podCIDRs = cidrs;
    this.nodeIp = ip;
    this.nodeIp6 = ip6;
    return changed;
  }

  async reconcileOnStart(): Promise<void> {
    const existing = await readIfExists(this.conflistPath);
    if (existing) {
      this.conflistHash = sha256(existing);
      this.ctx.logger.info({ path: this.conflistPath }, 'found an existing conflist; it stays until the node state says otherwise');
    }
  }

  async sync(): Promise<SyncReport> {
    const node = this.ctx.state.get('Node', this.config.nodeName);
    if (!node) throw new TryAgainError(`Node ${JSON.stringify(this.config.nodeName)} is not in the cluster state yet`, { field: 'nodeName', value: this.config.nodeName });
    if (node.podCIDRs.length === 0) {
      throw new TryAgainError(`Node ${JSON.stringify(node.meta.name)} has no spec.podCIDRs yet`, { field: 'node.spec.podCIDRs', value: [] });
    }
    this.podCIDRs = [...node.podCIDRs];
    this.nodeIp = this.primaryNodeIp(node);
    this.nodeIp6 = this.v6NodeIp(node, this.nodeIp);

    await this.installBinary();
    await this.writeShimConf();

    const mtu = await this.podMtu();
    const chain = await this.chainResolver.resolve(this.config.cniBinDir);
    if (JSON.stringify(chain) !== JSON.stringify(this.chain)) {
      for (const o of chain.omitted) this.ctx.logger.warn({ plugin: o.plugin, reason: o.reason }, 'chained CNI plugin left out of the conflist');
    }
    this.chain = chain;
    const content = renderConflist(this.config, this.podCIDRs, mtu, chain);
    const result = await writeFileAtomic(this.conflistPath, content, 0o644);
    this.mtu = mtu;
    this.conflistHash = sha256(content);
    if (result.changed) {
      this.writes++;
      this.lastWritten = new Date(this.ctx.clock.now()).toISOString();
      this.ctx.logger.info({ path: this.conflistPath, podCIDRs: this.podCIDRs, mtu }, 'wrote CNI conflist');
    }
    await this.reattach(content);
    this.noteFallbacks();
    return { objects: 1 + this.pods };
  }

  /** The pods' host veths back on the bridge, if it went away (cni-plugin/reattach.ts). */
  private async reattach(conflist: string): Promise<void> {
    const conf = pluginConf(conflist);
    const store = new DiskIpamStore(conf.ipam.dataDir, conf.name, this.ctx.logger);
    let report: ReattachReport;
    try {
      report = await reattachPods(this.ctx.kernel.net, this.ctx.kernel.sysctl, conf, store);
    } finally {
      store.close();
    }
    this.pods = report.pods;
    if (report.bridgeCreated) this.ctx.logger.warn({ bridge: conf.bridge }, 'bridge was missing under running pods; recreated it');
    if (report.reattached.length > 0) {
      this.reattachedTotal += report.reattached.length;
      this.reattachedCounter.inc(report.reattached.length);
      this.ctx.logger.warn({ bridge: conf.bridge, veths: report.reattached }, 'put pod veths back on the bridge');
    }
    if (report.reattached.length > 0 || report.errors.length > 0 || !this.lastReattach) {
      this.lastReattach = { ...report, reattached: report.reattached.length, at: new Date(this.ctx.clock.now()).toISOString() };
    }
    if (report.errors.length > 0) throw new Error(`reattaching pod veths to ${conf.bridge}: ${report.errors.join('; ')}`);
  }

  private noteFallbacks(): FallbackSummary {
    const f = this.fallbacks.read();
    if (f.count > this.fallbackSeen) {
      this.ctx.logger.warn({ fallbacks: f.count, last: f.last, file: this.fallbacks.file }, 'CNI calls ran in-process because podwired did not answer (see podwire_cni_fallback_total)');
    }
    this.fallbackSeen = f.count;
    return f;
  }

  /** `<cniBinDir>/podwire.conf`: tells the installed shim which socket to use (and where to record fallbacks). */
  private async writeShimConf(): Promise<void> {
    const text = renderShimConf({ controlSocket: this.config.controlSocket, stateDir: this.config.stateDir });
    const result = await writeFileAtomic(this.shimConfPath, text, 0o644);
    this.shimConfHash = sha256(text);
    if (result.changed) this.ctx.logger.info({ path: this.shimConfPath, controlSocket: this.config.controlSocket }, 'wrote the CNI binary\'s podwire.conf');
  }

  status(): ComponentStatus {
    const fallbacks = this.fallbacks.read();
    return {
      fastPath: this.fastPath !== undefined,
      controlSocket: this.config.controlSocket,
      fallbacks: fallbacks.count,
      lastFallback: fallbacks.last,
      fallbacksCapped: fallbacks.capped || undefined,
      pods: this.pods,
      reattachedTotal: this.reattachedTotal,
      lastReattach: this.lastReattach,
      shimConf: { path: this.shimConfPath, sha256: this.shimConfHash },
      subnet: this.podCIDRs ?? [],
      conflist: this.conflistPath,
      conflistSha256: this.conflistHash,
      conflistWrites: this.writes,
      lastWritten: this.lastWritten,
      mtu: this.mtu,
      cniVersion: this.chain?.cniVersion,
      chained: this.chain?.plugins ?? [],
      chainOmitted: this.chain?.omitted ?? [],
      binary: { path: this.binaryPath, source: this.binary.source, installed: this.binary.installed },
    };
  }

  async cleanup(): Promise<void> {
    const errors: string[] = [];
    for (const file of [this.conflistPath, this.binaryPath, this.shimConfPath]) {
      try {
        if (await removeFile(file)) this.ctx.logger.info({ path: file }, 'removed');
      } catch (err) {
        errors.push(`${file}: ${errorMessage(err)}`);
      }
    }
    if (errors.length > 0) throw new Error(`cni cleanup: ${errors.join('; ')}`);
  }

  private resolveBinSource(): { path: string | undefined; explicit: boolean } {
    const explicit = this.options.binSource ?? this.config.cniBinSource;
    if (explicit) return { path: explicit, explicit: true };
    return { path: existsSync(DEFAULT_SHIM) ? DEFAULT_SHIM : undefined, explicit: false };
  }

  private async installBinary(): Promise<void> {
    const src = this.resolveBinSource();
    this.binary.source = src.path;
    if (!src.path) {
      if (!this.binary.installed) {
        this.ctx.logger.warn({ shim: DEFAULT_SHIM }, 'no CNI binary to install (set --cni-bin-source); the conflist is written anyway');
      }
      return;
    }
    if (!existsSync(src.path)) throw new NotFoundError('cniBinSource', src.path);
    const result = await copyFileAtomic(src.path, this.binaryPath, 0o755);
    this.binary.installed = true;
    if (result.changed) this.ctx.logger.info({ source: src.path, path: this.binaryPath }, 'installed CNI binary');
  }

  /** The node IP the overlay runs pw.1 over: chosen per family as the overlay chooses it (nodePublicIp). */
  private primaryNodeIp(node: NodeObject): string | undefined {
    return nodePublicIp(node, { self: true, prefer: preferFamily(this.config.clusterCIDR) }).ip?.toString() ?? node.addresses[0]?.address;
  }

  /**
   * The overlay runs a second VXLAN device over the IPv6 underlay when the backend is vxlan, the
   * node IP is IPv4 and the node has an IPv6 pod CIDR of the cluster CIDR and an IPv6 node IP.
   */
  private v6NodeIp(node: NodeObject, ip: string | undefined): string | undefined {
    if (this.config.backend !== 'vxlan' || !ip || ip.includes(':') || !this.config.clusterCIDR.includes(':') || !node.podCIDRs.some((c) => c.includes(':'))) return undefined;
    // vxlan.ipv6Device=false: no IPv6 device, the v6 pods ride in pw.1 (its MTU alone counts).
    if (this.ctx.sectionOf && !this.ctx.sectionOf(overlaySection).vxlan.ipv6Device) return undefined;
    return nodePublicIp6(node, { self: true }).ip?.toString();
  }

  /** The pod MTU: the underlay's minus the encapsulation; with the IPv6 device the smaller of the two devices'. */
  private async podMtu(): Promise<number> {
    if (this.config.mtu > 0) return this.config.mtu;
    const underlayMtu = this.options.underlayMtu ?? defaultUnderlayMtu;
    const underlay = (await underlayMtu(this.nodeIp)) ?? 1500;
    const mtu = podMtu(this.config.backend, underlay, this.nodeIp?.includes(':') ? 6 : 4);
    // An IPv6 node IP on no interface here: the overlay makes no IPv6 device either.
    const underlay6 = this.nodeIp6 ? await underlayMtu(this.nodeIp6) : undefined;
    return underlay6 === undefined ? mtu : Math.min(mtu, podMtu(this.config.backend, underlay6, 6));
  }
}

/** The first plugin of a conflist as the runtime hands it to the plugin (list name and version added), parsed. */
function pluginConf(conflist: string): NetConf {
  const list = JSON.parse(conflist) as { cniVersion: string; name: string; plugins: Record<string, unknown>[] };
  return parseNetConf(decodeJson(JSON.stringify({ ...list.plugins[0], cniVersion: list.cniVersion, name: list.name })));
}

/** MTU of the interface holding the node IP, read from sysfs of this network namespace. */
export async function defaultUnderlayMtu(nodeIp: string | undefined): Promise<number | undefined> {
  if (!nodeIp) return undefined;
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    if (!addrs?.some((a) => a.address === nodeIp)) continue;
    try {
      const n = Number((await readFile(`/sys/class/net/${name}/mtu`, 'utf8')).trim());
      return Number.isInteger(n) && n > 0 ? n : undefined;
    } catch {
      return undefined;
    }
  }
  return undefined;
}
