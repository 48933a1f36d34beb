/**
 * The typed kernel API. Everything in Podwire that touches the host goes through
 * an implementation of these interfaces (real: netlink + iptables/nft runners;
 * fake: src/kernel/testing). Names are interface names, addresses are `Cidr`/`IpAddress`.
 */
import type { Cidr, IpAddress } from '../common/ip';

/** A network namespace, named by a path to its nsfs handle (`/run/netns/x`, `/proc/<pid>/ns/net`). */
export interface NetnsRef {
  readonly path: string;
}

export type LinkSpec = BridgeSpec | VethSpec | VxlanSpec;

interface LinkSpecBase {
  name: string;
  mtu?: number;
  /** Hardware address, `aa:bb:cc:dd:ee:ff`. */
  mac?: string;
  up?: boolean;
  /**
   * Bridge to enslave the new link to, by name (one lookup) or, with `masterIndex`, by
   * ifindex (no lookup). Sent as IFLA_MASTER in the creating RTM_NEWLINK, so the link is
   * never seen unenslaved and no separate `setMaster` round trip is needed.
   */
  master?: string;
  /** ifindex of the bridge to enslave to; wins over `master`. */
  masterIndex?: number;
}

export interface BridgeSpec extends LinkSpecBase {
  kind: 'bridge';
}

export interface VethSpec extends LinkSpecBase {
  kind: 'veth';
  peerName: string;
  /** Netns the peer is created in (created directly there: no move afterwards). */
  peerNetns?: NetnsRef;
  peerMtu?: number;
  peerMac?: string;
}

export interface VxlanSpec extends LinkSpecBase {
  kind: 'vxlan';
  vni: number;
  /** UDP destination port (flannel/Podwire: 8472). */
  port: number;
  local?: IpAddress;
  /** Underlay device the tunnel sends through. */
  underlayDevice?: string;
  learning: boolean;
  /** UDP source port range; defaults to the kernel's. */
  portRange?: [number, number];
  ttl?: number;
  gbp?: boolean;
}

export interface Link {
  index: number;
  name: string;
  kind: string | undefined;
  mtu: number;
  mac: string | undefined;
  up: boolean;
  /** Index of the bridge this link is enslaved to. */
  masterIndex: number | undefined;
  /** For veth: the peer's ifindex (in the peer's namespace). */
  peerIndex: number | undefined;
  vxlan?: { vni: number; port: number; local: string | undefined; learning: boolean; underlayIndex: number | undefined };
}

export interface AddressEntry {
  linkIndex: number;
  cidr: Cidr;
}

export type RouteType = 'unicast' | 'local' | 'blackhole' | 'unreachable';

export interface Route {
  dst: Cidr;
  gateway?: IpAddress;
  /** Output interface name. */
  dev?: string;
  /** Pretend the gateway is directly attached (RTNH_F_ONLINK). */
  onlink?: boolean;
  table?: number;
  /** rtm_protocol; Podwire marks its own routes so reconcile can tell them apart. */
  protocol?: number;
  metric?: number;
  scope?: 'universe' | 'link' | 'host';
  type?: RouteType;
  src?: IpAddress;
  mtu?: number;
}

export interface NeighborEntry {
  dev: string;
  ip: IpAddress;
  mac: string;
  permanent: boolean;
}

/** A bridge/VXLAN forwarding entry (`bridge fdb ... self permanent dst X`). */
export interface FdbEntry {
  dev: string;
  mac: string;
  /** Remote VTEP (underlay IP) for VXLAN entries. */
  dst?: IpAddress;
  permanent: boolean;
}

export type ChangeOp = 'add' | 'replace' | 'delete';

export interface Change<T> {
  op: ChangeOp;
  entry: T;
}

/** Per-change outcome of a batch, in the order given. `errno` is 0 on success. */
export interface BatchOutcome<T> {
  index: number;
  change: Change<T>;
  errno: number;
  message: string;
}

export interface BatchResult<T> {
  applied: number;
  failed: BatchOutcome<T>[];
}

/**
 * One step of `NetworkKernel.applyLinkConfig`, naming its link by ifindex (no name
 * lookup): link up/down, an address, a route out of the link (`route.dev` is ignored,
 * the route leaves through `index`), bridge port flags.
 */
export type LinkConfigStep =
  | { kind: 'up'; index: number; up: boolean }
  | { kind: 'address'; index: number; cidr: Cidr; nodad?: boolean }
  | { kind: 'route'; index: number; route: Route }
  | { kind: 'bridgePort'; index: number; hairpin?: boolean; learning?: boolean };

/** rtnetlink operations, all scoped to one namespace. */
export interface NetworkKernel {
  readonly netns: NetnsRef | undefined;

  listLinks(): Promise<Link[]>;
  getLink(name: string): Promise<Link | undefined>;
  /** Fails with AlreadyExistsError if a link with that name exists. */
  createLink(spec: LinkSpec): Promise<Link>;
  /** Succeeds if the link is already gone. */
  deleteLink(name: string): Promise<void>;
  setLinkUp(name: string, up: boolean): Promise<void>;
  setMtu(name: string, mtu: number): Promise<void>;
  setMac(name: string, mac: string): Promise<void>;
  setMaster(name: string, bridge: string | undefined): Promise<void>;
  /** Bridge port flags: hairpin (reflective relay) and learning. */
  setBridgePort(name: string, options: { hairpin?: boolean; learning?: boolean }): Promise<void>;
  setPromisc(name: string, on: boolean): Promise<void>;
  moveToNetns(name: string, target: NetnsRef, newName?: string): Promise<void>;

  /** `family`: only that family's addresses (the kernel filters the dump, e.g. no IPv6 link-locals of every veth). */
  listAddresses(dev?: string, family?: 4 | 6): Promise<AddressEntry[]>;
  /** Succeeds if the exact address is already there. `nodad`: IFA_F_NODAD (an IPv6 address usable at once, never `tentative`). */
  addAddress(dev: string, cidr: Cidr, opts?: { nodad?: boolean }): Promise<void>;
  deleteAddress(dev: string, cidr: Cidr): Promise<void>;

  listRoutes(options?: { family?: 4 | 6; table?: number; protocol?: number }): Promise<Route[]>;
  addRoute(route: Route): Promise<void>;
  replaceRoute(route: Route): Promise<void>;
  deleteRoute(route: Route): Promise<void>;

  listNeighbors(dev?: string): Promise<NeighborEntry[]>;
  replaceNeighbor(entry: NeighborEntry): Promise<void>;
  deleteNeighbor(entry: NeighborEntry): Promise<void>;

  listFdb(dev?: string): Promise<FdbEntry[]>;
  /** `bridge fdb append`: adds another dst for the same MAC (the all-zero flood list). */
  appendFdb(entry: FdbEntry): Promise<void>;
  replaceFdb(entry: FdbEntry): Promise<void>;
  deleteFdb(entry: FdbEntry): Promise<void>;

  /** Many changes in as few datagrams as possible; every change is attempted, each failure named. */
  applyRoutes(changes: Change<Route>[]): Promise<BatchResult<Route>>;
  applyNeighbors(changes: Change<NeighborEntry>[]): Promise<BatchResult<NeighborEntry>>;
  applyFdb(changes: Change<FdbEntry>[]): Promise<BatchResult<FdbEntry>>;
  /**
   * Optional (added for the CNI fast path): the steps in order, by ifindex, in one
   * batched round trip. Every step is attempted (the kernel handles them in order, so a
   * step may rely on the ones before it); each failure is named. An address that already
   * exists exactly counts as applied (as in `addAddress`); a route that exists fails with
   * EEXIST (as in `addRoute`). `BatchOutcome.change.op` is always 'add'. Callers check
   * for the member and fall back to the name-based calls when it is absent.
   */
  applyLinkConfig?(steps: LinkConfigStep[]): Promise<BatchResult<LinkConfigStep>>;

  close(): void;
}

/** sysctls under /proc/sys, in a namespace. Keys use dots: `net.ipv4.ip_forward`. */
export interface SysctlKernel {
  read(key: string): Promise<string>;
  write(key: string, value: string): Promise<void>;
}

export interface IptablesRunner {
  /** `iptables-save -t table` (or ip6tables-save). */
  save(table: string): Promise<string>;
  /** One atomic `iptables-restore --noflush` of the whole text. */
  restore(text: string, options?: { noflush?: boolean; counters?: boolean }): Promise<void>;
  readonly family: 4 | 6;
  /** Which iptables the binaries are, when their names say (`iptables-nft-restore`, `iptables-legacy-restore`). */
  readonly backend?: 'legacy' | 'nft';
}

export interface NftRunner {
  /** How transactions reach the kernel: in-process libnftables, or a spawned `nft -f -` (the fallback). */
  readonly backend?: 'libnftables' | 'nft';
  /** One atomic transaction (libnftables in-process, or `nft -f -`). Only our own table is touched. */
  apply(script: string): Promise<void>;
  /** `nft -j list ...` parsed. */
  listJson(what: string): Promise<unknown>;
  /**
   * Table `inet <table>` read over netlink (nft-table.ts), without libnftables: its objects,
   * rules (as opaque prints) and the elements of every set not skipped, printed as
   * libnftables' JSON listing would. Rejects if the table is missing or a dump fails.
   * Optional: a runner without it (a test fake) makes callers list the table instead.
   */
  readTable?(table: string, skipElements: (name: string) => boolean): Promise<NftTableContent>;
  /** `nft list ...` as text. */
  list(what: string): Promise<string>;
  /**
   * The netns's nftables generation (nft-generation.ts) with the number of transactions this
   * runner has committed so far: when, between two readings, the generation grew by more than
   * the runner's own commits, another program committed a change.
   */
  generation(): Promise<NftGeneration>;
  /**
   * Per chain of `family table`, one print per rule in the kernel's order (nft-rules.ts): equal
   * prints mean equal rules. Milliseconds, where any libnftables listing costs seconds at scale.
   */
  rulePrints(family: string, table: string): Promise<Map<string, string[]>>;
  /** Closes what the runner opened (its netlink socket). */
  close?(): void;
}

/** What `NftRunner.readTable` found (the shape of the proxy's parsed listing, adopt.ts AdoptedTable). */
export interface NftTableContent {
  objects: Map<string, 'set' | 'chain'>;
  /** Per set/map not skipped and readable: key → value ('' for sets). */
  elements: Map<string, Map<string, string>>;
  /** Sets whose elements cannot be printed exactly as libnftables would. */
  unknown: string[];
  /** Which of the sets are maps. */
  maps: Set<string>;
  /** Per chain with rules, one print per rule in order. */
  rules: Map<string, string[]>;
  /** Per chain with rules, the rule handles in order. */
  handles: Map<string, number[]>;
}

export interface NftGeneration {
  generation: number;
  ownCommits: number;
}

/** One conntrack entry (its original direction), as ctnetlink reports it. */
export interface ConntrackEntry {
  family: 4 | 6;
  protocol: 'tcp' | 'udp' | 'sctp' | 'icmp' | 'icmpv6' | number;
  /** Original direction. */
  src: string;
  dst: string;
  srcPort: number | undefined;
  dstPort: number | undefined;
  /** Reply direction source: after DNAT, the endpoint that answers. */
  replySrc: string;
  replySrcPort: number | undefined;
  mark: number;
}

/** Which entries to match; every given field must match. */
export interface ConntrackFilter {
  family?: 4 | 6;
  protocol?: 'tcp' | 'udp' | 'sctp';
  /** Original destination IP (a Service VIP, a NodePort address). */
  dst?: string;
  dstPort?: number;
  /** Reply source IP (the endpoint behind a DNAT). */
  replySrc?: string;
}

/** conntrack over ctnetlink (NFNL_SUBSYS_CTNETLINK), in one namespace. */
export interface ConntrackKernel {
  list(filter?: ConntrackFilter): Promise<ConntrackEntry[]>;
  /** Deletes every matching entry; returns how many were deleted. An entry that vanished meanwhile is not an error. */
  delete(filter: ConntrackFilter): Promise<number>;
}
