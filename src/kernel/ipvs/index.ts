/** IPVS (ip_vs) over generic netlink: codec, IpvsKernel and the start-up module check. */
export * from './codec';
export { NetlinkIpvs, checkIpvsAvailable, ipvsUnavailableMessage, entryText, encodeChange, type IpvsEntry, type IpvsKernel } from './ipvs';
