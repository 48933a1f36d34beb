/**
 * RTM_{NEW,DEL,GET}ROUTE via the npm `netlink` schema codecs. Differences from the
 * schema: onlink is RTNH_F_ONLINK (4) in rtm_flags, which the schema has no name for
 * (passed through `__unknown`); tables above 255 go in RTA_TABLE.
 */
import * as rt from './rt-structs'; // the netlink package's struct codecs without what we never use
import { Cidr, IpAddress } from '../../common/ip';
import type { Route, RouteType } from '../types';
import * as C from './constants';
import { fromStream } from './codec-util';
import { attr, frame, payloadOf, readU32, u32 } from './nlmsg';

/** A route with the output device already resolved to an ifindex. */
export interface RouteWire {
  route: Route;
  oif?: number;
}

const TYPE_TO_RTN: Record<RouteType, number> = { unicast: C.RTN_UNICAST, local: C.RTN_LOCAL, blackhole: C.RTN_BLACKHOLE, unreachable: C.RTN_UNREACHABLE };
const RTN_TO_TYPE = new Map<number, RouteType>(Object.entries(TYPE_TO_RTN).map(([k, v]) => [v, k as RouteType]));
const SCOPE: Record<NonNullable<Route['scope']>, number> = { universe: C.RT_SCOPE_UNIVERSE, link: C.RT_SCOPE_LINK, host: C.RT_SCOPE_HOST };

/** iproute2's default scope: host for local, link for a unicast route with no gateway, else universe. */
export function defaultScope(r: Route): number {
  if (r.scope) return SCOPE[r.scope];
  const type = r.type ?? 'unicast';
  if (type === 'local') return C.RT_SCOPE_HOST;
  if (type === 'unicast' && !r.gateway) return C.RT_SCOPE_LINK;
  return C.RT_SCOPE_UNIVERSE;
}

function routePayload(w: RouteWire, del: boolean): Buffer[] {
  const r = w.route;
  const family = r.dst.family === 4 ? C.AF_INET : C.AF_INET6;
  const table = r.table ?? C.RT_TABLE_MAIN;
  const data: rt.Route = {
    family,
    dstLen: r.dst.prefixLength,
    table: table > 255 ? C.RT_TABLE_UNSPEC : table,
    // Deletes match "any" protocol/scope/type unless the caller named one.
    protocol: del ? (r.protocol ?? 0) : (r.protocol ?? C.RTPROT_BOOT),
    scope: del ? (r.scope ? SCOPE[r.scope] : C.RT_SCOPE_NOWHERE) : defaultScope(r),
    type: del ? (r.type ? TYPE_TO_RTN[r.type] : C.RTN_UNSPEC) : TYPE_TO_RTN[r.type ?? 'unicast'],
    flags: r.onlink ? { __unknown: C.RTNH_F_ONLINK } : {},
  };
  const attrs: rt.RouteAttrs = {};
  if (r.dst.prefixLength > 0) attrs.dst = r.dst.network.toBytes();
  if (r.gateway) attrs.gateway = r.gateway.toBytes();
  if (w.oif !== undefined) attrs.oif = w.oif;
  if (r.metric !== undefined) attrs.priority = r.metric;
  if (r.src) attrs.prefsrc = r.src.toBytes();
  if (table > 255) attrs.table = table;
  const parts = [fromStream((out) => rt.formatRouteMessage({ kind: 'route', data, attrs }, out))];
  if (r.mtu !== undefined && !del) parts.push(attr(C.RTA_METRICS, [attr(C.RTAX_MTU, u32(r.mtu))]));
  return parts; // frame() pads each part to 4 bytes
}

export function encodeNewRoute(w: RouteWire, mode: 'add' | 'replace'): Buffer {
  const flags = C.NLM_F_REQUEST | C.NLM_F_ACK | C.NLM_F_CREATE | (mode === 'add' ? C.NLM_F_EXCL : C.NLM_F_REPLACE);
  return frame(C.RTM_NEWROUTE, flags, routePayload(w, false));
}

export function encodeDelRoute(w: RouteWire): Buffer {
  return frame(C.RTM_DELROUTE, C.NLM_F_REQUEST | C.NLM_F_ACK, routePayload(w, true));
}

export function encodeDumpRoutes(family: 4 | 6): Buffer {
  return frame(C.RTM_GETROUTE, C.NLM_F_REQUEST | C.NLM_F_DUMP, [rt.formatRoute({ family: family === 4 ? C.AF_INET : C.AF_INET6 })]);
}

export interface DecodedRoute {
  route: Route;
  oif: number | undefined;
  /** Kernel-cloned (cache) entries are skipped by listRoutes. */
  cloned: boolean;
  rtnType: number;
}

export function decodeRoute(msg: Buffer): DecodedRoute {
  const body = payloadOf(msg);
  // The rtmsg bytes are read directly: the schema's parseRoute turns known enum values
  // into names ('BOOT', 'LINK'), and Podwire wants the numbers.
  const family = body[0] === C.AF_INET6 ? 6 : 4;
  const dstLen = body[1]!;
  const rtmTable = body[4]!;
  const protocol = body[5]!;
  const scope = body[6]!;
  const rtnType = body[7]!;
  const rawFlags = readU32(body, 8);
  const a = rt.parseRouteAttrs(body.subarray(rt.__LENGTH_Route));
  const bits = family === 4 ? 32 : 128;
  const dstIp = a.dst ? IpAddress.fromBytes(a.dst) : IpAddress.fromBigInt(family, 0n);
  const route: Route = {
    dst: Cidr.of(dstIp, Math.min(dstLen, bits)),
    table: a.table ?? rtmTable,
    protocol,
    type: RTN_TO_TYPE.get(rtnType) ?? 'unicast',
    scope: scope === C.RT_SCOPE_LINK ? 'link' : scope === C.RT_SCOPE_HOST ? 'host' : 'universe',
  };
  if (a.gateway) route.gateway = IpAddress.fromBytes(a.gateway);
  if (a.priority !== undefined) route.metric = a.priority;
  if (a.prefsrc) route.src = IpAddress.fromBytes(a.prefsrc);
  if (rawFlags & C.RTNH_F_ONLINK) route.onlink = true;
  const mtu = a.metrics?.mtu;
  if (mtu && mtu.length >= 4) route.mtu = readU32(mtu, 0);
  return { route, oif: a.oif, cloned: (rawFlags & C.RTM_F_CLONED) !== 0, rtnType };
}
