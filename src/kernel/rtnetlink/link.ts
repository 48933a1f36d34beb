/**
 * RTM_{NEW,DEL,GET,SET}LINK. The ifinfomsg struct comes from the npm `netlink`
 * schema codec (formatLink/parseLink); attributes are built with nlmsg.ts because
 * IFLA_LINKINFO/IFLA_INFO_DATA (vxlan, veth's VETH_INFO_PEER with IFLA_NET_NS_FD) are
 * opaque buffers in that schema and IFLA_PROTINFO for AF_BRIDGE needs NLA_F_NESTED.
 * On decode only the attributes Podwire uses are walked (parseLinkAttrs would decode
 * stats, VF lists, ... on every link of a dump).
 */
import * as rt from './rt-structs'; // the netlink package's struct codecs without what we never use
import { formatMac } from '../../common/ip';
import { IpAddress } from '../../common/ip';
import * as C from './constants';
import { attr, attrMap, be16, cstr, frame, nested, payloadOf, readCString, readU32, u32, u8 } from './nlmsg';
import type { Link } from '../types';

export interface IfInfo {
  family?: number;
  index?: number;
  /** IFF_* bits to set... */
  flags?: number;
  /** ...and which of them to change. */
  change?: number;
}

export function ifinfomsg(x: IfInfo): Buffer {
  const flags: rt.DeviceFlags = {};
  const change: rt.DeviceFlags = {};
  if ((x.change ?? 0) & C.IFF_UP) {
    change.up = true;
    if ((x.flags ?? 0) & C.IFF_UP) flags.up = true;
  }
  if ((x.change ?? 0) & C.IFF_PROMISC) {
    change.promisc = true;
    if ((x.flags ?? 0) & C.IFF_PROMISC) flags.promisc = true;
  }
  return rt.formatLink({ family: x.family ?? C.AF_UNSPEC, index: x.index ?? 0, flags, change });
}

/** Resolved inputs of a VXLAN link (ifindex of the underlay already looked up). */
export interface VxlanInfo {
  vni: number;
  port: number;
  local?: IpAddress;
  underlayIndex?: number;
  learning: boolean;
  portRange?: [number, number];
  ttl?: number;
  gbp?: boolean;
}

export function vxlanInfoData(v: VxlanInfo): Buffer[] {
  const a: Buffer[] = [attr(C.IFLA_VXLAN_ID, u32(v.vni))];
  if (v.underlayIndex !== undefined) a.push(attr(C.IFLA_VXLAN_LINK, u32(v.underlayIndex)));
  if (v.local) a.push(attr(v.local.family === 4 ? C.IFLA_VXLAN_LOCAL : C.IFLA_VXLAN_LOCAL6, v.local.toBytes()));
  if (v.ttl !== undefined) a.push(attr(C.IFLA_VXLAN_TTL, u8(v.ttl)));
  a.push(attr(C.IFLA_VXLAN_LEARNING, u8(v.learning ? 1 : 0)));
  if (v.portRange) a.push(attr(C.IFLA_VXLAN_PORT_RANGE, Buffer.concat([be16(v.portRange[0]), be16(v.portRange[1])])));
  // IFLA_VXLAN_PORT is __be16 (nla_get_be16), unlike the host-order integers around it.
  a.push(attr(C.IFLA_VXLAN_PORT, be16(v.port)));
  if (v.gbp) a.push(attr(C.IFLA_VXLAN_GBP, Buffer.alloc(0)));
  return a;
}

export interface VethPeerInfo {
  name: string;
  netnsFd?: number;
  mtu?: number;
  mac?: Buffer;
}

/** VETH_INFO_PEER carries a whole struct ifinfomsg followed by the peer's IFLA_* attributes. */
export function vethInfoData(p: VethPeerInfo): Buffer[] {
  const peer: Buffer[] = [ifinfomsg({}), attr(C.IFLA_IFNAME, cstr(p.name))];
  if (p.netnsFd !== undefined) peer.push(attr(C.IFLA_NET_NS_FD, u32(p.netnsFd)));
  if (p.mtu !== undefined) peer.push(attr(C.IFLA_MTU, u32(p.mtu)));
  if (p.mac) peer.push(attr(C.IFLA_ADDRESS, p.mac));
  return [attr(C.VETH_INFO_PEER, peer)];
}

export interface NewLinkRequest {
  name: string;
  kind: string;
  infoData?: Buffer[];
  mtu?: number;
  mac?: Buffer;
  up?: boolean;
  /** IFLA_MASTER: enslave at creation (ifindex of the bridge). */
  master?: number;
  /** NLM_F_ECHO: the kernel answers with the new link (Linux 6.3+; older kernels just ACK). */
  echo?: boolean;
}

/** RTM_NEWLINK with NLM_F_CREATE|NLM_F_EXCL: fails with EEXIST if the name is taken. */
export function encodeNewLink(r: NewLinkRequest): Buffer {
  const attrs: Buffer[] = [attr(C.IFLA_IFNAME, cstr(r.name))];
  if (r.mtu !== undefined) attrs.push(attr(C.IFLA_MTU, u32(r.mtu)));
  if (r.mac) attrs.push(attr(C.IFLA_ADDRESS, r.mac));
  if (r.master !== undefined) attrs.push(attr(C.IFLA_MASTER, u32(r.master)));
  const info: Buffer[] = [attr(C.IFLA_INFO_KIND, cstr(r.kind))];
  if (r.infoData) info.push(nested(C.IFLA_INFO_DATA, r.infoData));
  attrs.push(nested(C.IFLA_LINKINFO, info));
  const hdr = ifinfomsg(r.up ? { flags: C.IFF_UP, change: C.IFF_UP } : {});
  const flags = C.NLM_F_REQUEST | C.NLM_F_ACK | C.NLM_F_CREATE | C.NLM_F_EXCL | (r.echo ? C.NLM_F_ECHO : 0);
  return frame(C.RTM_NEWLINK, flags, [hdr, ...attrs]);
}

export function encodeDelLink(index: number): Buffer {
  return frame(C.RTM_DELLINK, C.NLM_F_REQUEST | C.NLM_F_ACK, [ifinfomsg({ index })]);
}

/** RTM_GETLINK by name (ENODEV if missing). */
export function encodeGetLinkByName(name: string): Buffer {
  return frame(C.RTM_GETLINK, C.NLM_F_REQUEST, [ifinfomsg({}), attr(C.IFLA_IFNAME, cstr(name))]);
}

export function encodeDumpLinks(): Buffer {
  return frame(C.RTM_GETLINK, C.NLM_F_REQUEST | C.NLM_F_DUMP, [ifinfomsg({})]);
}

export interface SetLinkRequest {
  index: number;
  up?: boolean;
  promisc?: boolean;
  mtu?: number;
  mac?: Buffer;
  /** 0 = no master. */
  master?: number;
  netnsFd?: number;
  /** New name (with netnsFd: the name in the target netns). */
  name?: string;
}

/** RTM_NEWLINK on an existing ifindex (what `ip link set` sends). */
export function encodeSetLink(r: SetLinkRequest): Buffer {
  let flags = 0;
  let change = 0;
  if (r.up !== undefined) {
    change |= C.IFF_UP;
    if (r.up) flags |= C.IFF_UP;
  }
  if (r.promisc !== undefined) {
    change |= C.IFF_PROMISC;
    if (r.promisc) flags |= C.IFF_PROMISC;
  }
  const attrs: Buffer[] = [];
  if (r.mtu !== undefined) attrs.push(attr(C.IFLA_MTU, u32(r.mtu)));
  if (r.mac) attrs.push(attr(C.IFLA_ADDRESS, r.mac));
  if (r.master !== undefined) attrs.push(attr(C.IFLA_MASTER, u32(r.master)));
  if (r.netnsFd !== undefined) attrs.push(attr(C.IFLA_NET_NS_FD, u32(r.netnsFd)));
  if (r.name !== undefined) attrs.push(attr(C.IFLA_IFNAME, cstr(r.name)));
  return frame(C.RTM_NEWLINK, C.NLM_F_REQUEST | C.NLM_F_ACK, [ifinfomsg({ index: r.index, flags, change }), ...attrs]);
}

/**
 * Bridge port flags, as `bridge link set dev X hairpin on learning off` sends them:
 * RTM_SETLINK, family AF_BRIDGE, IFLA_PROTINFO with NLA_F_NESTED (without the flag
 * br_setlink() reads the payload as a legacy STP port state).
 */
export function encodeBridgePort(index: number, o: { hairpin?: boolean; learning?: boolean }): Buffer {
  const port: Buffer[] = [];
  if (o.hairpin !== undefined) port.push(attr(C.IFLA_BRPORT_MODE, u8(o.hairpin ? 1 : 0)));
  if (o.learning !== undefined) port.push(attr(C.IFLA_BRPORT_LEARNING, u8(o.learning ? 1 : 0)));
  return frame(C.RTM_SETLINK, C.NLM_F_REQUEST | C.NLM_F_ACK, [ifinfomsg({ family: C.AF_BRIDGE, index }), nested(C.IFLA_PROTINFO, port)]);
}

/** Decodes one RTM_NEWLINK message (as a dump or a GETLINK returns it). */
export function decodeLink(msg: Buffer): Link {
  const body = payloadOf(msg);
  const info = rt.parseLink(body.subarray(0, rt.__LENGTH_Link));
  const flags = readU32(body, 8);
  const a = attrMap(body.subarray(rt.__LENGTH_Link));
  const linkinfo = a.get(C.IFLA_LINKINFO);
  let kind: string | undefined;
  let vxlan: Link['vxlan'];
  if (linkinfo) {
    const li = attrMap(linkinfo);
    const k = li.get(C.IFLA_INFO_KIND);
    kind = k ? readCString(k) : undefined;
    const data = li.get(C.IFLA_INFO_DATA);
    if (kind === 'vxlan' && data) vxlan = decodeVxlanInfo(data);
  }
  const mac = a.get(C.IFLA_ADDRESS);
  const master = a.get(C.IFLA_MASTER);
  const peer = a.get(C.IFLA_LINK);
  const out: Link = {
    index: info.index ?? 0,
    name: readCString(a.get(C.IFLA_IFNAME) ?? Buffer.alloc(0)),
    kind,
    mtu: a.has(C.IFLA_MTU) ? readU32(a.get(C.IFLA_MTU)!, 0) : 0,
    mac: mac && mac.length === 6 ? formatMac(mac) : undefined,
    up: (flags & C.IFF_UP) !== 0,
    masterIndex: master ? readU32(master, 0) || undefined : undefined,
    peerIndex: kind === 'veth' && peer ? readU32(peer, 0) : undefined,
  };
  if (vxlan) out.vxlan = vxlan;
  return out;
}

/** IFF_PROMISC as set by the user (ifi_flags), not the promiscuity counter. */
export function decodeLinkFlags(msg: Buffer): number {
  return readU32(payloadOf(msg), 8);
}

function decodeVxlanInfo(data: Buffer): NonNullable<Link['vxlan']> {
  const v = attrMap(data);
  const local4 = v.get(C.IFLA_VXLAN_LOCAL);
  const local6 = v.get(C.IFLA_VXLAN_LOCAL6);
  const local = local4 ?? local6;
  const link = v.get(C.IFLA_VXLAN_LINK);
  const port = v.get(C.IFLA_VXLAN_PORT);
  return {
    vni: v.has(C.IFLA_VXLAN_ID) ? readU32(v.get(C.IFLA_VXLAN_ID)!, 0) : 0,
    port: port ? port.readUInt16BE(0) : 0,
    local: local ? IpAddress.fromBytes(local).toString() : undefined,
    learning: (v.get(C.IFLA_VXLAN_LEARNING)?.[0] ?? 0) !== 0,
    underlayIndex: link ? readU32(link, 0) || undefined : undefined,
  };
}

