/**
 * The small fixed set of iptables rules kube-proxy's ipvs mode needs, matching on the
 * ipsets (render.ts). iptables, not nftables: nftables cannot match ipsets (only
 * iptables' xt_set can), and the sets are what keeps these rules fixed in number.
 *
 * Applied with one `iptables-restore --noflush`: every chain of ours is declared, which
 * flushes and refills it atomically; the jumps from the built-in chains are added only
 * when missing (they are the only rules outside our chains).
 */
import { SETS } from './render';

export const CHAINS = {
  services: 'PODWIRE-IPVS-SERVICES',
  nodePort: 'PODWIRE-IPVS-NODE-PORT',
  markMasq: 'PODWIRE-IPVS-MARK-MASQ',
  postrouting: 'PODWIRE-IPVS-POSTROUTING',
  input: 'PODWIRE-IPVS-INPUT',
  forward: 'PODWIRE-IPVS-FORWARD',
} as const;

/** Built-in chain → our chain, per table. */
export const JUMPS: { table: 'nat' | 'filter'; from: string; to: string }[] = [
  { table: 'nat', from: 'PREROUTING', to: CHAINS.services },
  { table: 'nat', from: 'OUTPUT', to: CHAINS.services },
  { table: 'nat', from: 'POSTROUTING', to: CHAINS.postrouting },
  { table: 'filter', from: 'INPUT', to: CHAINS.input },
  { table: 'filter', from: 'FORWARD', to: CHAINS.forward },
];

export interface RuleOptions {
  clusterCIDRs: readonly string[];
  masqueradeAll: boolean;
  masqMark: number;
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** The whole text for `iptables-restore --noflush` (IPv4). `missingJumps` from {@link missingJumps}. */
export function renderRules(o: RuleOptions, missingJumps: readonly { table: string; from: string; to: string }[] = JUMPS): string {
  const m = hex(o.masqMark);
  const v4 = o.clusterCIDRs.filter((c) => !c.includes(':'));
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
  if (o.masqueradeAll || v4.length === 0) nat.push(`-A ${CHAINS.services} -m set --match-set ${SETS.clusterIP} dst,dst ${comment('ClusterIP traffic to masquerade')} -j ${CHAINS.markMasq}`);
  else for (const c of v4) nat.push(`-A ${CHAINS.services} ! -s ${c} -m set --match-set ${SETS.clusterIP} dst,dst ${comment('off-cluster traffic to a ClusterIP')} -j ${CHAINS.markMasq}`);
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
  const filter: string[] = [
    '*filter',
    ...[CHAINS.input, CHAINS.forward].map((c) => `:${c} - [0:0]`),
    `-A ${CHAINS.input} -p tcp -m set --match-set ${SETS.noEndpoint} dst,dst ${comment('Service has no endpoints')} -j REJECT --reject-with tcp-reset`,
    `-A ${CHAINS.input} -m set --match-set ${SETS.noEndpoint} dst,dst ${comment('Service has no endpoints')} -j REJECT --reject-with icmp-port-unreachable`,
    `-A ${CHAINS.forward} -m mark --mark ${m}/${m} ${comment('NodePort / masqueraded Service traffic')} -j ACCEPT`,
    `-A ${CHAINS.forward} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
  ];
  for (const j of missingJumps) (j.table === 'nat' ? nat : filter).push(`-I ${j.from} 1 -j ${j.to}`);
  return [...nat, 'COMMIT', ...filter, 'COMMIT', ''].join('\n');
}

/** The jumps an `iptables-save` of nat + filter does not show yet. */
export function missingJumps(savedNat: string, savedFilter: string): typeof JUMPS {
  return JUMPS.filter((j) => !new RegExp(`^-A ${j.from} (.* )?-j ${j.to}\\b`, 'm').test(j.table === 'nat' ? savedNat : savedFilter));
}

/** Removal (cleanup): the jumps and our chains. Built per what `iptables-save` shows. */
export function renderCleanup(savedNat: string, savedFilter: string): string {
  const out: string[] = [];
  for (const [table, saved] of [
    ['nat', savedNat],
    ['filter', savedFilter],
  ] as const) {
    const ours = Object.values(CHAINS).filter((c) => new RegExp(`^:${c} `, 'm').test(saved));
    const jumps = saved.split('\n').filter((l) => /^-A (PREROUTING|OUTPUT|POSTROUTING|INPUT|FORWARD) /.test(l) && ours.some((c) => l.includes(`-j ${c}`)));
    if (ours.length === 0 && jumps.length === 0) continue;
    out.push(`*${table}`, ...ours.map((c) => `:${c} - [0:0]`), ...jumps.map((l) => l.replace(/^-A /, '-D ')), ...ours.map((c) => `-X ${c}`), 'COMMIT');
  }
  return out.length ? `${out.join('\n')}\n` : '';
}
