/**
 * kube-dns VIP steering, as NodeLocal DNSCache does it: the node-local server also owns
 * the kube-dns Service ClusterIP (the address goes on `dns.bindInterface`, and the server
 * binds it), and port 53 to and from these addresses is NOTRACK at raw priority in our own
 * nftables table. Untracked packets skip NAT, so the Service proxy's DNAT for the VIP does
 * not apply to port 53: the query is delivered to the local socket. No conntrack entry is
 * ever created for DNS, so the UDP conntrack insertion race (two queries of one socket,
 * A and AAAA, racing to create the same entry; kubernetes #56903) cannot happen, and a
 * full conntrack table cannot drop DNS.
 *
 *   table inet podwire-dns {
 *     set vips4 { type ipv4_addr }  set vips6 { type ipv6_addr }
 *     chain prerouting { type filter hook prerouting priority raw; ... dport 53 notrack }
 *     chain output     { type filter hook output priority raw; ... sport 53 / dport 53 notrack }
 *   }
 *
 * Only this table is touched. The rules are fixed; what changes are the set elements,
 * applied as element-level diffs in one transaction. A table whose rules are not ours
 * (an older version) is replaced in one transaction (delete + create), never flushed.
 */
import { isIPv4 } from 'node:net';
import type { NftRunner } from '../kernel/types';

export const STEER_TABLE = 'podwire-dns';

const RULES = {
  prerouting: [
    'ip daddr @vips4 udp dport 53 notrack',
    'ip daddr @vips4 tcp dport 53 notrack',
    'ip6 daddr @vips6 udp dport 53 notrack',
    'ip6 daddr @vips6 tcp dport 53 notrack',
  ],
  // Answers back to the pods, and the node's own queries to the addresses.
  output: [
    'ip saddr @vips4 udp sport 53 notrack',
    'ip saddr @vips4 tcp sport 53 notrack',
    'ip daddr @vips4 udp dport 53 notrack',
    'ip daddr @vips4 tcp dport 53 notrack',
    'ip6 saddr @vips6 udp sport 53 notrack',
    'ip6 saddr @vips6 tcp sport 53 notrack',
    'ip6 daddr @vips6 udp dport 53 notrack',
    'ip6 daddr @vips6 tcp dport 53 notrack',
  ],
};

export interface SteerState {
  v4: string[];
  v6: string[];
}

function elems(ips: readonly string[]): string {
  return ips.join(', ');
}

/** The whole table, created in one transaction (replacing `replace` when it exists already). */
export function renderSteerTable(want: SteerState, replace = false): string {
  const t = `inet ${STEER_TABLE}`;
  const lines: string[] = [];
  if (replace) lines.push(`add table ${t}`, `delete table ${t}`);
  lines.push(
    `add table ${t}`,
    `add set ${t} vips4 { type ipv4_addr; }`,
    `add set ${t} vips6 { type ipv6_addr; }`,
    `add chain ${t} prerouting { type filter hook prerouting priority raw; policy accept; }`,
    `add chain ${t} output { type filter hook output priority raw; policy accept; }`,
  );
  for (const r of RULES.prerouting) lines.push(`add rule ${t} prerouting ${r}`);
  for (const r of RULES.output) lines.push(`add rule ${t} output ${r}`);
  if (want.v4.length) lines.push(`add element ${t} vips4 { ${elems(want.v4)} }`);
  if (want.v6.length) lines.push(`add element ${t} vips6 { ${elems(want.v6)} }`);
  return `${lines.join('\n')}\n`;
}

/** Element-level changes from `have` to `want` ('' when nothing changes). */
export function renderSteerDiff(have: SteerState, want: SteerState): string {
  const t = `inet ${STEER_TABLE}`;
  const lines: string[] = [];
  for (const [set, h, w] of [['vips4', have.v4, want.v4], ['vips6', have.v6, want.v6]] as const) {
    const add = w.filter((ip) => !h.includes(ip));
    const del = h.filter((ip) => !w.includes(ip));
    if (del.length) lines.push(`delete element ${t} ${set} { ${elems(del)} }`);
    if (add.length) lines.push(`add element ${t} ${set} { ${elems(add)} }`);
  }
  return lines.length ? `${lines.join('\n')}\n` : '';
}

export function splitFamilies(ips: Iterable<string>): SteerState {
  const v4 = new Set<string>();
  const v6 = new Set<string>();
  for (const ip of ips) (isIPv4(ip) ? v4 : v6).add(ip);
  return { v4: [...v4].sort(), v6: [...v6].sort() };
}

interface NftJson {
  nftables?: Record<string, { name?: string; elem?: unknown[]; expr?: unknown[] } | undefined>[];
}

/** What our table holds now: its elements, whether its rules are ours; undefined when there is no table. */
export async function readSteer(nft: NftRunner): Promise<{ state: SteerState; rulesOk: boolean } | undefined> {
  let json: NftJson;
  try {
    json = (await nft.listJson(`table inet ${STEER_TABLE}`)) as NftJson;
  } catch {
    return undefined;
  }
  const items = json.nftables ?? [];
  const state: SteerState = { v4: [], v6: [] };
  let pre = 0;
  let out = 0;
  let sets = 0;
  for (const it of items) {
    const set = it.set;
    if (set && (set.name === 'vips4' || set.name === 'vips6')) {
      sets++;
      for (const e of set.elem ?? []) if (typeof e === 'string') (set.name === 'vips4' ? state.v4 : state.v6).push(e);
    }
    const rule = it.rule as { chain?: string } | undefined;
    if (rule?.chain === 'prerouting') pre++;
    if (rule?.chain === 'output') out++;
  }
  state.v4.sort();
  state.v6.sort();
  return { state, rulesOk: sets === 2 && pre === RULES.prerouting.length && out === RULES.output.length };
}

/** Make the table steer exactly `ips` (one transaction; nothing when already so). */
export async function applySteer(nft: NftRunner, ips: Iterable<string>): Promise<void> {
  const want = splitFamilies(ips);
  const have = await readSteer(nft);
  if (!have) return nft.apply(renderSteerTable(want));
  if (!have.rulesOk) return nft.apply(renderSteerTable(want, true));
  const diff = renderSteerDiff(have.state, want);
  if (diff) await nft.apply(diff);
}

/** Remove our table (cleanup); the addresses it steered are returned so they can go too. */
export async function removeSteer(nft: NftRunner): Promise<string[]> {
  const have = await readSteer(nft);
  if (!have) return [];
  await nft.apply(`add table inet ${STEER_TABLE}\ndelete table inet ${STEER_TABLE}\n`);
  return [...have.state.v4, ...have.state.v6];
}
