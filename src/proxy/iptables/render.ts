/**
 * The iptables rendering: kube-proxy's chain layout (pkg/proxy/iptables/proxier.go), one
 * Service port at a time, under our chain names (names.ts).
 *
 *   nat  PODWIRE-SERVICES  -d VIP -p P --dport N -j PW-SVC-x (or PW-SVL-x for iTP Local)
 *                          -d externalIP ... -j PW-EXT-x;  -d LB-IP ... -j PW-FW-x | PW-EXT-x
 *                          last: local destinations -j PODWIRE-NODEPORTS
 *       PODWIRE-NODEPORTS  -p P --dport nodePort -j PW-EXT-x
 *       PW-SVC-x           off-cluster sources to the VIP -j PODWIRE-MARK-MASQ; affinity
 *                          (`-m recent --rcheck`); `-m statistic --mode random --probability
 *                          1/(n-i)` -j PW-SEP-y ...
 *       PW-SVL-x           the same over this node's endpoints only
 *       PW-EXT-x           eTP Cluster: mark for SNAT, -j PW-SVC-x; eTP Local: pods and the
 *                          node itself go cluster-wide, everyone else -j PW-SVL-x (source kept)
 *       PW-FW-x            -s <loadBalancerSourceRange> -j PW-EXT-x
 *  mangle PODWIRE-PROXY-FW LB traffic from outside the ranges: DROP, before DNAT and routing
 *                          (kube-proxy drops it in filter, which a node without a route to
 *                          the LB IP never reaches)
 *       PW-SEP-y           -s <endpoint> -j PODWIRE-MARK-MASQ (hairpin); DNAT
 *       PODWIRE-POSTROUTING / PODWIRE-MARK-MASQ   the 0x4000 mark and MASQUERADE
 *  filter PODWIRE-SERVICES      no endpoints: REJECT (DROP when a Local policy has none here)
 *       PODWIRE-EXT-SERVICES    the same for externalIPs, LB IPs and NodePorts
 *       PODWIRE-NODEPORTS       healthCheckNodePort: ACCEPT
 *       PODWIRE-FORWARD         ctstate INVALID DROP; marked and established traffic ACCEPT
 *
 * Rules are written the way `iptables-save` prints them back (addresses with a prefix
 * length, -s/-d/-p before the matches), so what we adopt at start compares equal.
 */
import type { EndpointInfo, Family, ServicePortInfo } from '../model';
import { CH, endpointChain, serviceChain } from './names';

export interface IptRenderOptions {
  family: Family;
  /** This family's pod CIDR, for "off-cluster source" masquerading; undefined = none known. */
  clusterCIDR: string | undefined;
  masqueradeAll: boolean;
  /** This family's CIDRs for NodePorts; empty = every local address but loopback. */
  nodePortAddresses: string[];
  masqMark: number;
  /**
   * kube-proxy's large-cluster mode (more than LARGE_CLUSTER_ENDPOINTS endpoints): no comments on
   * the endpoint chains' rules and on the jumps to them. They are most of the rules, so the
   * table is about 40% smaller, and with iptables-legacy every restore rewrites the whole table.
   */
  largeCluster?: boolean;
}

/** kube-proxy's largeClusterEndpointsThreshold. */
export const LARGE_CLUSTER_ENDPOINTS = 1000;

/** One table's worth of rules: chain → rule bodies (without `-A CHAIN`). */
export type ChainRules = Map<string, string[]>;

/** What one Service contributes: its own chains, and its lines in the shared chains. */
export interface ServiceRules {
  nat: ChainRules;
  filter: ChainRules;
  /** Lines of the shared chains, keyed by `nat:CHAIN` / `filter:CHAIN` / `mangle:CHAIN`. */
  shared: Map<string, string[]>;
}

const hexm = (n: number): string => `0x${n.toString(16)}`;
const host = (f: Family, ip: string): string => `${ip}/${f === 4 ? 32 : 128}`;
const q = (s: string): string => `"${s.replace(/"/g, '\\"')}"`;
const epString = (f: Family, e: EndpointInfo): string => (f === 4 ? `${e.ip}:${e.port}` : `[${e.ip}]:${e.port}`);

function svcName(p: ServicePortInfo): string {
  return `${p.serviceKey}:${p.portName}`;
}

/**
 * 1/n as iptables-save prints it back: the kernel keeps the probability as a u32 fraction
 * of 2^31 and iptables prints it with 11 decimals, so writing that text makes the rules we
 * adopt after a restart compare equal to the ones we render.
 */
export function probability(n: number): string {
  const u = Math.round(0x80000000 / n);
  return (u / 0x80000000).toFixed(11);
}

function push(m: Map<string, string[]>, k: string, ...rules: string[]): void {
  let a = m.get(k);
  if (!a) m.set(k, (a = []));
  a.push(...rules);
}

/** Rules for the Service ports of one Service (all of one family). */
export function renderServiceRules(ports: readonly ServicePortInfo[], o: IptRenderOptions): ServiceRules {
  const out: ServiceRules = { nat: new Map(), filter: new Map(), shared: new Map() };
  for (const p of ports) if (p.family === o.family) renderPort(p, o, out);
  return out;
}

function renderPort(p: ServicePortInfo, o: IptRenderOptions, out: ServiceRules): void {
  const f = o.family;
  const name = svcName(p);
  const proto = p.protocol;
  const dport = (port: number): string => `-m ${proto} --dport ${port}`;
  const svc = serviceChain('SVC', p.id);
  const svl = serviceChain('SVL', p.id);
  const ext = serviceChain('EXT', p.id);
  const fw = serviceChain('FW', p.id);
  const reject = f === 4 ? 'REJECT --reject-with icmp-port-unreachable' : 'REJECT --reject-with icmp6-port-unreachable';
  const usesLocal = p.internalLocal || p.externalLocal;
  const internal = p.internalLocal ? p.local : p.cluster;
  const external = p.externalLocal ? p.local : p.cluster;
  const externalFacing = p.nodePort !== undefined || p.externalIPs.length > 0 || p.loadBalancerIPs.length > 0;
  const internalChain = p.internalLocal ? svl : svc;

  // Endpoint chains for every endpoint some traffic uses.
  const eps = new Map<string, EndpointInfo>();
  for (const e of [...p.cluster, ...(usesLocal ? p.local : [])]) eps.set(epString(f, e), e);
  const mask = f === 4 ? '255.255.255.255' : 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
  for (const [es, e] of eps) {
    const sep = endpointChain(p.id, es);
    const recent = p.affinityTimeout > 0 ? ` -m recent --set --name ${sep} --mask ${mask} --rsource` : '';
    const c = o.largeCluster ? '' : ` -m comment --comment ${q(name)}`;
    out.nat.set(sep, [`-s ${host(f, e.ip)}${c} -j ${CH.markMasq}`, `-p ${proto}${c}${recent} -m ${proto} -j DNAT --to-destination ${es}`]);
  }
  const epComment = (es: string): string => (o.largeCluster ? '' : `-m comment --comment ${q(`${name} -> ${es}`)} `);
  const lbRules = (chain: string, list: EndpointInfo[], masq: string[]): void => {
    const rules = [...masq];
    if (p.affinityTimeout > 0) {
      for (const e of list) {
        const es = epString(f, e);
        const sep = endpointChain(p.id, es);
        rules.push(`${epComment(es)}-m recent --rcheck --seconds ${p.affinityTimeout} --reap --name ${sep} --mask ${mask} --rsource -j ${sep}`);
      }
    }
    list.forEach((e, i) => {
      const es = epString(f, e);
      const stat = i < list.length - 1 ? ` -m statistic --mode random --probability ${probability(list.length - i)}` : '';
      rules.push(`${epComment(es)}${stat.trimStart()}${stat ? ' ' : ''}-j ${endpointChain(p.id, es)}`);
    });
    out.nat.set(chain, rules);
  };
  const vipMatch = `-d ${host(f, p.clusterIP)} -p ${proto}`;
  const masq: string[] = [];
  if (o.masqueradeAll) masq.push(`${vipMatch} -m comment --comment ${q(`${name} cluster IP`)} ${dport(p.port)} -j ${CH.markMasq}`);
  else if (o.clusterCIDR) masq.push(`! -s ${o.clusterCIDR} ${vipMatch} -m comment --comment ${q(`${name} cluster IP`)} ${dport(p.port)} -j ${CH.markMasq}`);
  if (p.cluster.length > 0) lbRules(svc, p.cluster, p.internalLocal ? [] : masq);
  if (usesLocal && p.local.length > 0) lbRules(svl, p.local, p.internalLocal ? masq : []);

  // The ClusterIP.
  if (internal.length > 0) push(out.shared, `nat:${CH.services}`, `${vipMatch} -m comment --comment ${q(`${name} cluster IP`)} ${dport(p.port)} -j ${internalChain}`);
  else {
    const drop = p.internalLocal && p.cluster.length > 0;
    push(out.shared, `filter:${CH.services}`, `${vipMatch} -m comment --comment ${q(`${name} has no ${drop ? 'local ' : ''}endpoints`)} ${dport(p.port)} -j ${drop ? 'DROP' : reject}`);
  }
  if (!externalFacing) return;

  // External destinations: externalIPs, LB IPs, NodePorts.
  if (external.length > 0) {
    const rules: string[] = [];
    if (!p.externalLocal) {
      rules.push(`-m comment --comment ${q(`masquerade traffic for ${name} external destinations`)} -j ${CH.markMasq}`, `-j ${svc}`);
    } else {
      if (o.clusterCIDR) rules.push(`-s ${o.clusterCIDR} -m comment --comment ${q(`pod traffic for ${name} external destinations`)} -j ${svc}`);
      rules.push(
        `-m comment --comment ${q(`masquerade LOCAL traffic for ${name} external destinations`)} -m addrtype --src-type LOCAL -j ${CH.markMasq}`,
        `-m comment --comment ${q(`route LOCAL traffic for ${name} external destinations`)} -m addrtype --src-type LOCAL -j ${svc}`,
        `-j ${svl}`,
      );
    }
    out.nat.set(ext, rules);
    for (const ip of p.externalIPs) push(out.shared, `nat:${CH.services}`, `-d ${host(f, ip)} -p ${proto} -m comment --comment ${q(`${name} external IP`)} ${dport(p.port)} -j ${ext}`);
    const ranges = p.loadBalancerSourceRanges;
    for (const ip of p.loadBalancerIPs) push(out.shared, `nat:${CH.services}`, `-d ${host(f, ip)} -p ${proto} -m comment --comment ${q(`${name} loadbalancer IP`)} ${dport(p.port)} -j ${ranges.length > 0 ? fw : ext}`);
    if (ranges.length > 0 && p.loadBalancerIPs.length > 0) {
      out.nat.set(fw, ranges.map((r) => `-s ${r} -m comment --comment ${q(`${name} loadbalancer IP`)} -j ${ext}`));
      for (const ip of p.loadBalancerIPs) {
        for (const r of ranges) push(out.shared, `mangle:${CH.firewall}`, `-s ${r} -d ${host(f, ip)} -p ${proto} -m comment --comment ${q(`${name} loadbalancer IP`)} ${dport(p.port)} -j RETURN`);
        push(out.shared, `mangle:${CH.firewall}`, `-d ${host(f, ip)} -p ${proto} -m comment --comment ${q(`${name} traffic not accepted by ${fw}`)} ${dport(p.port)} -j DROP`);
      }
    }
    if (p.nodePort !== undefined) push(out.shared, `nat:${CH.nodePorts}`, `-p ${proto} -m comment --comment ${q(name)} ${dport(p.nodePort)} -j ${ext}`);
  } else {
    const drop = p.externalLocal && p.cluster.length > 0;
    const target = drop ? 'DROP' : reject;
    const why = q(`${name} has no ${drop ? 'local ' : ''}endpoints`);
    for (const ip of [...p.externalIPs, ...p.loadBalancerIPs]) push(out.shared, `filter:${CH.extServices}`, `-d ${host(f, ip)} -p ${proto} -m comment --comment ${why} ${dport(p.port)} -j ${target}`);
    if (p.nodePort !== undefined) push(out.shared, `filter:${CH.extServices}`, `-p ${proto} -m comment --comment ${why} -m addrtype --dst-type LOCAL ${dport(p.nodePort)} -j ${target}`);
  }
  if (p.healthCheckNodePort !== undefined) push(out.shared, `filter:${CH.nodePorts}`, `-p tcp -m comment --comment ${q(`${name} health check node port`)} -m tcp --dport ${p.healthCheckNodePort} -j ACCEPT`);
}

/** The fixed chains' own rules (the ones not contributed by Services), per table. */
export function fixedRules(o: IptRenderOptions): { nat: ChainRules; natTail: Map<string, string[]>; filter: ChainRules; mangle: ChainRules } {
  const m = hexm(o.masqMark);
  const nat: ChainRules = new Map([
    [CH.services, []],
    [CH.nodePorts, []],
    [CH.postrouting, [`-m mark ! --mark ${m}/${m} -j RETURN`, `-j MARK --set-xmark ${m}/0x0`, `-m comment --comment "podwire service traffic requiring SNAT" -j MASQUERADE --random-fully`]],
    [CH.markMasq, [`-j MARK --set-xmark ${m}/${m}`]],
  ]);
  // kube-proxy's rule: the NodePorts jump is the last rule of the services chain.
  const tail = o.nodePortAddresses.length > 0
    ? o.nodePortAddresses.map((c) => `-d ${c} -m comment --comment "podwire service nodeports; NOTE: this must be the last rule in this chain" -j ${CH.nodePorts}`)
    : [`! -d ${o.family === 4 ? '127.0.0.0/8' : '::1/128'} -m comment --comment "podwire service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j ${CH.nodePorts}`];
  const filter: ChainRules = new Map([
    [CH.services, []],
    [CH.extServices, []],
    [CH.nodePorts, []],
    [CH.forward, [
      '-m conntrack --ctstate INVALID -j DROP',
      `-m comment --comment "podwire forwarding rules" -m mark --mark ${m}/${m} -j ACCEPT`,
      '-m comment --comment "podwire forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    ]],
  ]);
  return { nat, natTail: new Map([[CH.services, tail]]), filter, mangle: new Map([[CH.firewall, []]]) };
}

type Tables = { nat: ChainRules; filter: ChainRules; mangle: ChainRules };

/** The fixed chains with every Service's lines in them (kube-proxy's order: NodePorts jump last). */
export function assembleShared(contribs: Iterable<ServiceRules>, o: IptRenderOptions): Tables {
  const fixed = fixedRules(o);
  const out: Tables = { nat: fixed.nat, filter: fixed.filter, mangle: fixed.mangle };
  for (const c of contribs) {
    for (const [k, v] of c.shared) {
      const [t, chain] = k.split(':') as [keyof Tables, string];
      const into = out[t].get(chain)!;
      for (const r of v) into.push(r);
    }
  }
  for (const [k, v] of fixed.natTail) out.nat.get(k)!.push(...v);
  return out;
}

/** The fixed chains' names per table (always compared by a partial plan). */
export function fixedChainNames(o: IptRenderOptions): Record<keyof Tables, string[]> {
  const f = fixedRules(o);
  return { nat: [...f.nat.keys()], filter: [...f.filter.keys()], mangle: [...f.mangle.keys()] };
}

/** The whole desired state of one family as plain maps: fixed chains + every Service's own chains. */
export function assemble(contribs: Iterable<ServiceRules>, o: IptRenderOptions): Tables {
  const list = [...contribs];
  const out = assembleShared(list, o);
  for (const c of list) {
    for (const [k, v] of c.nat) out.nat.set(k, v);
    for (const [k, v] of c.filter) out.filter.set(k, v);
  }
  return out;
}
