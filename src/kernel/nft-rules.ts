/**
 * The rules of one nftables table as the kernel holds them (an NFT_MSG_GETRULE dump over
 * NETLINK_NETFILTER, filtered to the table), one print per rule: its expressions and its
 * comment as netlink bytes, without the handle.
 *
 * Why not libnftables: any libnftables listing, even of one chain or with terse output,
 * fetches the whole table's cache, elements included: about 5 s and a few hundred MB at
 * 10,000 Services. The proxy only needs to know whether a chain's rules are still the ones
 * it saw last time, and the kernel's own bytes answer that in milliseconds. Read through
 * NftNetlink (nft-netlink.ts).
 */
import { NLM_F_DUMP, NLM_F_REQUEST } from './rtnetlink/constants';
import { attr, frame, parseAttrs, parseHeader, payloadOf, readCString } from './rtnetlink/nlmsg';

const NFNL_SUBSYS_NFTABLES = 10;
const NLM_F_DUMP_INTR = 0x10;
const NFT_MSG_NEWRULE = 6;
const NFT_MSG_GETRULE = 7;
const NFTA_RULE_TABLE = 1;
const NFTA_RULE_CHAIN = 2;
const NFTA_RULE_HANDLE = 3;
const NFTA_RULE_EXPRESSIONS = 4;
const NFTA_RULE_USERDATA = 7;
const NFTA_LIST_ELEM = 1;
const NFTA_EXPR_NAME = 1;
const NFPROTO: Readonly<Record<string, number>> = { inet: 1, ip: 2, arp: 3, netdev: 5, bridge: 7, ip6: 10 };
/** Expressions whose data the packet path changes: only their name is part of the print. */
const STATEFUL = new Set(['counter', 'quota', 'limit', 'last']);

/** A GETRULE dump of `family table`. */
export function encodeGetRules(family: string, table: string): Buffer {
  const f = NFPROTO[family];
  if (f === undefined) throw new RangeError(`unknown nftables family ${family}`);
  return frame((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE, NLM_F_REQUEST | NLM_F_DUMP, [Buffer.from([f, 0, 0, 0]), attr(NFTA_RULE_TABLE, Buffer.from(`${table}\0`))]);
}

/** The expressions' bytes, with the data of stateful ones (counters) left out. */
function expressionsPrint(exprs: Buffer): string {
  const parts: string[] = [];
  for (const e of parseAttrs(exprs)) {
    if (e.type !== NFTA_LIST_ELEM) continue;
    const name = parseAttrs(e.data).find((a) => a.type === NFTA_EXPR_NAME);
    const n = name ? readCString(name.data) : '';
    parts.push(STATEFUL.has(n) ? n : e.data.toString('base64'));
  }
  return parts.join(',');
}

/** Per chain, in the kernel's order, each rule's print and handle, from the dump's NEWRULE messages. */
export function decodeRules(replies: readonly Buffer[]): { rules: Map<string, string[]>; handles: Map<string, number[]> } {
  const rules = new Map<string, string[]>();
  const handles = new Map<string, number[]>();
  for (const m of replies) {
    const hdr = parseHeader(m);
    if (hdr.type !== ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE)) continue;
    if ((hdr.flags & NLM_F_DUMP_INTR) !== 0) throw new Error('the rule dump was interrupted (NLM_F_DUMP_INTR): the table changed during it');
    let chain: string | undefined;
    let exprs = '';
    let user = '';
    let handle = 0;
    for (const a of parseAttrs(payloadOf(m).subarray(4))) {
      if (a.type === NFTA_RULE_CHAIN) chain = readCString(a.data);
      else if (a.type === NFTA_RULE_EXPRESSIONS) exprs = expressionsPrint(a.data);
      else if (a.type === NFTA_RULE_USERDATA) user = a.data.toString('base64');
      else if (a.type === NFTA_RULE_HANDLE && a.data.length >= 8) handle = Number(a.data.readBigUInt64BE(0));
    }
    if (chain === undefined) continue;
    let list = rules.get(chain);
    if (!list) rules.set(chain, (list = []));
    list.push(`${exprs}|${user}`);
    let h = handles.get(chain);
    if (!h) handles.set(chain, (h = []));
    h.push(handle);
  }
  return { rules, handles };
}
