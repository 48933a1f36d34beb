/** Public API of the Service proxy (kube-proxy's job). */
import type { ComponentRegistration } from '../daemon/component';
import { InvalidInputError } from '../common/errors';
import { proxySection, type ProxySection } from './config';
import { NftProxier } from './proxier';
import { IptablesProxier, type IptablesProxierOptions } from './iptables/proxier';
import { NetnsIptables } from '../kernel/iptables';
import type { ComponentContext } from '../daemon/component';
import { IpvsProxier } from './ipvs';

export { NftProxier, type SyncStats } from './proxier';
export { ProxyPipeline, KUBERNETES_SERVICE, staleUdp, localMatchers, type ConntrackWork, type SyncStart, type ApplyResult, type HealthCheckTarget } from './pipeline';
export { proxySection, buildProxySection, PROXY_DEFAULTS, type ProxySection } from './config';
export { buildServiceModel, ChangeTracker, usable, canonicalIP, type ServiceModel, type ServicePortInfo, type EndpointInfo } from './model';
export { renderService, renderSkeleton, renderScript, lbChain, hash8, type RenderOptions } from './nft-render';
export { Ruleset, type Plan, type Contribution, type ObjectDef } from './ruleset';
export { parseTable } from './adopt';
export { ProxierHealth, ServiceHealthServers } from './health';
export { IptablesProxier, type IptSyncStats } from './iptables/proxier';
export { removeIptablesLeftovers, removeNftLeftovers } from './leftovers';

/** The proxier of the configured mode (registration, tests, the lab and the bench). */
export function createProxier(ctx: ComponentContext<ProxySection | undefined>, mode: string = ctx.section?.mode ?? ctx.config.proxyMode, iptables: Pick<IptablesProxierOptions, 'nftChunkServices'> = {}): NftProxier | IptablesProxier | IpvsProxier {
  if (mode === 'nftables') return new NftProxier(ctx);
  if (mode === 'ipvs') return new IpvsProxier(ctx);
  if (mode === 'iptables') {
    const choice = ctx.section?.iptablesBackend ?? 'auto';
    if (choice === 'auto') return new IptablesProxier(ctx, { ...iptables, backend: ctx.kernel.iptables(4) instanceof NetnsIptables ? (ctx.kernel.iptables(4) as NetnsIptables).binaries.restore : undefined });
    // A backend chosen for the proxy: its own runners in the kernel's namespace.
    const runners = new Map([4, 6].map((f) => [f, new NetnsIptables(f as 4 | 6, ctx.kernel.netns, choice)] as const));
    return new IptablesProxier(ctx, { ...iptables, runner: (f) => runners.get(f)!, backend: runners.get(4)!.binaries.restore });
  }
  throw new InvalidInputError('proxy.mode', mode, 'expected nftables | iptables | ipvs');
}
export { IpvsProxier, VIP_DEVICE } from './ipvs';

export function proxyRegistration(): ComponentRegistration<ProxySection> {
  return {
    feature: 'proxy',
    name: 'proxy',
    section: proxySection,
    intervals: (s) => ({ minIntervalMs: s.minSyncPeriodMs, maxIntervalMs: s.syncPeriodMs }),
    create: (ctx) => createProxier(ctx),
  };
}
export { expectedServices, mountExpectedRoute, EXPECTED_ROUTE, type ExpectedServices, type ExpectedEntry, type ExpectedKind } from './expected';
