import type {
  ClusterEvent,
  ClusterEventHandler,
  ClusterKind,
  ClusterObject,
  NodeObject,
  ObjectOfKind,
  StateSource,
} from '../../k8s/types';

/**
 * An in-memory StateSource for daemon unit tests: the test adds and removes objects
 * and decides when the initial list counts as synced.
 */
export class FakeSource implements StateSource {
  readonly name = 'fake';
  private readonly objects = new Map<ClusterKind, Map<string, ClusterObject>>();
  private readonly handlers = new Set<ClusterEventHandler>();
  private synced = false;
  private syncWaiters: (() => void)[] = [];
  started = false;

  async start(_signal: AbortSignal): Promise<void> {
    this.started = true;
  }

  hasSynced(): boolean {
    return this.synced;
  }

  markSynced(): void {
    this.synced = true;
    const w = this.syncWaiters;
    this.syncWaiters = [];
    for (const f of w) f();
  }

  waitForSync(signal?: AbortSignal): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.syncWaiters.push(resolve);
      signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
  }

  onEvent(handler: ClusterEventHandler): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  list<K extends ClusterKind>(kind: K): ObjectOfKind<K>[] {
    return [...(this.objects.get(kind)?.values() ?? [])] as ObjectOfKind<K>[];
  }

  get<K extends ClusterKind>(kind: K, key: string): ObjectOfKind<K> | undefined {
    return this.objects.get(kind)?.get(key) as ObjectOfKind<K> | undefined;
  }

  /** Add or replace an object, emitting add/update. */
  apply(obj: ClusterObject): void {
    let byKey = this.objects.get(obj.kind);
    if (!byKey) this.objects.set(obj.kind, (byKey = new Map()));
    const previous = byKey.get(obj.meta.key);
    byKey.set(obj.meta.key, obj);
    this.emit(
      (previous
        ? { type: 'update', kind: obj.kind, previous, current: obj }
        : { type: 'add', kind: obj.kind, current: obj }) as ClusterEvent,
    );
  }

  remove(kind: ClusterKind, key: string): void {
    const previous = this.objects.get(kind)?.get(key);
    if (!previous) return;
    this.objects.get(kind)!.delete(key);
    this.emit({ type: 'delete', kind, previous } as ClusterEvent);
  }

  private emit(event: ClusterEvent): void {
    for (const h of this.handlers) h(event);
  }
}

export function nodeObject(name: string, podCIDRs: string[], internalIp = '198.18.0.1'): NodeObject {
  return {
    kind: 'Node',
    meta: { key: name, name, namespace: undefined, uid: `uid-${name}`, resourceVersion: '1', labels: {}, annotations: {} },
    podCIDRs,
    addresses: [{ type: 'InternalIP', address: internalIp }],
    unschedulable: false,
  };
}
