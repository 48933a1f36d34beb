/**
 * IPVS over generic netlink: family "IPVS" (resolved with CTRL_CMD_GETFAMILY), version 1.
 * Numbers from include/uapi/linux/ip_vs.h and linux/genetlink.h.
 *
 * Message layout: nlmsghdr (type = the family id the controller handed out) + genlmsghdr
 * {u8 cmd, u8 version, u16 reserved} + attributes. A service travels nested in
 * IPVS_CMD_ATTR_SERVICE, a destination nested in IPVS_CMD_ATTR_DEST next to the service
 * it belongs to. The nests are sent with NLA_F_NESTED, like ipvsadm 1.31 (libnl-3); the
 * kernel parses them with nla_parse_nested_deprecated and accepts both, and its own dump
 * answers come without the flag.
 *
 * Byte order, explicitly: nlmsghdr, genlmsghdr, nlattr headers and all u16/u32 values
 * (AF, PROTOCOL, FWMARK, TIMEOUT, FWD_METHOD, WEIGHT, thresholds, counters) are host
 * order; PORT attributes are big endian (nla_put_be16). NETMASK is a __be32: for IPv4
 * the network-order mask (255.255.255.255 is 0xffffffff either way), for IPv6 the kernel
 * compares it as a plain number against 1..128, so it is a host-order prefix length (as
 * libipvs sends it). Addresses are `union nf_inet_addr`: 16 bytes, an IPv4 address in the
 * first 4, the rest zero (the kernel always answers 16; we always send 16, as libipvs).
 */
import { IpAddress } from '../../common/ip';
import { NLMSG_HDRLEN, NLM_F_DUMP } from '../rtnetlink/constants';
import { attr, cstr, frame, parseAttrs, parseHeader, readCString, readU16, readU32, u16, u32 } from '../rtnetlink/nlmsg';

export const NETLINK_GENERIC = 16;
export const GENL_HDRLEN = 4;
export const GENL_ID_CTRL = 0x10;
export const CTRL_CMD_NEWFAMILY = 1;
export const CTRL_CMD_GETFAMILY = 3;
export const CTRL_ATTR_FAMILY_ID = 1;
export const CTRL_ATTR_FAMILY_NAME = 2;
export const CTRL_ATTR_VERSION = 3;

export const IPVS_GENL_NAME = 'IPVS';
export const IPVS_GENL_VERSION = 1;

export const IPVS_CMD_NEW_SERVICE = 1;
export const IPVS_CMD_SET_SERVICE = 2;
export const IPVS_CMD_DEL_SERVICE = 3;
export const IPVS_CMD_GET_SERVICE = 4;
export const IPVS_CMD_NEW_DEST = 5;
export const IPVS_CMD_SET_DEST = 6;
export const IPVS_CMD_DEL_DEST = 7;
export const IPVS_CMD_GET_DEST = 8;
export const IPVS_CMD_GET_INFO = 15;
export const IPVS_CMD_FLUSH = 17;

export const IPVS_CMD_ATTR_SERVICE = 1;
export const IPVS_CMD_ATTR_DEST = 2;

export const IPVS_SVC_ATTR_AF = 1;
export const IPVS_SVC_ATTR_PROTOCOL = 2;
export const IPVS_SVC_ATTR_ADDR = 3;
export const IPVS_SVC_ATTR_PORT = 4;
export const IPVS_SVC_ATTR_FWMARK = 5;
export const IPVS_SVC_ATTR_SCHED_NAME = 6;
export const IPVS_SVC_ATTR_FLAGS = 7;
export const IPVS_SVC_ATTR_TIMEOUT = 8;
export const IPVS_SVC_ATTR_NETMASK = 9;
export const IPVS_SVC_ATTR_STATS = 10;
export const IPVS_SVC_ATTR_PE_NAME = 11;

export const IPVS_DEST_ATTR_ADDR = 1;
export const IPVS_DEST_ATTR_PORT = 2;
export const IPVS_DEST_ATTR_FWD_METHOD = 3;
export const IPVS_DEST_ATTR_WEIGHT = 4;
export const IPVS_DEST_ATTR_U_THRESH = 5;
export const IPVS_DEST_ATTR_L_THRESH = 6;
export const IPVS_DEST_ATTR_ACTIVE_CONNS = 7;
export const IPVS_DEST_ATTR_INACT_CONNS = 8;
export const IPVS_DEST_ATTR_PERSIST_CONNS = 9;
export const IPVS_DEST_ATTR_ADDR_FAMILY = 11;

/** ip_vs_flags.flags bits. */
export const IP_VS_SVC_F_PERSISTENT = 0x0001;
export const IP_VS_SVC_F_HASHED = 0x0002;
export const IP_VS_SVC_F_ONEPACKET = 0x0004;
export const IP_VS_SVC_F_SCHED1 = 0x0008;
export const IP_VS_SVC_F_SCHED2 = 0x0010;
export const IP_VS_SVC_F_SCHED3 = 0x0020;

/** IP_VS_CONN_F_FWD_MASK values. */
export const IP_VS_CONN_F_MASQ = 0;
export const IP_VS_CONN_F_LOCALNODE = 1;
export const IP_VS_CONN_F_TUNNEL = 2;
export const IP_VS_CONN_F_DROUTE = 3;
export const IP_VS_CONN_F_FWD_MASK = 7;

export const AF_INET = 2;
export const AF_INET6 = 10;

export type IpvsProtocol = 'tcp' | 'udp' | 'sctp';
const PROTO_NUM: Record<IpvsProtocol, number> = { tcp: 6, udp: 17, sctp: 132 };
const PROTO_NAME = new Map<number, IpvsProtocol>(Object.entries(PROTO_NUM).map(([k, v]) => [v, k as IpvsProtocol]));

/** Forwarding method of a real server: NAT (`masq`, what kube-proxy uses), local node, IPIP tunnel, direct routing. */
export type IpvsForward = 'masq' | 'local' | 'tunnel' | 'route';
const FWD_NUM: Record<IpvsForward, number> = { masq: IP_VS_CONN_F_MASQ, local: IP_VS_CONN_F_LOCALNODE, tunnel: IP_VS_CONN_F_TUNNEL, route: IP_VS_CONN_F_DROUTE };
const FWD_NAME = new Map<number, IpvsForward>(Object.entries(FWD_NUM).map(([k, v]) => [v, k as IpvsForward]));

/**
 * What names one virtual service: family + protocol + address + port, or family + fwmark.
 * Addresses in canonical text form.
 */
export type IpvsServiceKey =
  | { family: 4 | 6; protocol: IpvsProtocol; address: string; port: number; fwmark?: undefined }
  | { family: 4 | 6; fwmark: number; protocol?: undefined; address?: undefined; port?: undefined };

/** A virtual service. */
export type IpvsService = IpvsServiceKey & {
  /** Scheduler name: rr, wrr, lc, wlc, sh, mh, ... (the kernel loads ip_vs_<name>). */
  scheduler: string;
  /** Session affinity (IP_VS_SVC_F_PERSISTENT): a client sticks to its real server for `timeout` seconds. */
  persistent?: boolean;
  /** Other IP_VS_SVC_F_* bits (sched flags, one-packet); HASHED is the kernel's and is ignored. */
  flags?: number;
  /** Persistence timeout in seconds (0 when not persistent). */
  timeout?: number;
  /** Persistence granularity: IPv4 netmask in dotted form or IPv6 prefix length; default /32 or /128. */
  netmask?: string | number;
};

/** A real server (destination) of a virtual service. */
export interface IpvsDest {
  address: string;
  port: number;
  /** Address family of the real server (may differ from the service's with tunnel forwarding). Default: the service's. */
  family?: 4 | 6;
  /** Default masq. */
  forward?: IpvsForward;
  /** 0 = no new connections (graceful termination); existing ones continue. */
  weight: number;
  upperThreshold?: number;
  lowerThreshold?: number;
  /** Read only (dumps). */
  activeConns?: number;
  inactiveConns?: number;
  persistConns?: number;
}

// --------------------------------------------------------------------------- encoding

function genlFrame(familyId: number, cmd: number, flags: number, attrs: readonly Buffer[], version = IPVS_GENL_VERSION): Buffer {
  return frame(familyId, flags, [Buffer.from([cmd, version, 0, 0]), ...attrs]);
}

/** 16-byte union nf_inet_addr. */
function inetAddr(address: string, family: 4 | 6, field: string): Buffer {
  const ip = IpAddress.parse(address, field);
  if (ip.family !== family) throw new RangeError(`${field}: ${address} is not an IPv${family} address`);
  const out = Buffer.alloc(16);
  out.set(ip.toBytes(), 0);
  return out;
}

function be16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v, 0);
  return b;
}

const af = (family: 4 | 6): number => (family === 4 ? AF_INET : AF_INET6);

function checkPort(p: number, field: string): void {
  if (!Number.isInteger(p) || p < 0 || p > 65535) throw new RangeError(`${field}: expected 0..65535, got ${p}`);
}

/** The identity attributes of a service (what DEL_SERVICE and the dest commands carry). */
function serviceKeyAttrs(s: IpvsServiceKey): Buffer[] {
  if (s.family !== 4 && s.family !== 6) throw new RangeError(`service.family: expected 4 or 6, got ${String(s.family)}`);
  const out = [attr(IPVS_SVC_ATTR_AF, u16(af(s.family)))];
  if (s.fwmark !== undefined) {
    if (!Number.isInteger(s.fwmark) || s.fwmark <= 0 || s.fwmark > 0xffffffff) throw new RangeError(`service.fwmark: expected 1..2^32-1, got ${s.fwmark}`);
    out.push(attr(IPVS_SVC_ATTR_FWMARK, u32(s.fwmark)));
    return out;
  }
  const proto = PROTO_NUM[s.protocol];
  if (proto === undefined) throw new RangeError(`service.protocol: expected tcp, udp or sctp, got ${String(s.protocol)}`);
  checkPort(s.port, 'service.port');
  out.push(attr(IPVS_SVC_ATTR_PROTOCOL, u16(proto)), attr(IPVS_SVC_ATTR_ADDR, inetAddr(s.address, s.family, 'service.address')), attr(IPVS_SVC_ATTR_PORT, be16(s.port)));
  return out;
}

function netmaskValue(s: IpvsService): Buffer {
  if (s.family === 4) {
    const m = s.netmask === undefined ? '255.255.255.255' : typeof s.netmask === 'number' ? prefixToMask4(s.netmask) : s.netmask;
    const ip = IpAddress.parse(m, 'service.netmask');
    if (ip.family !== 4) throw new RangeError(`service.netmask: expected an IPv4 mask, got ${m}`);
    return Buffer.from(ip.toBytes()); // network order
  }
  const plen = s.netmask === undefined ? 128 : Number(s.netmask);
  if (!Number.isInteger(plen) || plen < 1 || plen > 128) throw new RangeError(`service.netmask: expected an IPv6 prefix length 1..128, got ${String(s.netmask)}`);
  return u32(plen);
}

function prefixToMask4(plen: number): string {
  if (!Number.isInteger(plen) || plen < 0 || plen > 32) throw new RangeError(`service.netmask: expected 0..32, got ${plen}`);
  const v = plen === 0 ? 0 : (0xffffffff << (32 - plen)) >>> 0;
  return [24, 16, 8, 0].map((s) => (v >>> s) & 0xff).join('.');
}

/** All service attributes (NEW/SET_SERVICE need every one of them: "full entry"). */
function serviceFullAttrs(s: IpvsService): Buffer[] {
  if (typeof s.scheduler !== 'string' || !/^[a-z0-9_]{1,15}$/.test(s.scheduler)) throw new RangeError(`service.scheduler: expected a scheduler name (rr, wrr, lc, ...), got ${String(s.scheduler)}`);
  const flagBits = ((s.flags ?? 0) & ~IP_VS_SVC_F_HASHED) | (s.persistent ? IP_VS_SVC_F_PERSISTENT : 0);
  const flags = Buffer.alloc(8);
  flags.set(u32(flagBits), 0);
  flags.set(u32(0xffffffff), 4); // mask: set every bit to what we say (libipvs does the same)
  const timeout = s.timeout ?? 0;
  if (!Number.isInteger(timeout) || timeout < 0) throw new RangeError(`service.timeout: expected seconds >= 0, got ${timeout}`);
  return [
    ...serviceKeyAttrs(s),
    attr(IPVS_SVC_ATTR_SCHED_NAME, cstr(s.scheduler)),
    attr(IPVS_SVC_ATTR_FLAGS, flags),
    attr(IPVS_SVC_ATTR_TIMEOUT, u32(timeout)),
    attr(IPVS_SVC_ATTR_NETMASK, netmaskValue(s)),
  ];
}

function destAttrs(d: IpvsDest, svcFamily: 4 | 6, full: boolean): Buffer[] {
  const family = d.family ?? svcFamily;
  checkPort(d.port, 'dest.port');
  // ADDR_FAMILY first, as ipvsadm sends it (kernels before 4.15 ignore it: unknown attributes are skipped)
  const out = [attr(IPVS_DEST_ATTR_ADDR_FAMILY, u16(af(family))), attr(IPVS_DEST_ATTR_ADDR, inetAddr(d.address, family, 'dest.address')), attr(IPVS_DEST_ATTR_PORT, be16(d.port))];
  if (full) {
    const fwd = FWD_NUM[d.forward ?? 'masq'];
    if (fwd === undefined) throw new RangeError(`dest.forward: expected masq, local, tunnel or route, got ${String(d.forward)}`);
    for (const [k, v] of [['weight', d.weight], ['upperThreshold', d.upperThreshold ?? 0], ['lowerThreshold', d.lowerThreshold ?? 0]] as const) {
      if (!Number.isInteger(v) || v < 0 || v > 0x7fffffff) throw new RangeError(`dest.${k}: expected 0..2^31-1, got ${v}`);
    }
    out.push(
      attr(IPVS_DEST_ATTR_FWD_METHOD, u32(fwd)),
      attr(IPVS_DEST_ATTR_WEIGHT, u32(d.weight)),
      attr(IPVS_DEST_ATTR_U_THRESH, u32(d.upperThreshold ?? 0)),
      attr(IPVS_DEST_ATTR_L_THRESH, u32(d.lowerThreshold ?? 0)),
    );
  }
  return out;
}

/** CTRL_CMD_GETFAMILY for `name` (the reply carries CTRL_ATTR_FAMILY_ID). */
export function encodeGetFamily(name = IPVS_GENL_NAME): Buffer {
  return genlFrame(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 0, [attr(CTRL_ATTR_FAMILY_NAME, cstr(name))], 1);
}

/** The family id in a CTRL_CMD_NEWFAMILY reply, or undefined. */
export function decodeFamilyId(msg: Buffer): number | undefined {
  const h = parseHeader(msg);
  if (h.type !== GENL_ID_CTRL || msg[NLMSG_HDRLEN] !== CTRL_CMD_NEWFAMILY) return undefined;
  for (const a of parseAttrs(msg.subarray(NLMSG_HDRLEN + GENL_HDRLEN, h.length))) {
    if (a.type === CTRL_ATTR_FAMILY_ID && a.data.length >= 2) return readU16(a.data, 0);
  }
  return undefined;
}

export function encodeNewService(familyId: number, s: IpvsService): Buffer {
  return genlFrame(familyId, IPVS_CMD_NEW_SERVICE, 0, [attr(IPVS_CMD_ATTR_SERVICE, serviceFullAttrs(s), true)]);
}
export function encodeSetService(familyId: number, s: IpvsService): Buffer {
  return genlFrame(familyId, IPVS_CMD_SET_SERVICE, 0, [attr(IPVS_CMD_ATTR_SERVICE, serviceFullAttrs(s), true)]);
}
export function encodeDelService(familyId: number, s: IpvsServiceKey): Buffer {
  return genlFrame(familyId, IPVS_CMD_DEL_SERVICE, 0, [attr(IPVS_CMD_ATTR_SERVICE, serviceKeyAttrs(s), true)]);
}
export function encodeNewDest(familyId: number, s: IpvsServiceKey, d: IpvsDest): Buffer {
  return genlFrame(familyId, IPVS_CMD_NEW_DEST, 0, [attr(IPVS_CMD_ATTR_SERVICE, serviceKeyAttrs(s), true), attr(IPVS_CMD_ATTR_DEST, destAttrs(d, s.family, true), true)]);
}
export function encodeSetDest(familyId: number, s: IpvsServiceKey, d: IpvsDest): Buffer {
  return genlFrame(familyId, IPVS_CMD_SET_DEST, 0, [attr(IPVS_CMD_ATTR_SERVICE, serviceKeyAttrs(s), true), attr(IPVS_CMD_ATTR_DEST, destAttrs(d, s.family, true), true)]);
}
export function encodeDelDest(familyId: number, s: IpvsServiceKey, d: Pick<IpvsDest, 'address' | 'port' | 'family'>): Buffer {
  return genlFrame(familyId, IPVS_CMD_DEL_DEST, 0, [attr(IPVS_CMD_ATTR_SERVICE, serviceKeyAttrs(s), true), attr(IPVS_CMD_ATTR_DEST, destAttrs(d as IpvsDest, s.family, false), true)]);
}
/** GET_SERVICE dump of every virtual service of the netns. */
export function encodeGetServices(familyId: number): Buffer {
  return genlFrame(familyId, IPVS_CMD_GET_SERVICE, NLM_F_DUMP, []);
}
/** GET_DEST dump of one service's real servers. */
export function encodeGetDests(familyId: number, s: IpvsServiceKey): Buffer {
  return genlFrame(familyId, IPVS_CMD_GET_DEST, NLM_F_DUMP, [attr(IPVS_CMD_ATTR_SERVICE, serviceKeyAttrs(s), true)]);
}
/** Removes every service (and so every destination) of the netns. */
export function encodeFlush(familyId: number): Buffer {
  return genlFrame(familyId, IPVS_CMD_FLUSH, 0, []);
}

// --------------------------------------------------------------------------- decoding

function nestOf(msg: Buffer, familyId: number, cmd: number, nestType: number): Buffer | undefined {
  const h = parseHeader(msg);
  if (h.type !== familyId || msg.length < NLMSG_HDRLEN + GENL_HDRLEN || msg[NLMSG_HDRLEN] !== cmd) return undefined;
  for (const a of parseAttrs(msg.subarray(NLMSG_HDRLEN + GENL_HDRLEN, Math.min(h.length, msg.length)))) {
    if (a.type === nestType) return a.data;
  }
  return undefined;
}

function addrText(data: Buffer | undefined, family: 4 | 6): string {
  if (!data) return family === 4 ? '0.0.0.0' : '::';
  return IpAddress.fromBytes(data.subarray(0, family === 4 ? 4 : 16)).toString();
}

function familyOf(afNum: number | undefined): 4 | 6 | undefined {
  return afNum === AF_INET ? 4 : afNum === AF_INET6 ? 6 : undefined;
}

/** One service of a GET_SERVICE dump (a message with cmd NEW_SERVICE), or undefined for anything else. */
export function decodeService(msg: Buffer, familyId: number): IpvsService | undefined {
  const nest = nestOf(msg, familyId, IPVS_CMD_NEW_SERVICE, IPVS_CMD_ATTR_SERVICE);
  if (!nest) return undefined;
  const m = new Map<number, Buffer>();
  for (const a of parseAttrs(nest)) m.set(a.type, a.data);
  const family = familyOf(m.has(IPVS_SVC_ATTR_AF) ? readU16(m.get(IPVS_SVC_ATTR_AF)!, 0) : undefined);
  if (!family) return undefined;
  const flagsRaw = m.get(IPVS_SVC_ATTR_FLAGS);
  const flags = flagsRaw && flagsRaw.length >= 4 ? readU32(flagsRaw, 0) : 0;
  const timeout = m.has(IPVS_SVC_ATTR_TIMEOUT) ? readU32(m.get(IPVS_SVC_ATTR_TIMEOUT)!, 0) : 0;
  const nm = m.get(IPVS_SVC_ATTR_NETMASK);
  const netmask = nm && nm.length >= 4 ? (family === 4 ? IpAddress.fromBytes(nm.subarray(0, 4)).toString() : readU32(nm, 0)) : undefined;
  const common = {
    scheduler: m.has(IPVS_SVC_ATTR_SCHED_NAME) ? readCString(m.get(IPVS_SVC_ATTR_SCHED_NAME)!) : '',
    persistent: (flags & IP_VS_SVC_F_PERSISTENT) !== 0,
    flags: flags & ~(IP_VS_SVC_F_PERSISTENT | IP_VS_SVC_F_HASHED),
    timeout,
    ...(netmask !== undefined ? { netmask } : {}),
  };
  const fwmark = m.has(IPVS_SVC_ATTR_FWMARK) ? readU32(m.get(IPVS_SVC_ATTR_FWMARK)!, 0) : 0;
  if (fwmark) return { family, fwmark, ...common };
  const protoNum = m.has(IPVS_SVC_ATTR_PROTOCOL) ? readU16(m.get(IPVS_SVC_ATTR_PROTOCOL)!, 0) : 0;
  const protocol = PROTO_NAME.get(protoNum);
  if (!protocol) return undefined;
  const port = m.get(IPVS_SVC_ATTR_PORT);
  return { family, protocol, address: addrText(m.get(IPVS_SVC_ATTR_ADDR), family), port: port && port.length >= 2 ? port.readUInt16BE(0) : 0, ...common };
}

/** One destination of a GET_DEST dump (a message with cmd NEW_DEST), or undefined. */
export function decodeDest(msg: Buffer, familyId: number, svcFamily: 4 | 6): IpvsDest | undefined {
  const nest = nestOf(msg, familyId, IPVS_CMD_NEW_DEST, IPVS_CMD_ATTR_DEST);
  if (!nest) return undefined;
  const m = new Map<number, Buffer>();
  for (const a of parseAttrs(nest)) m.set(a.type, a.data);
  const u = (t: number): number => (m.has(t) && m.get(t)!.length >= 4 ? readU32(m.get(t)!, 0) : 0);
  const family = familyOf(m.has(IPVS_DEST_ATTR_ADDR_FAMILY) ? readU16(m.get(IPVS_DEST_ATTR_ADDR_FAMILY)!, 0) : undefined) ?? svcFamily;
  const port = m.get(IPVS_DEST_ATTR_PORT);
  const d: IpvsDest = {
    address: addrText(m.get(IPVS_DEST_ATTR_ADDR), family),
    port: port && port.length >= 2 ? port.readUInt16BE(0) : 0,
    forward: FWD_NAME.get(u(IPVS_DEST_ATTR_FWD_METHOD) & IP_VS_CONN_F_FWD_MASK) ?? 'masq',
    weight: u(IPVS_DEST_ATTR_WEIGHT),
    upperThreshold: u(IPVS_DEST_ATTR_U_THRESH),
    lowerThreshold: u(IPVS_DEST_ATTR_L_THRESH),
    activeConns: u(IPVS_DEST_ATTR_ACTIVE_CONNS),
    inactiveConns: u(IPVS_DEST_ATTR_INACT_CONNS),
    persistConns: u(IPVS_DEST_ATTR_PERSIST_CONNS),
  };
  if (family !== svcFamily) d.family = family;
  return d;
}

/** `tcp 10.96.0.10:53`, `udp [fd00::a]:53`, `fwmark 42 (IPv4)`. */
export function serviceKeyText(s: IpvsServiceKey): string {
  if (s.fwmark !== undefined) return `fwmark ${s.fwmark} (IPv${s.family})`;
  return `${s.protocol} ${s.family === 6 ? `[${s.address}]` : s.address}:${s.port}`;
}

export function sameServiceKey(a: IpvsServiceKey, b: IpvsServiceKey): boolean {
  if (a.family !== b.family) return false;
  if (a.fwmark !== undefined || b.fwmark !== undefined) return a.fwmark === b.fwmark;
  return a.protocol === b.protocol && a.port === b.port && IpAddress.parse(a.address).toString() === IpAddress.parse(b.address).toString();
}

/** The key part of a service (drops scheduler, flags, ...). */
export function serviceKey(s: IpvsServiceKey): IpvsServiceKey {
  return s.fwmark !== undefined ? { family: s.family, fwmark: s.fwmark } : { family: s.family, protocol: s.protocol, address: IpAddress.parse(s.address).toString(), port: s.port };
}
