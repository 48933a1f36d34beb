/** The IPVS proxy mode (kube-proxy's ipvs mode): renderer, fixed rules, applier. */
export { IpvsProxier, VIP_DEVICE, IPVS_SYSCTLS, STRICT_ARP_SYSCTLS, probeModule, type IpvsDeps, type IpvsSyncStats, type ModuleProbe } from './proxier';
export { renderIpvsService, sourceRangeMembers, vsKey, destKey, SETS, SET_TYPES, type DesiredVS, type IpvsContribution, type IpvsRenderOptions } from './render';
export { renderRules, renderCleanup, missingJumps, CHAINS, JUMPS } from './rules';
export { removeIpvsLeftovers, type IpvsLeftovers, type IpvsLeftoverDeps } from './leftovers';
