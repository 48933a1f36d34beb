/**
 * Kernel steps of ADD/DEL as *ensure* helpers (containernetworking/plugins style):
 * "already exists" counts as success wherever the existing object is what we want,
 * so concurrent ADDs never fail on EEXIST.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { AlreadyExistsError, KernelError } from '../common/errors';
import { Cidr, type IpAddress } from '../common/ip';
import type { BatchResult, Link, LinkConfigStep, NetnsRef, NetworkKernel, Route } from '../kernel/types';
import { CniError, CniErrorCode } from './errors';

/**
 * The bridge, up, with its MAC pinned. A bridge whose MAC was never set explicitly takes the
 * lowest MAC of its ports, so deleting one pod's veth would change the gateway's MAC under
 * every other pod on the node (they keep the old neighbour entry until it goes stale, tens of
 * seconds without a gateway). A MAC given at creation, or set once later, stays put.
 */
export async function ensureBridge(k: NetworkKernel, name: string, mtu: number | undefined, promisc: boolean): Promise<Link> {
  let link = await k.getLink(name);
  let created = false;
  if (!link) {
    const mac = randomMac();
    try {
      link = await k.createLink(mtu === undefined ? { kind: 'bridge', name, mac, up: true } : { kind: 'bridge', name, mac, mtu, up: true });
      created = true;
    } catch (err) {
      if (!(err instanceof AlreadyExistsError)) throw err;
      link = await k.getLink(name); // a concurrent ADD made it
    }
  }
  if (!link) throw new CniError(CniErrorCode.KernelFailure, `bridge ${name} vanished while being set up`);
  if (link.kind !== undefined && link.kind !== 'bridge') {
    throw new CniError(CniErrorCode.InvalidNetworkConfig, `bridge ${JSON.stringify(name)} exists but is a ${link.kind}, not a bridge`);
  }
  // Netlink does not report whether a MAC was set explicitly, so a bridge we did not just
  // create gets its current MAC set again: setting it marks it as assigned, and the same value
  // changes nothing for the pods already there.
  if (!created && link.mac !== undefined) await k.setMac(name, link.mac);
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

/**
 * 6 random bytes from /dev/urandom (three syscalls): node:crypto's randomBytes would load
 * OpenSSL's bindings, ~5 ms of every in-process plugin start. node:crypto only if that fails.
 */
function random6(): Buffer {
  const b = Buffer.alloc(6);
  try {
    const fd = openSync('/dev/urandom', 'r');
    try {
      if (readSync(fd, b, 0, 6, null) === 6) return b;
    } finally {
      closeSync(fd);
    }
  } catch {
    /* below */
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('node:crypto') as typeof import('node:crypto')).randomBytes(6);
}

/** A random locally administered unicast MAC, like the kernel's own random choice for veth. */
export function randomMac(): string {
  const b = random6();
  b[0] = (b[0]! & 0xfe) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/**
 * Creates the pair with the pod end directly in the pod namespace and the host end up
 * and already enslaved to the bridge (IFLA_MASTER in the same RTM_NEWLINK): one round
 * trip, and the returned Link (echoed by the kernel) carries the pod end's ifindex.
 */
export async function createVeth(host: NetworkKernel, p: VethPlan, bridgeIndex: number): Promise<Link> {
  return host.createLink({
    kind: 'veth',
    name: p.hostName,
    peerName: p.podName,
    peerNetns: p.podNetns,
    peerMac: p.podMac,
    up: true,
    masterIndex: bridgeIndex,
    ...(p.mtu === undefined ? {} : { mtu: p.mtu, peerMtu: p.mtu }),
  });
}

/** Hairpin on the (already enslaved) host end: by ifindex when the kernel API allows it. */
export async function setHairpin(host: NetworkKernel, link: Link): Promise<void> {
  if (host.applyLinkConfig) throwFirstFailure(await host.applyLinkConfig([{ kind: 'bridgePort', index: link.index, hairpin: true }]));
  else await host.setBridgePort(link.name, { hairpin: true });
}

/** ifindex of `lo` in every network namespace (the kernel's LOOPBACK_IFINDEX). */
export const LOOPBACK_IFINDEX = 1;

/**
 * Pod side: lo up, link up, addresses, routes. With the pod end's ifindex (from the veth
 * creation) and a kernel offering applyLinkConfig, all of it goes in one batched round
 * trip, in that order (the kernel handles a batch in order, so the routes see the link
 * up and the connected route of the address). Otherwise by name: lo up, then addresses
 * and link up together, then routes.
 */
export async function configurePod(
  pod: NetworkKernel,
  ifname: string,
  podIndex: number | undefined,
  addresses: Cidr[],
  routes: Route[],
): Promise<void> {
  if (pod.applyLinkConfig && podIndex !== undefined) {
    const steps: LinkConfigStep[] = [
      { kind: 'up', index: LOOPBACK_IFINDEX, up: true },
      { kind: 'up', index: podIndex, up: true },
      ...addresses.map((cidr): LinkConfigStep => ({ kind: 'address', index: podIndex, cidr })),
      ...routes.map((route): LinkConfigStep => ({ kind: 'route', index: podIndex, route })),
    ];
    throwFirstFailure(await pod.applyLinkConfig(steps));
    return;
  }
  await pod.setLinkUp('lo', true);
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

/** The first failed step of a batch as the KernelError a single call would have thrown. */
function throwFirstFailure(result: BatchResult<LinkConfigStep>): void {
  const f = result.failed[0];
  if (f) throw new KernelError('configure link', f.message, { errno: f.errno });
}
