/**
 * RTM_{NEW,DEL,GET}NEIGH for IP neighbours (AF_INET/AF_INET6) and bridge/VXLAN FDB
 * entries (AF_BRIDGE, NTF_SELF, NUD_PERMANENT, NDA_DST = remote VTEP), via the npm
 * `netlink` schema codecs. The ndmsg state/flags are written as raw numbers.
 */
import * as rt from './rt-structs'; // the netlink package's struct codecs without what we never use
import { IpAddress, formatMac } from '../../common/ip';
import * as C from './constants';
import { fromStream } from './codec-util';
import { frame, payloadOf, readU16 } from './nlmsg';

export interface NeighWire {
  family: number;
  ifindex: number;
  state: number;
  flags: number;
  dst?: IpAddress;
  lladdr?: Buffer;
}

function neighPayload(n: NeighWire): Buffer {
  const attrs: rt.NeighborAttrs = {};
  if (n.dst) attrs.dst = n.dst.toBytes();
  if (n.lladdr) attrs.lladdr = n.lladdr;
  return fromStream((out) =>
    rt.formatNeighborMessage(
      { kind: 'neighbor', data: { family: n.family, ifindex: n.ifindex, state: { __unknown: n.state }, flags: { __unknown: n.flags } }, attrs },
      out,
    ),
  );
}

export type NeighMode = 'replace' | 'append' | 'add';

export function encodeNewNeigh(n: NeighWire, mode: NeighMode): Buffer {
  const modeFlag = mode === 'replace' ? C.NLM_F_REPLACE : mode === 'append' ? C.NLM_F_APPEND : C.NLM_F_EXCL;
  return frame(C.RTM_NEWNEIGH, C.NLM_F_REQUEST | C.NLM_F_ACK | C.NLM_F_CREATE | modeFlag, [neighPayload(n)]);
}

export function encodeDelNeigh(n: NeighWire): Buffer {
  return frame(C.RTM_DELNEIGH, C.NLM_F_REQUEST | C.NLM_F_ACK, [neighPayload(n)]);
}

export function encodeDumpNeigh(family: number): Buffer {
  return frame(C.RTM_GETNEIGH, C.NLM_F_REQUEST | C.NLM_F_DUMP, [rt.formatNeighbor({ family })]);
}

export interface DecodedNeigh {
  family: number;
  ifindex: number;
  state: number;
  flags: number;
  dst: IpAddress | undefined;
  mac: string | undefined;
}

export function decodeNeigh(msg: Buffer): DecodedNeigh {
  const body = payloadOf(msg);
  const m = rt.parseNeighborMessage(body);
  const dst = m.attrs.dst;
  const ll = m.attrs.lladdr;
  return {
    family: body[0]!,
    ifindex: m.data.ifindex ?? 0,
    state: readU16(body, 8),
    flags: body[10]!,
    dst: dst && (dst.length === 4 || dst.length === 16) ? IpAddress.fromBytes(dst) : undefined,
    mac: ll && ll.length === 6 ? formatMac(ll) : undefined,
  };
}
