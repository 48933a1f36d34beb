/**
 * The proxy's desired-state model: Services × EndpointSlices → one ServicePortInfo
 * per (Service port, IP family), with the endpoints each kind of traffic uses
 * (kube-proxy's CategorizeEndpoints, simplified: ready endpoints, or serving +
 * terminating ones when none is ready; the local subset for the Local policies).
 */
import { isIPv4, isIPv6 } from 'node:net';
import { InvalidInputError } from '../common/errors';
import { formatIPv6, ipv6Bytes } from '../common/ip';
import type { EndpointSliceObject, ServiceObject } from '../k8s/types';

export type L4 = 'tcp' | 'udp' | 'sctp';
export type Family = 4 | 6;

export interface EndpointInfo {
  ip: string;
  port: number;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  nodeName: string | undefined;
  /** On this node. */
  local: boolean;
  /** EndpointSlice hints (forZones / forNodes names), when the slice has them. */
  zoneHints?: readonly string[];
  nodeHints?: readonly string[];
}

export interface ServicePortInfo {
  /** kube-proxy's ServicePortName: `namespace/name:port/protocol`. */
  id: string;
  serviceKey: string;
  portName: string;
  protocol: L4;
  port: number;
  nodePort: number | undefined;
  family: Family;
  clusterIP: string;
  externalIPs: string[];
  loadBalancerIPs: string[];
  loadBalancerSourceRanges: string[];
  /** Seconds; 0 = no ClientIP affinity. */
  affinityTimeout: number;
  externalLocal: boolean;
  internalLocal: boolean;
  healthCheckNodePort: number | undefined;
  /** Every endpoint of this port and family (any condition). */
  all: EndpointInfo[];
  /** What cluster-wide traffic uses: ready (narrowed by topology hints), else serving+terminating. */
  cluster: EndpointInfo[];
  /** The topology the cluster endpoints were narrowed to (kube-proxy's topology mode), '' for none. */
  topology?: '' | 'PreferSameZone' | 'PreferSameNode';
  /** Same choice among this node's endpoints. */
  local: EndpointInfo[];
}

export interface ServiceModel {
  key: string;
  ports: ServicePortInfo[];
  /** Why it is not proxied at all (headless, ExternalName, proxy-name label); not an error. */
  skipped?: string;
  /** Why it is invalid (bad IP, port, protocol); logged and counted. */
  invalid?: string;
}

export const SERVICE_PROXY_NAME_LABEL = 'service.kubernetes.io/service-proxy-name';
const PROTOCOLS: Record<string, L4> = { TCP: 'tcp', UDP: 'udp', SCTP: 'sctp' };

export function ipFamily(ip: string): Family | undefined {
  return isIPv4(ip) ? 4 : isIPv6(ip) ? 6 : undefined;
}

/**
 * An address in the one text form the proxy's keys use, so that they compare: IPv4 as
 * written (isIPv4 admits only canonical dotted quads), IPv6 compressed and lower-case
 * (RFC 5952, common/ip formatIPv6; an IPv4-mapped address in hex, `::ffff:102:304`).
 * Throws for anything else, a zone (`fe80::1%eth0`) included: the API server admits none.
 */
export function canonicalIP(ip: string): string {
  if (isIPv4(ip)) return ip;
  if (!isIPv6(ip) || ip.includes('%')) throw new InvalidInputError('ip', ip, 'not an IPv4 or IPv6 address without a zone');
  return formatIPv6(ipv6Bytes(ip));
}

function cidrFamily(c: string): Family | undefined {
  return ipFamily(c.split('/')[0] ?? '');
}

/** A dotted quad with octets 0-255 (node:net's isIPv4 is a regular expression; this runs per endpoint). */
function quickIPv4(s: string): boolean {
  let parts = 0;
  let val = -1;
  let digits = 0;
  for (let i = 0; i <= s.length; i++) {
    const c = i < s.length ? s.charCodeAt(i) : 46;
    if (c === 46) {
      if (digits === 0 || val > 255 || ++parts > 4) return false;
      val = -1;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && val === 0) return false; // no leading zeros
      val = (val < 0 ? 0 : val * 10) + (c - 48);
      if (++digits > 3) return false;
    } else return false;
  }
  return parts === 4;
}

const validPort = (p: unknown): p is number => typeof p === 'number' && Number.isInteger(p) && p >= 1 && p <= 65535;

/** Pick the endpoints traffic uses: ready ones, else serving+terminating ones (kube-proxy's fallback). */
export function usable(eps: EndpointInfo[]): EndpointInfo[] {
  // Every endpoint ready is the common case: the same array, not a copy of it (one per
  // Service port and family is ~1 MB at 10k Services). Nobody changes these arrays in place.
  let ready = 0;
  for (const e of eps) if (e.ready) ready++;
  if (ready === eps.length) return eps.length === 0 ? NO_ENDPOINTS : eps;
  if (ready > 0) return eps.filter((e) => e.ready);
  const fallback = eps.filter((e) => e.serving && e.terminating);
  return fallback.length === 0 ? NO_ENDPOINTS : fallback;
}

/** One shared empty list (most ports have no endpoint on this node). */
const NO_ENDPOINTS: EndpointInfo[] = [];

export const ZONE_LABEL = 'topology.kubernetes.io/zone';

/**
 * What of our own Node every mode's rules depend on: its podCIDRs (locality of endpoints without a
 * nodeName) and its zone label (topology hints). When this changes, every Service is re-rendered;
 * other Node updates (status, heartbeats) come often and change nothing.
 */
export function ownNodeInputs(node: unknown): string {
  const n = node as { podCIDRs?: string[]; meta?: { labels?: Record<string, string> } } | undefined;
  return JSON.stringify([n?.podCIDRs ?? [], n?.meta?.labels?.[ZONE_LABEL] ?? null]);
}

/**
 * kube-proxy's topologyModeFromHints (pkg/proxy/topology.go): hints count only when every
 * ready endpoint has one. Node hints win when one names this node; else zone hints when
 * one names this node's zone (a node without the zone label uses none); else no topology.
 * The hints themselves come from the EndpointSlice controller, which writes them for
 * Services with `service.kubernetes.io/topology-mode: Auto` or a `trafficDistribution`.
 */
export function topologyMode(eps: readonly EndpointInfo[], nodeName: string, zone: string | undefined): '' | 'PreferSameZone' | 'PreferSameNode' {
  let ready = false;
  let allNode = true;
  let forNode = false;
  let allZone = true;
  let forZone = false;
  for (const e of eps) {
    if (!e.ready) continue;
    ready = true;
    if (!e.nodeHints || e.nodeHints.length === 0) allNode = false;
    else if (e.nodeHints.includes(nodeName)) forNode = true;
    if (!e.zoneHints || e.zoneHints.length === 0) allZone = false;
    else if (zone !== undefined && zone !== '' && e.zoneHints.includes(zone)) forZone = true;
  }
  if (!ready) return '';
  if (allNode && forNode) return 'PreferSameNode';
  if (allZone && forZone) return 'PreferSameZone';
  return '';
}

/** kube-proxy's CategorizeEndpoints for cluster traffic: ready endpoints available for the topology, else serving-terminating ones. */
export function clusterEndpoints(eps: readonly EndpointInfo[], mode: '' | 'PreferSameZone' | 'PreferSameNode', nodeName: string, zone: string | undefined): EndpointInfo[] {
  if (mode === '') return usable(eps as EndpointInfo[]);
  const out = eps.filter((e) => e.ready && (mode === 'PreferSameNode' ? e.nodeHints!.includes(nodeName) : e.zoneHints!.includes(zone!)));
  return out.length > 0 ? out : eps.filter((e) => e.serving && e.terminating);
}

export function buildServiceModel(
  svc: ServiceObject,
  slices: readonly EndpointSliceObject[],
  nodeName: string,
  localPodCIDRs: readonly ((ip: string) => boolean)[] = [],
  topology: { zone?: string | undefined } = {},
): ServiceModel {
  const key = svc.meta.key;
  if (svc.meta.labels[SERVICE_PROXY_NAME_LABEL] !== undefined) return { key, ports: [], skipped: `label ${SERVICE_PROXY_NAME_LABEL}` };
  if (svc.type === 'ExternalName') return { key, ports: [], skipped: 'ExternalName' };
  const clusterIPs = svc.clusterIPs.filter((ip) => ip !== '' && ip !== 'None');
  if (clusterIPs.length === 0) return { key, ports: [], skipped: 'headless' };
  for (const ip of clusterIPs) if (ipFamily(ip) === undefined) return { key, ports: [], invalid: `spec.clusterIPs: ${JSON.stringify(ip)} is not an IP address` };
  for (const [i, p] of svc.ports.entries()) {
    if (!validPort(p.port)) return { key, ports: [], invalid: `spec.ports[${i}].port: ${JSON.stringify(p.port)} is not a port` };
    if (PROTOCOLS[p.protocol] === undefined) return { key, ports: [], invalid: `spec.ports[${i}].protocol: ${JSON.stringify(p.protocol)} is not TCP, UDP or SCTP` };
    if (p.nodePort !== undefined && p.nodePort !== 0 && !validPort(p.nodePort)) return { key, ports: [], invalid: `spec.ports[${i}].nodePort: ${JSON.stringify(p.nodePort)} is not a port` };
  }
  const nodePorts = svc.type === 'NodePort' || svc.type === 'LoadBalancer';
  const isLocal = (ep: { nodeName: string | undefined; ip: string }): boolean =>
    ep.nodeName !== undefined ? ep.nodeName === nodeName : localPodCIDRs.some((f) => f(ep.ip));
  const ports: ServicePortInfo[] = [];
  for (const clusterIP0 of clusterIPs) {
    const family = ipFamily(clusterIP0)!;
    const clusterIP = canonicalIP(clusterIP0);
    const ofFamily = (list: readonly string[]): string[] => (list.length === 0 ? [] : [...new Set(list.filter((ip) => ipFamily(ip) === family).map(canonicalIP))]);
    const externalIPs = ofFamily(svc.externalIPs);
    const loadBalancerIPs = svc.type === 'LoadBalancer' ? ofFamily(svc.loadBalancerIPs) : [];
    const ranges = svc.type === 'LoadBalancer' && svc.loadBalancerSourceRanges.length > 0 ? svc.loadBalancerSourceRanges.map((r) => r.trim()).filter((r) => cidrFamily(r) === family) : [];
    for (const p of svc.ports) {
      const protocol = PROTOCOLS[p.protocol]!;
      const all: EndpointInfo[] = [];
      const want = family === 4 ? 'IPv4' : 'IPv6';
      for (const slice of slices) {
        if (slice.addressType !== want) continue;
        let sp: EndpointSliceObject['ports'][number] | undefined;
        for (const x of slice.ports) if (sp === undefined && (x.name ?? '') === (p.name ?? '') && x.protocol === p.protocol) sp = x;
        if (!sp || !validPort(sp.port)) continue;
        for (const ep of slice.endpoints) {
          // Only the first address counts (the API's rule for EndpointSlice endpoints).
          const addr = ep.address;
          let ip: string;
          if (family === 4) {
            if (!quickIPv4(addr)) continue;
            ip = addr;
          } else {
            if (!isIPv6(addr)) continue;
            ip = canonicalIP(addr);
          }
          const info: EndpointInfo = {
            ip,
            port: sp.port,
            ready: ep.conditions.ready,
            serving: ep.conditions.serving,
            terminating: ep.conditions.terminating,
            nodeName: ep.nodeName,
            local: ep.nodeName !== undefined ? ep.nodeName === nodeName : isLocal({ nodeName: undefined, ip }),
          };
          if (ep.hints) {
            if (ep.hints.forZones.length > 0) info.zoneHints = ep.hints.forZones;
            if (ep.hints.forNodes.length > 0) info.nodeHints = ep.hints.forNodes;
          }
          all.push(info);
        }
      }
      // Sorted by (ip, port); then one entry per ip (one slice: one port number) or per ip:port,
      // the first one met winning (the sort is stable).
      all.sort((a, b) => (a.ip === b.ip ? a.port - b.port : a.ip < b.ip ? -1 : 1));
      if (all.length > 1) {
        const byIP = slices.length <= 1;
        let w = 1;
        for (let r = 1; r < all.length; r++) {
          const prev = all[w - 1]!;
          const cur = all[r]!;
          if (cur.ip === prev.ip && (byIP || cur.port === prev.port)) continue;
          all[w++] = cur;
        }
        all.length = w;
      }
      const mode = topologyMode(all, nodeName, topology.zone);
      ports.push({
        id: [key, ':', p.name ?? '', '/', protocol].join(''), // flat: a template literal keeps a cons string per port
        serviceKey: key,
        portName: p.name ?? '',
        protocol,
        port: p.port,
        nodePort: nodePorts && p.nodePort ? p.nodePort : undefined,
        family,
        clusterIP,
        externalIPs,
        loadBalancerIPs,
        loadBalancerSourceRanges: ranges,
        affinityTimeout: svc.sessionAffinity === 'ClientIP' ? (svc.sessionAffinityTimeoutSeconds ?? 10800) : 0,
        externalLocal: svc.externalTrafficPolicy === 'Local' && (nodePorts || externalIPs.length > 0 || loadBalancerIPs.length > 0),
        internalLocal: svc.internalTrafficPolicy === 'Local',
        healthCheckNodePort: svc.type === 'LoadBalancer' && svc.externalTrafficPolicy === 'Local' ? svc.healthCheckNodePort : undefined,
        all,
        cluster: clusterEndpoints(all, mode, nodeName, topology.zone),
        topology: mode,
        local: all.some((e) => e.local) ? usable(all.filter((e) => e.local)) : NO_ENDPOINTS,
      });
    }
  }
  return { key, ports };
}

/** The fields of a Service the proxy reads; two Services with the same projection program the same rules. */
export function serviceProjection(s: ServiceObject): string {
  return JSON.stringify([
    s.type,
    s.clusterIPs,
    s.ports,
    s.externalIPs,
    s.loadBalancerIPs,
    s.loadBalancerSourceRanges,
    s.sessionAffinity,
    s.sessionAffinityTimeoutSeconds,
    s.externalTrafficPolicy,
    s.internalTrafficPolicy,
    s.healthCheckNodePort,
    s.meta.labels[SERVICE_PROXY_NAME_LABEL] ?? null,
    s.trafficDistribution ?? null,
  ]);
}

export function sliceProjection(s: EndpointSliceObject): string {
  return JSON.stringify([s.serviceName, s.addressType, s.ports, s.endpoints.map((e) => [e.address, e.moreAddresses ?? null, e.conditions, e.nodeName, e.hints ?? null])]);
}

/**
 * kube-proxy's change tracker shape: per key the first `previous` and the latest
 * `current`; a key whose `previous` and `current` end up the same is dropped (a no-op).
 */
export class ChangeTracker<T> {
  private readonly pending = new Map<string, { previous: T | undefined; current: T | undefined; firstAt: number }>();

  constructor(private readonly same: (a: T, b: T) => boolean) {}

  /** Returns true when the key now has a real pending change. */
  record(key: string, previous: T | undefined, current: T | undefined, now = 0): boolean {
    let e = this.pending.get(key);
    if (e) e.current = current;
    else {
      e = { previous, current, firstAt: now };
      this.pending.set(key, e);
    }
    const noop = e.previous === undefined ? e.current === undefined : e.current !== undefined && this.same(e.previous, e.current);
    if (noop) {
      this.pending.delete(key);
      return false;
    }
    return true;
  }

  get size(): number {
    return this.pending.size;
  }

  /** Oldest pending change's record time. */
  oldest(): number | undefined {
    let o: number | undefined;
    for (const e of this.pending.values()) if (o === undefined || e.firstAt < o) o = e.firstAt;
    return o;
  }

  drain(): Map<string, { previous: T | undefined; current: T | undefined; firstAt: number }> {
    const out = new Map(this.pending);
    this.pending.clear();
    return out;
  }
}
