/**
 * Netlink framing and the attributes the npm `netlink` schema cannot express.
 *
 * Why hand-written: the `netlink` package's AttrStream never sets NLA_F_NESTED (the
 * bridge driver ignores an IFLA_PROTINFO without it and treats it as a legacy STP state
 * byte), leaves the last attribute of a message unpadded (a batch of such messages makes
 * the kernel silently drop the rest of the datagram, see DESIGN.md §6), and keeps
 * IFLA_LINKINFO as an opaque buffer. So: header framing, nested attributes and the
 * link-kind data are built here; the fixed structs and the well-known attributes of
 * routes/addresses/neighbours still come from the package's schema-generated codecs.
 *
 * Byte order: netlink headers and integer attributes are in host order (`HOST_LE`);
 * ports in VXLAN/NDA attributes are network order (big endian) and say so by name.
 */
import { endianness } from 'node:os';
import { NLMSG_HDRLEN, NLA_F_NESTED, NLA_TYPE_MASK } from './constants';

export const HOST_LE = endianness() === 'LE';

export const align4 = (n: number): number => (n + 3) & ~3;

/** One attribute, padded to 4 bytes. `nested` sets NLA_F_NESTED. */
export function attr(type: number, data: Uint8Array | readonly Uint8Array[], nested = false): Buffer {
  const parts = data instanceof Uint8Array ? [data] : data;
  let len = 4;
  for (const p of parts) len += p.length;
  if (len > 0xffff) throw new RangeError(`netlink attribute ${type} too long (${len})`);
  const out = Buffer.alloc(align4(len));
  writeU16(out, len, 0);
  writeU16(out, (type & NLA_TYPE_MASK) | (nested ? NLA_F_NESTED : 0), 2);
  let off = 4;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

export const nested = (type: number, children: readonly Uint8Array[]): Buffer => attr(type, children, true);

export function u8(v: number): Buffer {
  return Buffer.from([v & 0xff]);
}
export function u16(v: number): Buffer {
  const b = Buffer.alloc(2);
  writeU16(b, v, 0);
  return b;
}
export function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  writeU32(b, v, 0);
  return b;
}
/** Network byte order u16 (UDP ports). */
export function be16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v, 0);
  return b;
}
/** NUL-terminated string. */
export function cstr(s: string): Buffer {
  return Buffer.concat([Buffer.from(s, 'utf8'), Buffer.alloc(1)]);
}

export function writeU16(b: Buffer, v: number, off: number): void {
  if (HOST_LE) b.writeUInt16LE(v, off);
  else b.writeUInt16BE(v, off);
}
export function writeU32(b: Buffer, v: number, off: number): void {
  if (HOST_LE) b.writeUInt32LE(v >>> 0, off);
  else b.writeUInt32BE(v >>> 0, off);
}
export function readU16(b: Uint8Array, off: number): number {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  return HOST_LE ? buf.readUInt16LE(off) : buf.readUInt16BE(off);
}
export function readU32(b: Uint8Array, off: number): number {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  return HOST_LE ? buf.readUInt32LE(off) : buf.readUInt32BE(off);
}
export function readS32(b: Uint8Array, off: number): number {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  return HOST_LE ? buf.readInt32LE(off) : buf.readInt32BE(off);
}

/**
 * A complete netlink message: nlmsghdr + payload, total length padded to NLMSG_ALIGN.
 * nlmsg_len counts the padding too (as iproute2 does), so messages can be concatenated
 * into one datagram as they are. seq/pid are left 0: the transport owns them.
 */
export function frame(type: number, flags: number, payload: readonly Uint8Array[]): Buffer {
  let len = NLMSG_HDRLEN;
  for (const p of payload) len += align4(p.length);
  const out = Buffer.alloc(len);
  writeU32(out, len, 0);
  writeU16(out, type, 4);
  writeU16(out, flags, 6);
  let off = NLMSG_HDRLEN;
  for (const p of payload) {
    out.set(p, off);
    off += align4(p.length);
  }
  return out;
}

export interface NlHeader {
  length: number;
  type: number;
  flags: number;
  seq: number;
  pid: number;
}

export function parseHeader(msg: Uint8Array): NlHeader {
  if (msg.length < NLMSG_HDRLEN) throw new RangeError(`netlink message shorter than its header (${msg.length})`);
  return {
    length: readU32(msg, 0),
    type: readU16(msg, 4),
    flags: readU16(msg, 6),
    seq: readU32(msg, 8),
    pid: readU32(msg, 12),
  };
}

/** Payload of one framed message (after the 16-byte header, up to nlmsg_len). */
export function payloadOf(msg: Buffer): Buffer {
  const h = parseHeader(msg);
  return msg.subarray(NLMSG_HDRLEN, Math.min(h.length, msg.length));
}

/** Splits a datagram (or a concatenation of messages) into messages. */
export function splitMessages(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= buf.length) {
    const len = readU32(buf, off);
    if (len < NLMSG_HDRLEN || off + len > buf.length) throw new RangeError(`bad nlmsg_len ${len} at offset ${off}`);
    out.push(buf.subarray(off, off + len));
    off += align4(len);
  }
  return out;
}

export interface RawAttr {
  type: number;
  nested: boolean;
  data: Buffer;
}

/** Walks an attribute list. Bounded by the buffer length; malformed lengths stop the walk. */
export function parseAttrs(buf: Buffer): RawAttr[] {
  const out: RawAttr[] = [];
  let off = 0;
  while (off + 4 <= buf.length) {
    const len = readU16(buf, off);
    const type = readU16(buf, off + 2);
    if (len < 4 || off + len > buf.length) break;
    out.push({ type: type & NLA_TYPE_MASK, nested: (type & NLA_F_NESTED) !== 0, data: buf.subarray(off + 4, off + len) });
    off += align4(len);
  }
  return out;
}

export function attrMap(buf: Buffer): Map<number, Buffer> {
  const m = new Map<number, Buffer>();
  for (const a of parseAttrs(buf)) m.set(a.type, a.data);
  return m;
}

export function readCString(b: Buffer): string {
  const nul = b.indexOf(0);
  return b.subarray(0, nul < 0 ? b.length : nul).toString('utf8');
}
