/**
 * ipMasq like the reference bridge: one nat chain per attachment, jumped to from
 * POSTROUTING for the pod's source address; traffic to the pod subnet is accepted,
 * everything else (except multicast) masqueraded. Applied with one
 * `iptables-restore --noflush` each way, so a half-applied state cannot exist.
 */
import type { Cidr } from '../common/ip';
import type { IptablesRunner } from '../kernel/types';
import { isMasqChainName, masqChainName } from './names';

export interface MasqTarget {
  network: string;
  containerId: string;
  ifname: string;
  address: Cidr;
}

function comment(t: MasqTarget): string {
  return `"podwire ${t.network} ${t.containerId.slice(0, 64)} ${t.ifname}"`;
}

function jumpRule(chain: string, t: MasqTarget): string {
  const host = t.address.family === 4 ? 32 : 128;
  return `POSTROUTING -s ${t.address.ip.toString()}/${host} -m comment --comment ${comment(t)} -j ${chain}`;
}

export async function setupMasq(ipt: IptablesRunner, t: MasqTarget): Promise<void> {
  const chain = masqChainName(t.network, t.containerId, t.ifname);
  const saved = await ipt.save('nat');
  const multicast = t.address.family === 4 ? '224.0.0.0/4' : 'ff00::/8';
  const lines = [
    '*nat',
    `:${chain} - [0:0]`, // declared chains are flushed by --noflush restore: re-running is idempotent
    `-A ${chain} -d ${t.address.masked.toString()} -m comment --comment ${comment(t)} -j ACCEPT`,
    `-A ${chain} ! -d ${multicast} -m comment --comment ${comment(t)} -j MASQUERADE`,
  ];
  if (!saved.includes(`-j ${chain}`)) lines.push(`-A ${jumpRule(chain, t)}`);
  lines.push('COMMIT', '');
  await ipt.restore(lines.join('\n'), { noflush: true });
}

/** Removes the attachment's chain and every POSTROUTING jump to it; a no-op when absent. */
export async function teardownMasq(ipt: IptablesRunner, network: string, containerId: string, ifname: string): Promise<void> {
  await removeChains(ipt, (c) => c === masqChainName(network, containerId, ifname));
}

/**
 * Removes our masquerade chains for which `stale(chain)` is true (GC). With `network`,
 * only chains jumped to with that network's comment are candidates, so a GC of one
 * network never touches another network's rules.
 */
export async function removeChains(ipt: IptablesRunner, stale: (chain: string) => boolean, network?: string): Promise<string[]> {
  const saved = await ipt.save('nat');
  const ofNetwork = new Set<string>();
  if (network !== undefined) {
    for (const line of saved.split('\n')) {
      const m = /^-A POSTROUTING .*--comment "podwire (\S+) .* -j (\S+)\s*$/.exec(line);
      if (m && m[1] === network) ofNetwork.add(m[2]!);
    }
  }
  const chains = new Set<string>();
  for (const line of saved.split('\n')) {
    const m = /^:(\S+) /.exec(line);
    if (m && isMasqChainName(m[1]!) && (network === undefined || ofNetwork.has(m[1]!)) && stale(m[1]!)) chains.add(m[1]!);
  }
  if (chains.size === 0) return [];
  const lines = ['*nat'];
  for (const line of saved.split('\n')) {
    const m = /^-A POSTROUTING (.*) -j (\S+)\s*$/.exec(line);
    if (m && chains.has(m[2]!)) lines.push(`-D POSTROUTING ${m[1]} -j ${m[2]}`);
  }
  for (const c of chains) lines.push(`:${c} - [0:0]`);
  for (const c of chains) lines.push(`-X ${c}`);
  lines.push('COMMIT', '');
  await ipt.restore(lines.join('\n'), { noflush: true });
  return [...chains];
}
