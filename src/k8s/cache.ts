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
  ObjectOfKind,
  SourceProblem,
} from './types';

export class ObjectCache {
  private readonly byKind = new Map<ClusterKind, Map<string, ClusterObject>>();
  private readonly handlers = new Set<ClusterEventHandler>();

  constructor(private readonly logger: Logger) {}

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
      this.emit({ type: 'add', kind: obj.kind, current: obj } as ClusterEvent);
      return true;
    }
    // Keep the newest resourceVersion even when nothing we use changed, without an event.
    t.set(obj.meta.key, obj);
    if (sameContent(previous, obj)) return false;
    this.emit({ type: 'update', kind: obj.kind, previous, current: obj } as ClusterEvent);
    return true;
  }

  remove(kind: ClusterKind, key: string): boolean {
    const t = this.byKind.get(kind);
    const previous = t?.get(key);
    if (t === undefined || previous === undefined) return false;
    t.delete(key);
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
