/**
 * The contract between the daemon and the data-plane components (overlay, proxy,
 * dns, and the CNI installer). kube-proxy's shape: event handlers only record what
 * changed; the component's own bounded-frequency runner calls `sync`, which renders
 * the whole desired state, diffs it against the kernel and applies it atomically.
 */
import type { Registry } from 'prom-client';
import type { Clock } from '../common/clock';
import type { Logger } from '../common/log';
import type { ClusterEvent, StateSource } from '../k8s/types';
import type { DaemonConfig, Feature } from './config';

/** What a sync reports back, for metrics. */
export interface SyncReport {
  /** How many objects this component now programs (Services, peers, records...). */
  objects?: number;
}

/**
 * JSON-safe status for `GET /v1/status` and `podwire status`. Free-form, but the CLI
 * knows these keys:
 * - overlay: `subnet` (string[]), `peers` ({ node, podCIDRs, via }[]), `backend`
 * - proxy: `services` (number programmed), `endpoints` (number), `mode`
 * - dns: `queries`, `cacheHits`, `cacheMisses`, `errors`, `listen` (string[])
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
  /** `podwired --cleanup`: remove everything this component programmed. Attempt every removal. */
  cleanup?(signal: AbortSignal): Promise<void>;
}

/** What a component gets to build itself. */
export interface ComponentContext {
  config: DaemonConfig;
  /** Read-only access to the cluster cache (list/get); events arrive via handleEvent. */
  source: StateSource;
  /** Child logger with `{ component: name }`. */
  logger: Logger;
  clock: Clock;
  /** This daemon's registry, for component-specific metrics (prefix `podwire_<name>_`). */
  metrics: Registry;
}

export interface ComponentRegistration {
  /** The `--enable` feature that switches it on. */
  feature: Feature;
  name: string;
  create(ctx: ComponentContext): Component | Promise<Component>;
}
