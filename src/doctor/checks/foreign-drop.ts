/**
 * Another table or chain that drops what ours accepts. nftables runs every base chain on a
 * hook, so an accept in our table does not stop another table's drop: Docker's `ip filter
 * FORWARD` with policy drop (iptables-nft, or legacy iptables) drops forwarded pod traffic.
 */
import { dropForwardChains } from '../../kernel/forward-drop';
import { finder, type Check, type DoctorEnv } from '../types';

const f = finder('foreign-drop');

/** Our own tables (family name), from podwired's status when it runs. */
function ourTables(env: DoctorEnv): Set<string> {
  const out = new Set(['inet podwire', 'inet podwire-overlay']);
  for (const c of env.status?.components ?? []) if (typeof c.status.table === 'string') out.add(c.status.table);
  return out;
}

export { dropForwardChains };

export const foreignDrop: Check = {
  id: 'foreign-drop',
  title: 'foreign drop policies',
  async run(env) {
    // Every table's chains (the kernel module's nft runner lists one named table only).
    const chains = await env.run(['nft', 'list', 'chains']);
    const found = dropForwardChains(chains.code === 0 ? chains.stdout : '', ourTables(env)).map((c) => `nft ${c}`);
    // Legacy iptables tables are invisible to nft.
    const legacy = await env.run(['iptables-legacy-save', '-t', 'filter']);
    if (legacy.code === 0 && /^:FORWARD DROP/m.test(legacy.stdout)) found.push('iptables-legacy filter FORWARD');
    if (found.length === 0) return [f.ok('forward hook', 'no other table drops forwarded traffic by policy')];
    return found.map((c) =>
      f.fail(c, 'a forward chain with policy drop outside Podwire: pod traffic between nodes and to Services on other nodes is dropped there whatever our tables accept (Docker does this)', `accept the pod CIDR there (iptables -I DOCKER-USER -s <clusterCIDR> -j ACCEPT; iptables -I DOCKER-USER -d <clusterCIDR> -j ACCEPT), or set its policy to accept`),
    );
  },
};
