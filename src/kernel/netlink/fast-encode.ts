/**
 * Fast encoders for the three rtnetlink messages the overlay programs by the ten
 * thousand: IPv4 routes, IPv4 neighbour entries and VXLAN FDB entries.
 *
 * Hand-written rather than built on a schema codec (npm `netlink`, or the full codecs in
 * src/kernel/rtnetlink/) because these sit on the hot path of a 10k-entry reconcile:
 * every message of one kind has the same layout, so the encoder builds the header and
 * attributes once as a template and per entry writes only the bytes that change
 * (destination, MAC). Inputs are columns (Uint32Array of IPv4 addresses, one Buffer of
 * 6-byte MACs), not objects, and a MessageSlab can be kept and reused, so a steady
 * reconcile allocates nothing it could keep.
 *
 * Messages carry seq = 0 and pid = 0; the transport assigns both (and NLM_F_ACK).
 */
import { InvalidInputError } from '../../common/errors';

export const AF_INET = 2;
export const AF_BRIDGE = 7;
export const RTM_NEWROUTE = 24;
export const RTM_DELROUTE = 25;
export const RTM_NEWNEIGH = 28;
export const RTM_DELNEIGH = 29;
export const NLM_F_REQUEST = 0x1;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
export const NLM_F_APPEND = 0x800;
export const RTPROT_BOOT = 3;
export const RTPROT_STATIC = 4;
export const RT_TABLE_MAIN = 254;
export const RT_SCOPE_UNIVERSE = 0;
export const RT_SCOPE_LINK = 253;
export const RT_SCOPE_NOWHERE = 255;
export const RTN_UNICAST = 1;
export const RTNH_F_ONLINK = 4;
export const NUD_PERMANENT = 0x80;
export const NTF_SELF = 0x02;
const RTA_DST = 1;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTA_PRIORITY = 6;
const RTA_TABLE = 15;
const NDA_DST = 1;
const NDA_LLADDR = 2;

export type WriteOp = 'add' | 'replace' | 'delete' | 'append';

function opFlags(op: WriteOp): number {
  switch (op) {
    case 'add':
      return NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL;
    case 'replace':
      return NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE;
    case 'append':
      return NLM_F_REQUEST | NLM_F_CREATE | NLM_F_APPEND;
    case 'delete':
      return NLM_F_REQUEST;
  }
}

/** "10.1.2.3" → 0x0a010203. */
export function ipv4ToU32(text: string, field = 'ip'): number {
  const parts = typeof text === 'string' ? text.split('.') : [];
  if (parts.length !== 4) throw new InvalidInputError(field, text, 'not an IPv4 address');
  let v = 0;
  for (const part of parts) {
    const n = Number(part);
    if (!/^\d{1,3}$/.test(part) || n > 255) throw new InvalidInputError(field, text, 'not an IPv4 address');
    v = v * 256 + n;
  }
  return v >>> 0;
}

/** Builds a message template attribute by attribute and remembers where values go. */
class TemplateBuilder {
  private readonly parts: Buffer[] = [];
  /** Bytes so far, each part padded to 4. */
  private aligned = 0;
  /** End of the last byte written (nlmsg_len: a trailing odd-sized attribute stays unpadded). */
  private end = 0;

  header(type: number, flags: number, body: Buffer): void {
    const h = Buffer.alloc(16);
    h.writeUInt16LE(type, 4);
    h.writeUInt16LE(flags, 6);
    this.push(h, h.length);
    this.push(body, body.length);
  }

  /** Appends an attribute; returns the byte offset of its value. */
  attr(type: number, value: Buffer): number {
    const a = Buffer.alloc((4 + value.length + 3) & ~3);
    a.writeUInt16LE(4 + value.length, 0);
    a.writeUInt16LE(type, 2);
    value.copy(a, 4);
    const at = this.aligned + 4;
    this.push(a, 4 + value.length);
    return at;
  }

  private push(b: Buffer, used: number): void {
    this.parts.push(b);
    this.end = this.aligned + used;
    this.aligned += b.length;
  }

  /** The template (padded to 4 bytes) and nlmsg_len (unpadded, as the kernel expects). */
  build(): { template: Buffer; length: number } {
    const template = Buffer.concat(this.parts);
    template.writeUInt32LE(this.end, 0);
    return { template, length: this.end };
  }
}

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0, 0);
  return b;
}

/** Base: a fixed template copied into a slot, then the per-entry bytes written. */
abstract class FixedEncoder {
  /** nlmsg_len of every message (may be unaligned; the transport pads). */
  readonly length: number;
  /** Slot size in a slab: length rounded up to 4. */
  readonly stride: number;
  protected readonly template: Buffer;

  protected constructor(built: { template: Buffer; length: number }) {
    this.template = built.template;
    this.length = built.length;
    this.stride = (built.length + 3) & ~3;
  }

  protected slot(out: Buffer, offset: number): void {
    this.template.copy(out, offset, 0, this.stride);
  }
}

export interface Ipv4RouteSpec {
  op: WriteOp;
  /** Next hop; omit for a device route. */
  gateway?: string;
  /** Output interface index. */
  oif?: number;
  onlink?: boolean;
  protocol?: number;
  table?: number;
  metric?: number;
  /** rtm_scope; defaults to link for device routes, universe with a gateway (nowhere for deletes). */
  scope?: number;
  /** rtm_type; default RTN_UNICAST (a delete may pass RTN_UNSPEC = 0 to match any type). */
  type?: number;
}

/** RTM_NEWROUTE / RTM_DELROUTE for IPv4 destinations sharing gateway, device, table and protocol. */
export class Ipv4RouteEncoder extends FixedEncoder {
  private readonly dstAt: number;

  constructor(spec: Ipv4RouteSpec) {
    const table = spec.table ?? RT_TABLE_MAIN;
    const b = new TemplateBuilder();
    const body = Buffer.alloc(12);
    body[0] = AF_INET;
    body[4] = table < 256 ? table : 0;
    body[5] = spec.protocol ?? RTPROT_STATIC;
    body[6] = spec.scope ?? (spec.op === 'delete' ? RT_SCOPE_NOWHERE : spec.gateway ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK);
    body[7] = spec.type ?? RTN_UNICAST;
    body.writeUInt32LE(spec.onlink ? RTNH_F_ONLINK : 0, 8);
    b.header(spec.op === 'delete' ? RTM_DELROUTE : RTM_NEWROUTE, opFlags(spec.op), body);
    b.attr(RTA_TABLE, u32(table));
    if (spec.gateway !== undefined) b.attr(RTA_GATEWAY, u32be(ipv4ToU32(spec.gateway, 'gateway')));
    if (spec.oif !== undefined) b.attr(RTA_OIF, u32(spec.oif));
    if (spec.metric !== undefined) b.attr(RTA_PRIORITY, u32(spec.metric));
    const dstAt = b.attr(RTA_DST, Buffer.alloc(4));
    super(b.build());
    this.dstAt = dstAt;
  }

  /** Writes one message for dst/dstLen at `offset` (needs `stride` bytes). */
  writeInto(out: Buffer, offset: number, dst: number, dstLen: number): void {
    this.slot(out, offset);
    out[offset + 17] = dstLen;
    out.writeUInt32BE(dst >>> 0, offset + this.dstAt);
  }

  encode(dst: string, dstLen: number): Buffer {
    const out = Buffer.alloc(this.stride);
    this.writeInto(out, 0, ipv4ToU32(dst, 'dst'), dstLen);
    return out.subarray(0, this.length);
  }

  /** One message per dsts[i] (prefix length dstLen or dstLens[i]). */
  encodeMany(dsts: Uint32Array, dstLen: number | Uint8Array, slab: MessageSlab = new MessageSlab()): Buffer[] {
    const views = slab.layout(this.stride, this.length, dsts.length);
    const out = slab.buffer;
    for (let i = 0; i < dsts.length; i++) {
      this.writeInto(out, i * this.stride, dsts[i], typeof dstLen === 'number' ? dstLen : dstLen[i]);
    }
    return views;
  }
}

export interface NeighSpec {
  op: WriteOp;
  /** Interface index the entries live on. */
  ifindex: number;
  /** NUD_* state; default NUD_PERMANENT. */
  state?: number;
}

/**
 * RTM_NEWNEIGH / RTM_DELNEIGH for IPv4 neighbours (`ip neigh add IP lladdr MAC dev X nud
 * permanent`). NDA_LLADDR comes last, so nlmsg_len is 46: unaligned, as iproute2 sends it.
 */
export class Ipv4NeighEncoder extends FixedEncoder {
  private readonly ipAt: number;
  private readonly macAt: number;

  constructor(spec: NeighSpec) {
    const b = new TemplateBuilder();
    const body = Buffer.alloc(12);
    body[0] = AF_INET;
    body.writeInt32LE(spec.ifindex, 4);
    body.writeUInt16LE(spec.state ?? NUD_PERMANENT, 8);
    b.header(spec.op === 'delete' ? RTM_DELNEIGH : RTM_NEWNEIGH, opFlags(spec.op), body);
    const ipAt = b.attr(NDA_DST, Buffer.alloc(4));
    const macAt = b.attr(NDA_LLADDR, Buffer.alloc(6));
    super(b.build());
    this.ipAt = ipAt;
    this.macAt = macAt;
  }

  writeInto(out: Buffer, offset: number, ip: number, macs: Uint8Array, macOffset: number): void {
    this.slot(out, offset);
    out.writeUInt32BE(ip >>> 0, offset + this.ipAt);
    out.set(macs.subarray(macOffset, macOffset + 6), offset + this.macAt);
  }

  /** ips[i] with the MAC at macs[6i .. 6i+6). */
  encodeMany(ips: Uint32Array, macs: Uint8Array, slab: MessageSlab = new MessageSlab()): Buffer[] {
    checkMacs(macs, ips.length);
    const views = slab.layout(this.stride, this.length, ips.length);
    for (let i = 0; i < ips.length; i++) this.writeInto(slab.buffer, i * this.stride, ips[i], macs, 6 * i);
    return views;
  }
}

export interface FdbSpec {
  op: WriteOp;
  /** The VXLAN (or bridge port) interface index. */
  ifindex: number;
  state?: number;
  /** ndm_flags; default NTF_SELF (the device's own FDB, as `bridge fdb ... self`). */
  flags?: number;
}

/** `bridge fdb add MAC dev vxlan0 dst IP self permanent`: AF_BRIDGE neighbour messages. */
export class FdbEncoder extends FixedEncoder {
  private readonly macAt: number;
  private readonly dstAt: number;

  constructor(spec: FdbSpec) {
    const b = new TemplateBuilder();
    const body = Buffer.alloc(12);
    body[0] = AF_BRIDGE;
    body.writeInt32LE(spec.ifindex, 4);
    body.writeUInt16LE(spec.state ?? NUD_PERMANENT, 8);
    body[10] = spec.flags ?? NTF_SELF;
    b.header(spec.op === 'delete' ? RTM_DELNEIGH : RTM_NEWNEIGH, opFlags(spec.op), body);
    const macAt = b.attr(NDA_LLADDR, Buffer.alloc(6));
    const dstAt = b.attr(NDA_DST, Buffer.alloc(4));
    super(b.build());
    this.macAt = macAt;
    this.dstAt = dstAt;
  }

  writeInto(out: Buffer, offset: number, macs: Uint8Array, macOffset: number, dst: number): void {
    this.slot(out, offset);
    out.set(macs.subarray(macOffset, macOffset + 6), offset + this.macAt);
    out.writeUInt32BE(dst >>> 0, offset + this.dstAt);
  }

  /** MAC macs[6i .. 6i+6) → remote VTEP dsts[i]. */
  encodeMany(macs: Uint8Array, dsts: Uint32Array, slab: MessageSlab = new MessageSlab()): Buffer[] {
    checkMacs(macs, dsts.length);
    const views = slab.layout(this.stride, this.length, dsts.length);
    for (let i = 0; i < dsts.length; i++) this.writeInto(slab.buffer, i * this.stride, macs, 6 * i, dsts[i]);
    return views;
  }
}

function checkMacs(macs: Uint8Array, count: number): void {
  if (macs.length < 6 * count) throw new InvalidInputError('macs', macs.length, `need ${6 * count} bytes for ${count} MACs`);
}

function u32be(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0, 0);
  return b;
}

/**
 * Backing store for encodeMany: one buffer and the message views into it. Keep one per
 * call site and the views are reused while the layout and count stay the same. The
 * views are only valid until the slab is used again.
 */
export class MessageSlab {
  buffer: Buffer = Buffer.alloc(0);
  private views: Buffer[] = [];
  private stride = 0;
  private length = 0;

  layout(stride: number, length: number, count: number): Buffer[] {
    let grown = false;
    if (this.buffer.length < stride * count) {
      this.buffer = Buffer.alloc(stride * count);
      grown = true;
    }
    if (grown || stride !== this.stride || length !== this.length || this.views.length < count) {
      this.stride = stride;
      this.length = length;
      this.views = new Array<Buffer>(count);
      for (let i = 0; i < count; i++) this.views[i] = this.buffer.subarray(i * stride, i * stride + length);
    }
    return this.views.length === count ? this.views : this.views.slice(0, count);
  }
}
