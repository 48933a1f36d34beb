/**
 * NetworkKernel over a NetlinkTransport: links, addresses, routes, neighbours, FDB,
 * scoped to the netns the transport's socket lives in. Encoding is in ./rtnetlink.
 *
 * Error mapping: bad input -> InvalidInputError (before anything is sent); a missing
 * link -> NotFoundError('link', name); creating an existing name ->
 * AlreadyExistsError('link', name); any other errno -> KernelError(errno, text).
 * Deletes are idempotent (a missing link/address/route/neighbour/FDB entry is success),
 * as the reference CNI plugins and flannel's reconcile expect.
 */
import { AlreadyExistsError, InvalidInputError, KernelError, NotFoundError, PodwireError } from '../common/errors';
import { Cidr, IpAddress } from '../common/ip';
import { E, describeErrno } from './errno';
import type { NetlinkTransport } from './netlink/transport';
import { openNetnsFdSync } from './netns';
import * as C from './rtnetlink/constants';
import { decodeAddr, encodeDelAddr, encodeDumpAddrs, encodeNewAddr } from './rtnetlink/addr';
import {
  decodeLink,
  encodeBridgePort,
  encodeDelLink,
  encodeDumpLinks,
  encodeGetLinkByName,
  encodeNewLink,
  encodeSetLink,
  vethInfoData,
  vxlanInfoData,
  type SetLinkRequest,
} from './rtnetlink/link';
import { decodeNeigh, encodeDelNeigh, encodeDumpNeigh, encodeNewNeigh, type NeighWire } from './rtnetlink/neigh';
import { decodeRoute, encodeDelRoute, encodeNewRoute, encodeDumpRoutes, type RouteWire } from './rtnetlink/route';
import type {
  AddressEntry,
  BatchOutcome,
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
import { macBytes, toCidr, validateIfName, validateMtu, validatePort, validateU32, validateU8, validateVni } from './validate';

interface DetailedBatch {
  batchDetailed(messages: readonly Buffer[]): Promise<{ errnos: Int32Array; errors: { index: number; message: string }[] }>;
}

function errnoOf(err: unknown): number | undefined {
  return err instanceof KernelError && err.errno !== undefined ? Math.abs(err.errno) : undefined;
}

/** The transport's text (it carries the kernel's extended ACK) or the errno's name. */
function kernelText(err: unknown, errno: number): string {
  return err instanceof Error && err.message !== '' ? err.message : describeErrno(errno);
}

function toIp(v: unknown, field: string): IpAddress {
  return v instanceof IpAddress ? v : IpAddress.parse(v as string, field);
}

export class NetlinkNetworkKernel implements NetworkKernel {
  constructor(
    private readonly transport: NetlinkTransport,
    readonly netns: NetnsRef | undefined,
  ) {}

  private where(): string {
    return this.netns ? ` in ${this.netns.path}` : '';
  }

  /** One request; a kernel errno becomes KernelError naming the operation. */
  private async call(operation: string, msg: Buffer, field?: string, value?: unknown): Promise<Buffer[]> {
    try {
      return await this.transport.request(msg);
    } catch (err) {
      const errno = errnoOf(err);
      if (errno === undefined) throw err;
      throw new KernelError(`${operation}${this.where()}`, kernelText(err, errno), { errno, field, value, cause: err });
    }
  }

  private async indexOf(name: string, field = 'link'): Promise<number> {
    validateIfName(name, field);
    const link = await this.getLink(name);
    if (!link) throw new NotFoundError('link', name);
    return link.index;
  }

  // ---- links ----

  async listLinks(): Promise<Link[]> {
    const replies = await this.call('list links', encodeDumpLinks());
    return replies.map(decodeLink);
  }

  async getLink(name: string): Promise<Link | undefined> {
    validateIfName(name);
    try {
      const replies = await this.transport.request(encodeGetLinkByName(name));
      return replies.length > 0 ? decodeLink(replies[0]!) : undefined;
    } catch (err) {
      if (errnoOf(err) === E.ENODEV) return undefined;
      const errno = errnoOf(err);
      if (errno === undefined) throw err;
      throw new KernelError(`get link${this.where()}`, kernelText(err, errno), { errno, field: 'link', value: name, cause: err });
    }
  }

  async createLink(spec: LinkSpec): Promise<Link> {
    validateIfName(spec.name, 'name');
    if (spec.mtu !== undefined) validateMtu(spec.mtu);
    const mac = spec.mac !== undefined ? macBytes(spec.mac) : undefined;
    let infoData: Buffer[] | undefined;
    let peerFd: { close(): Promise<void>; fd: number } | undefined;
    let replies: Buffer[];
    let master = spec.masterIndex;
    try {
      switch (spec.kind) {
        case 'bridge':
          break;
        case 'veth': {
          validateIfName(spec.peerName, 'peerName');
          if (spec.peerMtu !== undefined) validateMtu(spec.peerMtu, 'peerMtu');
          const peerMac = spec.peerMac !== undefined ? macBytes(spec.peerMac, 'peerMac') : undefined;
          if (spec.peerNetns) peerFd = openNetnsFdSync(spec.peerNetns);
          else if (spec.peerName === spec.name) throw new InvalidInputError('peerName', spec.peerName, 'must differ from name in the same netns');
          infoData = vethInfoData({ name: spec.peerName, netnsFd: peerFd?.fd, mtu: spec.peerMtu ?? spec.mtu, mac: peerMac });
          break;
        }
        case 'vxlan': {
          validateVni(spec.vni);
          validatePort(spec.port);
          if (typeof spec.learning !== 'boolean') throw new InvalidInputError('learning', spec.learning, 'must be true or false');
          if (spec.ttl !== undefined) validateU8(spec.ttl, 'ttl');
          if (spec.portRange !== undefined) {
            const [lo, hi] = spec.portRange;
            validatePort(lo, 'portRange[0]');
            validatePort(hi, 'portRange[1]');
            if (lo > hi) throw new InvalidInputError('portRange', spec.portRange, 'low port must not exceed high port');
          }
          const local = spec.local !== undefined ? toIp(spec.local, 'local') : undefined;
          const underlayIndex = spec.underlayDevice !== undefined ? await this.indexOf(spec.underlayDevice, 'underlayDevice') : undefined;
          infoData = vxlanInfoData({ vni: spec.vni, port: spec.port, local, underlayIndex, learning: spec.learning, portRange: spec.portRange, ttl: spec.ttl, gbp: spec.gbp });
          break;
        }
        default:
          throw new InvalidInputError('kind', (spec as { kind: unknown }).kind, 'supported kinds: bridge, veth, vxlan');
      }
      // No lookup first: NLM_F_EXCL makes the kernel refuse a taken name (EEXIST, below).
      if (master !== undefined) validateU32(master, 'masterIndex');
      else if (spec.master !== undefined) master = await this.indexOf(spec.master, 'master');
      const msg = encodeNewLink({ name: spec.name, kind: spec.kind, infoData, mtu: spec.mtu, mac, up: spec.up, master, echo: true });
      try {
        replies = await this.call(`create ${spec.kind} link`, msg, 'name', spec.name);
      } catch (err) {
        if (errnoOf(err) === E.EEXIST) {
          const taken = spec.kind === 'veth' && !(await this.getLink(spec.name)) ? spec.peerName : spec.name;
          throw new AlreadyExistsError('link', taken, err);
        }
        throw err;
      }
    } finally {
      await peerFd?.close();
    }
    // Note: a bridge's MTU follows its smallest port on every enslave (the kernel only pins
    // it after an MTU *change*), so give its ports the same MTU, as the reference plugin does.
    // Linux 6.3+ echoes the new link (NLM_F_ECHO), sent before IFLA_MASTER is applied;
    // older kernels only ACK, and then one lookup fetches it.
    let link: Link | undefined;
    for (const m of replies) {
      if (m.length < 16 || m.readUInt16LE(4) !== C.RTM_NEWLINK) continue;
      const l = decodeLink(m);
      if (l.name === spec.name) link = l;
    }
    if (link && master !== undefined) link.masterIndex = master; // the ACK says the enslave succeeded
    link ??= await this.getLink(spec.name);
    if (!link) throw new KernelError(`create ${spec.kind} link${this.where()}`, `link ${spec.name} vanished right after creation`);
    return link;
  }

  async deleteLink(name: string): Promise<void> {
    validateIfName(name);
    const link = await this.getLink(name);
    if (!link) return;
    try {
      await this.call('delete link', encodeDelLink(link.index), 'link', name);
    } catch (err) {
      if (errnoOf(err) !== E.ENODEV) throw err;
    }
  }

  private async setLink(name: string, what: string, r: Omit<SetLinkRequest, 'index'>): Promise<void> {
    const index = await this.indexOf(name);
    await this.call(`set link ${what}`, encodeSetLink({ ...r, index }), 'link', name);
  }

  async setLinkUp(name: string, up: boolean): Promise<void> {
    return this.setLink(name, up ? 'up' : 'down', { up });
  }

  async setMtu(name: string, mtu: number): Promise<void> {
    validateMtu(mtu);
    return this.setLink(name, `mtu ${mtu}`, { mtu });
  }

  async setMac(name: string, mac: string): Promise<void> {
    const bytes = macBytes(mac);
    return this.setLink(name, `address ${mac}`, { mac: bytes });
  }

  async setMaster(name: string, bridge: string | undefined): Promise<void> {
    const master = bridge === undefined ? 0 : await this.indexOf(bridge, 'bridge');
    return this.setLink(name, bridge === undefined ? 'nomaster' : `master ${bridge}`, { master });
  }

  async setBridgePort(name: string, options: { hairpin?: boolean; learning?: boolean }): Promise<void> {
    if (options.hairpin === undefined && options.learning === undefined) return;
    const index = await this.indexOf(name);
    await this.call('set bridge port flags', encodeBridgePort(index, options), 'link', name);
  }

  async setPromisc(name: string, on: boolean): Promise<void> {
    return this.setLink(name, `promisc ${on ? 'on' : 'off'}`, { promisc: on });
  }

  async moveToNetns(name: string, target: NetnsRef, newName?: string): Promise<void> {
    if (newName !== undefined) validateIfName(newName, 'newName');
    const index = await this.indexOf(name);
    const fd = openNetnsFdSync(target);
    try {
      await this.call(`move link to netns ${target.path}`, encodeSetLink({ index, netnsFd: fd.fd, name: newName }), 'link', name);
    } catch (err) {
      if (errnoOf(err) === E.EEXIST) throw new AlreadyExistsError('link', newName ?? name, err);
      throw err;
    } finally {
      await fd.close();
    }
  }

  // ---- addresses ----

  async listAddresses(dev?: string, family?: 4 | 6): Promise<AddressEntry[]> {
    const index = dev === undefined ? undefined : await this.indexOf(dev, 'dev');
    const replies = await this.call('list addresses', encodeDumpAddrs(family ?? 0));
    const out: AddressEntry[] = [];
    for (const m of replies) {
      const a = decodeAddr(m);
      if (a && (index === undefined || a.linkIndex === index)) out.push(a);
    }
    return out;
  }

  async addAddress(dev: string, cidr: Cidr): Promise<void> {
    const c = toCidr(cidr, 'cidr');
    const index = await this.indexOf(dev, 'dev');
    try {
      await this.call('add address', encodeNewAddr(index, c), 'cidr', c.toString());
    } catch (err) {
      if (errnoOf(err) !== E.EEXIST) throw err;
      const have = await this.listAddresses(dev, c.family);
      if (have.some((a) => a.cidr.ip.equals(c.ip) && a.cidr.prefixLength === c.prefixLength)) return;
      throw new AlreadyExistsError('address', `${c.ip.toString()} on ${dev} (with another prefix length)`, err);
    }
  }

  async deleteAddress(dev: string, cidr: Cidr): Promise<void> {
    const c = toCidr(cidr, 'cidr');
    const index = await this.indexOf(dev, 'dev');
    try {
      await this.call('delete address', encodeDelAddr(index, c), 'cidr', c.toString());
    } catch (err) {
      if (errnoOf(err) !== E.EADDRNOTAVAIL) throw err;
    }
  }

  // ---- routes ----

  private checkRoute(r: Route, field = 'route'): void {
    if (!(r.dst instanceof Cidr)) throw new InvalidInputError(`${field}.dst`, r.dst, 'expected a Cidr');
    if (r.gateway !== undefined && (!(r.gateway instanceof IpAddress) || r.gateway.family !== r.dst.family)) {
      throw new InvalidInputError(`${field}.gateway`, String(r.gateway), `expected an IPv${r.dst.family} address`);
    }
    if (r.metric !== undefined) validateU32(r.metric, `${field}.metric`);
    if (r.table !== undefined) validateU32(r.table, `${field}.table`);
    if (r.protocol !== undefined) validateU8(r.protocol, `${field}.protocol`);
    if (r.mtu !== undefined) validateMtu(r.mtu, `${field}.mtu`);
    if (r.dev !== undefined) validateIfName(r.dev, `${field}.dev`);
  }

  private async routeWire(r: Route): Promise<RouteWire> {
    this.checkRoute(r);
    return { route: r, oif: r.dev !== undefined ? await this.indexOf(r.dev, 'dev') : undefined };
  }

  /** `table` defaults to main (254); pass 0 for every table. Cloned cache entries are skipped. */
  async listRoutes(options: { family?: 4 | 6; table?: number; protocol?: number } = {}): Promise<Route[]> {
    const families: (4 | 6)[] = options.family ? [options.family] : [4, 6];
    const table = options.table ?? C.RT_TABLE_MAIN;
    const names = await this.indexNames();
    const out: Route[] = [];
    for (const f of families) {
      for (const m of await this.call('list routes', encodeDumpRoutes(f))) {
        const d = decodeRoute(m);
        if (d.cloned) continue;
        if (![C.RTN_UNICAST, C.RTN_LOCAL, C.RTN_BLACKHOLE, C.RTN_UNREACHABLE].includes(d.rtnType)) continue;
        if (table !== 0 && d.route.table !== table) continue;
        if (options.protocol !== undefined && d.route.protocol !== options.protocol) continue;
        if (d.oif !== undefined) d.route.dev = names.get(d.oif);
        out.push(d.route);
      }
    }
    return out;
  }

  async addRoute(route: Route): Promise<void> {
    await this.call('add route', encodeNewRoute(await this.routeWire(route), 'add'), 'route.dst', String(route.dst));
  }

  async replaceRoute(route: Route): Promise<void> {
    await this.call('replace route', encodeNewRoute(await this.routeWire(route), 'replace'), 'route.dst', String(route.dst));
  }

  async deleteRoute(route: Route): Promise<void> {
    this.checkRoute(route);
    let oif: number | undefined;
    if (route.dev !== undefined) {
      const link = await this.getLink(route.dev);
      if (!link) return; // the device and its routes are gone
      oif = link.index;
    }
    try {
      await this.call('delete route', encodeDelRoute({ route, oif }), 'route.dst', String(route.dst));
    } catch (err) {
      if (errnoOf(err) !== E.ESRCH) throw err;
    }
  }

  // ---- neighbours and FDB ----

  private neighWire(n: NeighborEntry, index: number): NeighWire {
    const ip = toIp(n.ip, 'ip');
    return {
      family: ip.family === 4 ? C.AF_INET : C.AF_INET6,
      ifindex: index,
      state: n.permanent ? C.NUD_PERMANENT : C.NUD_REACHABLE,
      flags: 0,
      dst: ip,
      lladdr: macBytes(n.mac),
    };
  }

  private fdbWire(f: FdbEntry, index: number): NeighWire {
    return {
      family: C.AF_BRIDGE,
      ifindex: index,
      state: f.permanent ? C.NUD_PERMANENT : C.NUD_REACHABLE,
      flags: C.NTF_SELF,
      dst: f.dst !== undefined ? toIp(f.dst, 'dst') : undefined,
      lladdr: macBytes(f.mac),
    };
  }

  async listNeighbors(dev?: string): Promise<NeighborEntry[]> {
    const index = dev === undefined ? undefined : await this.indexOf(dev, 'dev');
    const names = await this.indexNames();
    const out: NeighborEntry[] = [];
    for (const fam of [C.AF_INET, C.AF_INET6]) {
      for (const m of await this.call('list neighbours', encodeDumpNeigh(fam))) {
        const n = decodeNeigh(m);
        if (!n.dst || !n.mac || (n.state & C.NUD_NOARP) !== 0) continue;
        if (index !== undefined && n.ifindex !== index) continue;
        out.push({ dev: names.get(n.ifindex) ?? String(n.ifindex), ip: n.dst, mac: n.mac, permanent: (n.state & C.NUD_PERMANENT) !== 0 });
      }
    }
    return out;
  }

  async replaceNeighbor(entry: NeighborEntry): Promise<void> {
    const w = this.neighWire(entry, await this.indexOf(entry.dev, 'dev'));
    await this.call('replace neighbour', encodeNewNeigh(w, 'replace'), 'ip', String(entry.ip));
  }

  async deleteNeighbor(entry: NeighborEntry): Promise<void> {
    const link = await this.getLink(validateIfName(entry.dev, 'dev'));
    if (!link) return;
    try {
      await this.call('delete neighbour', encodeDelNeigh(this.neighWire(entry, link.index)), 'ip', String(entry.ip));
    } catch (err) {
      if (errnoOf(err) !== E.ENOENT) throw err;
    }
  }

  async listFdb(dev?: string): Promise<FdbEntry[]> {
    const index = dev === undefined ? undefined : await this.indexOf(dev, 'dev');
    const names = await this.indexNames();
    const out: FdbEntry[] = [];
    for (const m of await this.call('list fdb', encodeDumpNeigh(C.AF_BRIDGE))) {
      const n = decodeNeigh(m);
      if (!n.mac || (index !== undefined && n.ifindex !== index)) continue;
      const e: FdbEntry = { dev: names.get(n.ifindex) ?? String(n.ifindex), mac: n.mac, permanent: (n.state & C.NUD_PERMANENT) !== 0 };
      if (n.dst) e.dst = n.dst;
      out.push(e);
    }
    return out;
  }

  async appendFdb(entry: FdbEntry): Promise<void> {
    const w = this.fdbWire(entry, await this.indexOf(entry.dev, 'dev'));
    await this.call('append fdb', encodeNewNeigh(w, 'append'), 'mac', entry.mac);
  }

  async replaceFdb(entry: FdbEntry): Promise<void> {
    const w = this.fdbWire(entry, await this.indexOf(entry.dev, 'dev'));
    await this.call('replace fdb', encodeNewNeigh(w, 'replace'), 'mac', entry.mac);
  }

  async deleteFdb(entry: FdbEntry): Promise<void> {
    const link = await this.getLink(validateIfName(entry.dev, 'dev'));
    if (!link) return;
    try {
      await this.call('delete fdb', encodeDelNeigh(this.fdbWire(entry, link.index)), 'mac', entry.mac);
    } catch (err) {
      if (errnoOf(err) !== E.ENOENT) throw err;
    }
  }

  // ---- batches ----

  private async indexNames(): Promise<Map<number, string>> {
    return new Map((await this.listLinks()).map((l) => [l.index, l.name]));
  }

  /**
   * Encodes every change (an encoding failure, e.g. an unknown dev, is reported at its
   * index and not sent), sends the rest in one transport.batch and names each failure.
   * `missingOnDelete` is the errno that means "already gone" for a delete (success).
   */
  private async applyBatch<T>(
    kind: string,
    changes: Change<T>[],
    encode: (c: Change<T>, ifindex: (dev: string) => number) => Buffer,
    missingOnDelete: number,
  ): Promise<BatchResult<T>> {
    const byName = new Map((await this.listLinks()).map((l) => [l.name, l.index]));
    const ifindex = (dev: string): number => {
      const i = byName.get(dev);
      if (i === undefined) throw new NotFoundError('link', dev);
      return i;
    };
    const failed: BatchOutcome<T>[] = [];
    const msgs: Buffer[] = [];
    const sentIndex: number[] = [];
    changes.forEach((change, index) => {
      try {
        msgs.push(encode(change, ifindex));
        sentIndex.push(index);
      } catch (err) {
        const errno = err instanceof NotFoundError ? E.ENODEV : E.EINVAL;
        const message = err instanceof PodwireError ? err.message : String(err);
        failed.push({ index, change, errno, message });
      }
    });
    const { errnos, extack } = await this.sendBatch(msgs);
    let applied = 0;
    for (let i = 0; i < sentIndex.length; i++) {
      const errno = Math.abs(errnos[i] ?? 0);
      const index = sentIndex[i]!;
      const change = changes[index]!;
      if (errno === 0 || (change.op === 'delete' && errno === missingOnDelete)) {
        applied++;
        continue;
      }
      const why = extack.get(i);
      failed.push({ index, change, errno, message: `${kind} #${index} ${change.op}: ${describeErrno(errno)}${why ? `: ${why}` : ''}` });
    }
    failed.sort((a, b) => a.index - b.index);
    return { applied, failed };
  }

  applyRoutes(changes: Change<Route>[]): Promise<BatchResult<Route>> {
    return this.applyBatch(
      'route',
      changes,
      (c, ifindex) => {
        this.checkRoute(c.entry, 'entry');
        const w: RouteWire = { route: c.entry, oif: c.entry.dev !== undefined ? ifindex(c.entry.dev) : undefined };
        return c.op === 'delete' ? encodeDelRoute(w) : encodeNewRoute(w, c.op);
      },
      E.ESRCH,
    );
  }

  applyNeighbors(changes: Change<NeighborEntry>[]): Promise<BatchResult<NeighborEntry>> {
    return this.applyBatch(
      'neighbour',
      changes,
      (c, ifindex) => {
        const w = this.neighWire(c.entry, ifindex(c.entry.dev));
        return c.op === 'delete' ? encodeDelNeigh(w) : encodeNewNeigh(w, c.op === 'add' ? 'add' : 'replace');
      },
      E.ENOENT,
    );
  }

  /** For FDB, `add` appends (another dst for the same MAC), `replace` replaces. */
  applyFdb(changes: Change<FdbEntry>[]): Promise<BatchResult<FdbEntry>> {
    return this.applyBatch(
      'fdb',
      changes,
      (c, ifindex) => {
        const w = this.fdbWire(c.entry, ifindex(c.entry.dev));
        return c.op === 'delete' ? encodeDelNeigh(w) : encodeNewNeigh(w, c.op === 'add' ? 'append' : 'replace');
      },
      E.ENOENT,
    );
  }

  async applyLinkConfig(steps: LinkConfigStep[]): Promise<BatchResult<LinkConfigStep>> {
    const failed: BatchOutcome<LinkConfigStep>[] = [];
    const msgs: Buffer[] = [];
    const sentIndex: number[] = [];
    steps.forEach((step, index) => {
      try {
        validateU32(step.index, `steps[${index}].index`);
        msgs.push(this.encodeLinkStep(step, index));
        sentIndex.push(index);
      } catch (err) {
        failed.push({ index, change: { op: 'add', entry: step }, errno: E.EINVAL, message: err instanceof PodwireError ? err.message : String(err) });
      }
    });
    const { errnos, extack } = await this.sendBatch(msgs);
    let applied = 0;
    let addresses: AddressEntry[] | undefined;
    for (let i = 0; i < sentIndex.length; i++) {
      const index = sentIndex[i]!;
      const step = steps[index]!;
      const errno = Math.abs(errnos[i] ?? 0);
      if (errno === E.EEXIST && step.kind === 'address') {
        // Like addAddress: the exact address being there already is success.
        addresses ??= await this.listAddresses();
        const c = step.cidr;
        if (addresses.some((a) => a.linkIndex === step.index && a.cidr.ip.equals(c.ip) && a.cidr.prefixLength === c.prefixLength)) {
          applied++;
          continue;
        }
      }
      if (errno === 0) {
        applied++;
        continue;
      }
      const why = extack.get(i);
      failed.push({ index, change: { op: 'add', entry: step }, errno, message: `link config #${index} ${describeLinkStep(step)}${this.where()}: ${describeErrno(errno)}${why ? `: ${why}` : ''}` });
    }
    failed.sort((a, b) => a.index - b.index);
    return { applied, failed };
  }

  private encodeLinkStep(step: LinkConfigStep, i: number): Buffer {
    switch (step.kind) {
      case 'up':
        return encodeSetLink({ index: step.index, up: step.up });
      case 'address':
        return encodeNewAddr(step.index, toCidr(step.cidr, `steps[${i}].cidr`));
      case 'route': {
        const route = { ...step.route };
        delete route.dev; // leaves through step.index
        this.checkRoute(route, `steps[${i}].route`);
        return encodeNewRoute({ route, oif: step.index }, 'add');
      }
      case 'bridgePort':
        return encodeBridgePort(step.index, { hairpin: step.hairpin, learning: step.learning });
      default:
        throw new InvalidInputError(`steps[${i}].kind`, (step as { kind: unknown }).kind, 'supported kinds: up, address, route, bridgePort');
    }
  }

  /** One transport batch; the native transport also returns the extended-ACK text per failure. */
  private async sendBatch(msgs: Buffer[]): Promise<{ errnos: Int32Array; extack: Map<number, string> }> {
    const detailed = (this.transport as Partial<DetailedBatch>).batchDetailed;
    const res = detailed ? await detailed.call(this.transport, msgs) : { errnos: await this.transport.batch(msgs), errors: [] };
    return { errnos: res.errnos, extack: new Map(res.errors.map((e) => [e.index, e.message])) };
  }

  close(): void {
    this.transport.close();
  }
}

function describeLinkStep(step: LinkConfigStep): string {
  switch (step.kind) {
    case 'up':
      return `set link #${step.index} ${step.up ? 'up' : 'down'}`;
    case 'address':
      return `add address ${String(step.cidr)} on link #${step.index}`;
    case 'route':
      return `add route ${String(step.route.dst)}${step.route.gateway ? ` via ${String(step.route.gateway)}` : ''} on link #${step.index}`;
    case 'bridgePort':
      return `set bridge port flags on link #${step.index}`;
  }
}
