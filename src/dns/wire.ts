/**
 * DNS wire format, the parts the hot path needs, by hand (RFC 1035, RFC 6891).
 *
 * Names are handled in their wire form. A query's name is turned into a *key*: the
 * wire bytes of the name (length-prefixed labels, terminating 0) lower-cased and read
 * as a latin1 string. Every index in this module is keyed that way, so a lookup costs
 * one pass over the name and one Map get, with no dotted strings on the hot path.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { ipv6Bytes } from '../common/ip';

export const TYPE = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  OPT: 41,
  IXFR: 251,
  AXFR: 252,
  ANY: 255,
} as const;

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
export const RCODE_NAMES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED', 'YXDOMAIN', 'YXRRSET', 'NXRRSET', 'NOTAUTH', 'NOTZONE', 'RCODE11', 'RCODE12', 'RCODE13', 'RCODE14', 'RCODE15', 'BADVERS'];

export const CLASS_IN = 1;
export const HEADER_LEN = 12;
/** Size of the OPT RR we append: root name, type, class, ttl, rdlength. */
export const OPT_LEN = 11;
export const MAX_NAME = 255;

/** A parsed query. `msg` is the packet it came from (kept, never modified). */
export interface Query {
  msg: Buffer;
  id: number;
  /** RD bit (0 or 1). */
  rd: number;
  opcode: number;
  /** The question name's wire bytes lower-cased, as latin1 (see module doc). */
  key: string;
  /** Wire length of the question name. */
  nameLen: number;
  qtype: number;
  qclass: number;
  /** Offset just past the question (name, type, class). */
  questionEnd: number;
  /** The client's EDNS0 UDP payload size, or 0 without an OPT record. */
  ednsSize: number;
  ednsVersion: number;
  /** The DO bit (0 or 1). */
  dnssecOk: number;
  transport: 'udp' | 'tcp';
  /** Client address (for logs, autopath-style decisions). */
  client: string;
  /** Set by the cluster zone on its first look at this query: the zone index (-2: not looked yet) and the entry. */
  zi: number;
  entry: unknown;
}

/** Why a packet could not be parsed: drop it, or answer with this rcode (FORMERR, NOTIMP). */
export type ParseFailure = { drop: true } | { drop: false; rcode: number; questionEnd: number };

const lowerScratch = Buffer.allocUnsafe(MAX_NAME + 1);

/**
 * Parse a query. Returns a Query, or a ParseFailure: `drop` for packets that must not be
 * answered (too short, a response), otherwise the rcode to answer with.
 */
export function parseQuery(msg: Buffer, transport: 'udp' | 'tcp', client: string): Query | ParseFailure {
  if (msg.length < HEADER_LEN) return DROP;
  const flags = msg[2]!;
  if (flags & 0x80) return DROP; // a response, not a query
  const opcode = (flags >> 3) & 0x0f;
  const qd = msg.readUInt16BE(4);
  if (qd !== 1) return { drop: false, rcode: opcode === 0 ? RCODE.FORMERR : RCODE.NOTIMP, questionEnd: -1 };
  // Question name: labels only, no compression pointers in a question we accept.
  let p = HEADER_LEN;
  let n = 0;
  for (;;) {
    if (p >= msg.length) return { drop: false, rcode: RCODE.FORMERR, questionEnd: -1 };
    const len = msg[p]!;
    if (len === 0) {
      lowerScratch[n++] = 0;
      p++;
      break;
    }
    if (len > 63 || p + 1 + len > msg.length || n + 1 + len >= MAX_NAME) return { drop: false, rcode: RCODE.FORMERR, questionEnd: -1 };
    lowerScratch[n++] = len;
    for (let i = 1; i <= len; i++) {
      const c = msg[p + i]!;
      lowerScratch[n++] = c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
    }
    p += 1 + len;
  }
  if (p + 4 > msg.length) return { drop: false, rcode: RCODE.FORMERR, questionEnd: -1 };
  const qtype = msg.readUInt16BE(p);
  const qclass = msg.readUInt16BE(p + 2);
  const questionEnd = p + 4;
  if (opcode !== 0) return { drop: false, rcode: RCODE.NOTIMP, questionEnd };
  // The other sections: only an OPT record matters; walk them to find it and to reject garbage.
  let rrs = msg.readUInt16BE(6) + msg.readUInt16BE(8) + msg.readUInt16BE(10);
  p = questionEnd;
  let ednsSize = 0;
  let ednsVersion = 0;
  let dnssecOk = 0;
  let opts = 0;
  while (rrs-- > 0) {
    const nameEnd = skipName(msg, p);
    if (nameEnd < 0 || nameEnd + 10 > msg.length) return { drop: false, rcode: RCODE.FORMERR, questionEnd };
    const type = msg.readUInt16BE(nameEnd);
    const rdlen = msg.readUInt16BE(nameEnd + 8);
    if (nameEnd + 10 + rdlen > msg.length) return { drop: false, rcode: RCODE.FORMERR, questionEnd };
    if (type === TYPE.OPT) {
      if (++opts > 1 || msg[p] !== 0) return { drop: false, rcode: RCODE.FORMERR, questionEnd };
      ednsSize = Math.max(512, msg.readUInt16BE(nameEnd + 2));
      ednsVersion = msg[nameEnd + 5]!;
      dnssecOk = msg[nameEnd + 6]! >> 7;
    }
    p = nameEnd + 10 + rdlen;
  }
  return {
    msg,
    id: msg.readUInt16BE(0),
    rd: flags & 1,
    opcode,
    key: (lowerScratch as unknown as { latin1Slice(s: number, e: number): string }).latin1Slice(0, n),
    nameLen: n,
    qtype,
    qclass,
    questionEnd,
    ednsSize,
    ednsVersion,
    dnssecOk,
    transport,
    client,
    zi: -2,
    entry: undefined,
  };
}

const DROP: ParseFailure = { drop: true };

export function isQuery(x: Query | ParseFailure): x is Query {
  return (x as Query).key !== undefined;
}

/** Offset just past a (possibly compressed) name at `p`, or -1 when malformed. */
export function skipName(msg: Buffer, p: number): number {
  for (let guard = 0; guard < 128; guard++) {
    if (p >= msg.length) return -1;
    const len = msg[p]!;
    if (len === 0) return p + 1;
    if ((len & 0xc0) === 0xc0) return p + 2 <= msg.length ? p + 2 : -1;
    if (len > 63) return -1;
    p += 1 + len;
  }
  return -1;
}

/** Read a (possibly compressed) name at `p` as a dotted lower-case string without the trailing dot; undefined when malformed. */
export function readName(msg: Buffer, p: number): string | undefined {
  const labels: string[] = [];
  let jumps = 0;
  for (;;) {
    if (p >= msg.length) return undefined;
    const len = msg[p]!;
    if (len === 0) break;
    if ((len & 0xc0) === 0xc0) {
      if (p + 2 > msg.length || ++jumps > 32) return undefined;
      p = ((len & 0x3f) << 8) | msg[p + 1]!;
      continue;
    }
    if (len > 63 || p + 1 + len > msg.length) return undefined;
    labels.push(msg.toString('latin1', p + 1, p + 1 + len).toLowerCase());
    p += 1 + len;
  }
  return labels.join('.');
}

// ---- names ------------------------------------------------------------------

/** Dotted name (trailing dot optional) → wire bytes. Throws RangeError on a bad label. */
export function encodeName(name: string): Buffer {
  const len = name.endsWith('.') ? name.length - 1 : name.length;
  if (len === 0) return Buffer.from([0]);
  if (len + 2 > MAX_NAME) throw new RangeError(`DNS name too long: ${JSON.stringify(name)}`);
  const out = Buffer.allocUnsafe(len + 2);
  let labelStart = 0;
  for (let i = 0; i <= len; i++) {
    if (i === len || name.charCodeAt(i) === 0x2e) {
      const l = i - labelStart;
      if (l === 0 || l > 63) throw new RangeError(`bad DNS label in ${JSON.stringify(name)}`);
      out[labelStart] = l;
      labelStart = i + 1;
    } else out[i + 1] = name.charCodeAt(i) & 0xff;
  }
  out[len + 1] = 0;
  return out;
}

/** The index key of a dotted name (lower-cased wire bytes as latin1). */
export function nameKey(name: string): string {
  return encodeName(name.toLowerCase()).toString('latin1');
}

/** Key → dotted name without the trailing dot. */
export function keyToName(key: string): string {
  const labels: string[] = [];
  let p = 0;
  while (p < key.length) {
    const len = key.charCodeAt(p);
    if (len === 0) break;
    labels.push(key.slice(p + 1, p + 1 + len));
    p += 1 + len;
  }
  return labels.join('.');
}

/** Offsets of every label start in a key (0 first), for suffix matching. */
export function labelStarts(key: string): number[] {
  const out: number[] = [];
  let p = 0;
  while (p < key.length && key.charCodeAt(p) !== 0) {
    out.push(p);
    p += 1 + key.charCodeAt(p);
  }
  out.push(p);
  return out;
}

/** True when `key` is `zoneKey` or a name below it (at a label boundary). */
export function isSubdomainKey(key: string, zoneKey: string): boolean {
  if (key.length < zoneKey.length || !key.endsWith(zoneKey)) return false;
  const start = key.length - zoneKey.length;
  let p = 0;
  while (p < start) p += 1 + key.charCodeAt(p);
  return p === start;
}

// ---- addresses ----------------------------------------------------------------

export function ipBytes(ip: string): Buffer | undefined {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  return isIPv6(ip) ? ipv6Bytes(ip) : undefined;
}

/** `10.0.0.1` → `1.0.0.10.in-addr.arpa`; IPv6 → nibbles under ip6.arpa. */
export function reverseName(ip: string): string | undefined {
  const b = ipBytes(ip);
  if (!b) return undefined;
  if (b.length === 4) return `${b[3]}.${b[2]}.${b[1]}.${b[0]}.in-addr.arpa`;
  const nibbles: string[] = [];
  for (let i = 15; i >= 0; i--) nibbles.push((b[i]! & 0xf).toString(16), (b[i]! >> 4).toString(16));
  return `${nibbles.join('.')}.ip6.arpa`;
}

/** `10.244.1.2` → `10-244-1-2`; IPv6 `fd00::1` → `fd00--1` (CoreDNS's endpoint names). */
export function dashedIp(ip: string): string {
  return ip.replace(/[.:]/g, '-');
}

/** `10-244-1-2` → `10.244.1.2`; `fd00--1` → `fd00::1` when that is an IPv6 address. */
export function undashIp(label: string): string | undefined {
  const v4 = label.replace(/-/g, '.');
  if (isIPv4(v4)) return v4;
  const v6 = label.replace(/-/g, ':');
  if (isIPv6(v6)) return v6;
  return undefined;
}

// ---- building messages --------------------------------------------------------

/** A record to encode: owner `name` (null = the question name, compressed to offset 12). */
export interface RR {
  name: string | null;
  type: number;
  ttl: number;
  /** Encoded rdata. */
  data: Buffer;
}

export const rdata = {
  a: (ip: string): Buffer => ipBytes(ip)!,
  name: (n: string): Buffer => encodeName(n),
  srv: (priority: number, weight: number, port: number, target: string): Buffer => {
    const t = encodeName(target);
    const b = Buffer.allocUnsafe(6 + t.length);
    b.writeUInt16BE(priority, 0);
    b.writeUInt16BE(weight, 2);
    b.writeUInt16BE(port, 4);
    t.copy(b, 6);
    return b;
  },
  txt: (...strings: string[]): Buffer => Buffer.concat(strings.map((s) => Buffer.concat([Buffer.from([Buffer.byteLength(s)]), Buffer.from(s)]))),
  soa: (mname: string, rname: string, serial: number, refresh: number, retry: number, expire: number, minimum: number): Buffer => {
    const tail = Buffer.allocUnsafe(20);
    tail.writeUInt32BE(serial >>> 0, 0);
    tail.writeUInt32BE(refresh, 4);
    tail.writeUInt32BE(retry, 8);
    tail.writeUInt32BE(expire, 12);
    tail.writeUInt32BE(minimum, 16);
    return Buffer.concat([encodeName(mname), encodeName(rname), tail]);
  },
};

/** Encode one RR. `owner` is the wire name, or null for a pointer to the question (offset 12). */
export function encodeRR(rr: RR): Buffer {
  const owner = rr.name === null ? Buffer.from([0xc0, 0x0c]) : encodeName(rr.name);
  const b = Buffer.allocUnsafe(owner.length + 10 + rr.data.length);
  owner.copy(b, 0);
  let p = owner.length;
  b.writeUInt16BE(rr.type, p);
  b.writeUInt16BE(CLASS_IN, p + 2);
  b.writeUInt32BE(rr.ttl >>> 0, p + 4);
  b.writeUInt16BE(rr.data.length, p + 8);
  rr.data.copy(b, p + 10);
  p += 10 + rr.data.length;
  return b;
}

/**
 * An authoritative response template: header (ID 0, QR AA RA, rcode), the question in
 * canonical case, then the sections. The server patches ID, RD, the question's case and EDNS.
 */
export function encodeResponse(questionName: Buffer, qtype: number, rcode: number, answer: RR[], authority: RR[], additional: RR[], aa = true): Buffer {
  const head = Buffer.alloc(HEADER_LEN);
  head[2] = 0x80 | (aa ? 0x04 : 0);
  head[3] = 0x80 | (rcode & 0x0f);
  head.writeUInt16BE(1, 4);
  head.writeUInt16BE(answer.length, 6);
  head.writeUInt16BE(authority.length, 8);
  head.writeUInt16BE(additional.length, 10);
  const q = Buffer.allocUnsafe(questionName.length + 4);
  questionName.copy(q, 0);
  q.writeUInt16BE(qtype, questionName.length);
  q.writeUInt16BE(CLASS_IN, questionName.length + 2);
  return Buffer.concat([head, q, ...answer.map(encodeRR), ...authority.map(encodeRR), ...additional.map(encodeRR)]);
}

/** Write our OPT record at `p` (UDP size `size`, extended rcode high bits, DO echoed). */
export function writeOpt(out: Buffer, p: number, size: number, extRcode = 0, dnssecOk = 0): void {
  out[p] = 0;
  out.writeUInt16BE(TYPE.OPT, p + 1);
  out.writeUInt16BE(size, p + 3);
  out[p + 5] = extRcode;
  out[p + 6] = 0; // version 0
  out[p + 7] = dnssecOk << 7;
  out[p + 8] = 0;
  out.writeUInt16BE(0, p + 9);
}

/**
 * A bare response to `q`: header + the query's own question + optional authority bytes
 * (an SOA RR, already encoded) + OPT when the client sent one. Used for NXDOMAIN,
 * NODATA, SERVFAIL, REFUSED, TC.
 */
export function bareResponse(q: Query, rcode: number, opts: { aa?: boolean; authority?: Buffer; tc?: boolean; ednsSize?: number } = {}): Buffer {
  const qlen = q.questionEnd - HEADER_LEN;
  const auth = opts.authority;
  const edns = q.ednsSize > 0;
  const len = HEADER_LEN + qlen + (auth ? auth.length : 0) + (edns ? OPT_LEN : 0);
  const out = Buffer.allocUnsafe(len);
  out.writeUInt16BE(q.id, 0);
  out[2] = 0x80 | (opts.aa ? 0x04 : 0) | (opts.tc ? 0x02 : 0) | q.rd;
  out[3] = 0x80 | (rcode & 0x0f);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(0, 6);
  out.writeUInt16BE(auth ? 1 : 0, 8);
  out.writeUInt16BE(edns ? 1 : 0, 10);
  q.msg.copy(out, HEADER_LEN, HEADER_LEN, q.questionEnd);
  let p = q.questionEnd;
  if (auth) p += auth.copy(out, p);
  if (edns) writeOpt(out, p, opts.ednsSize ?? 1232, rcode >> 4, q.dnssecOk);
  return out;
}

/** A response to a packet we could only partly parse (FORMERR / NOTIMP): header, and the question when it was readable. */
export function errorResponse(msg: Buffer, rcode: number, questionEnd: number): Buffer {
  const withQ = questionEnd > HEADER_LEN;
  const out = Buffer.alloc(withQ ? questionEnd : HEADER_LEN);
  msg.copy(out, 0, 0, 2);
  out[2] = 0x80 | (msg[2]! & 0x79); // QR, keep opcode and RD
  out[3] = 0x80 | rcode;
  if (withQ) {
    out.writeUInt16BE(1, 4);
    msg.copy(out, HEADER_LEN, HEADER_LEN, questionEnd);
  }
  return out;
}

/** Rcode of a response (low 4 bits only). */
export function rcodeOf(resp: Buffer): number {
  return resp.length >= 4 ? resp[3]! & 0x0f : RCODE.SERVFAIL;
}

/**
 * Shrink `resp` (a full answer) for a UDP client whose limit is `limit`: TC set, only
 * header, question and OPT. Returns `resp` itself when it fits.
 */
export function fitUdp(q: Query, resp: Buffer, limit: number, ourSize: number): Buffer {
  if (resp.length <= limit) return resp;
  const out = bareResponse(q, rcodeOf(resp), { aa: (resp[2]! & 0x04) !== 0, tc: true, ednsSize: ourSize });
  out[3] = resp[3]!;
  return out;
}

/** Per-RR view of a response, for the cache: where the TTLs are, the SOA minimum, where OPT is. */
export interface ScannedMessage {
  rcode: number;
  tc: boolean;
  ancount: number;
  /** Byte offsets of each RR's TTL field (OPT excluded). */
  ttlOffsets: number[];
  /** The smallest TTL of the answer section (Infinity when empty). */
  minAnswerTtl: number;
  /** min(SOA TTL, SOA MINIMUM) of the first SOA in the authority section, or undefined. */
  negativeTtl: number | undefined;
  /** The OPT RR's [start, end) when present. */
  opt: [number, number] | undefined;
  /** True when OPT is the last RR (so it can be cut without moving compression targets). */
  optLast: boolean;
  questionEnd: number;
}

export function scanMessage(msg: Buffer): ScannedMessage | undefined {
  if (msg.length < HEADER_LEN) return undefined;
  const qd = msg.readUInt16BE(4);
  const an = msg.readUInt16BE(6);
  const ns = msg.readUInt16BE(8);
  const ar = msg.readUInt16BE(10);
  let p = HEADER_LEN;
  for (let i = 0; i < qd; i++) {
    p = skipName(msg, p);
    if (p < 0 || p + 4 > msg.length) return undefined;
    p += 4;
  }
  const questionEnd = p;
  const ttlOffsets: number[] = [];
  let minAnswerTtl = Infinity;
  let negativeTtl: number | undefined;
  let opt: [number, number] | undefined;
  let optLast = false;
  const total = an + ns + ar;
  for (let i = 0; i < total; i++) {
    const start = p;
    const ne = skipName(msg, p);
    if (ne < 0 || ne + 10 > msg.length) return undefined;
    const type = msg.readUInt16BE(ne);
    const ttl = msg.readUInt32BE(ne + 4);
    const rdlen = msg.readUInt16BE(ne + 8);
    const end = ne + 10 + rdlen;
    if (end > msg.length) return undefined;
    if (type === TYPE.OPT) {
      opt = [start, end];
      optLast = i === total - 1;
    } else {
      ttlOffsets.push(ne + 4);
      if (i < an) minAnswerTtl = Math.min(minAnswerTtl, ttl);
      else if (i < an + ns && type === TYPE.SOA && negativeTtl === undefined) {
        // MINIMUM is the last 4 bytes of the SOA rdata.
        negativeTtl = Math.min(ttl, msg.readUInt32BE(end - 4));
      }
    }
    p = end;
  }
  return { rcode: msg[3]! & 0x0f, tc: (msg[2]! & 0x02) !== 0, ancount: an, ttlOffsets, minAnswerTtl, negativeTtl, opt, optLast, questionEnd };
}

/** Build a query message (for health checks, tests and the loop probe). */
export function buildQuery(name: string, qtype: number, id: number, opts: { rd?: boolean; ednsSize?: number } = {}): Buffer {
  const n = encodeName(name);
  const edns = opts.ednsSize !== undefined;
  const out = Buffer.alloc(HEADER_LEN + n.length + 4 + (edns ? OPT_LEN : 0));
  out.writeUInt16BE(id, 0);
  out[2] = opts.rd === false ? 0 : 1;
  out.writeUInt16BE(1, 4);
  if (edns) out.writeUInt16BE(1, 10);
  n.copy(out, HEADER_LEN);
  out.writeUInt16BE(qtype, HEADER_LEN + n.length);
  out.writeUInt16BE(CLASS_IN, HEADER_LEN + n.length + 2);
  if (edns) writeOpt(out, HEADER_LEN + n.length + 4, opts.ednsSize!);
  return out;
}
