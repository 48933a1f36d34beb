/**
 * ctnetlink (NFNL_SUBSYS_CTNETLINK over NETLINK_NETFILTER) messages: the conntrack table
 * dump (IPCTNL_MSG_CT_GET with NLM_F_DUMP), one entry's deletion by its original tuple
 * (IPCTNL_MSG_CT_DELETE), and the entry parser. Numbers from linux/netfilter/nfnetlink.h
 * and linux/netfilter/nfnetlink_conntrack.h.
 *
 * Byte order, explicitly: nlmsghdr and nlattr headers are host order (`writeU16/32`);
 * the nfgenmsg res_id, ports (CTA_PROTO_*_PORT), CTA_MARK, CTA_ID, CTA_ZONE and the ICMP id
 * are big endian (network order), as the kernel's nla_put_be16/be32 write them.
 * Addresses are network-order bytes. Tuples are nested (NLA_F_NESTED, as libmnl sets it).
 */
import { IpAddress } from '../../common/ip';
import type { ConntrackEntry } from '../types';
import { NLA_F_NESTED, NLA_TYPE_MASK, NLMSG_HDRLEN, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST } from '../rtnetlink/constants';
import { align4, parseAttrs, readU16, writeU16, writeU32, type RawAttr } from '../rtnetlink/nlmsg';

export const NETLINK_NETFILTER = 12;
export const NFNL_SUBSYS_CTNETLINK = 1;
export const NFNETLINK_V0 = 0;
export const IPCTNL_MSG_CT_NEW = 0;
export const IPCTNL_MSG_CT_GET = 1;
export const IPCTNL_MSG_CT_DELETE = 2;
/** nlmsg_type of a ctnetlink message: subsystem in the high byte. */
export const ctType = (msg: number): number => (NFNL_SUBSYS_CTNETLINK << 8) | msg;

export const CTA_TUPLE_ORIG = 1;
export const CTA_TUPLE_REPLY = 2;
export const CTA_STATUS = 3;
export const CTA_MARK = 8;
export const CTA_ID = 12;
export const CTA_ZONE = 18;

export const CTA_TUPLE_IP = 1;
export const CTA_TUPLE_PROTO = 2;
export const CTA_TUPLE_ZONE = 3;

export const CTA_IP_V4_SRC = 1;
export const CTA_IP_V4_DST = 2;
export const CTA_IP_V6_SRC = 3;
export const CTA_IP_V6_DST = 4;

export const CTA_PROTO_NUM = 1;
export const CTA_PROTO_SRC_PORT = 2;
export const CTA_PROTO_DST_PORT = 3;
export const CTA_PROTO_ICMP_ID = 4;
export const CTA_PROTO_ICMP_TYPE = 5;
export const CTA_PROTO_ICMP_CODE = 6;
export const CTA_PROTO_ICMPV6_ID = 7;
export const CTA_PROTO_ICMPV6_TYPE = 8;
export const CTA_PROTO_ICMPV6_CODE = 9;

export const AF_UNSPEC = 0;
export const AF_INET = 2;
export const AF_INET6 = 10;

export const IPPROTO: Record<'tcp' | 'udp' | 'sctp' | 'icmp' | 'icmpv6', number> = { icmp: 1, tcp: 6, udp: 17, icmpv6: 58, sctp: 132 };
const PROTO_NAME = new Map<number, ConntrackEntry['protocol']>(Object.entries(IPPROTO).map(([k, v]) => [v, k as ConntrackEntry['protocol']]));

/** One direction of a connection, as ctnetlink carries it. */
export interface CtTuple {
  family: 4 | 6;
  src: string;
  dst: string;
  /** IP protocol number. */
  proto: number;
  srcPort?: number;
  dstPort?: number;
  icmpId?: number;
  icmpType?: number;
  icmpCode?: number;
}

/** A parsed entry: the public view plus what a precise delete needs. */
export interface CtRecord {
  entry: ConntrackEntry;
  orig: CtTuple;
  reply: CtTuple | undefined;
  /** CTA_ID: a delete carrying it refuses a newer entry reusing the tuple (ENOENT). */
  id: number | undefined;
  zone: number | undefined;
}

// ---- encoding ----

function nfgenmsg(family: number): Buffer {
  const b = Buffer.alloc(4);
  b[0] = family;
  b[1] = NFNETLINK_V0;
  b.writeUInt16BE(0, 2); // res_id, network order
  return b;
}

function attr(type: number, data: Buffer, nested = false): Buffer {
  const len = 4 + data.length;
  const out = Buffer.alloc(align4(len));
  writeU16(out, len, 0);
  writeU16(out, (type & NLA_TYPE_MASK) | (nested ? NLA_F_NESTED : 0), 2);
  data.copy(out, 4);
  return out;
}
const nest = (type: number, children: Buffer[]): Buffer => attr(type, Buffer.concat(children), true);
const u8 = (v: number): Buffer => Buffer.from([v & 0xff]);
function be16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v & 0xffff, 0);
  return b;
}
function be32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0, 0);
  return b;
}

function message(type: number, flags: number, family: number, attrs: Buffer[]): Buffer {
  const body = Buffer.concat([nfgenmsg(family), ...attrs]);
  const out = Buffer.alloc(NLMSG_HDRLEN + body.length);
  writeU32(out, out.length, 0);
  writeU16(out, type, 4);
  writeU16(out, flags, 6);
  body.copy(out, NLMSG_HDRLEN);
  return out;
}

/** CTA_TUPLE_* nest body: CTA_TUPLE_IP { src, dst } and CTA_TUPLE_PROTO { num, ports | icmp }. */
export function encodeTuple(type: number, t: CtTuple): Buffer {
  const v6 = t.family === 6;
  const ip = nest(CTA_TUPLE_IP, [
    attr(v6 ? CTA_IP_V6_SRC : CTA_IP_V4_SRC, IpAddress.parse(t.src, 'src').toBytes()),
    attr(v6 ? CTA_IP_V6_DST : CTA_IP_V4_DST, IpAddress.parse(t.dst, 'dst').toBytes()),
  ]);
  const proto: Buffer[] = [attr(CTA_PROTO_NUM, u8(t.proto))];
  if (t.proto === IPPROTO.icmp || t.proto === IPPROTO.icmpv6) {
    const [id, ty, code] = t.proto === IPPROTO.icmp
      ? [CTA_PROTO_ICMP_ID, CTA_PROTO_ICMP_TYPE, CTA_PROTO_ICMP_CODE]
      : [CTA_PROTO_ICMPV6_ID, CTA_PROTO_ICMPV6_TYPE, CTA_PROTO_ICMPV6_CODE];
    if (t.icmpId !== undefined) proto.push(attr(id, be16(t.icmpId)));
    if (t.icmpType !== undefined) proto.push(attr(ty, u8(t.icmpType)));
    if (t.icmpCode !== undefined) proto.push(attr(code, u8(t.icmpCode)));
  } else {
    if (t.srcPort !== undefined) proto.push(attr(CTA_PROTO_SRC_PORT, be16(t.srcPort)));
    if (t.dstPort !== undefined) proto.push(attr(CTA_PROTO_DST_PORT, be16(t.dstPort)));
  }
  return nest(type, [ip, nest(CTA_TUPLE_PROTO, proto)]);
}

/** `conntrack -L`: the whole table of `family` (4, 6, or both when undefined). */
export function encodeCtDump(family?: 4 | 6): Buffer {
  const af = family === 4 ? AF_INET : family === 6 ? AF_INET6 : AF_UNSPEC;
  return message(ctType(IPCTNL_MSG_CT_GET), NLM_F_REQUEST | NLM_F_DUMP, af, []);
}

/** `conntrack -D` of one entry by its original tuple (plus its id and zone when known). */
export function encodeCtDelete(orig: CtTuple, options: { id?: number; zone?: number } = {}): Buffer {
  const attrs = [encodeTuple(CTA_TUPLE_ORIG, orig)];
  if (options.zone !== undefined && options.zone !== 0) attrs.push(attr(CTA_ZONE, be16(options.zone)));
  if (options.id !== undefined) attrs.push(attr(CTA_ID, be32(options.id)));
  return message(ctType(IPCTNL_MSG_CT_DELETE), NLM_F_REQUEST | NLM_F_ACK, orig.family === 6 ? AF_INET6 : AF_INET, attrs);
}

// ---- decoding ----

function find(attrs: RawAttr[], type: number): Buffer | undefined {
  return attrs.find((a) => a.type === type)?.data;
}

export function decodeTuple(data: Buffer, family: 4 | 6): CtTuple | undefined {
  const top = parseAttrs(data);
  const ipAttr = find(top, CTA_TUPLE_IP);
  const protoAttr = find(top, CTA_TUPLE_PROTO);
  if (!ipAttr || !protoAttr) return undefined;
  const ip = parseAttrs(ipAttr);
  const src = find(ip, family === 4 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC);
  const dst = find(ip, family === 4 ? CTA_IP_V4_DST : CTA_IP_V6_DST);
  if (!src || !dst) return undefined;
  const p = parseAttrs(protoAttr);
  const num = find(p, CTA_PROTO_NUM);
  const t: CtTuple = {
    family,
    src: IpAddress.fromBytes(src).toString(),
    dst: IpAddress.fromBytes(dst).toString(),
    proto: num && num.length >= 1 ? num[0]! : 0,
  };
  const sport = find(p, CTA_PROTO_SRC_PORT);
  const dport = find(p, CTA_PROTO_DST_PORT);
  if (sport && sport.length >= 2) t.srcPort = sport.readUInt16BE(0);
  if (dport && dport.length >= 2) t.dstPort = dport.readUInt16BE(0);
  const v6 = t.proto === IPPROTO.icmpv6;
  const id = find(p, v6 ? CTA_PROTO_ICMPV6_ID : CTA_PROTO_ICMP_ID);
  const ty = find(p, v6 ? CTA_PROTO_ICMPV6_TYPE : CTA_PROTO_ICMP_TYPE);
  const code = find(p, v6 ? CTA_PROTO_ICMPV6_CODE : CTA_PROTO_ICMP_CODE);
  if (id && id.length >= 2) t.icmpId = id.readUInt16BE(0);
  if (ty && ty.length >= 1) t.icmpType = ty[0]!;
  if (code && code.length >= 1) t.icmpCode = code[0]!;
  return t;
}

/** One IPCTNL_MSG_CT_NEW message of a dump; undefined for anything else. */
export function decodeCtMessage(msg: Buffer): CtRecord | undefined {
  if (msg.length < NLMSG_HDRLEN + 4) return undefined;
  const type = readU16(msg, 4);
  if (type !== ctType(IPCTNL_MSG_CT_NEW)) return undefined;
  const len = Math.min(msg.readUInt32LE(0), msg.length);
  const af = msg[NLMSG_HDRLEN]!;
  if (af !== AF_INET && af !== AF_INET6) return undefined;
  const family: 4 | 6 = af === AF_INET ? 4 : 6;
  const attrs = parseAttrs(msg.subarray(NLMSG_HDRLEN + 4, len));
  const origData = find(attrs, CTA_TUPLE_ORIG);
  const orig = origData ? decodeTuple(origData, family) : undefined;
  if (!orig) return undefined;
  const replyData = find(attrs, CTA_TUPLE_REPLY);
  const reply = replyData ? decodeTuple(replyData, family) : undefined;
  const mark = find(attrs, CTA_MARK);
  const id = find(attrs, CTA_ID);
  const zone = find(attrs, CTA_ZONE);
  const entry: ConntrackEntry = {
    family,
    protocol: PROTO_NAME.get(orig.proto) ?? orig.proto,
    src: orig.src,
    dst: orig.dst,
    srcPort: orig.srcPort,
    dstPort: orig.dstPort,
    replySrc: reply?.src ?? orig.dst,
    replySrcPort: reply ? reply.srcPort : orig.dstPort,
    mark: mark && mark.length >= 4 ? mark.readUInt32BE(0) : 0,
  };
  return {
    entry,
    orig,
    reply,
    id: id && id.length >= 4 ? id.readUInt32BE(0) : undefined,
    zone: zone && zone.length >= 2 ? zone.readUInt16BE(0) : undefined,
  };
}
