/**
 * Kernel steps of ADD/DEL as *ensure* helpers (containernetworking/plugins style):
 * "already exists" counts as success wherever the existing object is what we want,
 * so concurrent ADDs never fail on EEXIST.
 */
import { randomBytes } from 'node:crypto';
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
  /** MAC of the pod end, chosen here so the result needs no lookup inside the pod. */
  podMac: string;
}

/** A random locally administered unicast MAC, like the kernel's own random choice for veth. */
export function randomMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0]! & 0xfe) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** Creates the pair with the pod end directly in the pod namespace and the host end up. */
export async function createVeth(host: NetworkKernel, p: VethPlan): Promise<Link> {
  return host.createLink({
    kind: 'veth',
    name: p.hostName,
    peerName: p.podName,
    peerNetns: p.podNetns,
    peerMac: p.podMac,
    up: true,
    ...(p.mtu === undefined ? {} : { mtu: p.mtu, peerMtu: p.mtu }),
  });
}

/** Enslaves the host end to the bridge, with hairpin when asked. */
export async function attachToBridge(host: NetworkKernel, p: VethPlan): Promise<void> {
  await host.setMaster(p.hostName, p.bridge);
  if (p.hairpin) await host.setBridgePort(p.hostName, { hairpin: true });
}

/**
 * Pod side (lo is brought up by the caller): addresses and link up (independent, so
 * issued together), then routes (they need both).
 */
export async function configurePod(
  pod: NetworkKernel,
  ifname: string,
  addresses: Cidr[],
  routes: Route[],
): Promise<void> {
  const settled = await Promise.allSettled([...addresses.map((a) => pod.addAddress(ifname, a)), pod.setLinkUp(ifname, true)]);
  for (const r of settled) if (r.status === 'rejected') throw r.reason;
  for (const r of routes) {
    try {
      await pod.addRoute(r);
    } catch (err) {
      if (!(err instanceof AlreadyExistsError)) throw err;
    }
  }
}
