/**
 * Reachability of each peer's VTEP: an ICMP echo to the peer's underlay address (the tunnel
 * endpoint for vxlan, the next hop for host-gw), and with vxlan to its VTEP address through the
 * tunnel as well, so a firewall dropping UDP 8472 shows up as "underlay ok, tunnel FAIL".
 */
import { componentStatus, finder, type Check, type Finding } from '../types';

const f = finder('peers');

export interface PeerTarget {
  node: string;
  underlay: string;
  /** The peer's VTEP address inside the overlay (vxlan only). */
  vtep: string | undefined;
}

/** Peers from the overlay's status: `via` reads "<ip> (vxlan <dev>, VTEP <vtep> <mac>)" or "<ip> (host-gw <dev>)". */
export function peerTargets(status: Record<string, unknown> | undefined): PeerTarget[] {
  const peers = Array.isArray(status?.peers) ? (status.peers as Record<string, unknown>[]) : [];
  return peers.map((p) => {
    const via = String(p.via ?? '');
    const vtep = /VTEP (\S+)/.exec(via)?.[1];
    return { node: String(p.node ?? '?'), underlay: via.split(' ')[0] ?? '', vtep: p.encapsulated === true ? vtep : undefined };
  });
}

export const peers: Check = {
  id: 'peers',
  title: 'peer reachability',
  async run(env) {
    const ov = componentStatus(env, 'overlay');
    if (!ov) return [f.warn('peers', env.status ? 'the overlay component is not running, so there are no peers to probe' : `no podwired status (${env.statusError ?? '?'})`, 'enable the overlay component (--enable overlay) or start podwired')];
    const targets = peerTargets(ov);
    if (targets.length === 0) return [f.ok('peers', 'no peers yet (a one-node cluster, or no other Node has a podCIDR)')];
    const out: Finding[] = [];
    for (const p of targets) {
      const u = await env.ping(p.underlay);
      if (!u.ok) {
        out.push(f.fail(`peer ${p.node} ${p.underlay}`, `no ICMP echo reply over the underlay (${u.detail}): pods on ${p.node} are unreachable`, `check the route and firewalls between the nodes: ping ${p.underlay}`));
        continue;
      }
      if (!p.vtep) {
        out.push(f.ok(`peer ${p.node} ${p.underlay}`, `answers (${u.detail})`));
        continue;
      }
      const v = await env.ping(p.vtep);
      if (v.ok) out.push(f.ok(`peer ${p.node} ${p.underlay} VTEP ${p.vtep}`, `answers over the underlay and through the tunnel (${v.detail})`));
      else out.push(f.fail(`peer ${p.node} VTEP ${p.vtep}`, `the underlay answers but the tunnel does not (${v.detail}): VXLAN packets are dropped on the way`, `allow UDP 8472 between the nodes (security groups, host firewall) and check podwire status on ${p.node}`));
    }
    return out;
  },
};
