/**
 * The demo's overlay checks: podwired's overlay component (host-gw backend in the demo)
 * programs the routes between the nodes; the demo only looks. Each node must have, for every
 * other node, `<podCIDR> via <node IP> dev <underlay>` with the overlay's route protocol (77),
 * found within a bounded poll.
 *
 * Negative control (`--no-host-gw-routes`): the demo starts podwired with a 1 h reconcile
 * interval and deletes the overlay's routes by hand (`ip route flush proto 77`), so nothing
 * re-adds them while the checks run and the cross-node checks must FAIL.
 */
import { exec } from '../harness';
import type { Checks, Log } from './checks';

export const OVERLAY_PROTO = '77';

export interface OverlayDemoNode {
  name: string;
  ns: string;
  ip: string;
  podCidr: string;
  ifname: string;
}

/** Extra podwired flags for the negative control: no periodic reconcile during the demo. */
export const NEGATIVE_CONTROL_ARGS = ['--sync-interval', '1h'];

async function ourRoutes(ns: string): Promise<string[]> {
  const r = await exec(ns, ['ip', '-4', 'route', 'show', 'proto', OVERLAY_PROTO]);
  return r.stdout.split('\n').map((l) => l.trim().replace(/ metric \d+/, '')).filter(Boolean);
}

export async function overlayRoutes(nodes: readonly OverlayDemoNode[], programmed: boolean, checks: Checks, log: Log): Promise<void> {
  if (nodes.length < 2) {
    log('one node: no cross-node routes needed');
    return;
  }
  log('podwired programs the host-gw routes between the nodes (overlay component, route proto 77)');
  for (const n of nodes) {
    const want = nodes.filter((o) => o !== n).map((o) => `${o.podCidr} via ${o.ip} dev ${n.ifname}`).sort();
    let have: string[] = [];
    for (let i = 0; i < 100; i++) {
      have = (await ourRoutes(n.ns)).sort();
      if (want.every((w) => have.includes(w))) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const ok = want.every((w) => have.includes(w));
    checks.record({ kind: 'overlay routes (podwired)', from: n.name, to: '-', expect: `${want.length} route(s), proto ${OVERLAY_PROTO}`, passed: ok, detail: have.join('; ') || 'none', output: `want: ${want.join('; ')}\nhave: ${have.join('; ')}` });
    for (const h of have) log(`  ${n.name}: ${h} proto ${OVERLAY_PROTO}`);
  }
  if (!programmed) {
    log('NEGATIVE CONTROL (--no-host-gw-routes): deleting podwired\'s routes by hand (no reconcile for 1 h); the cross-node checks below must FAIL');
    for (const n of nodes) await exec(n.ns, ['ip', 'route', 'flush', 'proto', OVERLAY_PROTO]);
  }
}
