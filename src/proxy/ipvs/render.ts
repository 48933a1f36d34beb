/**
 * kube-proxy's ipvs mode as desired state, per Service: the virtual servers with their
 * real servers, the ipset members the fixed iptables rules match on, and the VIPs bound to
 * the local interface. Pure; the applier (proxier.ts) diffs it against the kernel.
 *
 * One virtual server per (ClusterIP | NodePort on each node address | external IP | LB
 * ingress IP, port, protocol). ClusterIP traffic uses the cluster endpoints (the local
 * ones with internalTrafficPolicy Local); the other kinds use the local ones with
 * externalTrafficPolicy Local. ClientIP affinity is IPVS persistence (/32, /128) with the
 * Service's timeout. IPv4 and IPv6 alike: a dual-stack Service port is rendered once per
 * family (AF_INET / AF_INET6 virtual servers), into that family's sets (SETS / SETS6).
 */
import { Cidr, IpAddress } from '../../common/ip';
import type { IpvsDest, IpvsService } from '../../kernel/ipvs';
import type { EndpointInfo, ServicePortInfo } from '../model';

/**
 * Where the VIPs are bound. kube-proxy uses a dummy device (kube-ipvs0); the kernels we
 * run on may lack the dummy driver, so this is a bridge without ports: it exists on every
 * kernel that runs the CNI bridge, never carries a packet (no ports, so no carrier), and
 * an IPv4 address on it still installs the `local` route that makes the node accept the
 * VIP and IPVS see it in LOCAL_IN. ARP for the VIPs on the underlay is suppressed by
 * arp_ignore=1 / arp_announce=2 (STRICT_ARP_SYSCTLS, proxy.ipvsStrictARP: kube-proxy's
 * --ipvs-strict-arp, on by default here).
 */
export const VIP_DEVICE = 'podwire-ipvs0';

/** ipset names: kube-proxy's, with our prefix (≤ 31 characters). */
export const SETS = {
  clusterIP: 'PODWIRE-CLUSTER-IP',
  loopBack: 'PODWIRE-LOOP-BACK',
  externalIP: 'PODWIRE-EXTERNAL-IP',
  externalIPLocal: 'PODWIRE-EXTERNAL-IP-LOCAL',
  loadBalancer: 'PODWIRE-LOAD-BALANCER',
  loadBalancerLocal: 'PODWIRE-LOAD-BALANCER-LOCAL',
  nodePortTCP: 'PODWIRE-NODE-PORT-TCP',
  nodePortUDP: 'PODWIRE-NODE-PORT-UDP',
  /**
   * SCTP NodePorts are `hash:ip,port` (node address,sctp:port), as kube-proxy's
   * KUBE-NODE-PORT-SCTP-HASH: the kernel's bitmap:port match only reads TCP and UDP ports
   * (ip_set_get_ip_port), so a bitmap of SCTP ports never matches a packet.
   */
  nodePortSCTP: 'PODWIRE-NODE-PORT-SCTP-IP',
  nodePortLocalTCP: 'PODWIRE-NODE-PORT-LOCAL-TCP',
  nodePortLocalUDP: 'PODWIRE-NODE-PORT-LOCAL-UDP',
  nodePortLocalSCTP: 'PODWIRE-NODE-PORT-LOCAL-SCTP-IP',
  /** Ours (kube-proxy has none): VIP,proto:port with no endpoint, for the REJECT. */
  noEndpoint: 'PODWIRE-NO-ENDPOINT',
  /**
   * loadBalancerSourceRanges (kube-proxy's KUBE-LOAD-BALANCER-FW / -SOURCE-CIDR / -SOURCE-IP;
   * "SOURCE" shortened to "SRC": ipset names have at most 31 characters). FW: LB IP,proto:port
   * of a Service with source ranges; SRC-CIDR: LB IP,proto:port,range allowed; SRC-IP: LB
   * IP,proto:port,LB IP when a range holds a node address (a connection from the node itself
   * has the locally bound LB IP as its source).
   */
  loadBalancerFW: 'PODWIRE-LOAD-BALANCER-FW',
  loadBalancerSourceCIDR: 'PODWIRE-LOAD-BALANCER-SRC-CIDR',
  loadBalancerSourceIP: 'PODWIRE-LOAD-BALANCER-SRC-IP',
  /** healthCheckNodePorts (kube-proxy's KUBE-HEALTH-CHECK-NODE-PORT): the VIP filter lets them through. */
  healthCheckNodePort: 'PODWIRE-HEALTH-CHECK-NODE-PORT',
  /** Every VIP bound on the VIP device (kube-proxy's KUBE-IPVS-IPS), for the VIP filter (rules.ts). */
  ipvsIPs: 'PODWIRE-IPVS-IPS',
} as const;

/** The IP family a set, a rule set or a virtual server is for. */
export type IpFamily = 4 | 6;

/** The set names of one family: SETS' keys. */
export type SetNames = Record<keyof typeof SETS, string>;

/**
 * IPv6 set names: kube-proxy renames its IPv6 sets KUBE-* → KUBE-6-* (ipvs/ipset.go), and so
 * PODWIRE-* → PODWIRE-6-*. Three would pass ipset's 31 characters; kube-proxy truncates,
 * which could make two names one, so these are shortened by hand (unique: proxier.test.ts).
 */
const V6_SHORT: Readonly<Record<string, string>> = {
  'PODWIRE-NODE-PORT-LOCAL-SCTP-IP': 'PODWIRE-6-NODE-PORT-LOC-SCTP-IP',
  'PODWIRE-LOAD-BALANCER-SRC-CIDR': 'PODWIRE-6-LOAD-BALANCER-SRCCIDR',
  'PODWIRE-HEALTH-CHECK-NODE-PORT': 'PODWIRE-6-HEALTH-CHECK-NODEPORT',
};

export function setName(v4Name: string, family: IpFamily): string {
  return family === 4 ? v4Name : (V6_SHORT[v4Name] ?? v4Name.replace(/^PODWIRE-/, 'PODWIRE-6-'));
}

/** The IPv6 sets (family inet6): the same roles as SETS. */
export const SETS6: SetNames = Object.fromEntries(Object.entries(SETS).map(([k, v]) => [k, setName(v, 6)])) as SetNames;

export function setsOf(family: IpFamily): SetNames {
  return family === 4 ? SETS : SETS6;
}

/**
 * Sets of earlier builds that no longer exist: destroyed once the rules no longer match on
 * them (setup) and by `--cleanup`. The SCTP NodePort sets were bitmap:port, which never
 * matches SCTP; their names are kept free so a type change cannot collide with them.
 */
export const LEGACY_SETS = ['PODWIRE-NODE-PORT-SCTP', 'PODWIRE-NODE-PORT-LOCAL-SCTP'] as const;

/** `ipset create` type and options of each IPv4 set. */
export const SET_TYPES4: Record<string, string> = {
  [SETS.clusterIP]: 'hash:ip,port family inet hashsize 1024 maxelem 262144',
  [SETS.loopBack]: 'hash:ip,port,ip family inet hashsize 1024 maxelem 262144',
  [SETS.externalIP]: 'hash:ip,port family inet hashsize 1024 maxelem 262144',
  [SETS.externalIPLocal]: 'hash:ip,port family inet hashsize 1024 maxelem 262144',
  [SETS.loadBalancer]: 'hash:ip,port family inet hashsize 1024 maxelem 262144',
  [SETS.loadBalancerLocal]: 'hash:ip,port family inet hashsize 1024 maxelem 262144',
  [SETS.nodePortTCP]: 'bitmap:port range 0-65535',
  [SETS.nodePortUDP]: 'bitmap:port range 0-65535',
  [SETS.nodePortSCTP]: 'hash:ip,port family inet hashsize 1024 maxelem 262144',
  [SETS.nodePortLocalTCP]: 'bitmap:port range 0-65535',
  [SETS.nodePortLocalUDP]: 'bitmap:port range 0-65535',
  [SETS.nodePortLocalSCTP]: 'hash:ip,port family inet hashsize 1024 maxelem 262144',
  [SETS.noEndpoint]: 'hash:ip,port family inet hashsize 1024 maxelem 262144',
  [SETS.loadBalancerFW]: 'hash:ip,port family inet hashsize 1024 maxelem 262144',
  [SETS.loadBalancerSourceCIDR]: 'hash:ip,port,net family inet hashsize 1024 maxelem 262144',
  [SETS.loadBalancerSourceIP]: 'hash:ip,port,ip family inet hashsize 1024 maxelem 262144',
  [SETS.healthCheckNodePort]: 'bitmap:port range 0-65535',
  [SETS.ipvsIPs]: 'hash:ip family inet hashsize 1024 maxelem 262144',
};

/** The IPv6 sets: the same types with `family inet6` (bitmap:port has no family: one per family all the same, as kube-proxy). */
export const SET_TYPES6: Record<string, string> = Object.fromEntries(Object.entries(SET_TYPES4).map(([n, type]) => [setName(n, 6), type.replace('family inet ', 'family inet6 ')]));

/** Every set of ours, both families (adoption and cleanup look for all of them). */
export const SET_TYPES: Record<string, string> = { ...SET_TYPES4, ...SET_TYPES6 };

export function setTypesOf(family: IpFamily): Record<string, string> {
  return family === 4 ? SET_TYPES4 : SET_TYPES6;
}

/**
 * A source range as `ipset save` prints a hash:ip,port,net member's net: host bits cleared,
 * no suffix for a /32 (/128). A /0 becomes two /1s: hash:*,net types refuse a zero prefix
 * length. Only ranges of `family` (the model already keeps a port's ranges to its family).
 */
export function sourceRangeMembers(range: string, family: IpFamily = 4): string[] {
  let c: Cidr;
  try {
    const ip = range.includes('/') ? undefined : IpAddress.parse(range);
    c = (ip ? Cidr.of(ip, ip.family === 4 ? 32 : 128) : Cidr.parse(range)).masked;
  } catch {
    return [];
  }
  if (c.family !== family) return [];
  const host = family === 4 ? 32 : 128;
  if (c.prefixLength === 0) return family === 4 ? ['0.0.0.0/1', '128.0.0.0/1'] : ['::/1', '8000::/1'];
  return [c.prefixLength === host ? c.network.toString() : `${c.network.toString()}/${c.prefixLength}`];
}

const familyOfAddress = (a: string): IpFamily => (a.includes(':') ? 6 : 4);

export interface DesiredVS {
  service: IpvsService & { protocol: 'tcp' | 'udp' | 'sctp'; address: string; port: number };
  dests: IpvsDest[];
}

/** What one Service contributes. */
export interface IpvsContribution {
  vss: DesiredVS[];
  /** set name → members, in `ipset save` form (`10.96.0.10,tcp:80`, `30080`). */
  sets: Map<string, string[]>;
  /** Addresses bound to the VIP interface (ClusterIPs, external IPs, LB ingress IPs). */
  vips: string[];
}

export interface IpvsRenderOptions {
  scheduler: string;
  /** Addresses NodePorts answer on (both families; a port uses those of its own). */
  nodeAddresses: readonly string[];
  /**
   * Every address of the node (but loopback, IPv6 link-locals and the VIP device), whatever
   * nodePortAddresses says: a source range holding one of them lets the node itself in.
   */
  hostAddresses?: readonly string[];
  /** The families rendered (default both); the other's ports are skipped (a node without IPv6). */
  families?: readonly IpFamily[];
}

/** `tcp 10.96.0.10:80`, `tcp [fd00:10:96::a]:80`: the key the applier diffs by. */
export function vsKey(s: { protocol: string; address: string; port: number }): string {
  return `${s.protocol} ${destKey(s)}`;
}

export function destKey(d: { address: string; port: number }): string {
  return d.address.includes(':') ? `[${d.address}]:${d.port}` : `${d.address}:${d.port}`;
}

export function renderIpvsService(ports: readonly ServicePortInfo[], opts: IpvsRenderOptions): IpvsContribution {
  const vss: DesiredVS[] = [];
  const sets = new Map<string, string[]>();
  const vips = new Set<string>();
  const add = (set: string, member: string): void => {
    let l = sets.get(set);
    if (!l) sets.set(set, (l = []));
    if (!l.includes(member)) l.push(member);
  };
  // An external or LB IP that is already an address of the node is not bound again and is no
  // VIP for the VIP filter (kube-proxy: "must not add the address to the dummy device if it
  // exists on another interface"): its other listeners stay reachable, as without a Service.
  const host = new Set(opts.hostAddresses ?? opts.nodeAddresses);
  const families = opts.families ?? [4, 6];
  for (const p of ports) {
    if (!families.includes(p.family)) continue;
    const family = p.family;
    // A dual-stack Service is two ports here (model.ts), one per family, each with its own sets.
    const S = setsOf(family);
    const NODE_PORT_SET = { tcp: S.nodePortTCP, udp: S.nodePortUDP, sctp: S.nodePortSCTP } as const;
    const NODE_PORT_LOCAL_SET = { tcp: S.nodePortLocalTCP, udp: S.nodePortLocalUDP, sctp: S.nodePortLocalSCTP } as const;
    const nodeAddresses = opts.nodeAddresses.filter((a) => familyOfAddress(a) === family);
    const hostAddresses = (opts.hostAddresses ?? opts.nodeAddresses).filter((a) => familyOfAddress(a) === family);
    const proto = p.protocol;
    const vs = (address: string, port: number, eps: readonly EndpointInfo[]): void => {
      // Persistence granularity: one client address (/32, /128), as kube-proxy.
      const service: DesiredVS['service'] = { family, protocol: proto, address, port, scheduler: opts.scheduler, persistent: p.affinityTimeout > 0, timeout: p.affinityTimeout, netmask: family === 4 ? '255.255.255.255' : 128, flags: 0 };
      const seen = new Set<string>();
      const dests: IpvsDest[] = [];
      for (const e of eps) {
        const k = destKey({ address: e.ip, port: e.port });
        if (seen.has(k)) continue;
        seen.add(k);
        dests.push({ address: e.ip, port: e.port, forward: 'masq', weight: 1 });
      }
      vss.push({ service, dests });
      if (dests.length === 0) add(S.noEndpoint, `${address},${proto}:${port}`);
    };
    const clusterEps = p.internalLocal ? p.local : p.cluster;
    const externalEps = p.externalLocal ? p.local : p.cluster;
    vs(p.clusterIP, p.port, clusterEps);
    vips.add(p.clusterIP);
    add(S.clusterIP, `${p.clusterIP},${proto}:${p.port}`);
    for (const ip of p.externalIPs) {
      vs(ip, p.port, externalEps);
      if (!host.has(ip)) vips.add(ip);
      add(S.externalIP, `${ip},${proto}:${p.port}`);
      if (p.externalLocal) add(S.externalIPLocal, `${ip},${proto}:${p.port}`);
    }
    const ranges = p.loadBalancerSourceRanges.flatMap((r) => sourceRangeMembers(r, family));
    const fromNode = ranges.some((r) => {
      const c = Cidr.parse(r.includes('/') ? r : `${r}/${family === 4 ? 32 : 128}`);
      return hostAddresses.some((a) => c.contains(IpAddress.parse(a)));
    });
    for (const ip of p.loadBalancerIPs) {
      vs(ip, p.port, externalEps);
      if (!host.has(ip)) vips.add(ip);
      const m = `${ip},${proto}:${p.port}`;
      add(S.loadBalancer, m);
      if (p.externalLocal) add(S.loadBalancerLocal, m);
      if (ranges.length > 0) {
        add(S.loadBalancerFW, m);
        for (const r of ranges) add(S.loadBalancerSourceCIDR, `${m},${r}`);
        if (fromNode) add(S.loadBalancerSourceIP, `${m},${ip}`);
      }
    }
    if (p.nodePort !== undefined) {
      for (const a of nodeAddresses) vs(a, p.nodePort, externalEps);
      // TCP/UDP: a bitmap of ports; SCTP: one node address,sctp:port member per node address (SETS).
      const members = proto === 'sctp' ? nodeAddresses.map((a) => `${a},sctp:${p.nodePort}`) : [String(p.nodePort)];
      for (const m of members) {
        add(NODE_PORT_SET[proto], m);
        if (p.externalLocal) add(NODE_PORT_LOCAL_SET[proto], m);
      }
    }
    if (p.healthCheckNodePort !== undefined) add(S.healthCheckNodePort, String(p.healthCheckNodePort));
    // Hairpin: a local endpoint reaching itself through the Service is masqueraded.
    for (const e of [...p.cluster, ...p.local]) if (e.local) add(S.loopBack, `${e.ip},${proto}:${e.port},${e.ip}`);
  }
  for (const v of vips) add(setsOf(familyOfAddress(v)).ipvsIPs, v);
  return { vss, sets, vips: [...vips] };
}
