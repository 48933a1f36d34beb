/**
 * One `inet` table read over NETLINK_NETFILTER, without libnftables: its sets and maps
 * (NFT_MSG_GETSET), chains (GETCHAIN), rules (GETRULE) and every non-skipped set's elements
 * (GETSETELEM, printed by nft-elements.ts as libnftables prints them).
 *
 * Why not libnftables for the small part: libnftables 1.0.6 fills its whole cache, elements
 * included, for any listing that shows rules (`list table`, `list chain`, even terse), and
 * decoding 120,000 elements is most of its cost. The dumps here are the same kernel work
 * without that decoding.
 *
 * Rules are not decoded: a rule's print (nft-rules.ts) is its expressions and user data (the
 * comment) as the kernel holds them. That print is only compared with an earlier print of the
 * same kind (the proxy's "was this rule changed in place" check), never with rendered text.
 */
import { KernelError } from '../common/errors';
import { E } from './errno';
import { NLM_F_DUMP, NLM_F_REQUEST } from './rtnetlink/constants';
import { attr, attrMap, cstr, frame, parseHeader, payloadOf, readCString } from './rtnetlink/nlmsg';
import type { NetlinkTransport } from './netlink/transport';
import { decodeSetElems, encodeGetSetElems, type SetTypes } from './nft-elements';
import { decodeRules } from './nft-rules';
import type { NftTableContent } from './types';

const NFNL_SUBSYS_NFTABLES = 10;
const NFPROTO_INET = 1;
const NLM_F_DUMP_INTR = 0x10;
const MSG = { GETTABLE: 1, NEWCHAIN: 3, GETCHAIN: 4, NEWRULE: 6, GETRULE: 7, NEWSET: 9, GETSET: 10 } as const;
const NFTA_TABLE = 1; // NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, NFTA_SET_TABLE
const NFTA_TABLE_NAME = 1;
const NFTA_CHAIN_NAME = 3;
const NFTA_SET_NAME = 2;
const NFTA_SET_FLAGS = 3;
const NFTA_SET_KEY_TYPE = 4;
const NFTA_SET_DATA_TYPE = 6;
const NFT_SET_ANONYMOUS = 0x1;
const NFT_SET_INTERVAL = 0x4;
const NFT_SET_MAP = 0x8;
const NFT_SET_OBJECT = 0x40;
const NFT_DATA_VERDICT = 0xffffff00;
/** nft's datatype ids (its `enum datatypes`); a concatenation packs them 6 bits each, the first component highest. */
const TYPE_NAMES: Record<number, string> = { 1: 'verdict', 4: 'integer', 7: 'ipv4_addr', 8: 'ipv6_addr', 12: 'inet_proto', 13: 'inet_service' };
const TYPE_BITS = 6;

/** A set's key or data type id as type names (unknown ids as `type-<id>`, which nft-elements refuses). */
export function typeNames(id: number): string[] {
  if (id === NFT_DATA_VERDICT) return ['verdict'];
  const out: string[] = [];
  for (let v = id >>> 0; v !== 0; v = Math.floor(v / (1 << TYPE_BITS))) {
    const sub = v & ((1 << TYPE_BITS) - 1);
    out.unshift(TYPE_NAMES[sub] ?? `type-${sub}`);
  }
  return out.length > 0 ? out : [`type-${id}`];
}

function dumpRequest(msg: number, table: string): Buffer {
  return frame((NFNL_SUBSYS_NFTABLES << 8) | msg, NLM_F_REQUEST | NLM_F_DUMP, [Buffer.from([NFPROTO_INET, 0, 0, 0]), attr(NFTA_TABLE, cstr(table))]);
}

/** The attributes of each reply of type `msg` that belongs to `table`. Throws on an interrupted dump. */
function* objectsOf(replies: readonly Buffer[], msg: number, table: string): Generator<Map<number, Buffer>> {
  for (const m of replies) {
    const h = parseHeader(m);
    if (h.type !== ((NFNL_SUBSYS_NFTABLES << 8) | msg)) continue;
    if ((h.flags & NLM_F_DUMP_INTR) !== 0) throw new KernelError('nftables dump', 'the ruleset changed during the dump (NLM_F_DUMP_INTR)');
    const a = attrMap(payloadOf(m).subarray(4));
    const t = a.get(NFTA_TABLE);
    if (t && readCString(t) === table) yield a;
  }
}

export interface SetDef {
  name: string;
  map: boolean;
  types: SetTypes;
}

/** The named (not anonymous) sets and maps of `table` in a GETSET dump. */
export function decodeSets(replies: readonly Buffer[], table: string): SetDef[] {
  const out: SetDef[] = [];
  for (const a of objectsOf(replies, MSG.NEWSET, table)) {
    const name = a.get(NFTA_SET_NAME);
    if (!name) continue;
    const flags = a.get(NFTA_SET_FLAGS)?.readUInt32BE(0) ?? 0;
    if ((flags & NFT_SET_ANONYMOUS) !== 0) continue; // a rule's `{ ... }`: part of that rule
    const key = typeNames(a.get(NFTA_SET_KEY_TYPE)?.readUInt32BE(0) ?? 0);
    const map = (flags & NFT_SET_MAP) !== 0;
    const types: SetTypes = { key, interval: (flags & NFT_SET_INTERVAL) !== 0 };
    // An object map (`: counter`) has no data type nft-elements knows: unreadable.
    if (map || (flags & NFT_SET_OBJECT) !== 0) types.data = (flags & NFT_SET_OBJECT) !== 0 ? ['object'] : typeNames(a.get(NFTA_SET_DATA_TYPE)?.readUInt32BE(0) ?? 0);
    out.push({ name: readCString(name), map: map || (flags & NFT_SET_OBJECT) !== 0, types });
  }
  return out;
}

/** The chain names of `table` in a GETCHAIN dump. */
export function decodeChains(replies: readonly Buffer[], table: string): string[] {
  const out: string[] = [];
  for (const a of objectsOf(replies, MSG.NEWCHAIN, table)) {
    const name = a.get(NFTA_CHAIN_NAME);
    if (name) out.push(readCString(name));
  }
  return out;
}


/**
 * Reads table `inet <table>` on `t` (a NETLINK_NETFILTER socket in the netns; `where` names it in errors): rejects (ENOENT) when it does not exist, or when a dump failed or was
 * interrupted. `skipElements(name)`: sets whose elements are not read (the kernel's own).
 * The dumps are separate, so a commit in between can show a mix: callers read the nftables
 * generation before, so such a commit makes them read again.
 */
export async function readNftTable(t: NetlinkTransport, where: string, table: string, skipElements: (name: string) => boolean): Promise<NftTableContent> {
  // A dump of a missing table's sets is just empty: ask for the table itself first (ENOENT).
  await t.request(frame((NFNL_SUBSYS_NFTABLES << 8) | MSG.GETTABLE, NLM_F_REQUEST, [Buffer.from([NFPROTO_INET, 0, 0, 0]), attr(NFTA_TABLE_NAME, cstr(table))]));
  const sets = decodeSets(await t.request(dumpRequest(MSG.GETSET, table)), table);
  const chains = decodeChains(await t.request(dumpRequest(MSG.GETCHAIN, table)), table);
  const { rules, handles } = decodeRules(await t.request(dumpRequest(MSG.GETRULE, table)));
  const out: NftTableContent = { objects: new Map(), elements: new Map(), unknown: [], maps: new Set(), rules, handles };
  for (const s of sets) {
    out.objects.set(s.name, 'set');
    if (s.map) out.maps.add(s.name);
  }
  for (const c of chains) out.objects.set(c, 'chain');
  for (const s of sets) {
    if (skipElements(s.name)) continue;
    const replies = await t.request(encodeGetSetElems(table, s.name)).catch((err: unknown) => {
      // Only GETTABLE's ENOENT means "no table": a set deleted since the GETSET dump is a
      // torn read (the caller reads again or lists), not a missing table.
      if ((err as { errno?: number }).errno === E.ENOENT) throw new KernelError(`nftables set ${s.name}${where}`, 'the set went away during the read');
      throw err;
    });
    const els = decodeSetElems(replies, s.types);
    if (els) out.elements.set(s.name, els);
    else out.unknown.push(s.name);
  }
  return out;
}
