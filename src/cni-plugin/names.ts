/** Host-side names derived from (network, container ID, ifname), so DEL and GC find them without state. */
import { hash } from 'node:crypto';

const VETH_PREFIX = 'pwv';
const MASQ_PREFIX = 'PW-MASQ-';

// crypto.hash is the one-shot form of createHash().update().digest(): same digest, no Hash object.
export function hostVethName(containerId: string, ifname: string): string {
  return VETH_PREFIX + hash('sha256', `${containerId}\0${ifname}`, 'hex').slice(0, 12);
}

export function isHostVethName(name: string): boolean {
  return name.length === 15 && name.startsWith(VETH_PREFIX) && /^[0-9a-f]{12}$/.test(name.slice(3));
}

/** iptables chain for one attachment's masquerade rules (<= 28 chars). */
export function masqChainName(network: string, containerId: string, ifname: string): string {
  return MASQ_PREFIX + hash('sha256', `${network}\0${containerId}\0${ifname}`, 'hex').slice(0, 20);
}

export function isMasqChainName(name: string): boolean {
  return name.startsWith(MASQ_PREFIX) && name.length === MASQ_PREFIX.length + 20;
}
