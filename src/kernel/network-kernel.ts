/**
 * NetworkKernel over a NetlinkTransport: links, addresses, routes, neighbours, FDB,
 * scoped to the netns the transport's socket lives in. Encoding is in ./rtnetlink and
 * ./netlink/fast-encode; the work is in ./net, one file per object kind:
 *   net/context.ts     transport, errno → KernelError, link lookups, the ifindex cache
 *   net/links.ts       links           net/addresses.ts   addresses
 *   net/routes.ts      routes          net/neighbours.ts  neighbours and FDB entries
 *   net/batch.ts       applyRoutes/applyNeighbors/applyFdb (fast encoders) and applyLinkConfig
 *
 * Error mapping: bad input -> InvalidInputError (before anything is sent); a missing
 * link -> NotFoundError('link', name); creating an existing name ->
 * AlreadyExistsError('link', name); any other errno -> KernelError(errno, text).
 * Deletes are idempotent (a missing link/address/route/neighbour/FDB entry is success),
 * as the reference CNI plugins and flannel's reconcile expect.
 */
import type { Cidr } from '../common/ip';
import type { NetlinkTransport } from './netlink/transport';
import * as addresses from './net/addresses';
import { BatchApplier } from './net/batch';
import { NetContext } from './net/context';
import * as links from './net/links';
import * as neighbours from './net/neighbours';
import * as routes from './net/routes';
import type {
  AddressEntry,
  BatchResult,
  Change,
  FdbEntry,
  Link,
  LinkConfigStep,
  LinkSpec,
  NeighborEntry,
  NetnsRef,
  NetworkKernel,
  Route,
} from './types';

export class NetlinkNetworkKernel implements NetworkKernel {
  private readonly ctx: NetContext;
  private readonly batches: BatchApplier;

  constructor(
    transport: NetlinkTransport,
    readonly netns: NetnsRef | undefined,
  ) {
    this.ctx = new NetContext(transport, netns);
    this.batches = new BatchApplier(this.ctx);
  }

  // ---- links (net/links.ts) ----
  listLinks(): Promise<Link[]> {
    return this.ctx.listLinks();
  }
  getLink(name: string): Promise<Link | undefined> {
    return this.ctx.getLink(name);
  }
  createLink(spec: LinkSpec): Promise<Link> {
    return links.createLink(this.ctx, spec);
  }
  deleteLink(name: string): Promise<void> {
    return links.deleteLink(this.ctx, name);
  }
  setLinkUp(name: string, up: boolean): Promise<void> {
    return links.setLinkUp(this.ctx, name, up);
  }
  setMtu(name: string, mtu: number): Promise<void> {
    return links.setMtu(this.ctx, name, mtu);
  }
  setMac(name: string, mac: string): Promise<void> {
    return links.setMac(this.ctx, name, mac);
  }
  setMaster(name: string, bridge: string | undefined): Promise<void> {
    return links.setMaster(this.ctx, name, bridge);
  }
  setBridgePort(name: string, options: { hairpin?: boolean; learning?: boolean }): Promise<void> {
    return links.setBridgePort(this.ctx, name, options);
  }
  setPromisc(name: string, on: boolean): Promise<void> {
    return links.setPromisc(this.ctx, name, on);
  }
  moveToNetns(name: string, target: NetnsRef, newName?: string): Promise<void> {
    return links.moveToNetns(this.ctx, name, target, newName);
  }

  // ---- addresses (net/addresses.ts) ----
  listAddresses(dev?: string, family?: 4 | 6): Promise<AddressEntry[]> {
    return addresses.listAddresses(this.ctx, dev, family);
  }
  addAddress(dev: string, cidr: Cidr, opts?: { nodad?: boolean }): Promise<void> {
    return addresses.addAddress(this.ctx, dev, cidr, opts);
  }
  deleteAddress(dev: string, cidr: Cidr): Promise<void> {
    return addresses.deleteAddress(this.ctx, dev, cidr);
  }

  // ---- routes (net/routes.ts) ----
  listRoutes(options?: { family?: 4 | 6; table?: number; protocol?: number }): Promise<Route[]> {
    return routes.listRoutes(this.ctx, options);
  }
  addRoute(route: Route): Promise<void> {
    return routes.addRoute(this.ctx, route);
  }
  replaceRoute(route: Route): Promise<void> {
    return routes.replaceRoute(this.ctx, route);
  }
  deleteRoute(route: Route): Promise<void> {
    return routes.deleteRoute(this.ctx, route);
  }

  // ---- neighbours and FDB (net/neighbours.ts) ----
  listNeighbors(dev?: string): Promise<NeighborEntry[]> {
    return neighbours.listNeighbors(this.ctx, dev);
  }
  replaceNeighbor(entry: NeighborEntry): Promise<void> {
    return neighbours.replaceNeighbor(this.ctx, entry);
  }
  deleteNeighbor(entry: NeighborEntry): Promise<void> {
    return neighbours.deleteNeighbor(this.ctx, entry);
  }
  listFdb(dev?: string): Promise<FdbEntry[]> {
    return neighbours.listFdb(this.ctx, dev);
  }
  appendFdb(entry: FdbEntry): Promise<void> {
    return neighbours.appendFdb(this.ctx, entry);
  }
  replaceFdb(entry: FdbEntry): Promise<void> {
    return neighbours.replaceFdb(this.ctx, entry);
  }
  deleteFdb(entry: FdbEntry): Promise<void> {
    return neighbours.deleteFdb(this.ctx, entry);
  }

  // ---- batches (net/batch.ts) ----
  applyRoutes(changes: Change<Route>[]): Promise<BatchResult<Route>> {
    return this.batches.applyRoutes(changes);
  }
  applyNeighbors(changes: Change<NeighborEntry>[]): Promise<BatchResult<NeighborEntry>> {
    return this.batches.applyNeighbors(changes);
  }
  /** For FDB, `add` appends (another dst for the same MAC), `replace` replaces. */
  applyFdb(changes: Change<FdbEntry>[]): Promise<BatchResult<FdbEntry>> {
    return this.batches.applyFdb(changes);
  }
  applyLinkConfig(steps: LinkConfigStep[]): Promise<BatchResult<LinkConfigStep>> {
    return this.batches.applyLinkConfig(steps);
  }

  close(): void {
    this.ctx.transport.close();
  }
}
