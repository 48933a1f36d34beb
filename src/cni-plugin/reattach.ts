/**
 * Repair for a node bridge that went away under running pods (`ip link del pw0`, a
 * network manager, a script): the next ADD recreates the bridge, but the pods already
 * running stay cut off, their host veths on no bridge. `reattachPods` finds the pods the
 * IPAM store knows (one file per IP: container ID + ifname; the host veth name derives
 * from them, names.ts), ensures the bridge exactly as an ADD does (name, pinned MAC, up,
 * promisc, gateway addresses) and puts every existing host veth back on it: master,
 * up, hairpin as configured. The daemon's cni component runs it on every sync.
 *
 * Read-only towards IPAM (a listing, no lock: a file that appears or goes meanwhile is
 * seen next time). Never creates a veth and never touches the pod side.
 */
import { NotFoundError, errorMessage } from '../common/errors';
import type { Link, NetworkKernel, SysctlKernel } from '../kernel/types';
import type { NetConf } from './config';
import type { IpamStore } from './ipam/store';
import { hostVethName } from './names';
import { ensureBridge, ensureGatewayAddress } from './steps';

export interface ReattachReport {
  /** Attachments (container ID + ifname) the IPAM store holds. */
  pods: number;
  /** Their host veths that exist on this node. */
  veths: number;
  /** Host veths that were off the bridge (or down) and were put back. */
  reattached: string[];
  /** The bridge did not exist and was created. */
  bridgeCreated: boolean;
  /** Per-veth failures (every veth is attempted). */
  errors: string[];
}

/**
 * Ensure the bridge of `conf` and every known pod's host veth on it. Does nothing (no
 * bridge created) when no pod of the store has a host veth here.
 */
export async function reattachPods(k: NetworkKernel, sysctl: SysctlKernel, conf: NetConf, store: IpamStore): Promise<ReattachReport> {
  const { reservations } = await store.list();
  const attachments = new Map<string, { containerId: string; ifname: string }>();
  for (const r of reservations) {
    if (r.ifname === undefined) continue; // pre-ifname host-local file: no veth name to derive
    attachments.set(hostVethName(r.containerId, r.ifname), { containerId: r.containerId, ifname: r.ifname });
  }
  const report: ReattachReport = { pods: attachments.size, veths: 0, reattached: [], bridgeCreated: false, errors: [] };
  if (attachments.size === 0) return report;
  const links = await k.listLinks();
  const veths = links.filter((l) => attachments.has(l.name));
  report.veths = veths.length;
  if (veths.length === 0) return report;

  const before = links.find((l) => l.name === conf.bridge);
  const bridge = await ensureBridge(k, conf.bridge, conf.mtu, conf.promiscMode);
  report.bridgeCreated = before === undefined;
  if (conf.isGateway) {
    for (const set of conf.ipam.rangeSets) {
      for (const range of set) {
        if (!range.gateway) continue;
        if (range.gateway.family === 6) await sysctl.write(`net/ipv6/conf/${conf.bridge}/accept_dad`, '0');
        await ensureGatewayAddress(k, conf.bridge, range.gateway, range.subnet);
      }
    }
  }
  for (const v of veths) {
    if (v.masterIndex === bridge.index && v.up) continue;
    try {
      await reattach(k, v, conf);
      report.reattached.push(v.name);
    } catch (err) {
      if (err instanceof NotFoundError && err.field === 'link' && err.value === v.name) continue; // deleted meanwhile (a DEL)
      report.errors.push(`${v.name}: ${errorMessage(err)}`);
    }
  }
  return report;
}

async function reattach(k: NetworkKernel, v: Link, conf: NetConf): Promise<void> {
  await k.setMaster(v.name, conf.bridge);
  if (!v.up) await k.setLinkUp(v.name, true);
  // Port flags belong to the bridge port: a new port starts with hairpin off.
  if (conf.hairpinMode) await k.setBridgePort(v.name, { hairpin: true });
}
