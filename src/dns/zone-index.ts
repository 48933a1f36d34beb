/**
 * The cluster zone as flat shared memory, for DNS worker threads (`dns.workers`).
 *
 * The main thread owns the zone (zone.ts) and its slab, which lives in a SharedArrayBuffer.
 * After each change it builds this index next to it: an open-addressing hash table over the
 * names' key bytes (the lower-cased wire name, FNV-1a), and per name its zone, flags and
 * (type, slab offset, length) triples. Workers answer from it without copying the zone:
 * a hit is the template patched like zone.ts does it, a name in a cluster zone that does
 * not exist is NXDOMAIN, an existing name without the type NODATA. Everything else (not
 * synced yet, ExternalName, pod records, reverse names without a PTR, other zones) goes to
 * the main thread, which has the whole chain.
 *
 * A snapshot stays valid while a newer one is built: the slab is append-only between
 * compactions, and a compaction or growth copies into a fresh SharedArrayBuffer, leaving the
 * old one (still referenced by the old snapshot) untouched.
 */
import { HEADER_LEN, isSubdomainKey, OPT_LEN, type Query, RCODE, TYPE, writeOpt } from './wire';

export interface ZoneSnapshot {
  generation: number;
  built: boolean;
  slab: SharedArrayBuffer;
  /** Int32: hash slot → entry offset in `ents`, -1 when empty. Length is a power of two. */
  table: SharedArrayBuffer;
  /** Int32 entries: [keyOff, keyLen, zone, flags, nTypes, (type, off, len) × nTypes]. */
  ents: SharedArrayBuffer;
  keys: SharedArrayBuffer;
  zoneKeys: string[];
  podZoneKeys: string[];
  soa: Uint8Array[];
}

const F_CNAME = 1;
/** `<ns>.svc.<zone>` of an existing namespace: NODATA for every type. */
const F_NS = 2;

interface EntryLike {
  types: number[];
  refs: number[];
  cname: string | undefined;
  zone: number;
}

export interface SnapshotInput {
  generation: number;
  built: boolean;
  slab: Buffer;
  names: ReadonlyMap<string, EntryLike>;
  nsKeys: ReadonlySet<string>;
  zoneKeys: string[];
  podZoneKeys: string[];
  soa: Buffer[];
  place: (handle: number) => [number, number];
}

function hashKey(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

export function buildSnapshot(i: SnapshotInput): ZoneSnapshot {
  const all: [string, EntryLike | undefined][] = [...i.names];
  for (const k of i.nsKeys) if (!i.names.has(k)) all.push([k, undefined]);
  let cap = 16;
  while (cap < all.length * 2) cap <<= 1;
  let keyBytes = 0;
  let entInts = 0;
  for (const [k, e] of all) {
    keyBytes += k.length;
    entInts += 5 + 3 * (e?.types.length ?? 0);
  }
  const tableSab = new SharedArrayBuffer(cap * 4);
  const table = new Int32Array(tableSab).fill(-1);
  const entsSab = new SharedArrayBuffer(Math.max(4, entInts * 4));
  const ents = new Int32Array(entsSab);
  const keysSab = new SharedArrayBuffer(Math.max(1, keyBytes));
  const keys = Buffer.from(keysSab);
  let kp = 0;
  let ep = 0;
  for (const [k, e] of all) {
    let slot = hashKey(k) & (cap - 1);
    while (table[slot] !== -1) slot = (slot + 1) & (cap - 1);
    table[slot] = ep;
    keys.write(k, kp, 'latin1');
    ents[ep++] = kp;
    ents[ep++] = k.length;
    kp += k.length;
    ents[ep++] = e ? e.zone : zoneIndexOf(k, i.zoneKeys);
    ents[ep++] = (e?.cname !== undefined ? F_CNAME : 0) | (e ? 0 : F_NS);
    const n = e?.types.length ?? 0;
    ents[ep++] = n;
    for (let t = 0; t < n; t++) {
      const [off, len] = i.place(e!.refs[t]!);
      ents[ep++] = e!.types[t]!;
      ents[ep++] = off;
      ents[ep++] = len;
    }
  }
  const slab = i.slab.buffer as SharedArrayBuffer;
  if (i.slab.byteOffset !== 0) throw new Error('the zone slab must start its SharedArrayBuffer');
  return { generation: i.generation, built: i.built, slab, table: tableSab, ents: entsSab, keys: keysSab, zoneKeys: i.zoneKeys, podZoneKeys: i.podZoneKeys, soa: i.soa.map((b) => new Uint8Array(b)) };
}

function zoneIndexOf(key: string, zoneKeys: readonly string[]): number {
  for (let z = 0; z < zoneKeys.length; z++) if (isSubdomainKey(key, zoneKeys[z]!)) return z;
  return -1;
}

/** The worker's view of a snapshot. */
export class ZoneIndex {
  private readonly slab: Buffer;
  private readonly table: Int32Array;
  private readonly ents: Int32Array;
  private readonly keys: Buffer;
  private readonly mask: number;
  private readonly soa: Buffer[];

  constructor(readonly snap: ZoneSnapshot) {
    this.slab = Buffer.from(snap.slab);
    this.table = new Int32Array(snap.table);
    this.ents = new Int32Array(snap.ents);
    this.keys = Buffer.from(snap.keys);
    this.mask = this.table.length - 1;
    this.soa = snap.soa.map((u) => Buffer.from(u.buffer, u.byteOffset, u.byteLength));
  }

  private find(key: string): number {
    const { table, ents, keys, mask } = this;
    let slot = hashKey(key) & mask;
    for (let probes = 0; probes <= mask; probes++) {
      const e = table[slot]!;
      if (e === -1) return -1;
      if (ents[e + 1] === key.length) {
        const off = ents[e]!;
        let same = true;
        for (let i = 0; i < key.length; i++) {
          if (keys[off + i] !== key.charCodeAt(i)) {
            same = false;
            break;
          }
        }
        if (same) return e;
      }
      slot = (slot + 1) & mask;
    }
    return -1;
  }

  /** The answer, or null when the main thread must answer (see the module doc). */
  answer(q: Query, ourSize: number): Buffer | null {
    if (!this.snap.built || q.qclass !== 1) return null;
    const e = this.find(q.key);
    const ents = this.ents;
    if (e >= 0) {
      const zone = ents[e + 2]!;
      const flags = ents[e + 3]!;
      if (flags & F_CNAME) return null;
      const n = ents[e + 4]!;
      for (let t = 0; t < n; t++) {
        const p = e + 5 + 3 * t;
        if (ents[p] === q.qtype || (q.qtype === TYPE.ANY && t === 0)) return patchTemplate(this.slab, ents[p + 1]!, ents[p + 2]!, q, ourSize);
      }
      if (zone < 0) return null; // a reverse name without that type falls through to the forwarder
      return negativeAnswer(q, this.soa[zone], RCODE.NOERROR, true, ourSize);
    }
    const zone = zoneIndexOf(q.key, this.snap.zoneKeys);
    if (zone < 0) return null;
    const pz = this.snap.podZoneKeys[zone];
    if (pz !== undefined && isSubdomainKey(q.key, pz)) return null;
    return negativeAnswer(q, this.soa[zone], RCODE.NXDOMAIN, true, ourSize);
  }
}

/** The template at `src[off, off+len)` with the query's ID, RD, question case and EDNS. */
export function patchTemplate(src: Buffer, off: number, len: number, q: Query, ourSize: number): Buffer {
  const edns = q.ednsSize > 0;
  const out = Buffer.allocUnsafe(len + (edns ? OPT_LEN : 0));
  src.copy(out, 0, off, off + len);
  out[0] = q.id >> 8;
  out[1] = q.id & 0xff;
  out[2] |= q.rd;
  q.msg.copy(out, HEADER_LEN, HEADER_LEN, HEADER_LEN + q.nameLen);
  if (edns) {
    writeOpt(out, len, ourSize, 0, q.dnssecOk);
    out.writeUInt16BE(out.readUInt16BE(10) + 1, 10);
  }
  return out;
}

/** NXDOMAIN / NODATA (rcode NOERROR) / SERVFAIL, with the zone's SOA in authority. */
export function negativeAnswer(q: Query, soa: Buffer | undefined, rcode: number, withSoa: boolean, ourSize: number): Buffer {
  const edns = q.ednsSize > 0;
  const auth = withSoa && soa ? soa : undefined;
  // The query's question may be followed by its OPT: copy only the question.
  const out = Buffer.allocUnsafe(q.questionEnd + (auth ? auth.length : 0) + (edns ? OPT_LEN : 0));
  out[0] = q.id >> 8;
  out[1] = q.id & 0xff;
  out[2] = 0x80 | (rcode === RCODE.SERVFAIL ? 0 : 0x04) | q.rd;
  out[3] = 0x80 | rcode;
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(0, 6);
  out.writeUInt16BE(auth ? 1 : 0, 8);
  out.writeUInt16BE(edns ? 1 : 0, 10);
  q.msg.copy(out, HEADER_LEN, HEADER_LEN, q.questionEnd);
  let p = q.questionEnd;
  if (auth) p += auth.copy(out, p);
  if (edns) writeOpt(out, p, ourSize, 0, q.dnssecOk);
  return out;
}
