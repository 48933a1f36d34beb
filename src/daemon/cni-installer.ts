/**
 * The CNI installer component: once this node's Node object has its podCIDR(s),
 * install the CNI binary into the CNI bin dir and write 10-podwire.conflist into the
 * CNI conf dir, both atomically (see atomic-file.ts) and only when the content
 * changed. Until the conflist exists the runtime reports the node's network as not
 * ready, which is what we want before the pod CIDR is known (flannel's order too).
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import path from 'node:path';
import { NotFoundError, TryAgainError, errorMessage } from '../common/errors';
import { Cidr } from '../common/ip';
import type { ClusterEvent, NodeObject } from '../k8s/types';
import { copyFileAtomic, readIfExists, removeFile, sha256, writeFileAtomic } from './atomic-file';
import type { Component, ComponentContext, ComponentRegistration, ComponentStatus, SyncReport } from './component';
import type { DaemonConfig } from './config';
import { CniChainResolver, type CniChain } from './cni-chain';
import { podMtu } from '../overlay';

export const CONFLIST_NAME = '10-podwire.conflist';
/** The CNI `type`, hence the binary's file name in the CNI bin dir. */
export const CNI_TYPE = 'podwire';
export const BRIDGE_NAME = 'pw0';
/** VXLAN: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14). */
export const VXLAN_OVERHEAD = 50;

/** The fast-path shim built by `npm run build:native` (native/cni-shim), relative to dist/src/daemon/. */
export const DEFAULT_SHIM = path.resolve(__dirname, '../../../native/cni-shim/build/Release/podwire-cni-shim');

export interface CniInstallerOptions {
  /** Underlay MTU of the interface holding `nodeIp`; default reads /sys/class/net. */
  underlayMtu?: (nodeIp: string | undefined) => Promise<number | undefined>;
  /** Binary to install; default config.cniBinSource, else the built shim if it exists. */
  binSource?: string | undefined;
  /** Decides the chained plugins and the list's cniVersion; default probes the CNI bin dir. */
  chain?: CniChainResolver;
}

export function cniInstallerRegistration(options: CniInstallerOptions = {}): ComponentRegistration {
  return { feature: 'overlay', name: 'cni-installer', create: (ctx) => new CniInstaller(ctx, options) };
}

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
  readonly name = 'cni-installer';
  private readonly config: DaemonConfig;
  private podCIDRs: string[] | undefined;
  private nodeIp: string | undefined;
  private lastWritten: string | undefined;
  private conflistHash: string | undefined;
  private binary: { source: string | undefined; installed: boolean; hash?: string } = { source: undefined, installed: false };
  private writes = 0;
  private mtu: number | undefined;
  private chain: CniChain | undefined;
  private readonly chainResolver: CniChainResolver;

  constructor(
    private readonly ctx: ComponentContext,
    private readonly options: CniInstallerOptions = {},
  ) {
    this.config = ctx.config;
    this.chainResolver = options.chain ?? new CniChainResolver();
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
    const ip = event.type === 'delete' ? undefined : node.addresses.find((a) => a.type === 'InternalIP')?.address ?? node.addresses[0]?.address;
    const changed = this.podCIDRs === undefined || cidrs.join(',') !== this.podCIDRs.join(',') || ip !== this.nodeIp;
    this.podCIDRs = cidrs;
    this.nodeIp = ip;
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
    this.nodeIp = node.addresses.find((a) => a.type === 'InternalIP')?.address ?? node.addresses[0]?.address;

    await this.installBinary();

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
    return { objects: 1 };
  }

  status(): ComponentStatus {
    return {
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
    for (const file of [this.conflistPath, this.binaryPath]) {
      try {
        if (await removeFile(file)) this.ctx.logger.info({ path: file }, 'removed');
      } catch (err) {
        errors.push(`${file}: ${errorMessage(err)}`);
      }
    }
    if (errors.length > 0) throw new Error(`cni-installer cleanup: ${errors.join('; ')}`);
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

  private async podMtu(): Promise<number> {
    if (this.config.mtu > 0) return this.config.mtu;
    const underlay = (await (this.options.underlayMtu ?? defaultUnderlayMtu)(this.nodeIp)) ?? 1500;
    return podMtu(this.config.backend, underlay, this.nodeIp?.includes(':') ? 6 : 4);
  }
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
