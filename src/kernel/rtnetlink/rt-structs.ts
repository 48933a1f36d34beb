/**
 * The npm netlink package's generated rtnetlink struct codecs (rt/gen_structs) and the few
 * message wrappers the codecs here use, copied from its rt/structs.js. Importing that file
 * (or the package index) also loads rt/ifla.js, 149 KB of IFLA tables these codecs never use
 * (they parse link attributes themselves), and the index loads the package's native socket
 * binding, genl, nl80211 and wg: ~10-30 ms of CPU of every in-process CNI plugin start.
 */
import type * as S from 'netlink/dist/rt/structs';
import * as g from 'netlink/dist/rt/gen_structs';
import { KernelError } from '../../common/errors';

export * from 'netlink/dist/rt/gen_structs';

export const parseAddressMessage: typeof S.parseAddressMessage = (r) => {
  if (r.length < g.__LENGTH_Address) throw new KernelError('decode RTM_NEWADDR', `message of ${r.length} bytes is shorter than ifaddrmsg`);
  return { kind: 'address', data: g.parseAddress(r.subarray(0, g.__LENGTH_Address)), attrs: g.parseAddressAttrs(r.subarray(g.__LENGTH_Address)) };
};

export const formatAddressMessage: typeof S.formatAddressMessage = (x, out) => {
  out.emit(g.formatAddress(x.data));
  out.emit(g.formatAddressAttrs(x.attrs));
};

export const parseNeighborMessage: typeof S.parseNeighborMessage = (r) => {
  if (r.length < g.__LENGTH_Neighbor) throw new KernelError('decode RTM_NEWNEIGH', `message of ${r.length} bytes is shorter than ndmsg`);
  return { kind: 'neighbor', data: g.parseNeighbor(r.subarray(0, g.__LENGTH_Neighbor)), attrs: g.parseNeighborAttrs(r.subarray(g.__LENGTH_Neighbor)) };
};

export const formatNeighborMessage: typeof S.formatNeighborMessage = (x, out) => {
  out.emit(g.formatNeighbor(x.data));
  out.emit(g.formatNeighborAttrs(x.attrs));
};

export const formatRouteMessage: typeof S.formatRouteMessage = (x, out) => {
  out.emit(g.formatRoute(x.data));
  out.emit(g.formatRouteAttrs(x.attrs));
};
