/**
 * The contract between the daemon and the data-plane components (cni, overlay, proxy,
 * dns). kube-proxy's shape: event handlers only record what changed; the component's
 * own bounded-frequency runner calls `sync`, which renders the whole desired state,
 * diffs it against what is applied and applies it atomically.
 *
 * Lifecycle, driven by the daemon (src/daemon/daemon.ts), for the components in the
 * order of `defaultRegistrations()` (src/daemon/registry.ts, the one place start-up
 * order is declared):
 *
 *   create(ctx) → reconcileOnStart(signal) → start(signal) → [source synced] → runner
 *   runs sync(signal) … → signal aborted: runners stop, in-flight syncs finish →
 *   close() in reverse order (a component stops serving last, after every runner has
 *   stopped) → the data plane stays as it is.
 *
 * `start` is for long-lived parts that are not a sync: a DNS server's sockets, the
 * overlay's lease and annotation loop, the proxy's health-check server on 10256. It
 * resolves once they are up; the loops it starts end with `signal`.
 */
import type { Registry } from 'prom-client';
import type { Clock } from '../common/clock';
import type { Logger } from '../common/log';
import type { Kernel } from '../kernel';
import type { ClusterEvent, ClusterState, NodeWriter } from '../k8s/types';
import type { DaemonConfig, Feature } from './config';
import type { ConfigSection } from './config-section';
import type { RawHandler } from './route-server';

/** What a sync reports back, for metrics. */
export interface SyncReport {
  /** How many objects this component now programs (Services, peers, records...). */
  objects?: number;
}

/**
 * JSON-safe status for `GET /v1/status` and `podwire status`. Free-form, but the CLI
 * knows these keys:
 * - overlay: `subnet` (string[]), `peers` ({ node, podCIDRs, via, via6?, encapsulated }[]), `backend`
 * - proxy: `services` (number programmed), `endpoints` (number), `mode`
 * - dns: `queries`, `cacheHits`, `cacheMisses`, `errors`, `listen` (string[])
 * - cni: `fastPath`, `fallbacks`, `pods`
 * A component that is waiting for something says so in `waitingFor` (string), which
 * `/readyz` and `podwire status` show.
 */
export type ComponentStatus = Record<string, unknown>;

export interface Component {
  readonly name: string;
  /**
   * Record a cluster change. Must be cheap and must not touch the kernel. Return true
   * when the change matters to this component (the daemon then requests a sync).
   */
  handleEvent(event: ClusterEvent): boolean;
  /**
   * Bring the kernel to the desired state. Called only by this component's runner,
   * never concurrently with itself. Throwing marks the sync failed; it is retried
   * with backoff. Must honour `signal` (abort = shutdown: stop early, leave the
   * data plane as it is).
   */
  sync(signal: AbortSignal): Promise<SyncReport | void>;
  status(): ComponentStatus;
  /**
   * Before the first sync: read what is already in the kernel (a previous podwired's
   * rules, routes, files) so the first sync is a diff, not a rebuild, and a restart
   * drops no traffic.
   */
  reconcileOnStart?(signal: AbortSignal): Promise<void>;
  /** Long-lived parts (servers, loops). Resolves once they are up; they end with `signal` or `close()`. */
  start?(signal: AbortSignal): Promise<void>;
  /** After every runner has stopped: stop serving, release sockets. Never removes data-plane state. */
  close?(): Promise<void>;
  /** `podwired --cleanup`: remove everything this component programmed. Attempt every removal. */
  cleanup?(signal: AbortSignal): Promise<void>;
}

/** What a component gets to build itself. `S` is its own validated config section. */
export interface ComponentContext<S = unknown> {
  /** The daemon-wide settings (node name, CIDRs, cluster domain, paths). */
  config: DaemonConfig;
  /** This component's own section, validated (`proxy.mode`, `overlay.vxlan.vni`, ...). */
  section: S;
  /** Read-only, indexed cluster state; events arrive through handleEvent. */
  state: ClusterState;
  /** Writes to this node's own Node (annotations, conditions); records only, in manifest mode. */
  node: NodeWriter;
  /** The node's kernel: links, routes, neighbours/FDB, sysctl, nftables, iptables, conntrack. */
  kernel: Kernel;
  /** Child logger with `{ component: name }`. */
  logger: Logger;
  clock: Clock;
  /** This daemon's registry. Use the names operators already graph (kube-proxy's, CoreDNS's) where they exist. */
  metrics: Registry;
  /**
   * The daemon's control socket, for a component that serves on it (the CNI fast path,
   * `POST /v1/cni`): mount in `start`, unmount (the returned function) in `close`.
   * Absent when the daemon runs without one (unit tests that build a context by hand).
   */
  control?: ControlMount;
  /**
   * Another component's section as this daemon built it (flags > env > file > defaults), read
   * only: the CNI installer reads the overlay's to compute the same pod MTU. Absent in contexts
   * built by hand; callers then assume the section's defaults.
   */
  sectionOf?: <T>(section: ConfigSection<T>) => T;
}

/** Mounting raw node:http handlers on the daemon's control socket. */
export interface ControlMount {
  /** Mounts `handler` on `path` (all methods); returns the function that unmounts it. Throws AlreadyExistsError for a taken path. */
  routeRaw(path: string, handler: RawHandler): () => void;
}

/** How often the daemon's runner calls a component's sync (kube-proxy's minSyncPeriod / syncPeriod). */
export interface SyncIntervals {
  /** Least time between two syncs (bursts of events collapse into one). */
  minIntervalMs: number;
  /** Most time between two syncs: the periodic full reconcile. */
  maxIntervalMs: number;
}

export interface ComponentRegistration<S = unknown> {
  /** The `--enable` feature that switches it on. */
  feature: Feature;
  name: string;
  /** The component's configuration section (flags, env, file keys, defaults, validation). */
  section?: ConfigSection<S>;
  /** Its sync intervals; default: the daemon-wide minSyncInterval / syncInterval. */
  intervals?(section: S, config: DaemonConfig): SyncIntervals;
  create(ctx: ComponentContext<S>): Component | Promise<Component>;
}
