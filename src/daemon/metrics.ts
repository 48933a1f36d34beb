/**
 * Daemon metrics on a prom-client Registry owned by one daemon instance (never the
 * global default registry), so two daemons can run in one test process.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { objectCount } from '../k8s/cluster-state';
import type { ClusterKind, StateSource } from '../k8s/types';

export const CLUSTER_KINDS: readonly ClusterKind[] = ['Node', 'Service', 'EndpointSlice', 'Pod', 'Namespace', 'ConfigMap'];

export interface DaemonMetrics {
  registry: Registry;
  syncDuration: Histogram<'component' | 'result'>;
  syncs: Counter<'component' | 'result'>;
  syncErrors: Counter<'component'>;
  lastSuccessfulSync: Gauge<'component'>;
  componentReady: Gauge<'component'>;
  componentObjects: Gauge<'component'>;
  sourceEvents: Counter<'kind' | 'type'>;
  sourceSynced: Gauge;
  ready: Gauge;
}

export function createDaemonMetrics(source: () => StateSource | undefined, options: { processMetrics?: boolean } = {}): DaemonMetrics {
  const registry = new Registry();
  if (options.processMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'podwire_' });
  const registers = [registry];
  return {
    registry,
    syncDuration: new Histogram({
      name: 'podwire_sync_duration_seconds',
      help: 'Duration of one component sync (render, diff, apply)',
      labelNames: ['component', 'result'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    }),
    syncs: new Counter({ name: 'podwire_syncs_total', help: 'Component syncs, by result', labelNames: ['component', 'result'], registers }),
    syncErrors: new Counter({ name: 'podwire_sync_errors_total', help: 'Failed component syncs', labelNames: ['component'], registers }),
    lastSuccessfulSync: new Gauge({
      name: 'podwire_last_successful_sync_timestamp_seconds',
      help: 'Unix time of the last successful sync of each component',
      labelNames: ['component'],
      registers,
    }),
    componentReady: new Gauge({
      name: 'podwire_component_ready',
      help: '1 once the component has completed its first successful sync',
      labelNames: ['component'],
      registers,
    }),
    componentObjects: new Gauge({
      name: 'podwire_component_objects',
      help: 'Objects each component programmed in its last successful sync',
      labelNames: ['component'],
      registers,
    }),
    sourceEvents: new Counter({ name: 'podwire_source_events_total', help: 'Cluster events received from the state source', labelNames: ['kind', 'type'], registers }),
    sourceSynced: new Gauge({
      name: 'podwire_source_synced',
      help: '1 once the state source has delivered its initial list of every kind',
      registers,
      collect() {
        this.set(source()?.hasSynced() ? 1 : 0);
      },
    }),
    ready: new Gauge({ name: 'podwire_ready', help: '1 when /readyz answers 200', registers }),
  } satisfies DaemonMetrics;
}

/** Object counts per kind, read from the source cache at scrape time. */
export function registerObjectCounts(registry: Registry, source: StateSource): void {
  new Gauge({
    name: 'podwire_source_objects',
    help: 'Objects in the state source cache, by kind',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      for (const kind of CLUSTER_KINDS) {
        try {
          this.set({ kind }, objectCount(source, kind));
        } catch {
          // A source that does not watch this kind has nothing to count.
        }
      }
    },
  });
}
