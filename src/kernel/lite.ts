/**
 * The part of the kernel API that a one-shot process needs: links, addresses, routes and
 * neighbours over one NETLINK_ROUTE socket, sysctls, iptables and the netns check. The
 * in-process CNI plugin (src/cni-plugin/deps-real.ts) imports this instead of index.ts,
 * because index.ts also loads conntrack, IPVS and nftables (and opening a full Kernel
 * dlopens libnftables): milliseconds of every pod start when podwired is down, for code
 * the plugin never runs. Same classes as index.ts exports; nothing here is separate logic.
 */
import { openNetlinkTransport as openNativeTransport } from './netlink/native-transport';
import { assertNetns } from './netns';
import { NetlinkNetworkKernel } from './network-kernel';
import type { NetnsRef } from './types';

export { NetnsSysctl } from './sysctl';
export { NetnsIptables } from './iptables';
export { checkNetnsPath, type NetnsCheck } from './netns-check';

/** A NetworkKernel whose NETLINK_ROUTE socket lives in `netns` (ours when undefined); close() closes it. */
export async function openNetworkKernel(netns?: NetnsRef): Promise<NetlinkNetworkKernel> {
  if (netns !== undefined) await assertNetns(netns);
  return new NetlinkNetworkKernel(await openNativeTransport(netns), netns);
}
