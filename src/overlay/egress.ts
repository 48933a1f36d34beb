/**
 * Egress: masquerade pod traffic that leaves the cluster CIDR, and let pod traffic be
 * forwarded, in our own nftables table (flannel's FLANNEL-POSTRTG / FLANNEL-FWD rules, with
 * iptables' `--random-fully` as nft's `fully-random`). Pod-to-pod traffic is never NATed.
 * The whole table is rewritten in place in one transaction; no other table is touched.
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Cidr } from '../common/ip';

const MULTICAST_V4 = '224.0.0.0/4';
const MULTICAST_V6 = 'ff00::/8';

export function renderEgress(table: string, clusterCIDRs: readonly Cidr[], ownPodCIDRs: readonly Cidr[], masquerade: boolean): string {
  const post: string[] = [];
  const fwd: string[] = [];
  for (const c of clusterCIDRs) {
    const ip = c.family === 4 ? 'ip' : 'ip6';
    const net = c.toString();
    const mcast = c.family === 4 ? MULTICAST_V4 : MULTICAST_V6;
    const own = ownPodCIDRs.find((o) => o.family === c.family);
    // pod -> pod (any node): untouched
    post.push(`${ip} saddr ${net} ${ip} daddr ${net} return`);
    // pod -> multicast: untouched
    post.push(`${ip} saddr ${net} ${ip} daddr ${mcast} return`);
    // pod -> outside the cluster: masquerade
    post.push(`${ip} saddr ${net} masquerade fully-random`);
    // outside -> this node's pods: untouched; outside -> other nodes' pods: masquerade (the reply comes back here)
    if (own) post.push(`${ip} saddr != ${net} ${ip} daddr ${own.toString()} return`);
    post.push(`${ip} saddr != ${net} ${ip} daddr ${net} masquerade fully-random`);
    fwd.push(`${ip} saddr ${net} accept`, `${ip} daddr ${net} accept`);
  }
  // Rewritten in place, in one transaction: the table is kept (a restart or a periodic re-apply
  // neither deletes it nor moves it in the ruleset), its chains emptied and filled again.
  const lines = [`table inet ${table} {}`, `flush table inet ${table}`];
  if (!masquerade) lines.push(`add chain inet ${table} postrouting { type nat hook postrouting priority srcnat; policy accept; }`, `delete chain inet ${table} postrouting`);
  lines.push(`table inet ${table} {`);
  if (masquerade) {
    lines.push('  chain postrouting {', '    type nat hook postrouting priority srcnat; policy accept;', ...post.map((l) => `    ${l}`), '  }');
  }
  lines.push('  chain forward {', '    type filter hook forward priority filter; policy accept;', ...fwd.map((l) => `    ${l}`), '  }', '}');
  return lines.join('\n') + '\n';
}

export const IPT_POST = 'PODWIRE-OVL-POSTRTG';
export const IPT_FWD = 'PODWIRE-OVL-FWD';
const IPT_COMMENT = '-m comment --comment "podwire overlay"';

/**
 * The same rules for iptables (`--egress-mode iptables`), one family, as one
 * `iptables-restore --noflush`: our two chains are (re)declared, which flushes them, and
 * the jumps from POSTROUTING and FORWARD are added only when `saved` (iptables-save of
 * nat + filter) lacks them.
 */
export function renderIptablesEgress(cidrs: readonly Cidr[], ownPodCIDRs: readonly Cidr[], masquerade: boolean, saved: string): string {
  const nat: string[] = ['*nat', `:${IPT_POST} - [0:0]`];
  if (!new RegExp(`-A POSTROUTING .*-j ${IPT_POST}`).test(saved)) nat.push(`-A POSTROUTING ${IPT_COMMENT} -j ${IPT_POST}`);
  const filter: string[] = ['*filter', `:${IPT_FWD} - [0:0]`];
  if (!new RegExp(`-A FORWARD .*-j ${IPT_FWD}`).test(saved)) filter.push(`-A FORWARD ${IPT_COMMENT} -j ${IPT_FWD}`);
  for (const c of cidrs) {
    const net = c.toString();
    const own = ownPodCIDRs.find((o) => o.family === c.family);
    if (masquerade) {
      nat.push(`-A ${IPT_POST} -s ${net} -d ${net} -j RETURN`);
      nat.push(`-A ${IPT_POST} -s ${net} -d ${c.family === 4 ? MULTICAST_V4 : MULTICAST_V6} -j RETURN`);
      nat.push(`-A ${IPT_POST} -s ${net} -j MASQUERADE --random-fully`);
      if (own) nat.push(`-A ${IPT_POST} ! -s ${net} -d ${own.toString()} -j RETURN`);
      nat.push(`-A ${IPT_POST} ! -s ${net} -d ${net} -j MASQUERADE --random-fully`);
    }
    filter.push(`-A ${IPT_FWD} -s ${net} -j ACCEPT`, `-A ${IPT_FWD} -d ${net} -j ACCEPT`);
  }
  return [...nat, 'COMMIT', ...filter, 'COMMIT'].join('\n') + '\n';
}

/** Removes our iptables chains and the jumps to them (from `saved`, iptables-save of nat + filter). */
export function renderIptablesCleanup(saved: string): string | undefined {
  const out: string[] = [];
  for (const [table, chain, from] of [['nat', IPT_POST, 'POSTROUTING'], ['filter', IPT_FWD, 'FORWARD']] as const) {
    if (!saved.includes(`:${chain} `)) continue;
    out.push(`*${table}`);
    for (const line of saved.split('\n')) if (line.startsWith(`-A ${from} `) && line.includes(`-j ${chain}`)) out.push(line.replace(/^-A /, '-D '));
    out.push(`-F ${chain}`, `-X ${chain}`, 'COMMIT');
  }
  return out.length ? out.join('\n') + '\n' : undefined;
}

export function renderCleanup(table: string): string {
  return `table inet ${table} {}\ndelete table inet ${table}\n`;
}

/** flannel's subnet.env: the cluster network, this node's subnet (gateway address), MTU, masquerade. */
export function renderSubnetEnv(clusterCIDRs: readonly Cidr[], ownPodCIDRs: readonly Cidr[], mtu: number, masquerade: boolean): string {
  const v4 = ownPodCIDRs.find((c) => c.family === 4);
  const v6 = ownPodCIDRs.find((c) => c.family === 6);
  const n4 = clusterCIDRs.find((c) => c.family === 4);
  const n6 = clusterCIDRs.find((c) => c.family === 6);
  const lines: string[] = [];
  if (n4) lines.push(`FLANNEL_NETWORK=${n4.toString()}`);
  if (v4) lines.push(`FLANNEL_SUBNET=${v4.nth(1).toString()}/${v4.prefixLength}`);
  if (n6) lines.push(`FLANNEL_IPV6_NETWORK=${n6.toString()}`);
  if (v6) lines.push(`FLANNEL_IPV6_SUBNET=${v6.nth(1).toString()}/${v6.prefixLength}`);
  lines.push(`FLANNEL_MTU=${mtu}`, `FLANNEL_IPMASQ=${masquerade}`);
  return lines.join('\n') + '\n';
}

/** Write a file atomically (temp file in the same dir, then rename). */
export async function writeAtomic(file: string, content: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, content, { mode: 0o644 });
  await rename(tmp, file);
}
