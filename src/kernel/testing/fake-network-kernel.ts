/**
 * In-memory NetworkKernel for unit tests of other modules, with the real one's error
 * semantics: AlreadyExistsError on a duplicate link, NotFoundError('link') for a
 * missing one, idempotent deletes, InvalidInputError for bad input, KernelError with
 * errno for kernel refusals (EEXIST on a duplicate route add, ENODEV/ENETUNREACH...),
 * and injectable batch failures. Several fakes share a FakeNetnsWorld so veth peers
 * and moveToNetns cross namespaces.
 */
import { AlreadyExistsError, InvalidInputError, KernelError, NotFoundError } from '../../common/errors';
import { Cidr, IpAddress } from '../../common/ip';
import { E, describeErrno } from '../errno';
import type {
  AddressEntry,
  BatchOutcome,
  BatchResult,
  Change,
  FdbEntry,
  Link,
  LinkSpec,
  NeighborEntry,
  NetnsRef,
  NetworkKernel,
  LinkConfigStep,
  Route,
} from '../types';
import { macBytes, toCidr, validateIfName, validateMtu, validatePort, validateVni } from '../validate';

interface FakeLink extends Link {
  promisc: boolean;
  hairpin: boolean;
  learning: boolean;
  /** For veth: the peer link object (possibly in another fake netns). */
  peer?: { kernel: FakeNetworkKernel; link: FakeLink };
}

let macCounter = 1;
function nextMac(): string {
  const n = macCounter++;
  return `02:fa:00:${((n >> 16) & 0xff).toString(16).padStart(2, '0')}:${((n >> 8) & 0xff).toString(16).padStart(2, '0')}:${(n & 0xff).toString(16).padStart(2, '0')}`;
}

/** Shared state of several fake namespaces (netns path -> kernel). */
export class FakeNetnsWorld {
  private readonly kernels = new Map<string, FakeNetworkKernel>();

  /**
   * `loopbackUp: false` makes every namespace start the way a new kernel netns does, with
   * `lo` down (the default keeps `lo` up, for tests that do not care).
   */
  constructor(private readonly options: { loopbackUp?: boolean } = {}) {}

  kernel(netns: NetnsRef | string): FakeNetworkKernel {
    const path = typeof netns === 'string' ? netns : netns.path;
    let k = this.kernels.get(path);
    if (!k) {
      k = new FakeNetworkKernel({ path }, this, { loopbackUp: this.options.loopbackUp ?? true });
      this.kernels.set(path, k);
    }
    return k;
  }

  has(path: string): boolean {
    return this.kernels.has(path);
  }

  /** Removes a namespace and destroys its links (veth peers elsewhere go too). */
  deleteNetns(path: string): void {
    const k = this.kernels.get(path);
    if (!k) return;
    for (const l of k.rawLinks()) void k.deleteLink(l.name);
    this.kernels.delete(path);
  }
}

type BatchKind = 'route' | 'neighbor' | 'fdb';

export interface FakeCall {
  method: string;
  args: unknown[];
}

export class FakeNetworkKernel implements NetworkKernel {
  private readonly links = new Map<string, FakeLink>();
  private addrs: AddressEntry[] = [];
  /** `ifindex cidr` of the addresses added with nodad (IFA_F_NODAD), for tests to check. */
  readonly nodad = new Set<string>();
  private routes: Route[] = [];
  private neigh: NeighborEntry[] = [];
  private fdb: FdbEntry[] = [];
  private nextIndex = 2;
  /** Every mutating call, in order, for assertions. */
  readonly calls: FakeCall[] = [];
  /** Return a non-zero errno to make that batch change fail. */
  batchFailure: ((kind: BatchKind, change: Change<unknown>, index: number) => number) | undefined;
  closed = false;

  constructor(
    readonly netns: NetnsRef | undefined = undefined,
    private readonly world: FakeNetnsWorld | undefined = undefined,
    options: { loopbackUp?: boolean } = {},
  ) {
    this.links.set('lo', { index: 1, name: 'lo', kind: undefined, mtu: 65536, mac: '00:00:00:00:00:00', up: options.loopbackUp ?? true, masterIndex: undefined, peerIndex: undefined, promisc: false, hairpin: false, learning: true });
  }

  rawLinks(): FakeLink[] {
    return [...this.links.values()];
  }

  private record(method: string, ...args: unknown[]): void {
    this.calls.push({ method, args });
  }

  private must(name: string, field = 'link'): FakeLink {
    validateIfName(name, field);
    const l = this.links.get(name);
    if (!l) throw new NotFoundError('link', name);
    return l;
  }

  private byIndex(index: number): FakeLink | undefined {
    for (const l of this.links.values()) if (l.index === index) return l;
    return undefined;
  }

  private snapshot(l: FakeLink): Link {
    const out: Link = { index: l.index, name: l.name, kind: l.kind, mtu: l.mtu, mac: l.mac, up: l.up, masterIndex: l.masterIndex, peerIndex: l.peerIndex };
    if (l.vxlan) out.vxlan = { ...l.vxlan };
    return out;
  }

  /** Hairpin/learning/promisc state, which Link does not carry. */
  portFlags(name: string): { hairpin: boolean; learning: boolean; promisc: boolean } {
    const l = this.must(name);
    return { hairpin: l.hairpin, learning: l.learning, promisc: l.promisc };
  }

  private newLink(name: string, kind: string, mtu?: number, mac?: string, up?: boolean): FakeLink {
    return { index: this.nextIndex++, name, kind, mtu: mtu ?? 1500, mac: mac ?? nextMac(), up: up ?? false, masterIndex: undefined, peerIndex: undefined, promisc: false, hairpin: false, learning: true };
  }

  async listLinks(): Promise<Link[]> {
    return [...this.links.values()].map((l) => this.snapshot(l));
  }

  async getLink(name: string): Promise<Link | undefined> {
    validateIfName(name);
    const l = this.links.get(name);
    return l ? this.snapshot(l) : undefined;
  }

  async createLink(spec: LinkSpec): Promise<Link> {
    validateIfName(spec.name, 'name');
    if (spec.mtu !== undefined) validateMtu(spec.mtu);
    if (spec.mac !== undefined) macBytes(spec.mac);
    if (this.links.has(spec.name)) throw new AlreadyExistsError('link', spec.name);
    let master: FakeLink | undefined;
    if (spec.masterIndex !== undefined) {
      master = this.byIndex(spec.masterIndex);
      if (!master) throw new KernelError('create link', describeErrno(E.ENODEV), { errno: E.ENODEV, field: 'masterIndex', value: spec.masterIndex });
    } else if (spec.master !== undefined) {
      master = this.must(spec.master, 'master');
    }
    if (master && master.kind !== 'bridge') throw new KernelError('create link', describeErrno(E.EOPNOTSUPP), { errno: E.EOPNOTSUPP });
    this.record('createLink', spec);
    const link = this.newLink(spec.name, spec.kind, spec.mtu, spec.mac?.toLowerCase(), spec.up);
    if (spec.kind === 'veth') {
      validateIfName(spec.peerName, 'peerName');
      if (spec.peerMtu !== undefined) validateMtu(spec.peerMtu, 'peerMtu');
      if (spec.peerNetns && (!this.world || !this.world.has(spec.peerNetns.path))) throw new NotFoundError('netns', spec.peerNetns.path);
      const peerKernel = spec.peerNetns && this.world ? this.world.kernel(spec.peerNetns) : this;
      if (peerKernel.links.has(spec.peerName) || (spec.peerName === spec.name && peerKernel === this)) throw new AlreadyExistsError('link', spec.peerName);
      const peer = peerKernel.newLink(spec.peerName, 'veth', spec.peerMtu ?? spec.mtu, spec.peerMac?.toLowerCase());
      link.peerIndex = peer.index;
      peer.peerIndex = link.index;
      link.peer = { kernel: peerKernel, link: peer };
      peer.peer = { kernel: this, link };
      peerKernel.links.set(peer.name, peer);
    } else if (spec.kind === 'vxlan') {
      validateVni(spec.vni);
      validatePort(spec.port);
      const underlay = spec.underlayDevice !== undefined ? this.must(spec.underlayDevice, 'underlayDevice') : undefined;
      link.vxlan = { vni: spec.vni, port: spec.port, local: spec.local?.toString(), learning: spec.learning, underlayIndex: underlay?.index };
    } else if (spec.kind !== 'bridge') {
      throw new InvalidInputError('kind', (spec as { kind: unknown }).kind, 'supported kinds: bridge, veth, vxlan');
    }
    link.masterIndex = master?.index;
    this.links.set(link.name, link);
    return this.snapshot(link);
  }

  async deleteLink(name: string): Promise<void> {
    validateIfName(name);
    const l = this.links.get(name);
    if (!l) return;
    this.record('deleteLink', name);
    this.removeLink(l);
    if (l.peer) l.peer.kernel.removeLink(l.peer.link);
  }

  private removeLink(l: FakeLink): void {
    this.links.delete(l.name);
    this.addrs = this.addrs.filter((a) => a.linkIndex !== l.index);
    this.routes = this.routes.filter((r) => r.dev !== l.name);
    this.neigh = this.neigh.filter((n) => n.dev !== l.name);
    this.fdb = this.fdb.filter((f) => f.dev !== l.name);
    for (const other of this.links.values()) if (other.masterIndex === l.index) other.masterIndex = undefined;
  }

  async setLinkUp(name: string, up: boolean): Promise<void> {
    this.must(name).up = up;
    this.record('setLinkUp', name, up);
  }

  async setMtu(name: string, mtu: number): Promise<void> {
    validateMtu(mtu);
    this.must(name).mtu = mtu;
    this.record('setMtu', name, mtu);
  }

  async setMac(name: string, mac: string): Promise<void> {
    macBytes(mac);
    this.must(name).mac = mac.toLowerCase();
    this.record('setMac', name, mac);
  }

  async setMaster(name: string, bridge: string | undefined): Promise<void> {
    const l = this.must(name);
    const b = bridge === undefined ? undefined : this.must(bridge, 'bridge');
    if (b && b.kind !== 'bridge') throw new KernelError('set link master', describeErrno(E.EOPNOTSUPP), { errno: E.EOPNOTSUPP });
    l.masterIndex = b?.index;
    this.record('setMaster', name, bridge);
  }

  async setBridgePort(name: string, options: { hairpin?: boolean; learning?: boolean }): Promise<void> {
    const l = this.must(name);
    if (l.masterIndex === undefined) throw new KernelError('set bridge port flags', describeErrno(E.EOPNOTSUPP), { errno: E.EOPNOTSUPP });
    if (options.hairpin !== undefined) l.hairpin = options.hairpin;
    if (options.learning !== undefined) l.learning = options.learning;
    this.record('setBridgePort', name, options);
  }

  async setPromisc(name: string, on: boolean): Promise<void> {
    this.must(name).promisc = on;
    this.record('setPromisc', name, on);
  }

  async moveToNetns(name: string, target: NetnsRef, newName?: string): Promise<void> {
    if (newName !== undefined) validateIfName(newName, 'newName');
    const l = this.must(name);
    if (!this.world || !this.world.has(target.path)) throw new NotFoundError('netns', target.path);
    const dest = this.world.kernel(target);
    const finalName = newName ?? name;
    if (dest.links.has(finalName)) throw new AlreadyExistsError('link', finalName);
    this.record('moveToNetns', name, target, newName);
    this.removeLink(l);
    l.name = finalName;
    l.index = dest.nextIndex++;
    l.up = false;
    l.masterIndex = undefined;
    dest.links.set(finalName, l);
    if (l.peer) l.peer.link.peerIndex = l.index;
    if (l.peer) l.peer.link.peer = { kernel: dest, link: l };
  }

  async listAddresses(dev?: string, family?: 4 | 6): Promise<AddressEntry[]> {
    const index = dev === undefined ? undefined : this.must(dev, 'dev').index;
    return this.addrs.filter((a) => (index === undefined || a.linkIndex === index) && (family === undefined || a.cidr.family === family)).map((a) => ({ ...a }));
  }

  async addAddress(dev: string, cidr: Cidr, opts?: { nodad?: boolean }): Promise<void> {
    const c = toCidr(cidr, 'cidr');
    const l = this.must(dev, 'dev');
    const same = this.addrs.find((a) => a.linkIndex === l.index && a.cidr.ip.equals(c.ip));
    if (same) {
      if (same.cidr.prefixLength === c.prefixLength) return;
      throw new AlreadyExistsError('address', `${c.ip.toString()} on ${dev} (with another prefix length)`);
    }
    this.record('addAddress', dev, c.toString());
    this.addrs.push({ linkIndex: l.index, cidr: c });
    if (opts?.nodad) this.nodad.add(`${l.index} ${c.toString()}`);
  }

  async deleteAddress(dev: string, cidr: Cidr): Promise<void> {
    const c = toCidr(cidr, 'cidr');
    const l = this.must(dev, 'dev');
    this.record('deleteAddress', dev, c.toString());
    this.addrs = this.addrs.filter((a) => !(a.linkIndex === l.index && a.cidr.ip.equals(c.ip) && a.cidr.prefixLength === c.prefixLength));
  }

  // ---- routes: key = table + dst + metric, as the kernel's FIB ----

  private routeKey(r: Route): string {
    return `${r.table ?? 254}|${r.dst.masked.toString()}|${r.metric ?? 0}`;
  }

  private routeErrno(r: Route): number {
    if (!(r.dst instanceof Cidr)) throw new InvalidInputError('route.dst', r.dst, 'expected a Cidr');
    if (r.gateway && r.gateway.family !== r.dst.family) throw new InvalidInputError('route.gateway', r.gateway.toString(), `expected an IPv${r.dst.family} address`);
    if (r.dev !== undefined && !this.links.has(r.dev)) return E.ENODEV;
    if (r.gateway && !r.onlink && (r.type ?? 'unicast') === 'unicast') {
      const l = r.dev !== undefined ? this.links.get(r.dev) : undefined;
      const reachable = this.addrs.some((a) => (l === undefined || a.linkIndex === l.index) && a.cidr.masked.contains(r.gateway!));
      if (!reachable) return E.ENETUNREACH;
    }
    return 0;
  }

  private applyRoute(op: 'add' | 'replace' | 'delete', r: Route): number {
    if (op === 'delete') {
      const key = this.routeKey(r);
      this.routes = this.routes.filter((x) => this.routeKey(x) !== key);
      return 0;
    }
    const errno = this.routeErrno(r);
    if (errno) return errno;
    const key = this.routeKey(r);
    const i = this.routes.findIndex((x) => this.routeKey(x) === key);
    if (i >= 0 && op === 'add') return E.EEXIST;
    const stored: Route = { ...r, table: r.table ?? 254, dst: r.dst.masked };
    if (i >= 0) this.routes[i] = stored;
    else this.routes.push(stored);
    return 0;
  }

  private throwErrno(operation: string, errno: number, field: string, value: unknown): void {
    if (errno === E.ENODEV && typeof value === 'string') throw new NotFoundError('link', value);
    if (errno) throw new KernelError(operation, describeErrno(errno), { errno, field, value });
  }

  async listRoutes(options: { family?: 4 | 6; table?: number; protocol?: number } = {}): Promise<Route[]> {
    const table = options.table ?? 254;
    return this.routes
      .filter((r) => (options.family === undefined || r.dst.family === options.family) && (table === 0 || (r.table ?? 254) === table) && (options.protocol === undefined || r.protocol === options.protocol))
      .map((r) => ({ ...r }));
  }

  async addRoute(route: Route): Promise<void> {
    this.record('addRoute', route);
    const errno = this.applyRoute('add', route);
    this.throwErrno('add route', errno, errno === E.ENODEV ? 'route.dev' : 'route.dst', errno === E.ENODEV ? route.dev : String(route.dst));
  }

  async replaceRoute(route: Route): Promise<void> {
    this.record('replaceRoute', route);
    const errno = this.applyRoute('replace', route);
    this.throwErrno('replace route', errno, errno === E.ENODEV ? 'route.dev' : 'route.dst', errno === E.ENODEV ? route.dev : String(route.dst));
  }

  async deleteRoute(route: Route): Promise<void> {
    this.record('deleteRoute', route);
    this.applyRoute('delete', route);
  }

  // ---- neighbours / FDB ----

  private applyNeigh(op: 'add' | 'replace' | 'delete', n: NeighborEntry): number {
    validateIfName(n.dev, 'dev');
    macBytes(n.mac);
    if (!this.links.has(n.dev)) return op === 'delete' ? 0 : E.ENODEV;
    const ip = n.ip instanceof IpAddress ? n.ip : IpAddress.parse(String(n.ip), 'ip');
    const i = this.neigh.findIndex((x) => x.dev === n.dev && x.ip.equals(ip));
    if (op === 'delete') {
      if (i >= 0) this.neigh.splice(i, 1);
      return 0;
    }
    if (i >= 0 && op === 'add') return E.EEXIST;
    const stored = { ...n, ip, mac: n.mac.toLowerCase() };
    if (i >= 0) this.neigh[i] = stored;
    else this.neigh.push(stored);
    return 0;
  }

  /** op 'add' appends another dst for the MAC (the real kernel's NLM_F_APPEND). */
  private applyFdbEntry(op: 'add' | 'replace' | 'delete', f: FdbEntry): number {
    validateIfName(f.dev, 'dev');
    macBytes(f.mac);
    if (!this.links.has(f.dev)) return op === 'delete' ? 0 : E.ENODEV;
    const mac = f.mac.toLowerCase();
    const sameDst = (x: FdbEntry): boolean => (x.dst === undefined && f.dst === undefined) || (x.dst !== undefined && f.dst !== undefined && x.dst.equals(f.dst));
    if (op === 'delete') {
      this.fdb = this.fdb.filter((x) => !(x.dev === f.dev && x.mac === mac && (f.dst === undefined || sameDst(x))));
      return 0;
    }
    if (op === 'replace') this.fdb = this.fdb.filter((x) => !(x.dev === f.dev && x.mac === mac));
    if (this.fdb.some((x) => x.dev === f.dev && x.mac === mac && sameDst(x))) return op === 'add' ? E.EEXIST : 0;
    this.fdb.push({ ...f, mac });
    return 0;
  }

  async listNeighbors(dev?: string): Promise<NeighborEntry[]> {
    if (dev !== undefined) this.must(dev, 'dev');
    return this.neigh.filter((n) => dev === undefined || n.dev === dev).map((n) => ({ ...n }));
  }

  async replaceNeighbor(entry: NeighborEntry): Promise<void> {
    this.record('replaceNeighbor', entry);
    this.throwErrno('replace neighbour', this.applyNeigh('replace', entry), 'dev', entry.dev);
  }

  async deleteNeighbor(entry: NeighborEntry): Promise<void> {
    this.record('deleteNeighbor', entry);
    this.applyNeigh('delete', entry);
  }

  async listFdb(dev?: string): Promise<FdbEntry[]> {
    if (dev !== undefined) this.must(dev, 'dev');
    return this.fdb.filter((f) => dev === undefined || f.dev === dev).map((f) => ({ ...f }));
  }

  async appendFdb(entry: FdbEntry): Promise<void> {
    this.record('appendFdb', entry);
    this.throwErrno('append fdb', this.applyFdbEntry('add', entry), 'dev', entry.dev);
  }

  async replaceFdb(entry: FdbEntry): Promise<void> {
    this.record('replaceFdb', entry);
    this.throwErrno('replace fdb', this.applyFdbEntry('replace', entry), 'dev', entry.dev);
  }

  async deleteFdb(entry: FdbEntry): Promise<void> {
    this.record('deleteFdb', entry);
    this.applyFdbEntry('delete', entry);
  }

  private batch<T>(kind: BatchKind, changes: Change<T>[], apply: (c: Change<T>) => number): BatchResult<T> {
    this.record(`apply:${kind}`, changes.length);
    const failed: BatchOutcome<T>[] = [];
    let applied = 0;
    changes.forEach((change, index) => {
      let errno = this.batchFailure?.(kind, change as Change<unknown>, index) ?? 0;
      let message = '';
      if (errno === 0) {
        try {
          errno = apply(change);
        } catch (err) {
          errno = E.EINVAL;
          message = err instanceof Error ? err.message : String(err);
        }
      }
      if (errno === 0) applied++;
      else failed.push({ index, change, errno, message: message || `${kind} #${index} ${change.op}: ${describeErrno(errno)}` });
    });
    return { applied, failed };
  }

  async applyRoutes(changes: Change<Route>[]): Promise<BatchResult<Route>> {
    return this.batch('route', changes, (c) => this.applyRoute(c.op, c.entry));
  }

  async applyNeighbors(changes: Change<NeighborEntry>[]): Promise<BatchResult<NeighborEntry>> {
    return this.batch('neighbor', changes, (c) => this.applyNeigh(c.op, c.entry));
  }

  async applyFdb(changes: Change<FdbEntry>[]): Promise<BatchResult<FdbEntry>> {
    return this.batch('fdb', changes, (c) => this.applyFdbEntry(c.op, c.entry));
  }

  async applyLinkConfig(steps: LinkConfigStep[]): Promise<BatchResult<LinkConfigStep>> {
    this.record('applyLinkConfig', steps.length);
    const failed: BatchOutcome<LinkConfigStep>[] = [];
    let applied = 0;
    steps.forEach((step, index) => {
      let errno = 0;
      let message = '';
      try {
        errno = this.applyLinkStep(step);
      } catch (err) {
        errno = E.EINVAL;
        message = err instanceof Error ? err.message : String(err);
      }
      if (errno === 0) applied++;
      else failed.push({ index, change: { op: 'add', entry: step }, errno, message: message || `link config #${index} ${step.kind}: ${describeErrno(errno)}` });
    });
    return { applied, failed };
  }

  private applyLinkStep(step: LinkConfigStep): number {
    const l = this.byIndex(step.index);
    if (!l) return E.ENODEV;
    switch (step.kind) {
      case 'up':
        l.up = step.up;
        return 0;
      case 'address': {
        const c = toCidr(step.cidr, 'cidr');
        const same = this.addrs.find((a) => a.linkIndex === l.index && a.cidr.ip.equals(c.ip));
        if (same) return same.cidr.prefixLength === c.prefixLength ? 0 : E.EEXIST;
        this.addrs.push({ linkIndex: l.index, cidr: c });
        if (step.nodad) this.nodad.add(`${l.index} ${c.toString()}`);
        return 0;
      }
      case 'route':
        return this.applyRoute('add', { ...step.route, dev: l.name });
      case 'bridgePort':
        if (l.masterIndex === undefined) return E.EOPNOTSUPP;
        if (step.hairpin !== undefined) l.hairpin = step.hairpin;
        if (step.learning !== undefined) l.learning = step.learning;
        return 0;
      default:
        throw new InvalidInputError('kind', (step as { kind: unknown }).kind, 'supported kinds: up, address, route, bridgePort');
    }
  }

  close(): void {
    this.closed = true;
  }

  /** Test helper: the Link object behind an index, e.g. a veth peer. */
  linkByIndex(index: number): Link | undefined {
    const l = this.byIndex(index);
    return l ? this.snapshot(l) : undefined;
  }
}
