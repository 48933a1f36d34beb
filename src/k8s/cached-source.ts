import { ObjectCache, ProblemSet, SyncLatch } from './cache';
import type {
  ClusterEventHandler,
  ClusterKind,
  ClusterState,
  ObjectOfKind,
  ProblemReporter,
  SourceProblem,
  StateSource,
} from './types';

/**
 * What both state sources share: an object cache that emits events, a sync latch and a
 * problem set. Subclasses only decide how objects get into the cache.
 */
export abstract class CachedStateSource implements StateSource, ProblemReporter {
  abstract readonly name: string;
  protected readonly problemSet = new ProblemSet();
  protected readonly latch = new SyncLatch();

  protected constructor(protected readonly cache: ObjectCache) {}

  abstract start(signal: AbortSignal): Promise<void>;

  hasSynced(): boolean {
    return this.latch.isSet;
  }

  waitForSync(signal?: AbortSignal): Promise<void> {
    return this.latch.wait(signal);
  }

  onEvent(handler: ClusterEventHandler): () => void {
    return this.cache.onEvent(handler);
  }

  /** A copy of one table. Components read through state() (values/size/indexes) instead. */
  list<K extends ClusterKind>(kind: K): ObjectOfKind<K>[] {
    return this.cache.list(kind);
  }

  /** The indexed, read-only view of this source's cache (one object per source, live). */
  state(): ClusterState {
    return this.cache.state(() => this.latch.isSet);
  }

  get<K extends ClusterKind>(kind: K, key: string): ObjectOfKind<K> | undefined {
    return this.cache.get(kind, key);
  }

  problems(): SourceProblem[] {
    return this.problemSet.list();
  }
}
