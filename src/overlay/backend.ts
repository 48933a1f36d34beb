/**
 * Backends, registered by name behind flannel's two-level interface:
 * `Backend.register(lease) → Network { lease, mtu, plan(peer) }`. A Network turns one peer
 * into the entries that route to it (host-gw: one route; vxlan: neighbour, FDB and an onlink
 * route, or a direct route for a DirectRouting peer). The component diffs the plans of every
 * peer against the kernel and applies them in batches (reconcile.ts).
 */
import { Cidr, IpAddress } from '../common/ip';
import type { Logger } from '../common/log';
import type { BackendName } from '../daemon/config';
import type { FdbEntry, Kernel, NeighborEntry, Route } from '../kernel';
import type { OverlaySection } from './config';
import { ANNOTATIONS, isDirect, vtepMacFor, type PeerInfo, type PeerProblem } from './peers';

/** Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14). */
export const VXLAN_OVERHEAD_V4 = 50;
/** Outer IPv6 (40) + UDP (8) + VXLAN (8) + inner Ethernet (14). */
export const VXLAN_OVERHEAD_V6 = 70;

/** An interface holding a node IP, with that address's prefix. */
export interface Underlay {
  name: string;
  index: number;
  mtu: number;
  cidr: Cidr;
}

/** What this node holds: its pod CIDRs and where it sits on the underlay. */
export interface Lease {
  node: string;
  podCIDRs: Cidr[];
  /** The IPv4 pod CIDR the overlay routes (absent in an IPv6-only cluster). */
  v4?: Cidr;
  /** The IPv6 pod CIDR, when the cluster CIDR has an IPv6 range. */
  v6?: Cidr;
  /** The node IP: vxlan's outer address family, and the IPv4 host-gw next hop. */
  publicIp: IpAddress;
  /** The interface holding publicIp, with that address's prefix. */
  underlay: Underlay;
  /** The IPv6 node IP (publicIp when that is IPv6), for v6 host-gw and v6 DirectRouting. */
  publicIp6?: IpAddress;
  underlay6?: Underlay;
}

export type PeerMode = 'host-gw' | 'vxlan' | 'direct';

/** The entries for one peer, in the order they are programmed. */
export interface PeerPlan {
  node: string;
  /** vxlan when any family is encapsulated; direct or host-gw otherwise. */
  mode: PeerMode;
  /** Per family, for the status (a DirectRouting peer may be direct over one family only). */
  modes: { ipv4?: PeerMode; ipv6?: PeerMode };
  peer: PeerInfo;
  neigh?: NeighborEntry;
  fdb?: FdbEntry;
  /** The IPv4 pod CIDR's route (absent when this node routes no IPv4, or the peer has none). */
  route?: Route;
  /** The IPv6 pod CIDR: through the same device and FDB entry (vxlan), or via the v6 node IP (host-gw, direct). */
  neigh6?: NeighborEntry;
  route6?: Route;
  /**
   * The IPv6 pod CIDR's own FDB entry, on the IPv6 VXLAN device (`pw-v6.<VNI>`, flannel's
   * `flannel-v6.<VNI>`): the peer's v6 VTEP MAC -> its IPv6 node IP. Absent when the v6 pod
   * CIDR rides in `pw.1` (sharing `fdb`) or goes direct.
   */
  fdb6?: FdbEntry;
}

export interface Network {
  readonly backend: BackendName;
  readonly lease: Lease;
  /** Pod MTU. */
  readonly mtu: number;
  /** Our own device (vxlan), whose neighbour and FDB entries are all ours. */
  readonly device: string | undefined;
  /** Its ifindex (a new index means a new device: nothing of ours is on it yet). */
  readonly deviceIndex: number | undefined;
  readonly ownMac: string | undefined;
  /**
   * vxlan, dual-stack with an IPv6 node IP over an IPv4 node IP: the second device over the
   * IPv6 underlay (flannel's `flannel-v6.<VNI>`), its ifindex and MAC. Its neighbour and FDB
   * entries are all ours too.
   */
  readonly device6?: string;
  readonly device6Index?: number;
  readonly ownMac6?: string;
  /** flannel's annotations describing this node's backend. */
  annotations(): Record<string, string>;
  plan(peer: PeerInfo): PeerPlan | PeerProblem;
}

export interface BackendContext {
  kernel: Kernel;
  section: OverlaySection;
  logger: Logger;
  /** Pod MTU override (config.mtu); 0 = derived. */
  mtuOverride: number;
}

export interface Backend {
  readonly name: BackendName;
  /** Encapsulation bytes per packet over an underlay of this family. */
  overhead(family: 4 | 6): number;
  /** Bring up what the backend needs for this lease (devices, addresses). Idempotent. */
  register(lease: Lease, ctx: BackendContext): Promise<Network>;
}

const backends = new Map<string, Backend>();

export function registerBackend(b: Backend): void {
  backends.set(b.name, b);
}

export function getBackend(name: string): Backend | undefined {
  return backends.get(name);
}

export function backendNames(): string[] {
  return [...backends.keys()];
}

/** Pod MTU: the underlay's minus the backend's overhead (vxlan: 50 over IPv4, 70 over IPv6). */
export function podMtu(backend: string, underlayMtu: number, underlayFamily: 4 | 6 = 4): number {
  const b = backends.get(backend);
  return underlayMtu - (b ? b.overhead(underlayFamily) : 0);
}

function notOnLink(cidr: Cidr, peer: PeerInfo, peerIp: IpAddress, what: string): PeerProblem {
  return {
    node: peer.node,
    field: 'status.addresses',
    value: peerIp.toString(),
    reason: `not on-link: ${peerIp.toString()} is outside this node's underlay subnet ${cidr.masked.toString()} (${what} does not route through a gateway)`,
  };
}

function noV6NodeIp(peer: PeerInfo, what: string): PeerProblem {
  return { node: peer.node, field: 'status.addresses', value: peer.publicIpText, reason: `no IPv6 node IP (public-ipv6 annotation or an IPv6 InternalIP): ${what} routes the IPv6 pod CIDR ${peer.podCIDR6?.toString() ?? ''} via it` };
}

/**
 * The metric of our route to `dst`: 100 + a hash of the prefix (100..1123), fixed for a prefix.
 * Why not 0: the kernel hashes a route's fib_info by (protocol, scope, prefsrc, metric, oif),
 * not by gateway, so N routes out of one device with N gateways and one metric all land in
 * one hash chain and inserting them is O(N²) (10,000 flannel-style routes: 5-6 s here, with
 * `ip -batch` too). Spreading the metric spreads the chain: 10,000 in 0.26 s.
 */
export function routeMetric(dst: Cidr | string): number {
  const text = typeof dst === 'string' ? dst : dst.masked.toString();
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return 100 + ((h >>> 0) & 1023);
}

function directRoute(dst: Cidr, gateway: IpAddress, underlay: Underlay, protocol: number): Route {
  return { dst, gateway, dev: underlay.name, protocol, metric: routeMetric(dst) };
}

/** Our annotations in flannel's format: the v4 keys for an IPv4 node IP, the v6 keys for an IPv6 one. */
function baseAnnotations(lease: Lease, type: string, data: string, data6: string | undefined): Record<string, string> {
  const out: Record<string, string> = { [ANNOTATIONS.backendType]: type, [ANNOTATIONS.kubeSubnetManager]: 'true' };
  if (lease.publicIp.family === 4) {
    out[ANNOTATIONS.backendData] = data;
    out[ANNOTATIONS.publicIp] = lease.publicIp.toString();
    out[ANNOTATIONS.underlayCidr] = lease.underlay.cidr.toString();
  }
  if (lease.publicIp6 && lease.underlay6) {
    if (data6 !== undefined) out[ANNOTATIONS.backendV6Data] = data6;
    out[ANNOTATIONS.publicIpv6] = lease.publicIp6.toString();
    out[ANNOTATIONS.underlayCidr6] = lease.underlay6.cidr.toString();
  }
  return out;
}

export const hostGwBackend: Backend = {
  name: 'host-gw',
  overhead: () => 0,
  async register(lease, ctx) {
    const protocol = ctx.section.routeProtocol;
    const mtu = ctx.mtuOverride > 0 ? ctx.mtuOverride : lease.underlay.mtu;
    return {
      backend: 'host-gw',
      lease,
      mtu,
      device: undefined,
      deviceIndex: undefined,
      ownMac: undefined,
      // flannel writes backend-v6-data "null" for host-gw when it has an IPv6 node IP.
      annotations: () => baseAnnotations(lease, 'host-gw', 'null', 'null'),
      plan(peer) {
        const plan: PeerPlan = { node: peer.node, mode: 'host-gw', modes: {}, peer };
        if (lease.v4 && peer.podCIDR) {
          // An IPv4 pod route needs an IPv4 next hop on our IPv4 underlay subnet.
          if (lease.underlay.cidr.family !== 4) {
            return { node: peer.node, field: 'status.addresses', value: peer.publicIpText, reason: `host-gw routes the IPv4 pod CIDR ${peer.podCIDRText} via an IPv4 node IP, and this node has none (no public-ip-overwrite annotation, no IPv4 InternalIP or ExternalIP)` };
          }
          if (!lease.underlay.cidr.masked.contains(peer.publicIp)) return notOnLink(lease.underlay.cidr, peer, peer.publicIp, 'host-gw');
          plan.route = directRoute(peer.podCIDR, peer.publicIp, lease.underlay, protocol);
          plan.modes.ipv4 = 'host-gw';
        }
        if (lease.v6 && peer.podCIDR6 && lease.underlay6) {
          if (!peer.publicIp6) return noV6NodeIp(peer, 'host-gw');
          if (!lease.underlay6.cidr.masked.contains(peer.publicIp6)) return notOnLink(lease.underlay6.cidr, peer, peer.publicIp6, 'host-gw');
          plan.route6 = directRoute(peer.podCIDR6, peer.publicIp6, lease.underlay6, protocol);
          plan.modes.ipv6 = 'host-gw';
        }
        return plan;
      },
    };
  },
};

/**
 * Whether this node runs the IPv6 VXLAN device: the node IP is IPv4 (pw.1 is an IPv4 VTEP),
 * the IPv6 pod CIDR is routed and there is an IPv6 node IP on an interface of this node.
 * That is flannel's dual-stack vxlan layout (flannel.1 over IPv4, flannel-v6.1 over IPv6).
 */
export function wantsV6Device(lease: Lease): lease is Lease & { publicIp6: IpAddress; underlay6: Underlay; v6: Cidr } {
  return lease.publicIp.family === 4 && lease.v6 !== undefined && lease.publicIp6?.family === 6 && lease.underlay6 !== undefined;
}

export const vxlanBackend: Backend = {
  name: 'vxlan',
  overhead: (family) => (family === 6 ? VXLAN_OVERHEAD_V6 : VXLAN_OVERHEAD_V4),
  async register(lease, ctx) {
    const { vni, port, device, deviceV6 } = ctx.section.vxlan;
    const protocol = ctx.section.routeProtocol;
    const override = ctx.mtuOverride > 0 ? ctx.mtuOverride : 0;
    // vxlan.ipv6Device=false: no IPv6 device; the v6 pods ride in pw.1 and no backend-v6-data tells peers otherwise.
    const dual = ctx.section.vxlan.ipv6Device && wantsV6Device(lease);
    // Each device's MTU is its own underlay's minus its own outer header; pods get the smaller one.
    const mtu4 = override || lease.underlay.mtu - this.overhead(lease.publicIp.family);
    const mtu6 = dual ? override || lease.underlay6.mtu - VXLAN_OVERHEAD_V6 : undefined;
    const mtu = mtu6 === undefined ? mtu4 : Math.min(mtu4, mtu6);
    const mac = vtepMacFor(lease.publicIp);
    // flannel's VTEP addresses: <v4 network>/32, <v6 network>/128 (on the v6 device when there is one).
    const v4vtep = lease.v4 ? [Cidr.of(lease.v4.network, 32)] : [];
    const v6vtep = lease.v6 ? [Cidr.of(lease.v6.network, 128)] : [];
    const deviceIndex = await ensureVxlanDevice(ctx, { name: device, vni, port, mtu: mtu4, mac, local: lease.publicIp, underlay: lease.underlay, vteps: dual ? v4vtep : [...v4vtep, ...v6vtep] });
    let device6: string | undefined;
    let device6Index: number | undefined;
    let mac6: string | undefined;
    if (dual) {
      device6 = deviceV6;
      mac6 = vtepMacFor(lease.publicIp6);
      device6Index = await ensureVxlanDevice(ctx, { name: deviceV6, vni, port, mtu: mtu6!, mac: mac6, local: lease.publicIp6, underlay: lease.underlay6, vteps: v6vtep });
    } else if (await ctx.kernel.net.getLink(deviceV6)) {
      // No longer dual-stack with an IPv6 node IP: the v6 device (and every entry on it) goes.
      await ctx.kernel.net.deleteLink(deviceV6);
      ctx.logger.info({ device: deviceV6 }, ctx.section.vxlan.ipv6Device ? 'removed the IPv6 VXLAN device (no IPv6 node IP or no IPv6 pod CIDR any more)' : 'removed the IPv6 VXLAN device (vxlan.ipv6Device is false)');
    }
    const directRouting = ctx.section.directRouting;
    const data = (m: string): string => JSON.stringify({ VNI: vni, VtepMAC: m });
    return {
      backend: 'vxlan',
      lease,
      mtu,
      device,
      deviceIndex,
      ownMac: mac,
      device6,
      device6Index,
      ownMac6: mac6,
      // backend-v6-data describes a VTEP over the IPv6 underlay: pw.1 itself when the node IP is
      // IPv6, the v6 device when dual-stack. Without either the v6 pods ride in pw.1: no v6 VTEP.
      annotations: () => baseAnnotations(lease, 'vxlan', data(mac), lease.publicIp.family === 6 ? data(mac) : mac6 !== undefined ? data(mac6) : undefined),
      plan(peer) {
        const plan: PeerPlan = { node: peer.node, mode: 'vxlan', modes: {}, peer };
        let encapsulated = false;
        if (lease.v4 && peer.podCIDR) {
          // DirectRouting needs an IPv4 next hop for the IPv4 pod route: never over an IPv6 underlay.
          if (directRouting && peer.publicIp.family === 4 && isDirect(lease.underlay.cidr, peer.publicIp, peer.underlayCidr)) {
            plan.route = directRoute(peer.podCIDR, peer.publicIp, lease.underlay, protocol);
            plan.modes.ipv4 = 'direct';
          } else {
            // flannel's VTEP address: the network address of the peer's pod CIDR (10.244.2.0).
            const vtep = IpAddress.fromBigInt(4, BigInt(peer.net4));
            plan.neigh = { dev: device, ip: vtep, mac: peer.vtepMac, permanent: true };
            plan.route = { dst: peer.podCIDR, gateway: vtep, dev: device, onlink: true, protocol, metric: routeMetric(peer.podCIDRText) };
            plan.modes.ipv4 = 'vxlan';
            encapsulated = true;
          }
        }
        if (lease.v6 && peer.podCIDR6) {
          // v6 DirectRouting: the same symmetric rule on the v6 node IPs and v6 underlay subnets.
          if (directRouting && lease.underlay6 && peer.publicIp6 && isDirect(lease.underlay6.cidr, peer.publicIp6, peer.underlayCidr6)) {
            plan.route6 = directRoute(peer.podCIDR6, peer.publicIp6, lease.underlay6, protocol);
            plan.modes.ipv6 = 'direct';
          } else {
            // flannel's IPv6 VTEP address: the network address of the v6 pod CIDR.
            const vtep6 = peer.podCIDR6.network;
            // Decided per peer: over our v6 device when the peer runs one too (it has an IPv6 node
            // IP and a v6 VTEP MAC); else inside pw.1 with the v4 MAC and the v4 FDB entry.
            const v6dev = device6 !== undefined && peer.publicIp6 !== undefined && peer.vtepMac6 !== undefined;
            const dev = v6dev ? device6! : device;
            const vmac = v6dev ? peer.vtepMac6! : peer.vtepMac;
            plan.neigh6 = { dev, ip: vtep6, mac: vmac, permanent: true };
            plan.route6 = { dst: peer.podCIDR6, gateway: vtep6, dev, onlink: true, protocol, metric: routeMetric(peer.podCIDR6) };
            plan.modes.ipv6 = 'vxlan';
            if (v6dev) plan.fdb6 = { dev, mac: vmac, dst: peer.publicIp6!, permanent: true };
            else encapsulated = true;
          }
        }
        if (encapsulated) plan.fdb = { dev: device, mac: peer.vtepMac, dst: peer.publicIp, permanent: true };
        if (!encapsulated && !plan.fdb6) plan.mode = 'direct';
        return plan;
      },
    };
  },
};

registerBackend(hostGwBackend);
registerBackend(vxlanBackend);

/**
 * One VXLAN device (`pw.<VNI>`, or `pw-v6.<VNI>` over the IPv6 underlay): VNI, port, local IP
 * and underlay device as given, nolearning, the derived MAC, the MTU, and exactly the VTEP
 * addresses given (flannel's `<podCIDR network>/32` or `/128`). A device with other VXLAN
 * attributes is recreated; one that matches is kept (a restart keeps every entry on it).
 */
async function ensureVxlanDevice(
  ctx: BackendContext,
  want: { name: string; vni: number; port: number; mtu: number; mac: string; local: IpAddress; underlay: Underlay; vteps: Cidr[] },
): Promise<number> {
  const net = ctx.kernel.net;
  let link = await net.getLink(want.name);
  const local = want.local.toString();
  if (link) {
    const v = link.vxlan;
    const ok = link.kind === 'vxlan' && v !== undefined && v.vni === want.vni && v.port === want.port && v.local === local && !v.learning && (v.underlayIndex === undefined || v.underlayIndex === want.underlay.index);
    if (!ok) {
      ctx.logger.warn({ device: want.name, found: { kind: link.kind, ...v }, want: { vni: want.vni, port: want.port, local } }, 'VXLAN device has other attributes; recreating it');
      await net.deleteLink(want.name);
      link = undefined;
    }
  }
  if (!link) {
    link = await net.createLink({ kind: 'vxlan', name: want.name, vni: want.vni, port: want.port, local: want.local, underlayDevice: want.underlay.name, learning: false, mtu: want.mtu, mac: want.mac });
    ctx.logger.info({ device: want.name, vni: want.vni, port: want.port, local, mtu: want.mtu, mac: want.mac }, 'created VXLAN device');
  }
  if (link.mtu !== want.mtu) await net.setMtu(want.name, want.mtu);
  if ((link.mac ?? '').toLowerCase() !== want.mac) await net.setMac(want.name, want.mac);
  const vteps = want.vteps;
  const addrs = await net.listAddresses(want.name);
  const linkLocal = Cidr.parse('fe80::/10');
  for (const a of addrs) {
    if (linkLocal.contains(a.cidr.ip)) continue;
    if (!vteps.some((v) => a.cidr.ip.equals(v.ip) && a.cidr.prefixLength === v.prefixLength)) await net.deleteAddress(want.name, a.cidr);
  }
  for (const v of vteps) if (!addrs.some((a) => a.cidr.ip.equals(v.ip) && a.cidr.prefixLength === v.prefixLength)) await net.addAddress(want.name, v);
  if (!link.up) await net.setLinkUp(want.name, true);
  return link.index;
}
