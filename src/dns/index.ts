/**
 * Cluster DNS: the node-local server (Kubernetes DNS spec zone, stub domains, forward,
 * one cache). The daemon registers `dnsRegistration()`; everything else is for tests,
 * bench and tools.
 */
export { DnsComponent, dnsRegistration, type DnsComponentOptions } from './component';
export { dnsSection, buildDnsSection, parseKubeDnsConfigMap, parseResolvConf, parseUpstream, type DnsSection } from './config';
export { type DnsController, stateController, FakeController } from './controller';
export { ClusterZone, type ZoneOptions, type PodRecordsMode } from './zone';
export { DnsServer, type ListenAddr } from './server';
export { Forwarder, type UpstreamAddr } from './forward';
export { DnsCache } from './cache';
export { DnsStats, registerDnsMetrics } from './metrics';
export { CHAIN_ORDER, buildChain, type Handler } from './handler';
export * as wire from './wire';
