/**
 * The in-memory cache both sources share: compact objects by kind and key, plus the
 * event fan-out. Every change goes through upsert/remove/replaceKind, which emit
 * exactly one event per real change and none for identical content, so consumers
 * (kube-proxy style change trackers) never see no-op updates.
 */
import type { Logger } from '../common';
import { errorMessage } from '../common';
import { sameContent } from './compact';
import type {
  ClusterEvent,
  ClusterEventHandler,
  ClusterKind,
  ClusterObject,
  ClusterState,
  EndpointSliceObject,
  ObjectOfKind,
  PodObject,
  ServiceObject,
  SourceProblem,
} from './types';

const NO_OBJECTS: readonly never[] = Object.freeze([]);
const EMPTY_TABLE = new Map<string, never>();

/**
 * A secondary index: index key → the objects that have it, kept in insertion order.
 * Buckets are arrays so lookups hand them out as they are (no copy); they stay small
 * (slices of one Service, pods of one IP), except pods of one node (≤ a few hundred).
 */
class Index<T extends ClusterObject> {
  private readonly buckets = new Map<string, T[]>();
  constructor(readonly keysOf: (obj: T) => readonly string[]) {}

  lookup(key: string): readonly T[] {
    return this.buckets.get(key) ?? NO_OBJECTS;
  }

  /** How many distinct index keys (for tests). */
  get keyCount(): number {
    return this.buckets.size;
  }

  /** Moves `previous` (if any) to `current` (if any): one bucket edit per changed key. */
  update(previous: T | undefined, current: T | undefined): void {
    const oldKeys = previous === undefined ? NO_OBJECTS : this.keysOf(previous);
    const newKeys = current === undefined ? NO_OBJECTS : this.keysOf(current);
    for (const k of oldKeys) {
      const bucket = this.buckets.get(k);
      const i = bucket === undefined ? -1 : bucket.indexOf(previous!);
      if (i < 0) continue;
      if (current !== undefined && newKeys.includes(k)) bucket![i] = current; // same key: in place, order kept
      else if (bucket!.length === 1) this.buckets.delete(k);
      else bucket!.splice(i, 1);
    }
    for (const k of newKeys) {
      if (oldKeys.includes(k)) continue; // replaced above
      const bucket = this.buckets.get(k);
      if (bucket === undefined) this.buckets.set(k, [current!]);
      else bucket.push(current!);
    }
  }
}

/** Distinct values, without allocating for the common single-value case. */
function distinct(values: readonly string[]): readonly string[] {
  if (values.length < 2) return values;
  return values.length === 2 ? (values[0] === values[1] ? [values[0]!] : values) : [...new Set(values)];
}

const sliceServiceKey = (s: EndpointSliceObject): readonly string[] =>
  s.serviceName === undefined || s.serviceName === '' ? NO_OBJECTS : [`${s.meta.namespace ?? 'default'}/${s.serviceName}`];
const podIPKeys = (p: PodObject): readonly string[] => distinct(p.podIPs);
const podNodeKey = (p: PodObject): readonly string[] => (p.nodeName === undefined || p.nodeName === '' ? NO_OBJECTS : [p.nodeName]);
const serviceIPKeys = (s: ServiceObject): readonly string[] => {
  let ips = s.clusterIPs;
  if (ips.includes('None')) ips = ips.filter((ip) => ip !== 'None');
  return distinct(ips);
};

export class ObjectCache {
  private readonly byKind = new Map<ClusterKind, Map<string, ClusterObject>>();
  private readonly handlers = new Set<ClusterEventHandler>();
  private readonly slicesByService = new Index<EndpointSliceObject>(sliceServiceKey);
  private readonly podsByIP = new Index<PodObject>(podIPKeys);
  private readonly podsByNode = new Index<PodObject>(podNodeKey);
  private readonly servicesByClusterIP = new Index<ServiceObject>(serviceIPKeys);
  private stateView: ClusterState | undefined;

  constructor(private readonly logger: Logger) {}

  /**
   * The read-only indexed view components get. Indexes are updated before handlers run,
   * so a handler sees the state after its event. `hasSynced` comes from the source.
   */
  state(hasSynced: () => boolean): ClusterState {
    if (this.stateView !== undefined) return this.stateView;
    const view: ClusterState = {
      hasSynced,
      get: (kind, key) => this.get(kind, key),
      values: (kind) => this.values(kind),
      size: (kind) => this.size(kind),
      endpointSlicesByService: (serviceKey) => this.slicesByService.lookup(serviceKey),
      podsByIP: (ip) => this.podsByIP.lookup(ip),
      podsByNode: (nodeName) => this.podsByNode.lookup(nodeName),
      servicesByClusterIP: (ip) => this.servicesByClusterIP.lookup(ip),
    };
    this.stateView = view;
    return view;
  }

  /** Index key counts, for tests: that deletes leave no empty buckets behind. */
  indexSizes(): { slicesByService: number; podsByIP: number; podsByNode: number; servicesByClusterIP: number } {
    return {
      slicesByService: this.slicesByService.keyCount,
      podsByIP: this.podsByIP.keyCount,
      podsByNode: this.podsByNode.keyCount,
      servicesByClusterIP: this.servicesByClusterIP.keyCount,
    };
  }

  private reindex(previous: ClusterObject | undefined, current: ClusterObject | undefined): void {
    switch ((previous ?? current)!.kind) {
      case 'EndpointSlice':
        this.slicesByService.update(previous as EndpointSliceObject | undefined, current as EndpointSliceObject | undefined);
        break;
      case 'Pod':
        this.podsByIP.update(previous as PodObject | undefined, current as PodObject | undefined);
        this.podsByNode.update(previous as PodObject | undefined, current as PodObject | undefined);
        break;
      case 'Service':
        this.servicesByClusterIP.update(previous as ServiceObject | undefined, current as ServiceObject | undefined);
        break;
      default:
        break;
    }
  }

  /** Every object of a kind: a live iterator over the table, no copy. */
  values<K extends ClusterKind>(kind: K): IterableIterator<ObjectOfKind<K>> {
    const t = this.byKind.get(kind) ?? EMPTY_TABLE;
    return t.values() as IterableIterator<ObjectOfKind<K>>;
  }

  onEvent(handler: ClusterEventHandler): () => void {
    this.handlers.add(handler);
    return () => {
      this.handlers.delete(handler);
    };
  }

  private table(kind: ClusterKind): Map<string, ClusterObject> {
    let t = this.byKind.get(kind);
    if (t === undefined) {
      t = new Map();
      this.byKind.set(kind, t);
    }
    return t;
  }

  get<K extends ClusterKind>(kind: K, key: string): ObjectOfKind<K> | undefined {
    return this.byKind.get(kind)?.get(key) as ObjectOfKind<K> | undefined;
  }

  /** A copy of one table (tests, tools). Hot paths use values()/size() instead. */
  list<K extends ClusterKind>(kind: K): ObjectOfKind<K>[] {
    const t = this.byKind.get(kind);
    return t === undefined ? [] : ([...t.values()] as ObjectOfKind<K>[]);
  }

  keys(kind: ClusterKind): IterableIterator<string> {
    return this.table(kind).keys();
  }

  size(kind: ClusterKind): number {
    return this.byKind.get(kind)?.size ?? 0;
  }

  /** Adds or replaces an object. Emits add/update; returns false (no event) if content is identical. */
  upsert(obj: ClusterObject): boolean {
    const t = this.table(obj.kind);
    const previous = t.get(obj.meta.key);
    if (previous === undefined) {
      t.set(obj.meta.key, obj);
      this.reindex(undefined, obj);
      this.emit({ type: 'add', kind: obj.kind, current: obj } as ClusterEvent);
      return true;
    }
    // Keep the newest resourceVersion even when nothing we use changed, without an event.
    t.set(obj.meta.key, obj);
    this.reindex(previous, obj);
    if (sameContent(previous, obj)) return false;
    this.emit({ type: 'update', kind: obj.kind, previous, current: obj } as ClusterEvent);
    return true;
  }

  remove(kind: ClusterKind, key: string): boolean {
    const t = this.byKind.get(kind);
    const previous = t?.get(key);
    if (t === undefined || previous === undefined) return false;
    t.delete(key);
    this.reindex(previous, undefined);
    this.emit({ type: 'delete', kind, previous } as ClusterEvent);
    return true;
  }

  /**
   * After a full relist: every key not in `present` is gone and delivered as a delete.
   * `present` includes keys of objects that failed validation, whose last good version
   * is kept.
   */
  deleteMissing(kind: ClusterKind, present: ReadonlySet<string>): number {
    const t = this.byKind.get(kind);
    if (t === undefined) return 0;
    const gone: string[] = [];
    for (const key of t.keys()) if (!present.has(key)) gone.push(key);
    for (const key of gone) this.remove(kind, key);
    return gone.length;
  }

  private emit(event: ClusterEvent): void {
    for (const h of this.handlers) {
      try {
        h(event);
      } catch (err) {
        // A handler bug must not stop delivery to the others or break the watch loop.
        this.logger.error({ err: errorMessage(err), kind: event.kind, type: event.type }, 'event handler threw');
      }
    }
  }
}

/** Current problems, keyed so that a later good version (or deletion) clears them. */
export class ProblemSet {
  private readonly items = new Map<string, SourceProblem>();
  set(id: string, p: SourceProblem): void {
    this.items.set(id, p);
  }
  clear(id: string): void {
    this.items.delete(id);
  }
  clearWhere(pred: (id: string, p: SourceProblem) => boolean): void {
    for (const [id, p] of [...this.items]) if (pred(id, p)) this.items.delete(id);
  }
  list(): SourceProblem[] {
    return [...this.items.values()];
  }
}

/** A one-shot "synced" latch with abortable waiters. */
export class SyncLatch {
  private done = false;
  private readonly waiters = new Set<() => void>();

  get isSet(): boolean {
    return this.done;
  }

  set(): void {
    if (this.done) return;
    this.done = true;
    for (const w of this.waiters) w();
    this.waiters.clear();
  }

  wait(signal?: AbortSignal): Promise<void> {
    if (this.done) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(signal.reason ?? new Error('aborted'));
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.waiters.delete(done);
        reject(signal?.reason ?? new Error('aborted'));
      };
      const done = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      this.waiters.add(done);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
