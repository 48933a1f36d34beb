/**
 * Every component built into podwired, in start-up order. The overlay, proxy and
 * DNS components add their registration here as they land, e.g.
 * `{ feature: 'proxy', name: 'proxy', create: (ctx) => createProxier(ctx) }`.
 */
import { cniInstallerRegistration } from './cni-installer';
import type { ComponentRegistration } from './component';
import { dnsRegistration } from '../dns';

export function defaultRegistrations(): ComponentRegistration[] {
  return [cniInstallerRegistration(), dnsRegistration()];
}
