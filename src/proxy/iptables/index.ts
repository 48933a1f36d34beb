/** The proxy's iptables mode. */
export { IptablesProxier, type IptSyncStats, type IptablesProxierOptions } from './proxier';
export { IptablesApplier, parseSave, removeOwnChains, type IptPlan, type Desired } from './applier';
export { renderServiceRules, assemble, fixedRules, probability, type IptRenderOptions, type ServiceRules, type ChainRules } from './render';
export { CH, JUMPS, owned, hash16, serviceChain, endpointChain } from './names';
