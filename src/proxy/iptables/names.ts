/**
 * Chain names of the iptables mode. kube-proxy's layout under our own names, so the two
 * never collide on a node and `--cleanup` can tell ours from anyone else's:
 *
 *   fixed:       PODWIRE-SERVICES, PODWIRE-NODEPORTS, PODWIRE-POSTROUTING, PODWIRE-MARK-MASQ
 *                (nat); PODWIRE-SERVICES, PODWIRE-EXT-SERVICES, PODWIRE-NODEPORTS,
 *                PODWIRE-FORWARD (filter); PODWIRE-PROXY-FW (mangle)
 *   per Service: PW-SVC-, PW-SVL-, PW-EXT-, PW-FW-, PW-SEP- + 16 characters of
 *                base32(sha256(ServicePortName + protocol [+ endpoint])), kube-proxy's hash.
 *
 * Other Podwire components use PODWIRE-OVL-* (overlay egress) and PW-MASQ-* (CNI): the
 * `owned()` test matches neither.
 */
import { createHash, hash } from 'node:crypto';

export const CH = {
  services: 'PODWIRE-SERVICES',
  nodePorts: 'PODWIRE-NODEPORTS',
  postrouting: 'PODWIRE-POSTROUTING',
  markMasq: 'PODWIRE-MARK-MASQ',
  extServices: 'PODWIRE-EXT-SERVICES',
  firewall: 'PODWIRE-PROXY-FW',
  forward: 'PODWIRE-FORWARD',
} as const;

export const FIXED_NAT = [CH.services, CH.nodePorts, CH.postrouting, CH.markMasq] as const;
export const FIXED_FILTER = [CH.services, CH.extServices, CH.nodePorts, CH.forward] as const;
export const FIXED_MANGLE = [CH.firewall] as const;

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32 of sha256(s), first 16 characters (what kube-proxy's portProtoHash keeps). */
export function hash16(s: string): string {
  const buf = typeof hash === 'function' ? hash('sha256', s, 'buffer') : createHash('sha256').update(s).digest();
  let out = '';
  let bits = 0;
  let val = 0;
  for (const b of buf) {
    val = ((val << 8) | b) & 0xfff;
    bits += 8;
    while (bits >= 5) {
      out += B32[(val >>> (bits - 5)) & 31];
      bits -= 5;
      if (out.length === 16) return out;
    }
  }
  return out;
}

export type Kind = 'SVC' | 'SVL' | 'EXT' | 'FW';

/** `id` is model.ts's ServicePortName (`ns/name:port/proto`), protocol already inside. */
export function serviceChain(kind: Kind, id: string): string {
  // kube-proxy hashes the same string for SVC, SVL, EXT and FW; so do we (one hash per port).
  return `PW-${kind}-${memoized(id, () => hash16(id))}`;
}

// Names are asked for several times per render (SVC rules, SEP chains, affinity), and
// hashing is most of a render's cost: remember them, forgetting all at a bound.
const memo = new Map<string, string>();
function memoized(key: string, make: () => string): string {
  let v = memo.get(key);
  if (v === undefined) {
    if (memo.size >= 400_000) memo.clear();
    v = make();
    memo.set(key, v);
  }
  return v;
}

export function endpointChain(id: string, endpoint: string): string {
  return memoized(`${id}${endpoint}`, () => `PW-SEP-${hash16(`${id}${endpoint}`)}`);
}

const PER_SERVICE = /^PW-(SVC|SVL|EXT|FW|SEP)-[A-Z2-7]{16}$/;
const FIXED = new Set<string>([...FIXED_NAT, ...FIXED_FILTER, ...FIXED_MANGLE]);

/** Is this chain ours (the proxy's iptables mode)? */
export function owned(chain: string): boolean {
  return FIXED.has(chain) || PER_SERVICE.test(chain);
}

/** Jump rules from the built-in chains into ours, per table: [builtin, rule body, our chain]. */
export const JUMPS: Record<'nat' | 'filter' | 'mangle', [string, string, string][]> = {
  nat: [
    ['PREROUTING', '-m comment --comment "podwire service portals" -j PODWIRE-SERVICES', CH.services],
    ['OUTPUT', '-m comment --comment "podwire service portals" -j PODWIRE-SERVICES', CH.services],
    ['POSTROUTING', '-m comment --comment "podwire postrouting rules" -j PODWIRE-POSTROUTING', CH.postrouting],
  ],
  // loadBalancerSourceRanges are enforced in mangle, before nat's DNAT and before routing.
  mangle: [
    ['PREROUTING', '-m conntrack --ctstate NEW -m comment --comment "podwire load balancer firewall" -j PODWIRE-PROXY-FW', CH.firewall],
    ['OUTPUT', '-m conntrack --ctstate NEW -m comment --comment "podwire load balancer firewall" -j PODWIRE-PROXY-FW', CH.firewall],
  ],
  filter: [
    ['INPUT', '-m comment --comment "podwire health check service ports" -j PODWIRE-NODEPORTS', CH.nodePorts],
    ['INPUT', '-m conntrack --ctstate NEW -m comment --comment "podwire externally-visible service portals" -j PODWIRE-EXT-SERVICES', CH.extServices],
    ['FORWARD', '-m comment --comment "podwire forwarding rules" -j PODWIRE-FORWARD', CH.forward],
    ['FORWARD', '-m conntrack --ctstate NEW -m comment --comment "podwire service portals" -j PODWIRE-SERVICES', CH.services],
    ['FORWARD', '-m conntrack --ctstate NEW -m comment --comment "podwire externally-visible service portals" -j PODWIRE-EXT-SERVICES', CH.extServices],
    ['OUTPUT', '-m conntrack --ctstate NEW -m comment --comment "podwire service portals" -j PODWIRE-SERVICES', CH.services],
  ],
};
