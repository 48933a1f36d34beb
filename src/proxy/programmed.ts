/**
 * What the proxy keeps of a programmed Service port from one sync to the next: its identity,
 * its VIPs and the order of its endpoints. The next render of the Service needs no more (the
 * nftables mode keeps surviving endpoints in their slots; a UDP endpoint that went away has
 * its conntrack entries deleted). The full ServicePortInfo, with an EndpointInfo object per
 * endpoint, was ~12 MB of heap at 10,000 Services × 10 endpoints, kept only for that.
 */
import type { EndpointInfo, Family, L4, ServicePortInfo } from './model';

/** Endpoints in slot order: `ips[i]` on port `ports` (one port for all, the common case) or `ports[i]`. */
export interface EndpointOrder {
  readonly ips: readonly string[];
  readonly ports: number | readonly number[];
}

export interface ProgrammedPort {
  readonly id: string;
  readonly family: Family;
  readonly protocol: L4;
  readonly port: number;
  readonly nodePort: number | undefined;
  readonly clusterIP: string;
  readonly externalIPs: readonly string[];
  readonly loadBalancerIPs: readonly string[];
  /** The endpoints cluster-wide traffic went to. */
  readonly cluster: EndpointOrder;
  /** This node's endpoints that Local-policy traffic went to. */
  readonly local: EndpointOrder;
}

const NO_STRINGS: readonly string[] = Object.freeze([]);
export const NO_ENDPOINT_ORDER: EndpointOrder = Object.freeze({ ips: NO_STRINGS, ports: 0 });

export function endpointOrder(eps: readonly EndpointInfo[]): EndpointOrder {
  if (eps.length === 0) return NO_ENDPOINT_ORDER;
  const ips = new Array<string>(eps.length);
  const first = eps[0]!.port;
  let same = true;
  for (let i = 0; i < eps.length; i++) {
    ips[i] = eps[i]!.ip;
    if (eps[i]!.port !== first) same = false;
  }
  return { ips, ports: same ? first : eps.map((e) => e.port) };
}

export const portAt = (o: EndpointOrder, i: number): number => (typeof o.ports === 'number' ? o.ports : o.ports[i]!);

/** Ports as rendered (after a mode reordered their endpoints). */
export function programmedPorts(ports: readonly ServicePortInfo[]): ProgrammedPort[] {
  return ports.map((p) => {
    const cluster = endpointOrder(p.cluster);
    return {
      id: p.id,
      family: p.family,
      protocol: p.protocol,
      port: p.port,
      nodePort: p.nodePort,
      clusterIP: p.clusterIP,
      externalIPs: p.externalIPs.length === 0 ? NO_STRINGS : p.externalIPs,
      loadBalancerIPs: p.loadBalancerIPs.length === 0 ? NO_STRINGS : p.loadBalancerIPs,
      cluster,
      local: p.local === p.cluster ? cluster : endpointOrder(p.local),
    };
  });
}
