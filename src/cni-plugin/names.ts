/** Host-side names derived from (network, container ID, ifname), so DEL and GC find them without state. */
import { sha256Hex } from './sha256';

const VETH_PREFIX = 'pwv';
const MASQ_PREFIX = 'PW-MASQ-';

// sha256Hex (plain JS) is node:crypto's digest without loading node:crypto on the in-process path.
export function hostVethName(containerId: string, ifname: string): string {
  return VETH_PREFIX + sha256Hex(`${containerId}\0${ifname}`).slice(0, 12);
}

export function isHostVethName(name: string): boolean {
  return name.length === 15 && name.startsWith(VETH_PREFIX) && /^[0-9a-f]{12}$/.test(name.slice(3));
}

/** iptables chain for one attachment's masquerade rules (<= 28 chars). */
export function masqChainName(network: string, containerId: string, ifname: string): string {
  return MASQ_PREFIX + sha256Hex(`${network}\0${containerId}\0${ifname}`).slice(0, 20);
}

export function isMasqChainName(name: string): boolean {
  return name.startsWith(MASQ_PREFIX) && name.length === MASQ_PREFIX.length + 20;
}
