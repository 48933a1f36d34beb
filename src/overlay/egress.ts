/**
 * Egress: masquerade pod traffic that leaves the cluster CIDR, and let pod traffic be
 * forwarded, in our own nftables table (flannel's FLANNEL-POSTRTG / FLANNEL-FWD rules, with
 * iptables' `--random-fully` as nft's `fully-random`). Pod-to-pod traffic is never NATed.
 * The whole table is replaced in one transaction; no other table is touched.
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
  const lines = [`table inet ${table} {}`, `delete table inet ${table}`, `table inet ${table} {`];
  if (masquerade) {
    lines.push('  chain postrouting {', '    type nat hook postrouting priority srcnat; policy accept;', ...post.map((l) => `    ${l}`), '  }');
  }
  lines.push('  chain forward {', '    type filter hook forward priority filter; policy accept;', ...fwd.map((l) => `    ${l}`), '  }', '}');
  return lines.join('\n') + '\n';
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
