/** RTM_{NEW,DEL,GET}ADDR via the npm `netlink` schema codecs (format/parseAddressMessage). */
import * as rt from './rt-structs'; // the netlink package's struct codecs without what we never use
import { Cidr, IpAddress } from '../../common/ip';
import type { AddressEntry } from '../types';
import * as C from './constants';
import { fromStream } from './codec-util';
import { frame, payloadOf } from './nlmsg';

const famOf = (c: Cidr): number => (c.family === 4 ? C.AF_INET : C.AF_INET6);

/** Per-address options of RTM_NEWADDR. */
export interface AddressOptions {
  /**
   * IFA_F_NODAD: no duplicate address detection. An IPv6 address on a link without carrier
   * (the ipvs mode's port-less VIP bridge) otherwise stays `tentative`, with no local route.
   */
  nodad?: boolean;
}

function addrPayload(index: number, cidr: Cidr, opts: AddressOptions = {}): Buffer {
  const ip = cidr.ip.toBytes();
  // IPv4: IFA_LOCAL is the interface address, IFA_ADDRESS the peer (same on broadcast links).
  const attrs: rt.AddressAttrs = cidr.family === 4 ? { local: ip, address: ip } : { address: ip };
  return fromStream((out) =>
    rt.formatAddressMessage({ kind: 'address', data: { family: famOf(cidr), prefixlen: cidr.prefixLength, index, ...(opts.nodad ? { flags: { nodad: true } } : {}) }, attrs }, out),
  );
}

export function encodeNewAddr(index: number, cidr: Cidr, opts?: AddressOptions): Buffer {
  return frame(C.RTM_NEWADDR, C.NLM_F_REQUEST | C.NLM_F_ACK | C.NLM_F_CREATE | C.NLM_F_EXCL, [addrPayload(index, cidr, opts)]);
}

export function encodeDelAddr(index: number, cidr: Cidr): Buffer {
  return frame(C.RTM_DELADDR, C.NLM_F_REQUEST | C.NLM_F_ACK, [addrPayload(index, cidr)]);
}

export function encodeDumpAddrs(family: 0 | 4 | 6 = 0): Buffer {
  const f = family === 4 ? C.AF_INET : family === 6 ? C.AF_INET6 : C.AF_UNSPEC;
  return frame(C.RTM_GETADDR, C.NLM_F_REQUEST | C.NLM_F_DUMP, [rt.formatAddress({ family: f })]);
}

export function decodeAddr(msg: Buffer): AddressEntry | undefined {
  const m = rt.parseAddressMessage(payloadOf(msg));
  const bytes = m.attrs.local ?? m.attrs.address;
  if (!bytes || (bytes.length !== 4 && bytes.length !== 16)) return undefined;
  return { linkIndex: m.data.index ?? 0, cidr: Cidr.of(IpAddress.fromBytes(bytes), m.data.prefixlen ?? 0) };
}
