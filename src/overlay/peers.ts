/**
 * Reading nodes: our own lease (spec.podCIDRs, the node IP) and every peer's backend data,
 * from flannel's annotations where present (so a flannel node and a Podwire node see each
 * other), else derived (standalone mode: manifests carry no annotations). Every rule that
 * rejects a peer names the node and the field; the caller skips that peer only.
 */
import { Cidr, IpAddress, formatMac } from '../common/ip';
import type { NodeObject } from '../k8s/types';

export const ANNOTATIONS = {
  backendType: 'flannel.alpha.coreos.com/backend-type',
  backendData: 'flannel.alpha.coreos.com/backend-data',
  publicIp: 'flannel.alpha.coreos.com/public-ip',
  publicIpOverwrite: 'flannel.alpha.coreos.com/public-ip-overwrite',
  kubeSubnetManager: 'flannel.alpha.coreos.com/kube-subnet-manager',
  /** flannel's IPv6 keys: the v6 node IP, and the backend data of the v6 VTEP (a v6 underlay). */
  publicIpv6: 'flannel.alpha.coreos.com/public-ipv6',
  publicIpv6Overwrite: 'flannel.alpha.coreos.com/public-ipv6-overwrite',
  backendV6Data: 'flannel.alpha.coreos.com/backend-v6-data',
  /** Podwire's own: the underlay address with its prefix, so DirectRouting is decided from both ends' subnets. */
  underlayCidr: 'podwire.io/underlay-cidr',
  /** The same for the IPv6 node IP (v6 host-gw, v6 DirectRouting). */
  underlayCidr6: 'podwire.io/underlay-ipv6-cidr',
} as const;

/** A node we can program entries for. */
export interface PeerInfo {
  node: string;
  /** The node's IPv4 pod CIDR, when this node routes IPv4 (absent in an IPv6-only cluster). */
  podCIDR?: Cidr;
  /** The node's IPv6 pod CIDR, when this node routes IPv6 (an IPv6 cluster CIDR). */
  podCIDR6?: Cidr;
  /** Every pod CIDR as listed (for status). */
  podCIDRs: readonly string[];
  /** podCIDR's first and last address as numbers (overlap checks without BigInt); -1 without podCIDR. */
  net4: number;
  last4: number;
  /** Canonical text forms, computed once (keys, status): the IPv4 pod CIDR's, else the IPv6 one's. */
  podCIDRText: string;
  publicIpText: string;
  /** flannel's VTEP address of the peer: its pod CIDR's network address (IPv4, else IPv6). */
  vtepText: string;
  /** Underlay address: flannel's public-ip, else InternalIP, else the first address. Same family as ours. */
  publicIp: IpAddress;
  /** The IPv6 node IP (public-ipv6, else an IPv6 InternalIP; publicIp when that is IPv6), for v6 host-gw and DirectRouting. */
  publicIp6?: IpAddress;
  /** VTEP MAC: the annotation's VtepMAC when given, else derived from publicIp. */
  vtepMac: string;
  macFromAnnotation: boolean;
  /**
   * The MAC of the peer's IPv6 VTEP (a VXLAN device over its IPv6 underlay, flannel's
   * `flannel-v6.<VNI>`): its `backend-v6-data` VtepMAC, or derived from its IPv6 node IP when
   * it publishes no backend annotations at all (manifest mode: it runs our rules). Absent when
   * the peer has no IPv6 node IP, or publishes `backend-data` without `backend-v6-data` (an
   * older Podwire, which carries its v6 pods inside `pw.1`). Only read over an IPv4 underlay.
   */
  vtepMac6?: string;
  macFromAnnotation6?: boolean;
  /** From the annotation, when the peer published it. */
  backendType: string | undefined;
  underlayCidr: Cidr | undefined;
  /** The peer's IPv6 underlay subnet (podwire.io/underlay-ipv6-cidr, or underlay-cidr when that is IPv6). */
  underlayCidr6?: Cidr;
}

export interface PeerProblem {
  node: string;
  /** Dotted field, e.g. `spec.podCIDRs[0]`, `metadata.annotations[flannel.alpha.coreos.com/public-ip]`. */
  field: string;
  value: unknown;
  reason: string;
}

export interface PeerRules {
  backend: 'vxlan' | 'host-gw';
  vni: number;
  clusterCIDRs: Cidr[];
  serviceCIDRs: Cidr[];
  /** Our own pod CIDRs (a peer's may not overlap them). */
  ownPodCIDRs: Cidr[];
  ownMac: string | undefined;
  /** Our IPv6 VTEP MAC, when this node runs the IPv6 VXLAN device (peers' v6 MACs are then checked). */
  ownMac6?: string;
  /** This node's underlay family (default 4): a peer must be on the same one. */
  underlayFamily?: 4 | 6;
  /**
   * The node IP family tried first for every peer (default 4; 6 in an IPv6-only cluster). The
   * same for every node of the cluster, so both ends of a pair pick the same addresses.
   */
  preferFamily?: 4 | 6;
  /**
   * The pod CIDR families this node routes (its own lease's). Default: IPv4, and IPv6 when a
   * cluster CIDR is IPv6. An IPv6-only cluster routes no IPv4.
   */
  families?: { v4: boolean; v6: boolean };
}

const annField = (key: string): string => `metadata.annotations[${key}]`;

/**
 * A locally administered unicast MAC derived from the underlay IP (`0a:58:` + the IPv4
 * address's four bytes, as OVN-Kubernetes derives MACs; the last four bytes for IPv6).
 */
export function vtepMacFor(ip: IpAddress): string {
  const b = ip.toBytes();
  const tail = b.subarray(b.length - 4);
  return formatMac(Buffer.from([0x0a, 0x58, ...tail]));
}

/** The node IP family tried first: IPv6 in an IPv6-only cluster, else IPv4 (the same on every node). */
export function preferFamily(clusterCIDR: string): 4 | 6 {
  return clusterCIDR.split(',').some((c) => c.trim() !== '' && !c.includes(':')) ? 4 : 6;
}

/** How a node's IP of one family is chosen. */
export interface NodeIpOptions {
  /**
   * The node IP family tried first (default 4). An IPv6-only cluster prefers 6: its node IP is
   * the IPv6 one even when the Node also lists an IPv4 address.
   */
  prefer?: 4 | 6;
  /**
   * Our own Node: `public-ip` and `public-ipv6` are what this node publishes, not input (flannel
   * reads only the `-overwrite` keys for itself). Read back, a stale one would keep a family alive
   * that status.addresses no longer has. They count only when status.addresses holds no IP at all
   * (a hand-written manifest that names the node IP by annotation).
   */
  self?: boolean;
}

export interface NodeIpChoice {
  ip?: IpAddress;
  field: string;
  value: unknown;
  reason?: string;
}

const IP_KEYS = {
  4: [ANNOTATIONS.publicIpOverwrite, ANNOTATIONS.publicIp],
  6: [ANNOTATIONS.publicIpv6Overwrite, ANNOTATIONS.publicIpv6],
} as const;

/**
 * The node's address of one family, flannel's way: the family's `-overwrite` annotation, its
 * plain annotation (`public-ip` is the IPv4 node IP, `public-ipv6` the IPv6 one), the first
 * InternalIP of that family, the first ExternalIP of that family. The order of
 * status.addresses does not matter: a dual-stack kubelet may list the IPv6 InternalIP first.
 * No address of the family is not a problem (`ip` undefined); an annotation that is not an
 * address of its family is.
 */
export function nodeIpOfFamily(node: NodeObject, family: 4 | 6, opts: NodeIpOptions = {}): NodeIpChoice {
  const a = node.meta.annotations;
  const anyAddress = node.addresses.some((x) => x.type !== 'Hostname' && IpAddress.tryParse(x.address) !== undefined);
  const keys = opts.self && anyAddress ? IP_KEYS[family].slice(0, 1) : IP_KEYS[family];
  for (const key of keys) {
    const v = a[key];
    if (v === undefined || v === '') continue;
    const ip = IpAddress.tryParse(v.trim());
    if (!ip) return { field: annField(key), value: v, reason: family === 4 ? 'not an IP address' : 'not an IPv6 address' };
    if (ip.family !== family) return { field: annField(key), value: v, reason: family === 4 ? `not an IPv4 address (${ANNOTATIONS.publicIp} names the IPv4 node IP, ${ANNOTATIONS.publicIpv6} the IPv6 one)` : 'not an IPv6 address' };
    return { ip, field: annField(key), value: v };
  }
  for (const type of ['InternalIP', 'ExternalIP']) {
    for (const x of node.addresses) {
      if (x.type !== type) continue;
      const ip = IpAddress.tryParse(x.address);
      if (ip && ip.family === family) return { ip, field: 'status.addresses', value: x.address };
    }
  }
  return { field: 'status.addresses', value: node.addresses.map((x) => x.address) };
}

/**
 * The node IP (the underlay of `pw.1`, and the next hop of IPv4 host-gw): chosen per family,
 * the preferred family first (IPv4 unless told), else the other one. So a dual-stack Node gets
 * its IPv4 node IP whatever order its InternalIPs are listed in, and a node with only IPv6
 * addresses gets its IPv6 one (vxlan then runs over the IPv6 underlay).
 */
export function nodePublicIp(node: NodeObject, opts: NodeIpOptions = {}): NodeIpChoice {
  const prefer = opts.prefer ?? 4;
  for (const family of [prefer, prefer === 4 ? 6 : 4] as const) {
    const r = nodeIpOfFamily(node, family, opts);
    if (r.ip || r.reason) return r;
  }
  const addr = node.addresses.find((x) => x.type === 'InternalIP') ?? node.addresses.find((x) => x.type === 'ExternalIP') ?? node.addresses.find((x) => x.type !== 'Hostname');
  if (!addr) return { field: 'status.addresses', value: [], reason: `no public-ip annotation and no InternalIP address` };
  // Another address type (InternalDNS…) holding an IP literal: taken as before.
  const ip = IpAddress.tryParse(addr.address);
  return ip ? { ip, field: 'status.addresses', value: addr.address } : { field: 'status.addresses', value: addr.address, reason: 'not an IP address' };
}

/**
 * The node's IPv6 address (flannel's order): public-ipv6-overwrite, public-ipv6, the first IPv6
 * InternalIP, the first IPv6 ExternalIP. No IP at all is not a problem (`ip` undefined); an
 * annotation that is not an IPv6 address is.
 */
export function nodePublicIp6(node: NodeObject, opts: NodeIpOptions = {}): NodeIpChoice {
  return nodeIpOfFamily(node, 6, opts);
}

/** The node's pod CIDRs, parsed; a malformed one is a problem. */
export function nodePodCidrs(node: NodeObject): { cidrs: Cidr[]; problem?: PeerProblem } {
  const cidrs: Cidr[] = [];
  for (let i = 0; i < node.podCIDRs.length; i++) {
    const text = node.podCIDRs[i]!;
    let c: Cidr;
    try {
      c = Cidr.parse(text);
    } catch {
      return { cidrs, problem: { node: node.meta.name, field: `spec.podCIDRs[${i}]`, value: text, reason: 'not a CIDR' } };
    }
    if (!c.isNetwork()) return { cidrs, problem: { node: node.meta.name, field: `spec.podCIDRs[${i}]`, value: text, reason: `host bits set (did you mean ${c.masked.toString()}?)` } };
    if (cidrs.some((o) => o.family === c.family)) return { cidrs, problem: { node: node.meta.name, field: `spec.podCIDRs[${i}]`, value: text, reason: 'more than one CIDR of one IP family' } };
    cidrs.push(c);
  }
  return { cidrs };
}

interface BackendData {
  vni?: number;
  mac?: string;
}

function parseBackendData(raw: string | undefined): BackendData | string {
  if (raw === undefined || raw === '' || raw === 'null') return {};
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return 'not JSON';
  }
  if (v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) return 'expected a JSON object like {"VNI":1,"VtepMAC":"…"}';
  const o = v as Record<string, unknown>;
  const out: BackendData = {};
  if (o.VNI !== undefined) {
    if (typeof o.VNI !== 'number' || !Number.isInteger(o.VNI)) return 'VNI must be an integer';
    out.vni = o.VNI;
  }
  if (o.VtepMAC !== undefined) {
    if (typeof o.VtepMAC !== 'string' || !/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/.test(o.VtepMAC)) return 'VtepMAC must be a MAC address';
    out.mac = o.VtepMAC.toLowerCase();
  }
  return out;
}

const V4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** An IPv4 address as a number (canonical dotted quads only), else undefined. */
export function v4num(text: string): number | undefined {
  const m = V4.exec(text);
  if (!m) return undefined;
  let v = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i]!;
    const o = Number(part);
    if (o > 255 || (part.length > 1 && part[0] === '0')) return undefined;
    v = v * 256 + o;
  }
  return v;
}

export function v4text(n: number): string {
  return `${Math.floor(n / 16777216) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

function v4range(c: Cidr): [number, number] {
  const net = Number(c.network.value);
  return [net, net + 2 ** (32 - c.prefixLength) - 1];
}

interface CompiledRules {
  cluster: [number, number][];
  service: [number, number][];
  own: [number, number][];
}

const compiled = new WeakMap<PeerRules, CompiledRules>();

function compile(rules: PeerRules): CompiledRules {
  let c = compiled.get(rules);
  if (!c) {
    const v4 = (xs: Cidr[]) => xs.filter((x) => x.family === 4).map(v4range);
    c = { cluster: v4(rules.clusterCIDRs), service: v4(rules.serviceCIDRs), own: v4(rules.ownPodCIDRs) };
    compiled.set(rules, c);
  }
  return c;
}

/**
 * The common case (one canonical IPv4 pod CIDR, an IPv4 node IP, flannel's annotations or
 * none) without BigInt: 10,000 nodes parse in milliseconds. Returns undefined whenever
 * anything is unusual or wrong; the general path below then decides and names the problem.
 */
function parsePeerFast(node: NodeObject, rules: PeerRules): PeerInfo | undefined {
  if (node.podCIDRs.length !== 1 || rules.underlayFamily === 6 || rules.preferFamily === 6 || (rules.families && !rules.families.v4)) return undefined;
  const text = node.podCIDRs[0]!;
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const net = v4num(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  const len = Number(lenText);
  if (net === undefined || !/^\d{1,2}$/.test(lenText) || len > 32 || len < 1) return undefined;
  const size = 2 ** (32 - len);
  if (net % size !== 0) return undefined;
  const last = net + size - 1;
  const r = compile(rules);
  if (r.cluster.length > 0 && !r.cluster.some(([a, b]) => a <= net && last <= b)) return undefined;
  if (r.own.some(([a, b]) => net <= b && a <= last) || r.service.some(([a, b]) => net <= b && a <= last)) return undefined;
  const a = node.meta.annotations;
  if (a[ANNOTATIONS.publicIpOverwrite]) return undefined;
  // A v6 node IP annotation without a v4 one makes the v6 address the node IP: the general path.
  if (!a[ANNOTATIONS.publicIp] && (a[ANNOTATIONS.publicIpv6] || a[ANNOTATIONS.publicIpv6Overwrite])) return undefined;
  let underlayCidr: Cidr | undefined;
  const uc = a[ANNOTATIONS.underlayCidr];
  if (uc) {
    try {
      underlayCidr = Cidr.parse(uc);
    } catch {
      return undefined;
    }
    if (underlayCidr.family !== 4) return undefined;
  }
  let ipText: string | undefined = a[ANNOTATIONS.publicIp];
  if (!ipText) {
    // The first IPv4 InternalIP, else ExternalIP, in any position (nodeIpOfFamily's order).
    const v4addr = (type: string) => node.addresses.find((x) => x.type === type && !x.address.includes(':'));
    ipText = (v4addr('InternalIP') ?? v4addr('ExternalIP'))?.address;
  }
  const ipn = ipText === undefined ? undefined : v4num(ipText);
  if (ipn === undefined) return undefined;
  const backendType = a[ANNOTATIONS.backendType] || undefined;
  if (backendType !== undefined && backendType !== rules.backend) return undefined;
  let mac: string | undefined;
  const raw = a[ANNOTATIONS.backendData];
  if (raw !== undefined && raw !== '' && raw !== 'null') {
    const d = parseBackendData(raw);
    if (typeof d === 'string' || (rules.backend === 'vxlan' && d.vni !== undefined && d.vni !== rules.vni)) return undefined;
    mac = d.mac;
  }
  const vtepMac = mac ?? `0a:58:${HEX[Math.floor(ipn / 16777216) & 255]}:${HEX[(ipn >>> 16) & 255]}:${HEX[(ipn >>> 8) & 255]}:${HEX[ipn & 255]}`;
  if (rules.backend === 'vxlan' && rules.ownMac !== undefined && vtepMac === rules.ownMac) return undefined;
  const netText = v4text(net);
  const podCIDRText = `${netText}/${len}`;
  const publicIpText = v4text(ipn);
  return {
    node: node.meta.name,
    // From numbers: no string parsing, one BigInt each.
    podCIDR: Cidr.of(IpAddress.fromBigInt(4, BigInt(net)), len),
    podCIDRs: node.podCIDRs,
    net4: net,
    last4: last,
    podCIDRText,
    publicIpText,
    vtepText: netText,
    publicIp: IpAddress.fromBigInt(4, BigInt(ipn)),
    vtepMac,
    macFromAnnotation: mac !== undefined,
    backendType,
    underlayCidr,
  };
}

/** Validate one peer on its own. */
export function parsePeer(node: NodeObject, rules: PeerRules): PeerInfo | PeerProblem {
  return parsePeerFast(node, rules) ?? parsePeerSlow(node, rules);
}

function parsePeerSlow(node: NodeObject, rules: PeerRules): PeerInfo | PeerProblem {
  const name = node.meta.name;
  const { cidrs, problem } = nodePodCidrs(node);
  if (problem) return problem;
  const fam = rules.families ?? { v4: true, v6: rules.clusterCIDRs.some((c) => c.family === 6) };
  const v4 = fam.v4 ? cidrs.find((c) => c.family === 4) : undefined;
  const v6 = fam.v6 ? cidrs.find((c) => c.family === 6) : undefined;
  if (!v4 && !v6) {
    const routed = [fam.v4 ? 'IPv4' : '', fam.v6 ? 'IPv6' : ''].filter(Boolean).join(' or ');
    return { node: name, field: 'spec.podCIDRs', value: node.podCIDRs, reason: node.podCIDRs.length === 0 ? 'no podCIDR assigned yet' : `no ${routed} pod CIDR (the families this node routes)` };
  }
  // Each routed pod CIDR: inside the cluster CIDR of its family, clear of ours and of the Services.
  for (const c of [v4, v6]) {
    if (!c) continue;
    const field = `spec.podCIDRs[${cidrs.indexOf(c)}]`;
    const cluster = rules.clusterCIDRs.filter((x) => x.family === c.family);
    if (cluster.length > 0 && !cluster.some((x) => x.containsCidr(c))) {
      return { node: name, field, value: c.toString(), reason: `outside the cluster CIDR ${cluster.map(String).join(',')}` };
    }
    const own = rules.ownPodCIDRs.find((x) => x.overlaps(c));
    if (own) return { node: name, field, value: c.toString(), reason: `overlaps this node's own pod CIDR ${own.toString()}` };
    const svc = rules.serviceCIDRs.find((x) => x.overlaps(c));
    if (svc) return { node: name, field, value: c.toString(), reason: `overlaps the Service CIDR ${svc.toString()}` };
  }
  const pub = nodePublicIp(node, { prefer: rules.preferFamily });
  if (!pub.ip) return { node: name, field: pub.field, value: pub.value, reason: pub.reason ?? 'missing' };
  const ownFamily = rules.underlayFamily ?? 4;
  if (pub.ip.family !== ownFamily) {
    return { node: name, field: pub.field, value: pub.value, reason: `an IPv${pub.ip.family} node IP, but this node's underlay is IPv${ownFamily} (one VXLAN device carries one outer address family)` };
  }
  // The v6 node IP: only needed (and only checked) when the peer's v6 pod CIDR is routed.
  let publicIp6: IpAddress | undefined = pub.ip.family === 6 ? pub.ip : undefined;
  if (!publicIp6 && v6) {
    const p6 = nodePublicIp6(node);
    if (p6.reason) return { node: name, field: p6.field, value: p6.value, reason: p6.reason };
    publicIp6 = p6.ip;
  }

  const a = node.meta.annotations;
  const backendType = a[ANNOTATIONS.backendType] || undefined;
  if (backendType !== undefined && backendType !== rules.backend) {
    return { node: name, field: annField(ANNOTATIONS.backendType), value: backendType, reason: `this node runs the ${rules.backend} backend` };
  }
  // flannel keeps the VTEP of an IPv6 underlay in backend-v6-data (an IPv6-only node has only that one).
  const dataKey = pub.ip.family === 6 && a[ANNOTATIONS.backendV6Data] !== undefined && a[ANNOTATIONS.backendV6Data] !== 'null' ? ANNOTATIONS.backendV6Data : ANNOTATIONS.backendData;
  const data = parseBackendData(a[dataKey]);
  if (typeof data === 'string') return { node: name, field: annField(dataKey), value: a[dataKey], reason: data };
  if (rules.backend === 'vxlan' && data.vni !== undefined && data.vni !== rules.vni) {
    return { node: name, field: `${annField(dataKey)}.VNI`, value: data.vni, reason: `VNI clash: this node uses VNI ${rules.vni}` };
  }
  const vtepMac = data.mac ?? vtepMacFor(pub.ip);
  if (rules.backend === 'vxlan' && rules.ownMac !== undefined && vtepMac === rules.ownMac) {
    return { node: name, field: data.mac ? `${annField(dataKey)}.VtepMAC` : 'status.addresses', value: vtepMac, reason: `MAC clash with this node's own VTEP MAC` };
  }
  // The peer's IPv6 VTEP (dual-stack over an IPv4 node IP): flannel's backend-v6-data.
  let vtepMac6: string | undefined;
  let macFromAnnotation6 = false;
  if (pub.ip.family === 4 && v6 && publicIp6) {
    const raw6 = a[ANNOTATIONS.backendV6Data];
    if (raw6 !== undefined && raw6 !== '' && raw6 !== 'null') {
      const d6 = parseBackendData(raw6);
      const f6 = annField(ANNOTATIONS.backendV6Data);
      if (typeof d6 === 'string') return { node: name, field: f6, value: raw6, reason: d6 };
      if (rules.backend === 'vxlan' && d6.vni !== undefined && d6.vni !== rules.vni) return { node: name, field: `${f6}.VNI`, value: d6.vni, reason: `VNI clash: this node uses VNI ${rules.vni}` };
      vtepMac6 = d6.mac ?? vtepMacFor(publicIp6);
      macFromAnnotation6 = d6.mac !== undefined;
    } else if (backendType === undefined && (a[ANNOTATIONS.backendData] ?? '') === '') {
      vtepMac6 = vtepMacFor(publicIp6);
    }
    if (vtepMac6 !== undefined && rules.backend === 'vxlan' && rules.ownMac6 !== undefined && vtepMac6 === rules.ownMac6) {
      return { node: name, field: macFromAnnotation6 ? `${annField(ANNOTATIONS.backendV6Data)}.VtepMAC` : 'status.addresses', value: vtepMac6, reason: `MAC clash with this node's own IPv6 VTEP MAC` };
    }
  }
  const cidrAnn = (key: string): Cidr | PeerProblem | undefined => {
    const v = a[key];
    if (!v) return undefined;
    try {
      return Cidr.parse(v);
    } catch {
      return { node: name, field: annField(key), value: v, reason: 'not a CIDR' };
    }
  };
  const underlayCidr = cidrAnn(ANNOTATIONS.underlayCidr);
  if (underlayCidr && 'reason' in underlayCidr) return underlayCidr;
  const uc6 = cidrAnn(ANNOTATIONS.underlayCidr6);
  if (uc6 && 'reason' in uc6) return uc6;
  const underlayCidr6 = uc6 ?? (underlayCidr?.family === 6 ? underlayCidr : undefined);
  const [net4, last4] = v4 ? v4range(v4) : [-1, -1];
  const first = (v4 ?? v6)!;
  return {
    node: name,
    podCIDR: v4?.masked,
    podCIDR6: v6?.masked,
    podCIDRs: [...node.podCIDRs],
    net4,
    last4,
    podCIDRText: first.masked.toString(),
    publicIpText: pub.ip.toString(),
    vtepText: first.network.toString(),
    publicIp: pub.ip,
    publicIp6,
    vtepMac,
    macFromAnnotation: data.mac !== undefined,
    ...(vtepMac6 !== undefined ? { vtepMac6, macFromAnnotation6 } : {}),
    backendType,
    underlayCidr,
    underlayCidr6,
  };
}

/**
 * Every peer, validated alone and then against each other: two nodes whose pod CIDRs
 * overlap, or that claim one VTEP MAC (vxlan), are all skipped: there is no safe pick.
 * Sorted by node name.
 */
/** Per-node parse results (by Node object identity) and the last whole answer. */
export interface PeerCache {
  entries: Map<string, { node: NodeObject; rulesKey: string; result: PeerInfo | PeerProblem }>;
  last?: { rulesKey: string; peers: PeerInfo[]; problems: PeerProblem[] };
}

export function createPeerCache(): PeerCache {
  return { entries: new Map() };
}

export function collectPeers(nodes: Iterable<NodeObject>, self: string, rules: PeerRules, cache?: PeerCache): { peers: PeerInfo[]; problems: PeerProblem[] } {
  const ok: PeerInfo[] = [];
  const problems: PeerProblem[] = [];
  const rulesKey = cache ? `${rules.backend}|${rules.underlayFamily ?? 4}|${rules.preferFamily ?? 4}|${rules.families ? `${rules.families.v4}${rules.families.v6}` : ''}|${rules.vni}|${rules.clusterCIDRs.join(',')}|${rules.serviceCIDRs.join(',')}|${rules.ownPodCIDRs.join(',')}|${rules.ownMac ?? ''}|${rules.ownMac6 ?? ''}` : '';
  const seen = cache ? new Set<string>() : undefined;
  let changed = false;
  for (const n of nodes) {
    if (n.meta.name === self) continue;
    let r: PeerInfo | PeerProblem;
    if (cache) {
      seen!.add(n.meta.name);
      // Node objects are immutable: the same object means the same answer.
      const c = cache.entries.get(n.meta.name);
      if (c && c.node === n && c.rulesKey === rulesKey) r = c.result;
      else {
        changed = true;
        r = parsePeer(n, rules);
        cache.entries.set(n.meta.name, { node: n, rulesKey, result: r });
      }
    } else r = parsePeer(n, rules);
    if ('reason' in r) problems.push(r);
    else ok.push(r);
  }
  if (cache && cache.entries.size > seen!.size) {
    changed = true;
    for (const k of cache.entries.keys()) if (!seen!.has(k)) cache.entries.delete(k);
  }
  // Nothing changed since the last call: the cross-checks give the same answer.
  if (cache && !changed && cache.last && cache.last.rulesKey === rulesKey) return { peers: cache.last.peers, problems: [...cache.last.problems] };
  ok.sort((x, y) => (x.node < y.node ? -1 : x.node > y.node ? 1 : 0));
  const bad = new Map<string, PeerProblem>();
  // Overlapping pod CIDRs: by network address, each against the one reaching furthest so far.
  const clash = (p: PeerInfo, pc: Cidr, other: PeerInfo, oc: Cidr): void => {
    bad.set(p.node, { node: p.node, field: 'spec.podCIDRs', value: pc.toString(), reason: `overlaps node ${other.node}'s pod CIDR ${oc.toString()}` });
    if (!bad.has(other.node)) bad.set(other.node, { node: other.node, field: 'spec.podCIDRs', value: oc.toString(), reason: `overlaps node ${p.node}'s pod CIDR ${pc.toString()}` });
  };
  const with4 = ok.filter((p) => p.podCIDR !== undefined);
  const byNet = with4.sort((x, y) => x.net4 - y.net4 || x.podCIDR!.prefixLength - y.podCIDR!.prefixLength);
  let widest: PeerInfo | undefined;
  for (const p of byNet) {
    if (widest && p.net4 <= widest.last4) clash(p, p.podCIDR!, widest, widest.podCIDR!);
    if (!widest || p.last4 > widest.last4) widest = p;
  }
  // The same sweep for IPv6 pod CIDRs, on BigInts (only peers that have one: dual-stack or IPv6-only).
  const with6 = ok.filter((p) => p.podCIDR6 !== undefined).map((p) => {
    const c = p.podCIDR6!;
    const net = c.network.value;
    return { p, c, net, last: net + (1n << BigInt(128 - c.prefixLength)) - 1n };
  });
  with6.sort((x, y) => (x.net < y.net ? -1 : x.net > y.net ? 1 : x.c.prefixLength - y.c.prefixLength));
  let widest6: (typeof with6)[number] | undefined;
  for (const e of with6) {
    if (widest6 && e.net <= widest6.last) clash(e.p, e.c, widest6.p, widest6.c);
    if (!widest6 || e.last > widest6.last) widest6 = e;
  }
  if (rules.backend === 'vxlan') {
    const byMac = new Map<string, PeerInfo>();
    for (const p of ok) {
      const o = byMac.get(p.vtepMac);
      if (!o) {
        byMac.set(p.vtepMac, p);
        continue;
      }
      const field = (x: PeerInfo) => (x.macFromAnnotation ? `${annField(ANNOTATIONS.backendData)}.VtepMAC` : 'status.addresses');
      bad.set(p.node, { node: p.node, field: field(p), value: p.vtepMac, reason: `MAC clash with node ${o.node}` });
      if (!bad.has(o.node)) bad.set(o.node, { node: o.node, field: field(o), value: o.vtepMac, reason: `MAC clash with node ${p.node}` });
    }
  }
  if (rules.backend === 'vxlan' && rules.ownMac6 !== undefined) {
    // The same on our IPv6 VXLAN device: one v6 VTEP MAC, one remote.
    const byMac6 = new Map<string, PeerInfo>();
    const field6 = (x: PeerInfo) => (x.macFromAnnotation6 ? `${annField(ANNOTATIONS.backendV6Data)}.VtepMAC` : 'status.addresses');
    for (const p of ok) {
      if (p.vtepMac6 === undefined) continue;
      const o = byMac6.get(p.vtepMac6);
      if (!o) {
        byMac6.set(p.vtepMac6, p);
        continue;
      }
      if (!bad.has(p.node)) bad.set(p.node, { node: p.node, field: field6(p), value: p.vtepMac6, reason: `IPv6 VTEP MAC clash with node ${o.node}` });
      if (!bad.has(o.node)) bad.set(o.node, { node: o.node, field: field6(o), value: o.vtepMac6, reason: `IPv6 VTEP MAC clash with node ${p.node}` });
    }
  }
  const peers = ok.filter((p) => !bad.has(p.node));
  problems.push(...bad.values());
  problems.sort((x, y) => (x.node < y.node ? -1 : x.node > y.node ? 1 : 0));
  if (cache) cache.last = { rulesKey, peers, problems: [...problems] };
  return { peers, problems };
}

/**
 * DirectRouting, decided the same way on both ends: direct only when each node's underlay
 * address lies in the other's underlay subnet. The peer's subnet comes from its
 * `podwire.io/underlay-cidr` annotation; without one (a flannel node, manifest mode) it is
 * assumed to have our prefix length, which makes the rule "same network at our prefix".
 */
export function isDirect(own: Cidr, peerIp: IpAddress, peerCidr: Cidr | undefined): boolean {
  if (own.family !== peerIp.family) return false;
  const peer = peerCidr && peerCidr.ip.equals(peerIp) ? peerCidr : Cidr.of(peerIp, own.prefixLength);
  return own.masked.contains(peerIp) && peer.masked.contains(own.ip);
}
