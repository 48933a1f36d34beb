/**
 * Public API of the kernel module: the only code in Podwire that touches the host.
 * Other modules import from here (never from the files behind it).
 */
import { NetnsIptables, type IptablesBackend } from './iptables';
import { openNetlinkTransport as openNativeTransport } from './netlink/native-transport';
import type { NetlinkTransport } from './netlink/transport';
import { assertNetns } from './netns';
import { NetlinkNetworkKernel } from './network-kernel';
import { NetlinkConntrack } from './conntrack';
import { openNftRunner, type NftBackendChoice } from './nft';
import { NetnsSysctl } from './sysctl';
import { NETLINK_NETFILTER, ethtoolTxChecksum } from './native';
import { LazyNetlinkSocket } from './netlink/lazy-socket';
import type { ConntrackKernel, IptablesRunner, NetnsRef, NetworkKernel, NftRunner, SysctlKernel } from './types';

export * from './types';
export type { NetlinkTransport } from './netlink/transport';
export { netnsRef, netnsExists, assertNetns, openNetnsFd, openNetnsFdSync, runInNetns, createNetns, deleteNetns, nsenterArgv, type RunResult, type RunOptions } from './netns';
export { checkNetnsPath, type NetnsCheck } from './netns-check';
export { NetlinkNetworkKernel } from './network-kernel';
export { NetnsSysctl, sysctlPath } from './sysctl';
export { NetnsIptables, iptablesBinaries, type IptablesBackend } from './iptables';
export { NetnsNft, LibNftables, openNftRunner, annotateNftError, checkNftScript, type NftBackendChoice } from './nft';
export { NetlinkConntrack } from './conntrack';
export { NetlinkIpvs, checkIpvsAvailable, ipvsUnavailableMessage, type IpvsKernel, type IpvsEntry, type IpvsService, type IpvsServiceKey, type IpvsDest, type IpvsForward, type IpvsProtocol } from './ipvs';
export { describeErrno } from './errno';
export { validateIfName, validateMtu, validateVni } from './validate';

/**
 * A NETLINK_ROUTE transport whose socket lives in `netns` (our own netns when
 * undefined), from the native addon (the socket is opened on a helper thread that
 * joined the netns). NotFoundError('netns', path) if the netns does not exist.
 */
export async function openNetlinkTransport(netns?: NetnsRef): Promise<NetlinkTransport> {
  if (netns !== undefined) await assertNetns(netns);
  return openNativeTransport(netns);
}

export interface Kernel {
  readonly netns: NetnsRef | undefined;
  net: NetworkKernel;
  sysctl: SysctlKernel;
  iptables(family: 4 | 6): IptablesRunner;
  nft: NftRunner;
  conntrack: ConntrackKernel;
  /**
   * A device's TX checksum offload (SIOCETHTOOL in this namespace): set it when `on` is given,
   * return the state afterwards. Optional: kernel fakes leave it out (callers report "unknown").
   */
  txChecksum?(ifname: string, on?: boolean): Promise<boolean>;
  close(): void;
}

export interface OpenKernelOptions {
  /** iptables binaries: `auto` (default) prefers iptables-legacy, see iptables.ts. */
  iptablesBackend?: IptablesBackend;
  /** nft runner: `auto` (default) uses in-process libnftables when its addon loads, else `nft -f -`. */
  nftBackend?: NftBackendChoice;
}

/** Everything kernel-side for one netns. Call `close()` when done (closes the netlink socket). */
export async function openKernel(netns?: NetnsRef, options: OpenKernelOptions = {}): Promise<Kernel> {
  const transport = await openNetlinkTransport(netns);
  const net = new NetlinkNetworkKernel(transport, netns);
  const runners = new Map<4 | 6, IptablesRunner>();
  // One NETLINK_NETFILTER socket per netns for conntrack and the nft reads (generation, rule
  // prints, table read), opened on first use (most callers never need it). Sharing is safe:
  // one operation at a time, sequence numbers per operation, no multicast (lazy-socket.ts).
  const netfilter = new LazyNetlinkSocket('netfilter', netns, NETLINK_NETFILTER);
  const conntrack = new NetlinkConntrack(netns, netfilter);
  const nft = openNftRunner(netns, options.nftBackend, netfilter);
  return {
    netns,
    net,
    sysctl: new NetnsSysctl(netns),
    iptables(family: 4 | 6): IptablesRunner {
      let r = runners.get(family);
      if (!r) {
        r = new NetnsIptables(family, netns, options.iptablesBackend);
        runners.set(family, r);
      }
      return r;
    },
    nft,
    conntrack,
    txChecksum: (ifname, on) => ethtoolTxChecksum(netns, ifname, on),
    close: () => {
      net.close();
      conntrack.close();
      nft.close?.();
      netfilter.close();
    },
  };
}
