/**
 * Every component built into podwired, in start-up order: the one place that order is
 * declared. The daemon creates, reconciles and starts them in this order and closes
 * them in reverse. `cni` comes first: pods can be wired (fast path, conflist) while the
 * others start. The overlay, proxy and DNS components add their registration here as
 * they land, e.g. `{ feature: 'proxy', name: 'proxy', section: PROXY_SECTION, create: (ctx) => createProxier(ctx) }`.
 */
import { cniRegistration } from './cni-installer';
import type { ComponentRegistration } from './component';
import { dnsRegistration } from '../dns';
import { overlayRegistration } from '../overlay';
import { proxyRegistration } from '../proxy';

export function defaultRegistrations(): ComponentRegistration[] {
  return [cniRegistration(), overlayRegistration() as ComponentRegistration, proxyRegistration() as ComponentRegistration, dnsRegistration() as ComponentRegistration];
}
