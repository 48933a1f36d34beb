/**
 * The daemon: wires a state source to the enabled components, gives each component
 * its own bounded-frequency runner, and serves the control socket, /healthz,
 * /readyz and /metrics.
 *
 * Lifecycle (one AbortSignal, owned by the caller), components in registration order
 * (registry.ts declares it):
 *   start(signal): create(ctx) every enabled component (its section built, its runner
 *     made with its own intervals) → servers up (control socket, health, metrics) →
 *     per component: reconcileOnStart, then start(signal) (a start that throws fails
 *     the daemon's start, naming the component; the ones already started are closed)
 *     → subscribe to events → source.start → (background) once the source has
 *     synced, start every runner.
 *   signal aborted: runners stop; an in-flight sync finishes or honours the signal.
 *   stop(): stop runners, wait for in-flight syncs, close() the started components in
 *     reverse order, then close the daemon's own servers (last), then the kernel
 *     handle if the daemon opened it. The data plane stays as it is, so a restarted
 *     daemon takes over without dropping traffic. Only `cleanup()` (podwired
 *     --cleanup) removes what Podwire programmed.
 */
import { systemClock, type Clock } from '../common/clock';
import { errorMessage, PodwireError } from '../common/errors';
import type { Logger } from '../common/log';
import type { ReleasedMemory } from '../common/memory';
import type { Kernel } from '../kernel';
import { clusterStateOf, nodeWriterOf } from '../k8s/cluster-state';
import type { ClusterEvent, ClusterState, NodeObject, NodeWriter, ProblemReporter, SourceProblem, StateSource } from '../k8s/types';
import type { ApiTransport } from '../k8s/api-client';
import { Cidr } from '../common/ip';
import { NodeCidrAllocator } from '../overlay';
import type { Component, ComponentContext, ComponentRegistration, ComponentStatus, SyncIntervals } from './component';
import { buildSectionDefaults, formatDuration, type DaemonConfig, type Feature } from './config';
import type { ConfigSection } from './config-section';
import { createDaemonMetrics, registerObjectCounts, type DaemonMetrics, CLUSTER_KINDS } from './metrics';
import { json, RouteServer, text } from './route-server';
import { BoundedFrequencyRunner, type RunOutcome } from './runner';

export const PODWIRE_VERSION: string = (() => {
  try {
    return (require('../../../package.json') as { version: string }).version;
  } catch {
    return 'unknown';
  }
})();

export interface DaemonOptions {
  config: DaemonConfig;
  source: StateSource;
  /** Every known component; only those whose feature is in config.enable are created. */
  components: readonly ComponentRegistration[];
  logger: Logger;
  clock?: Clock;
  /** Node process metrics (default true); tests running many daemons may turn them off. */
  processMetrics?: boolean;
  /** Do not listen on TCP for health/metrics (tests that only use the control socket). */
  tcpServers?: boolean;
  /** The node's kernel handle, opened on first use when not given (tests pass fakes). */
  kernel?: Kernel | (() => Promise<Kernel>);
  /** Writes to this node's Node; default: the source's writer, else a recording one (manifest mode). */
  nodeWriter?: NodeWriter;
  /**
   * The components' built sections by section name (`LoadedConfig.sections`). A
   * registration whose section is missing here gets its section built from defaults.
   */
  sections?: Readonly<Record<string, unknown>>;
  /**
   * Called once, the first time the daemon is ready (the initial list built into every
   * component): podwired passes common/memory's releaseMemory, which returns the start-up
   * peak's garbage to the system. Tests leave it out (a full collection per test daemon).
   */
  releaseMemoryWhenReady?: () => ReleasedMemory | null;
}

/** A component's start or create failed; names the component. */
export class ComponentStartError extends PodwireError {
  constructor(readonly component: string, phase: 'create' | 'start', cause: unknown) {
    super('PW_COMPONENT_START', `component ${component}: ${phase} failed: ${errorMessage(cause)}`, { field: 'component', value: component, cause });
  }
}

interface ComponentState {
  component: Component;
  feature: Feature;
  runner: BoundedFrequencyRunner;
  intervals: SyncIntervals;
  /** start() resolved (or was absent); close() is due at stop. */
  started: boolean;
  closed: boolean;
  syncs: number;
  errors: number;
  consecutiveFailures: number;
  firstSuccessAt: number | undefined;
  lastSuccessAt: number | undefined;
  lastDurationMs: number | undefined;
  lastError: { message: string; code: string | undefined; at: number } | undefined;
}

export interface ComponentSummary {
  name: string;
  feature: Feature;
  ready: boolean;
  syncs: number;
  errors: number;
  consecutiveFailures: number;
  lastSuccessfulSync: string | undefined;
  lastSyncDurationMs: number | undefined;
  lastError: { message: string; code: string | undefined; at: string } | undefined;
  status: ComponentStatus;
}

export interface DaemonStatus {
  version: string;
  nodeName: string;
  ready: boolean;
  source: { name: string; synced: boolean; objects: Record<string, number>; problems: SourceProblem[] };
  node: { podCIDRs: string[]; addresses: { type: string; address: string }[] } | undefined;
  config: Pick<DaemonConfig, 'backend' | 'proxyMode' | 'clusterCIDR' | 'serviceCIDR' | 'clusterDomain' | 'enable' | 'dnsListen'>;
  components: ComponentSummary[];
  /** `--allocate-node-cidrs`: who leads, how many allocations this process made. */
  nodeCidrAllocator?: Record<string, unknown>;
  startedAt: string;
}

export class Daemon {
  private allocator: NodeCidrAllocator | undefined;
  readonly config: DaemonConfig;
  readonly source: StateSource;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly metrics: DaemonMetrics;
  /** Control socket routes; components mount theirs through `ctx.control` in start (the cni component: POST /v1/cni). */
  readonly control: RouteServer;
  readonly health: RouteServer;
  readonly metricsServer: RouteServer;
  private readonly registrations: readonly ComponentRegistration[];
  private readonly states: ComponentState[] = [];
  private readonly tcpServers: boolean;
  private unsubscribe: (() => void) | undefined;
  private startedAt = 0;
  private wasReady = false;
  private releasedMemory = false;
  private readonly releaseMemoryWhenReady: DaemonOptions['releaseMemoryWhenReady'];
  private runnersStarted: Promise<void> | undefined;
  private readonly kernelOption: DaemonOptions['kernel'];
  private kernel: Kernel | undefined;
  private kernelOwned = false;
  private readonly sections: Readonly<Record<string, unknown>>;
  readonly state: ClusterState;
  readonly nodeWriter: NodeWriter;

  constructor(options: DaemonOptions) {
    this.config = options.config;
    this.source = options.source;
    this.logger = options.logger.child({ component: 'daemon' });
    this.clock = options.clock ?? systemClock;
    this.registrations = options.components;
    this.tcpServers = options.tcpServers !== false;
    this.kernelOption = options.kernel;
    this.sections = options.sections ?? {};
    this.releaseMemoryWhenReady = options.releaseMemoryWhenReady;
    this.state = clusterStateOf(this.source);
    this.nodeWriter = options.nodeWriter ?? nodeWriterOf(this.source);
    this.metrics = createDaemonMetrics(() => this.source, { processMetrics: options.processMetrics !== false });
    registerObjectCounts(this.metrics.registry, this.source);

    this.control = new RouteServer('control', this.logger);
    this.health = new RouteServer('health', this.logger);
    this.metricsServer = new RouteServer('metrics', this.logger);
    for (const server of [this.control, this.health]) {
      server.route('GET', '/healthz', () => this.healthz());
      server.route('GET', '/readyz', () => this.readyz());
    }
    this.control.route('GET', '/v1/status', () => json(200, this.status()));
    this.control.route('GET', '/metrics', () => this.scrape());
    this.metricsServer.route('GET', '/metrics', () => this.scrape());
  }

  /** Enabled registrations, in declaration order. */
  enabledRegistrations(): ComponentRegistration[] {
    return this.registrations.filter((r) => this.config.enable.includes(r.feature));
  }

  async createComponents(): Promise<void> {
    if (this.states.length > 0) return;
    const regs = this.enabledRegistrations();
    const kernel = regs.length > 0 ? await this.openKernel() : undefined;
    for (const reg of regs) {
      let component: Component;
      let intervals: SyncIntervals;
      try {
        const section = reg.section
          ? reg.section.name in this.sections
            ? this.sections[reg.section.name]
            : buildSectionDefaults(reg.section, this.config)
          : undefined;
        intervals = reg.intervals?.(section, this.config) ?? { minIntervalMs: this.config.minSyncInterval, maxIntervalMs: this.config.syncInterval };
        if (!(intervals.minIntervalMs >= 0) || !(intervals.maxIntervalMs > 0) || intervals.maxIntervalMs < intervals.minIntervalMs) {
          throw new PodwireError('PW_INVALID_INPUT', `sync intervals min ${formatDuration(intervals.minIntervalMs)}, max ${formatDuration(intervals.maxIntervalMs)}: need 0 <= min <= max, max > 0`);
        }
        const ctx: ComponentContext = {
          config: this.config,
          section,
          state: this.state,
          node: this.nodeWriter,
          kernel: kernel!,
          logger: this.logger.child({ component: reg.name }),
          clock: this.clock,
          metrics: this.metrics.registry,
          sectionOf: <T>(s: ConfigSection<T>): T => (s.name in this.sections ? (this.sections[s.name] as T) : buildSectionDefaults(s, this.config)),
          control: {
            routeRaw: (path, handler) => {
              this.control.routeRaw(path, handler);
              return () => void this.control.unrouteRaw(path, handler);
            },
          },
        };
        component = await reg.create(ctx);
      } catch (err) {
        await this.closeComponents();
        throw new ComponentStartError(reg.name, 'create', err);
      }
      const state: ComponentState = {
        component,
        feature: reg.feature,
        intervals,
        started: false,
        closed: false,
        syncs: 0,
        errors: 0,
        consecutiveFailures: 0,
        firstSuccessAt: undefined,
        lastSuccessAt: undefined,
        lastDurationMs: undefined,
        lastError: undefined,
        runner: undefined as unknown as BoundedFrequencyRunner,
      };
      let lastReport: Awaited<ReturnType<Component['sync']>>;
      state.runner = new BoundedFrequencyRunner({
        name: component.name,
        clock: this.clock,
        minIntervalMs: intervals.minIntervalMs,
        maxIntervalMs: intervals.maxIntervalMs,
        retryIntervalMs: Math.min(Math.max(intervals.minIntervalMs, 1000), intervals.maxIntervalMs),
        maxRetryIntervalMs: intervals.maxIntervalMs,
        fn: async (signal) => {
          lastReport = undefined;
          lastReport = await component.sync(signal);
        },
        onRun: (o) => this.recordRun(state, o, lastReport ?? undefined),
      });
      this.states.push(state);
      this.metrics.componentReady.set({ component: component.name }, 0);
    }
    const missing = this.config.enable.filter((f) => !this.registrations.some((r) => r.feature === f));
    if (missing.length > 0) {
      this.logger.warn({ features: missing }, 'enabled features with no component built into this podwired; they do nothing yet');
    }
  }

  /** Each component's sync intervals (for status and tests). */
  intervalsOf(name: string): SyncIntervals | undefined {
    return this.states.find((s) => s.component.name === name)?.intervals;
  }

  private async openKernel(): Promise<Kernel> {
    if (this.kernel) return this.kernel;
    const k = this.kernelOption;
    if (typeof k === 'function') this.kernel = await k();
    else if (k) this.kernel = k;
    else {
      this.kernel = await (await import('../kernel')).openKernel();
      this.kernelOwned = true;
    }
    return this.kernel;
  }

  get components(): readonly Component[] {
    return this.states.map((s) => s.component);
  }

  async start(signal: AbortSignal): Promise<void> {
    this.startedAt = this.clock.now();
    await this.createComponents();
    await this.control.listen({ socketPath: this.config.controlSocket });
    if (this.tcpServers) {
      await this.health.listen({ hostPort: this.config.healthListen });
      await this.metricsServer.listen({ hostPort: this.config.metricsListen });
    }
    for (const s of this.states) {
      if (s.component.reconcileOnStart) {
        try {
          await s.component.reconcileOnStart(signal);
        } catch (err) {
          // Not fatal: sync still diffs against the kernel; log loudly.
          this.logger.error({ err, target: s.component.name }, 'reconcile with the kernel at start-up failed');
        }
      }
      try {
        await s.component.start?.(signal);
        s.started = true;
      } catch (err) {
        // Close what already runs, this one included (it may have bound half its sockets).
        s.started = true;
        this.logger.error({ err, target: s.component.name }, 'component start failed');
        await this.closeComponents();
        throw new ComponentStartError(s.component.name, 'start', err);
      }
    }
    this.unsubscribe = this.source.onEvent((event) => this.dispatch(event));
    await this.source.start(signal);
    if (this.config.allocateNodeCidrs) this.startAllocator(signal);
    this.logger.info({ source: this.source.name, components: this.states.map((s) => s.component.name) }, 'started; waiting for the cluster state to sync');
    this.runnersStarted = this.source.waitForSync(signal).then(
      () => {
        if (signal.aborted) return;
        this.logger.info('cluster state synced; starting component runners');
        for (const s of this.states) s.runner.start(signal);
        this.updateReady();
      },
      (err: unknown) => {
        if (!signal.aborted) this.logger.error({ err }, 'state source failed before its initial sync');
      },
    );
  }

  /** `--allocate-node-cidrs`: the leader-elected pod CIDR allocator, over the source's API transport. */
  private startAllocator(signal: AbortSignal): void {
    const withTransport = this.source as Partial<{ apiTransport(): Promise<ApiTransport> }>;
    const log = this.logger.child({ component: 'node-cidr-allocator' });
    if (typeof withTransport.apiTransport !== 'function') {
      log.error({ source: this.source.name }, '--allocate-node-cidrs needs the Kubernetes source; not allocating');
      return;
    }
    void withTransport.apiTransport().then((transport) => {
      const c = this.config;
      this.allocator = new NodeCidrAllocator({
        transport,
        identity: c.nodeName,
        clusterCIDRs: c.clusterCIDR.split(',').map((x) => Cidr.parse(x.trim())),
        maskSizeV4: c.nodeCidrMaskSize ?? 24,
        maskSizeV6: c.nodeCidrMaskSizeIpv6 ?? 64,
        releaseGraceMs: c.nodeCidrReleaseGrace ?? 300_000,
        leaseNamespace: c.leaderElectionNamespace ?? 'kube-system',
        leaseDurationMs: c.leaderElectionLeaseDuration ?? 15_000,
        renewDeadlineMs: c.leaderElectionRenewDeadline ?? 10_000,
        retryPeriodMs: c.leaderElectionRetryPeriod ?? 2_000,
        logger: log,
        clock: this.clock,
      });
      log.info({ lease: `${c.leaderElectionNamespace ?? 'kube-system'}/podwire-node-cidr-allocator` }, 'node CIDR allocation on: competing for the Lease');
      return this.allocator.run(signal);
    }).catch((err: unknown) => log.error({ err }, 'node CIDR allocator stopped'));
  }

  /**
   * Stop: runners (already stopped with the start() signal), in-flight syncs, then the
   * components' close() in reverse order, then the daemon's own servers, last.
   */
  async stop(): Promise<void> {
    for (const s of this.states) s.runner.stop();
    this.unsubscribe?.();
    await Promise.all(this.states.map((s) => s.runner.idle()));
    await this.closeComponents();
    await Promise.all([this.control.close(), this.health.close(), this.metricsServer.close()]);
    if (this.kernelOwned) {
      this.kernel?.close();
      this.kernel = undefined;
      this.kernelOwned = false;
    }
    this.logger.info('stopped; the data plane is left in place');
  }

  /** close() every started component, in reverse order; each is attempted, failures are logged. Idempotent. */
  private async closeComponents(): Promise<void> {
    for (const s of [...this.states].reverse()) {
      if (!s.started || s.closed) continue;
      s.closed = true;
      if (!s.component.close) continue;
      try {
        await s.component.close();
      } catch (err) {
        this.logger.error({ err, target: s.component.name }, 'component close failed');
      }
    }
  }

  /** Remove everything each enabled component programmed (podwired --cleanup). Attempts every component. */
  async cleanup(signal: AbortSignal): Promise<{ failed: { component: string; error: string }[] }> {
    await this.createComponents();
    const failed: { component: string; error: string }[] = [];
    for (const s of [...this.states].reverse()) {
      if (!s.component.cleanup) continue;
      try {
        await s.component.cleanup(signal);
        this.logger.info({ target: s.component.name }, 'cleaned up');
      } catch (err) {
        failed.push({ component: s.component.name, error: errorMessage(err) });
        this.logger.error({ err, target: s.component.name }, 'cleanup failed');
      }
    }
    return { failed };
  }

  /** Resolves once runners have started (after the source synced). */
  whenRunning(): Promise<void> {
    return this.runnersStarted ?? Promise.resolve();
  }

  isReady(): boolean {
    return this.source.hasSynced() && this.states.every((s) => s.firstSuccessAt !== undefined);
  }

  /** Request a sync of every component (used after a control-plane hint, and by tests). */
  requestSync(): void {
    for (const s of this.states) s.runner.run();
  }

  status(): DaemonStatus {
    const node = this.source.get('Node', this.config.nodeName) as NodeObject | undefined;
    const objects: Record<string, number> = {};
    for (const kind of CLUSTER_KINDS) {
      try {
        objects[kind] = this.state.size(kind);
      } catch {
        // not watched
      }
    }
    return {
      version: PODWIRE_VERSION,
      nodeName: this.config.nodeName,
      ready: this.isReady(),
      source: { name: this.source.name, synced: this.source.hasSynced(), objects, problems: sourceProblems(this.source) },
      node: node ? { podCIDRs: [...node.podCIDRs], addresses: node.addresses.map((a) => ({ ...a })) } : undefined,
      config: {
        backend: this.config.backend,
        proxyMode: this.config.proxyMode,
        clusterCIDR: this.config.clusterCIDR,
        serviceCIDR: this.config.serviceCIDR,
        clusterDomain: this.config.clusterDomain,
        enable: [...this.config.enable],
        dnsListen: [...this.config.dnsListen],
      },
      components: this.states.map((s) => this.summary(s)),
      ...(this.allocator ? { nodeCidrAllocator: this.allocator.status() } : {}),
      startedAt: new Date(this.startedAt).toISOString(),
    };
  }

  private summary(s: ComponentState): ComponentSummary {
    let status: ComponentStatus;
    try {
      status = s.component.status();
    } catch (err) {
      status = { error: errorMessage(err) };
    }
    return {
      name: s.component.name,
      feature: s.feature,
      ready: s.firstSuccessAt !== undefined,
      syncs: s.syncs,
      errors: s.errors,
      consecutiveFailures: s.consecutiveFailures,
      lastSuccessfulSync: s.lastSuccessAt === undefined ? undefined : new Date(s.lastSuccessAt).toISOString(),
      lastSyncDurationMs: s.lastDurationMs,
      lastError: s.lastError && { message: s.lastError.message, code: s.lastError.code, at: new Date(s.lastError.at).toISOString() },
      status,
    };
  }

  private dispatch(event: ClusterEvent): void {
    this.metrics.sourceEvents.inc({ kind: event.kind, type: event.type });
    for (const s of this.states) {
      let wants: boolean;
      try {
        wants = s.component.handleEvent(event);
      } catch (err) {
        this.logger.error({ err, target: s.component.name, kind: event.kind, type: event.type }, 'event handler threw; requesting a full sync');
        wants = true;
      }
      if (wants) s.runner.run();
    }
  }

  private recordRun(s: ComponentState, o: RunOutcome, report: { objects?: number } | undefined): void {
    const name = s.component.name;
    s.syncs++;
    s.lastDurationMs = o.durationMs;
    s.consecutiveFailures = o.consecutiveFailures;
    const result = o.ok ? 'success' : 'error';
    this.metrics.syncs.inc({ component: name, result });
    this.metrics.syncDuration.observe({ component: name, result }, o.durationMs / 1000);
    if (o.ok) {
      const now = this.clock.now();
      if (s.firstSuccessAt === undefined) {
        s.firstSuccessAt = now;
        this.logger.info({ target: name, durationMs: o.durationMs }, 'first successful sync');
      }
      s.lastSuccessAt = now;
      this.metrics.lastSuccessfulSync.set({ component: name }, now / 1000);
      this.metrics.componentReady.set({ component: name }, 1);
      if (report?.objects !== undefined) this.metrics.componentObjects.set({ component: name }, report.objects);
    } else {
      s.errors++;
      s.lastError = {
        message: errorMessage(o.error),
        code: o.error instanceof PodwireError ? o.error.code : undefined,
        at: this.clock.now(),
      };
      this.metrics.syncErrors.inc({ component: name });
      const level = o.error instanceof PodwireError && o.error.code === 'PW_TRY_AGAIN' ? 'warn' : 'error';
      this.logger[level]({ target: name, err: o.error, consecutiveFailures: o.consecutiveFailures }, 'sync failed; will retry');
    }
    this.updateReady();
  }

  private updateReady(): void {
    const ready = this.isReady();
    this.metrics.ready.set(ready ? 1 : 0);
    if (ready && !this.wasReady) {
      this.logger.info('ready');
      if (!this.releasedMemory && this.releaseMemoryWhenReady) {
        this.releasedMemory = true;
        const release = this.releaseMemoryWhenReady;
        // After the current sync's callers have dropped their temporaries.
        setImmediate(() => {
          const r = release();
          if (r) this.logger.info({ rssBeforeMb: +(r.rssBefore / 1048576).toFixed(1), rssAfterMb: +(r.rssAfter / 1048576).toFixed(1), heapUsedMb: +(r.heapUsedAfter / 1048576).toFixed(1), ms: Math.round(r.ms) }, 'released the start-up memory');
        });
      }
    }
    this.wasReady = ready;
  }

  private healthz() {
    // Unhealthy when a component that has synced before has not succeeded for a long
    // time (kube-proxy's healthz does the same): a restart may clear a wedged state.
    const limit = Math.max(3 * this.config.syncInterval, 60_000);
    const now = this.clock.now();
    const stale = this.states.filter((s) => s.lastSuccessAt !== undefined && s.consecutiveFailures > 0 && now - s.lastSuccessAt > limit);
    if (stale.length > 0) {
      return text(503, `unhealthy: no successful sync for over ${limit / 1000}s: ${stale.map((s) => s.component.name).join(', ')}\n`);
    }
    return text(200, 'ok\n');
  }

  private readyz() {
    if (this.isReady()) return text(200, 'ready\n');
    const waiting: string[] = [];
    if (!this.source.hasSynced()) waiting.push(`source ${this.source.name} not synced`);
    for (const s of this.states) {
      if (s.firstSuccessAt === undefined) {
        waiting.push(`${s.component.name}: no successful sync yet${s.lastError ? ` (${s.lastError.message})` : ''}`);
      }
    }
    return text(503, `not ready:\n${waiting.map((w) => `  ${w}`).join('\n')}\n`);
  }

  private async scrape() {
    return { status: 200, headers: { 'content-type': this.metrics.registry.contentType }, body: await this.metrics.registry.metrics() };
  }
}

/** Problems the source reports (bad manifests, objects it could not read), if it reports any. */
function sourceProblems(source: StateSource): SourceProblem[] {
  const reporter = source as Partial<ProblemReporter>;
  if (typeof reporter.problems !== 'function') return [];
  try {
    return reporter.problems().slice(0, 50);
  } catch {
    return [];
  }
}
