/**
 * Kernel steps of ADD/DEL as *ensure* helpers (containernetworking/plugins style):
 * "already exists" counts as success wherever the existing object is what we want,
 * so concurrent ADDs never fail on EEXIST.
 */
import { AlreadyExistsError } from '../common/errors';
import { Cidr, type IpAddress } from '../common/ip';
import type { Link, NetnsRef, NetworkKernel, Route } from '../kernel/types';
import { CniError, CniErrorCode } from './errors';

export async function ensureBridge(k: NetworkKernel, name: string, mtu: number | undefined, promisc: boolean): Promise<Link> {
  let link = await k.getLink(name);
  if (!link) {
    try {
      link = await k.createLink(mtu === undefined ? { kind: 'bridge', name, up: true } : { kind: 'bridge', name, mtu, up: true });
    } catch (err) {
      if (!(err instanceof AlreadyExistsError)) throw err;
      link = await k.getLink(name); // a concurrent ADD made it
    }
  }
  if (!link) throw new CniError(CniErrorCode.KernelFailure, `bridge ${name} vanished while being set up`);
  if (link.kind !== undefined && link.kind !== 'bridge') {
    throw new CniError(CniErrorCode.InvalidNetworkConfig, `bridge ${JSON.stringify(name)} exists but is a ${link.kind}, not a bridge`);
  }
  if (!link.up) await k.setLinkUp(name, true);
  if (promisc) await k.setPromisc(name, true);
  return link;
}

/** The bridge's gateway address, idempotently (addAddress succeeds on an existing exact address). */
export async function ensureGatewayAddress(k: NetworkKernel, bridge: string, gateway: IpAddress, subnet: Cidr): Promise<void> {
  await k.addAddress(bridge, Cidr.of(gateway, subnet.prefixLength));
}

export interface VethPlan {
  hostName: string;
  podName: string;
  podNetns: NetnsRef;
  mtu: number | undefined;
  bridge: string;
  hairpin: boolean;
}

/**
 * Creates the pair with the pod end directly in the pod namespace and the host end up,
 * then enslaves it. `created` runs as soon as the pair exists (to register its undo).
 */
export async function setupVeth(host: NetworkKernel, p: VethPlan, created: () => void): Promise<Link> {
  const spec = {
    kind: 'veth' as const,
    name: p.hostName,
    peerName: p.podName,
    peerNetns: p.podNetns,
    up: true,
    ...(p.mtu === undefined ? {} : { mtu: p.mtu, peerMtu: p.mtu }),
  };
  const link = await host.createLink(spec);
  created();
  await host.setMaster(p.hostName, p.bridge);
  if (p.hairpin) await host.setBridgePort(p.hostName, { hairpin: true });
  return link;
}

/** Pod side (lo is brought up by the caller): addresses, link up, routes. */
export async function configurePod(
  pod: NetworkKernel,
  ifname: string,
  addresses: Cidr[],
  routes: Route[],
): Promise<void> {
  for (const a of addresses) await pod.addAddress(ifname, a);
  await pod.setLinkUp(ifname, true);
  for (const r of routes) {
    try {
      await pod.addRoute(r);
    } catch (err) {
      if (!(err instanceof AlreadyExistsError)) throw err;
    }
  }
}
