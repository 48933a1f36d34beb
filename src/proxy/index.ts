/** Public API of the Service proxy (kube-proxy's job). */
import type { ComponentRegistration } from '../daemon/component';
import { InvalidInputError } from '../common/errors';
import { proxySection, type ProxySection } from './config';
import { NftProxier } from './proxier';
import { IpvsProxier } from './ipvs';

export { NftProxier, KUBERNETES_SERVICE, staleUdp, type SyncStats, type ConntrackWork } from './proxier';
export { proxySection, buildProxySection, PROXY_DEFAULTS, type ProxySection } from './config';
export { buildServiceModel, ChangeTracker, usable, canonicalIP, type ServiceModel, type ServicePortInfo, type EndpointInfo } from './model';
export { renderService, renderSkeleton, renderScript, lbChain, hash8, type RenderOptions } from './nft-render';
export { Ruleset, type Plan, type Contribution, type ObjectDef } from './ruleset';
export { parseTable } from './adopt';
export { ProxierHealth, ServiceHealthServers } from './health';
export { IpvsProxier, VIP_DEVICE } from './ipvs';

export function proxyRegistration(): ComponentRegistration<ProxySection> {
  return {
    feature: 'proxy',
    name: 'proxy',
    section: proxySection,
    intervals: (s) => ({ minIntervalMs: s.minSyncPeriodMs, maxIntervalMs: s.syncPeriodMs }),
    create: (ctx) => {
      const mode = ctx.section?.mode ?? ctx.config.proxyMode;
      if (mode === 'ipvs') return new IpvsProxier(ctx);
      if (mode !== 'nftables') throw new InvalidInputError('proxy.mode', mode, 'only nftables and ipvs are implemented in this build');
      return new NftProxier(ctx);
    },
  };
}
