/**
 * The elements of one nftables set or map, read over NETLINK_NETFILTER (an
 * NFT_MSG_GETSETELEM dump) and printed as libnftables prints them in its JSON listing
 * (as src/proxy/adopt.ts `fmt` turns that JSON into strings): `10.96.0.1 . tcp . 443 . 0`,
 * `10.244.1.2 . 8080`, `goto lb4c-tcp-2`, `198.18.0.0/16`.
 *
 * Why: listing a table through libnftables formats every element (120,000 at 10,000
 * Services, seconds of CPU); the kernel's dump of the same elements is a few milliseconds
 * and decoding it here is cheap. The set's key and data types come from its definition
 * (nft-table.ts reads it over netlink too); this module only knows the handful of types the
 * proxy's renderer uses. Anything else (an unknown type, a range that is not a prefix,
 * an element with a timeout, comment, counter or the catch-all flag, a non-concatenated
 * interval set) makes the whole set unreadable (`undefined`): never a guess, since the
 * caller diffs these strings against what it rendered.
 *
 * Register layout (the kernel's): each component of a concatenation occupies a multiple
 * of 4 bytes (inet_proto 1 byte + 3 padding, inet_service 2 bytes big endian + 2 padding,
 * ipv4_addr 4, ipv6_addr 16, integer a 4-byte host-endian u32 as numgen writes it).
 */
import { KernelError } from '../common/errors';
import { formatIPv6, type Ipv6FormatOptions } from '../common/ip';
import { NLM_F_DUMP, NLM_F_REQUEST } from './rtnetlink/constants';
import { NLA_TYPE_MASK } from './rtnetlink/constants';
import { HOST_LE, attr, attrMap, cstr, frame, parseHeader, payloadOf } from './rtnetlink/nlmsg';

const NFNL_SUBSYS_NFTABLES = 10;
const NFT_MSG_NEWSETELEM = 12;
const NFT_MSG_GETSETELEM = 13;
const NFPROTO_INET = 1;
const NLM_F_DUMP_INTR = 0x10;

// Host-order readers straight on the Buffer (nlmsg.ts's copy a view per call; this runs per element).
const readU16 = HOST_LE ? (b: Buffer, o: number): number => b.readUInt16LE(o) : (b: Buffer, o: number): number => b.readUInt16BE(o);
const readU32 = HOST_LE ? (b: Buffer, o: number): number => b.readUInt32LE(o) : (b: Buffer, o: number): number => b.readUInt32BE(o);

const NFTA_SET_ELEM_LIST_TABLE = 1;
const NFTA_SET_ELEM_LIST_SET = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS = 3;
const NFTA_LIST_ELEM = 1;
const NFTA_SET_ELEM_KEY = 1;
const NFTA_SET_ELEM_DATA = 2;
const NFTA_SET_ELEM_FLAGS = 3;
const NFTA_SET_ELEM_KEY_END = 10;
const NFT_SET_ELEM_INTERVAL_END = 1;
const NFT_SET_ELEM_CATCHALL = 2;
const NFTA_DATA_VALUE = 1;
const NFTA_DATA_VERDICT = 2;
const NFTA_VERDICT_CODE = 1;
const NFTA_VERDICT_CHAIN = 2;

/** The set's types as its definition names them: `type` of the key, `map` of the data (libnftables JSON). */
export interface SetTypes {
  /** Key components, e.g. ['ipv4_addr', 'inet_proto', 'inet_service', 'integer']. */
  key: readonly string[];
  /** Data components of a map (['verdict'] for a verdict map); undefined for a set. */
  data?: readonly string[];
  /** `flags interval`. */
  interval: boolean;
}

/** The types in a libnftables JSON set/map definition (`type`: a name or a list; `map`: `a . b`). */
export function setTypesOf(def: Record<string, unknown>): SetTypes | undefined {
  const names = (v: unknown): string[] | undefined => {
    if (typeof v === 'string') return v.split(' . ');
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
    return undefined;
  };
  const key = names(def.type);
  if (!key) return undefined;
  const flags = Array.isArray(def.flags) ? def.flags : typeof def.flags === 'string' ? [def.flags] : [];
  const out: SetTypes = { key, interval: flags.includes('interval') };
  if (def.map !== undefined) {
    const data = names(def.map);
    if (!data) return undefined;
    out.data = data;
  }
  return out;
}

const PROTO_NAMES: Record<number, string> = { 6: 'tcp', 17: 'udp', 132: 'sctp' };

/** libnftables prints IPv6 with glibc's inet_ntop: mapped and compatible addresses in dotted quad. */
const INET_NTOP: Ipv6FormatOptions = { inetNtop: true };

// Component kinds, resolved once per set (the decoder runs 100,000 times per read-back).
const K_IP4 = 0, K_IP6 = 1, K_PROTO = 2, K_SERVICE = 3, K_INT = 4;
const KIND: Record<string, number> = { ipv4_addr: K_IP4, ipv6_addr: K_IP6, inet_proto: K_PROTO, inet_service: K_SERVICE, integer: K_INT };
const WIDTHS = [4, 16, 4, 4, 4];

/**
 * Values are written as ASCII into one scratch buffer and read out as one flat string: a
 * string built by `+=` is a rope that the Map flattens into a second copy when it hashes it,
 * and at 100,000 elements that garbage was most of the decoding time.
 */
const OUT = Buffer.alloc(256);
let pos = 0;

function putDec(n: number): void {
  if (n < 10) {
    OUT[pos++] = 48 + n;
    return;
  }
  let digits = 0;
  for (let x = n; x > 0; x = Math.floor(x / 10)) digits++;
  for (let i = pos + digits - 1, x = n; i >= pos; i--, x = Math.floor(x / 10)) OUT[i] = 48 + (x % 10);
  pos += digits;
}

function putText(s: string): void {
  pos += OUT.write(s, pos, 'latin1');
}

/** Writes one component; false if it cannot be printed exactly. */
function putComponent(kind: number, b: Buffer, off: number): boolean {
  switch (kind) {
    case K_IP4:
      putDec(b[off]!);
      OUT[pos++] = 46;
      putDec(b[off + 1]!);
      OUT[pos++] = 46;
      putDec(b[off + 2]!);
      OUT[pos++] = 46;
      putDec(b[off + 3]!);
      return true;
    case K_IP6:
      putText(formatIPv6(b, off, INET_NTOP));
      return true;
    case K_PROTO: {
      const name = PROTO_NAMES[b[off]!];
      if (name === undefined) return false;
      putText(name);
      return true;
    }
    case K_SERVICE:
      putDec((b[off]! << 8) | b[off + 1]!);
      return true;
    default:
      putDec(readU32(b, off));
      return true;
  }
}

/** Prefix length of the block [b[off..off+n), e[eoff..eoff+n)] if it is one aligned CIDR block, else undefined. */
function prefixLen(b: Buffer, off: number, e: Buffer, eoff: number, n: number): number | undefined {
  let len = 0;
  let i = 0;
  while (i < n && b[off + i] === e[eoff + i]) {
    len += 8;
    i++;
  }
  if (i === n) return len;
  // In the first differing byte: the common high bits, then start all 0s and end all 1s.
  const s0 = b[off + i]!;
  const x = s0 ^ e[eoff + i]!;
  const host = 32 - Math.clz32(x); // bits that differ, counted from the low end
  const mask = (1 << host) - 1;
  if (x !== mask || (s0 & mask) !== 0) return undefined;
  len += 8 - host;
  for (let j = i + 1; j < n; j++) if (b[off + j] !== 0 || e[eoff + j] !== 0xff) return undefined;
  return len;
}

/** Concatenated types resolved to kinds and their total register width; undefined for an unknown type. */
export interface Layout {
  kinds: number[];
  width: number;
}
export function layoutOf(types: readonly string[]): Layout | undefined {
  const kinds: number[] = [];
  let width = 0;
  for (const t of types) {
    const k = KIND[t];
    if (k === undefined) return undefined;
    kinds.push(k);
    width += WIDTHS[k]!;
  }
  return { kinds, width };
}

/**
 * A value of layout `l` at b[off..off+len) (`a . b . c`), with the range end at e[eoff..] for
 * interval sets; undefined if it does not fit the layout or cannot be printed exactly.
 */
function formatAt(l: Layout, b: Buffer, off: number, len: number, e?: Buffer, eoff = 0): string | undefined {
  if (len !== l.width) return undefined;
  pos = 0;
  for (let i = 0; i < l.kinds.length; i++) {
    const k = l.kinds[i]!;
    const w = WIDTHS[k]!;
    if (i > 0) {
      OUT[pos++] = 32;
      OUT[pos++] = 46;
      OUT[pos++] = 32;
    }
    if (!putComponent(k, b, off)) return undefined;
    if (e !== undefined && b.compare(e, eoff, eoff + w, off, off + w) !== 0) {
      // A range in this component: libnftables prints an aligned block of addresses as a
      // prefix and anything else as a range (which adopt.ts does not read either).
      if (k !== K_IP4 && k !== K_IP6) return undefined;
      const p = prefixLen(b, off, e, eoff, w);
      if (p === undefined) return undefined;
      OUT[pos++] = 47;
      putDec(p);
    }
    off += w;
    eoff += w;
  }
  return OUT.toString('latin1', 0, pos);
}

/** A value of concatenated `types` (`a . b . c`), `end` the range end of an interval element. */
export function formatValue(types: readonly string[], b: Buffer, end?: Buffer): string | undefined {
  const l = layoutOf(types);
  if (!l || (end !== undefined && end.length !== b.length)) return undefined;
  return formatAt(l, b, 0, b.length, end, 0);
}

/** `goto <chain>`, `jump <chain>`, `drop`, `accept`, `return` (what adopt.ts reads), else undefined. */
export function formatVerdict(nestedAttrs: Buffer): string | undefined {
  const v = attrMap(nestedAttrs);
  const code = v.get(NFTA_VERDICT_CODE);
  if (!code || code.length < 4) return undefined;
  const c = code.readInt32BE(0);
  const chain = v.get(NFTA_VERDICT_CHAIN);
  const name = chain ? chain.subarray(0, chain.indexOf(0) < 0 ? chain.length : chain.indexOf(0)).toString('utf8') : undefined;
  switch (c) {
    case 0:
      return 'drop';
    case 1:
      return 'accept';
    case -5:
      return 'return';
    case -3:
      return name === undefined ? undefined : `jump ${name}`;
    case -4:
      return name === undefined ? undefined : `goto ${name}`;
    default:
      return undefined; // continue, break, queue, stolen: never rendered by us
  }
}

/** GETSETELEM dump request for one set of an `inet` table. */
export function encodeGetSetElems(table: string, set: string): Buffer {
  return frame((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM, NLM_F_REQUEST | NLM_F_DUMP, [
    Buffer.from([NFPROTO_INET, 0, 0, 0]),
    attr(NFTA_SET_ELEM_LIST_TABLE, cstr(table)),
    attr(NFTA_SET_ELEM_LIST_SET, cstr(set)),
  ]);
}

/** The set's layouts, resolved once. */
interface Plan {
  key: Layout;
  /** undefined: a set; 'verdict': a verdict map. */
  data: Layout | 'verdict' | undefined;
  /** Verdicts printed so far, by their attribute bytes. */
  verdicts: Map<string, string | undefined>;
}

/** Where dataValue found NFTA_DATA_VALUE: offset and length (module scratch, no allocation per element). */
let dvOff = 0;
let dvLen = 0;

/** Finds NFTA_DATA_VALUE inside the nested NFTA_SET_ELEM_KEY/_KEY_END/_DATA at b[off..end) (dvOff, dvLen). */
function dataValue(b: Buffer, off: number, end: number): boolean {
  while (off + 4 <= end) {
    const len = readU16(b, off);
    if (len < 4 || off + len > end) return false;
    if ((readU16(b, off + 2) & NLA_TYPE_MASK) === NFTA_DATA_VALUE) {
      dvOff = off + 4;
      dvLen = len - 4;
      return true;
    }
    off += (len + 3) & ~3;
  }
  return false;
}

/**
 * One element at b[off..end) into `out` (key → value, '' for a set); false if it cannot be
 * printed exactly. Walks the attributes in place (no copies): this runs once per element.
 */
function decodeElement(b: Buffer, off: number, end: number, plan: Plan, out: Map<string, string>): boolean {
  let keyOff = -1;
  let keyLen = 0;
  let endOff = -1;
  let endLen = 0;
  let dataOff = -1;
  let dataEnd = 0;
  while (off + 4 <= end) {
    const len = readU16(b, off);
    if (len < 4 || off + len > end) return false;
    const type = readU16(b, off + 2) & NLA_TYPE_MASK;
    const p = off + 4;
    const q = off + len;
    if (type === NFTA_SET_ELEM_KEY) {
      if (!dataValue(b, p, q)) return false;
      keyOff = dvOff;
      keyLen = dvLen;
    } else if (type === NFTA_SET_ELEM_KEY_END) {
      if (!dataValue(b, p, q)) return false;
      endOff = dvOff;
      endLen = dvLen;
    } else if (type === NFTA_SET_ELEM_DATA) {
      dataOff = p;
      dataEnd = q;
    } else if (type === NFTA_SET_ELEM_FLAGS) {
      if (len < 8 || (b.readUInt32BE(p) & (NFT_SET_ELEM_INTERVAL_END | NFT_SET_ELEM_CATCHALL)) !== 0) return false;
    } else return false; // timeout, expiration, comment, counter, object: printed as an `elem` object
    off += (len + 3) & ~3;
  }
  if (keyOff < 0 || (endOff >= 0 && endLen !== keyLen)) return false;
  const k = formatAt(plan.key, b, keyOff, keyLen, endOff >= 0 ? b : undefined, endOff);
  if (k === undefined) return false;
  if (plan.data === undefined) {
    if (dataOff >= 0) return false;
    out.set(k, '');
    return true;
  }
  if (dataOff < 0) return false;
  let v: string | undefined;
  if (plan.data === 'verdict') {
    // A few hundred distinct verdicts (one per load-balancing chain) over 10,000s of elements.
    const raw = b.toString('latin1', dataOff, dataEnd);
    v = plan.verdicts.get(raw);
    if (v === undefined && !plan.verdicts.has(raw)) {
      const verdict = attrMap(b.subarray(dataOff, dataEnd)).get(NFTA_DATA_VERDICT);
      v = verdict ? formatVerdict(verdict) : undefined;
      plan.verdicts.set(raw, v);
    }
  } else v = dataValue(b, dataOff, dataEnd) ? formatAt(plan.data, b, dvOff, dvLen) : undefined;
  if (v === undefined) return false;
  out.set(k, v);
  return true;
}

/**
 * The elements in a GETSETELEM dump's replies, key → value ('' for sets), or undefined if
 * any element (or the set's types) cannot be printed exactly as libnftables would.
 * Throws if the dump was interrupted by a change (NLM_F_DUMP_INTR): a torn view.
 */
export function decodeSetElems(replies: readonly Buffer[], types: SetTypes): Map<string, string> | undefined {
  // Only concatenated interval sets (one element with KEY and KEY_END, the pipapo layout)
  // are decoded; a plain interval set keeps start and end as two elements.
  if (types.interval && types.key.length < 2) return undefined;
  const key = layoutOf(types.key);
  if (!key) return undefined;
  let data: Plan['data'];
  if (types.data !== undefined) {
    if (types.data.length === 1 && types.data[0] === 'verdict') data = 'verdict';
    else if (!(data = layoutOf(types.data))) return undefined;
  }
  const plan: Plan = { key, data, verdicts: new Map() };
  const out = new Map<string, string>();
  for (const m of replies) {
    const h = parseHeader(m);
    if (h.type !== ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM)) continue;
    if ((h.flags & NLM_F_DUMP_INTR) !== 0) throw new KernelError('nftables set elements', 'the set changed during the dump (NLM_F_DUMP_INTR)');
    const list = attrMap(payloadOf(m).subarray(4)).get(NFTA_SET_ELEM_LIST_ELEMENTS);
    if (!list) continue;
    let off = 0;
    while (off + 4 <= list.length) {
      const len = readU16(list, off);
      if (len < 4 || off + len > list.length) return undefined;
      if ((readU16(list, off + 2) & NLA_TYPE_MASK) === NFTA_LIST_ELEM) {
        if (!decodeElement(list, off + 4, off + len, plan, out)) return undefined;
      }
      off += (len + 3) & ~3;
    }
  }
  return out;
}
