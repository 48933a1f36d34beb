/**
 * The small fixed set of iptables rules kube-proxy's ipvs mode needs, matching on the
 * ipsets (render.ts). iptables, not nftables: nftables cannot match ipsets (only
 * iptables' xt_set can), and the sets are what keeps these rules fixed in number.
 *
 * Applied with one `iptables-restore --noflush`: every chain of ours is declared, which
 * flushes and refills it atomically; the jumps from the built-in chains are added only
 * when missing (they are the only rules outside our chains).
 */
import { setsOf, type IpFamily } from './render';

export const CHAINS = {
  services: 'PODWIRE-IPVS-SERVICES',
  nodePort: 'PODWIRE-IPVS-NODE-PORT',
  markMasq: 'PODWIRE-IPVS-MARK-MASQ',
  postrouting: 'PODWIRE-IPVS-POSTROUTING',
  input: 'PODWIRE-IPVS-INPUT',
  forward: 'PODWIRE-IPVS-FORWARD',
  /** filter: loadBalancerSourceRanges for traffic arriving at an LB IP (kube-proxy's KUBE-SOURCE-RANGES-FIREWALL). */
  sourceRanges: 'PODWIRE-IPVS-SOURCE-RANGES',
  /** filter: new connections to a VIP on a port that is no Service are rejected (kube-proxy's KUBE-IPVS-FILTER). */
  vipFilter: 'PODWIRE-IPVS-FILTER',
  /** mangle: loadBalancerSourceRanges for connections from the node itself (kube-proxy's KUBE-IPVS-OUT-FILTER). */
  output: 'PODWIRE-IPVS-OUTPUT',
} as const;

/** Built-in chain → our chain, per table. */
export const JUMPS: { table: 'nat' | 'filter' | 'mangle'; from: string; to: string }[] = [
  { table: 'nat', from: 'PREROUTING', to: CHAINS.services },
  { table: 'nat', from: 'OUTPUT', to: CHAINS.services },
  { table: 'nat', from: 'POSTROUTING', to: CHAINS.postrouting },
  { table: 'filter', from: 'INPUT', to: CHAINS.input },
  { table: 'filter', from: 'FORWARD', to: CHAINS.forward },
  { table: 'mangle', from: 'OUTPUT', to: CHAINS.output },
];

/** Which table each chain of ours is in. */
const TABLE_OF: Record<string, 'nat' | 'filter' | 'mangle'> = {
  [CHAINS.services]: 'nat',
  [CHAINS.nodePort]: 'nat',
  [CHAINS.markMasq]: 'nat',
  [CHAINS.postrouting]: 'nat',
  [CHAINS.input]: 'filter',
  [CHAINS.forward]: 'filter',
  [CHAINS.sourceRanges]: 'filter',
  [CHAINS.vipFilter]: 'filter',
  [CHAINS.output]: 'mangle',
};

export interface RuleOptions {
  clusterCIDRs: readonly string[];
  masqueradeAll: boolean;
  masqMark: number;
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/**
 * The whole text for `iptables-restore --noflush` (family 4) or `ip6tables-restore --noflush`
 * (family 6: the same chains and rules on the IPv6 sets, the family's cluster CIDRs, ICMPv6
 * rejects). `missingJumps` from {@link missingJumps}, of that family's tables.
 */
export function renderRules(o: RuleOptions, missingJumps: readonly { table: string; from: string; to: string }[] = JUMPS, family: IpFamily = 4): string {
  const SETS = setsOf(family);
  const m = hex(o.masqMark);
  const cidrs = o.clusterCIDRs.filter((c) => c.includes(':') === (family === 6));
  const unreachable = family === 4 ? 'icmp-port-unreachable' : 'icmp6-port-unreachable';
  const comment = (c: string): string => `-m comment --comment "${c}"`;
  const nat: string[] = [
    '*nat',
    ...[CHAINS.services, CHAINS.nodePort, CHAINS.markMasq, CHAINS.postrouting].map((c) => `:${c} - [0:0]`),
    `-A ${CHAINS.markMasq} -j MARK --or-mark ${m}`,
    `-A ${CHAINS.postrouting} -m set --match-set ${SETS.loopBack} dst,dst,src ${comment('hairpin: an endpoint reaching itself through its Service')} -j MASQUERADE`,
    `-A ${CHAINS.postrouting} -m mark ! --mark ${m}/${m} -j RETURN`,
    `-A ${CHAINS.postrouting} -j MARK --xor-mark ${m}`,
    `-A ${CHAINS.postrouting} ${comment('podwire service traffic requiring SNAT')} -j MASQUERADE --random-fully`,
  ];
  if (o.masqueradeAll || cidrs.length === 0) nat.push(`-A ${CHAINS.services} -m set --match-set ${SETS.clusterIP} dst,dst ${comment('ClusterIP traffic to masquerade')} -j ${CHAINS.markMasq}`);
  else for (const c of cidrs) nat.push(`-A ${CHAINS.services} ! -s ${c} -m set --match-set ${SETS.clusterIP} dst,dst ${comment('off-cluster traffic to a ClusterIP')} -j ${CHAINS.markMasq}`);
  nat.push(
    `-A ${CHAINS.services} -m set --match-set ${SETS.externalIP} dst,dst -m set ! --match-set ${SETS.externalIPLocal} dst,dst ${comment('external IP, externalTrafficPolicy Cluster')} -j ${CHAINS.markMasq}`,
    `-A ${CHAINS.services} -m set --match-set ${SETS.loadBalancer} dst,dst -m set ! --match-set ${SETS.loadBalancerLocal} dst,dst ${comment('LB ingress IP, externalTrafficPolicy Cluster')} -j ${CHAINS.markMasq}`,
    `-A ${CHAINS.services} -m addrtype --dst-type LOCAL -j ${CHAINS.nodePort}`,
  );
  // The SCTP sets are hash:ip,port (render.ts SETS): matched on destination address and port.
  for (const [p, set, local, dims] of [
    ['tcp', SETS.nodePortTCP, SETS.nodePortLocalTCP, 'dst'],
    ['udp', SETS.nodePortUDP, SETS.nodePortLocalUDP, 'dst'],
    ['sctp', SETS.nodePortSCTP, SETS.nodePortLocalSCTP, 'dst,dst'],
  ] as const) {
    nat.push(`-A ${CHAINS.nodePort} -p ${p} -m set --match-set ${local} ${dims} ${comment('NodePort, externalTrafficPolicy Local: keep the client address')} -j RETURN`);
    nat.push(`-A ${CHAINS.nodePort} -p ${p} -m set --match-set ${set} ${dims} -j ${CHAINS.markMasq}`);
  }
  // filter INPUT runs before IPVS's LOCAL_IN hook: what it drops or rejects never reaches IPVS.
  // Order: the source ranges first (a refused client learns nothing, not even "no endpoints"),
  // then the no-endpoint REJECT, then the VIP filter.
  const filter: string[] = [
    '*filter',
    ...[CHAINS.input, CHAINS.forward, CHAINS.sourceRanges, CHAINS.vipFilter].map((c) => `:${c} - [0:0]`),
    `-A ${CHAINS.input} -m set --match-set ${SETS.loadBalancerFW} dst,dst ${comment('LB IP with loadBalancerSourceRanges')} -j ${CHAINS.sourceRanges}`,
    `-A ${CHAINS.input} -p tcp -m set --match-set ${SETS.noEndpoint} dst,dst ${comment('Service has no endpoints')} -j REJECT --reject-with tcp-reset`,
    `-A ${CHAINS.input} -m set --match-set ${SETS.noEndpoint} dst,dst ${comment('Service has no endpoints')} -j REJECT --reject-with ${unreachable}`,
    `-A ${CHAINS.input} -m set --match-set ${SETS.ipvsIPs} dst -j ${CHAINS.vipFilter}`,
    `-A ${CHAINS.sourceRanges} -m set --match-set ${SETS.loadBalancerSourceCIDR} dst,dst,src -j RETURN`,
    `-A ${CHAINS.sourceRanges} -m set --match-set ${SETS.loadBalancerSourceIP} dst,dst,src -j RETURN`,
    `-A ${CHAINS.sourceRanges} ${comment('source not in loadBalancerSourceRanges')} -j DROP`,
    // A VIP answers only on its Services' ports: node-local listeners (sshd, the kubelet, ...)
    // must not be reachable through a ClusterIP, external or LB IP.
    ...[SETS.loadBalancer, SETS.clusterIP, SETS.externalIP].map((set) => `-A ${CHAINS.vipFilter} -m set --match-set ${set} dst,dst -j RETURN`),
    `-A ${CHAINS.vipFilter} -m set --match-set ${SETS.healthCheckNodePort} dst -j RETURN`,
    `-A ${CHAINS.vipFilter} -m conntrack --ctstate NEW ${comment('a VIP on a port that is no Service')} -j REJECT --reject-with ${unreachable}`,
    `-A ${CHAINS.forward} -m mark --mark ${m}/${m} ${comment('NodePort / masqueraded Service traffic')} -j ACCEPT`,
    `-A ${CHAINS.forward} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
  ];
  // From the node itself, IPVS's LOCAL_OUT hook (priority NAT_DST+2) rewrites the destination to
  // an endpoint before filter OUTPUT or INPUT see it; mangle OUTPUT (-150) still sees the LB IP.
  // (kube-proxy matches the rewritten packet with xt_ipvs in filter OUTPUT instead.)
  const mangle: string[] = [
    '*mangle',
    `:${CHAINS.output} - [0:0]`,
    `-A ${CHAINS.output} -m set --match-set ${SETS.loadBalancerFW} dst,dst -m set ! --match-set ${SETS.loadBalancerSourceCIDR} dst,dst,src -m set ! --match-set ${SETS.loadBalancerSourceIP} dst,dst,src ${comment('the node is not in loadBalancerSourceRanges')} -j DROP`,
  ];
  for (const j of missingJumps) (j.table === 'nat' ? nat : j.table === 'filter' ? filter : mangle).push(`-I ${j.from} 1 -j ${j.to}`);
  return [...nat, 'COMMIT', ...filter, 'COMMIT', ...mangle, 'COMMIT', ''].join('\n');
}

/** The jumps an `iptables-save` of nat + filter (+ mangle) does not show yet. */
export function missingJumps(savedNat: string, savedFilter: string, savedMangle = ''): typeof JUMPS {
  const saved = { nat: savedNat, filter: savedFilter, mangle: savedMangle };
  return JUMPS.filter((j) => !new RegExp(`^-A ${j.from} (.* )?-j ${j.to}\\b`, 'm').test(saved[j.table]));
}

/** Removal (cleanup, a switch to another mode): the jumps and our chains. Built per what `iptables-save` shows. */
export function renderCleanup(savedNat: string, savedFilter: string, savedMangle = ''): string {
  const out: string[] = [];
  for (const [table, saved] of [
    ['nat', savedNat],
    ['filter', savedFilter],
    ['mangle', savedMangle],
  ] as const) {
    const ours = Object.values(CHAINS).filter((c) => TABLE_OF[c] === table && new RegExp(`^:${c} `, 'm').test(saved));
    const jumps = saved.split('\n').filter((l) => /^-A (PREROUTING|OUTPUT|POSTROUTING|INPUT|FORWARD) /.test(l) && ours.some((c) => new RegExp(`-j ${c}(\\s|$)`).test(l)));
    if (ours.length === 0 && jumps.length === 0) continue;
    out.push(`*${table}`, ...ours.map((c) => `:${c} - [0:0]`), ...jumps.map((l) => l.replace(/^-A /, '-D ')), ...ours.map((c) => `-X ${c}`), 'COMMIT');
  }
  return out.length ? `${out.join('\n')}\n` : '';
}
