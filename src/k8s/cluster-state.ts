/**
 * How the daemon gets a ClusterState and a NodeWriter from whichever source it built:
 *  - clusterStateOf(source): the source's own indexed view when it has one (both Podwire
 *    sources: `source.state()`, maintained incrementally by the ObjectCache); for other
 *    StateSources (test fakes) a view that scans `list()` on each call.
 *  - nodeWriterOf(source): the Kubernetes source's writer (PATCHes this node's Node);
 *    for any other source a RecordingNodeWriter (manifest mode writes nothing back).
 */
import { RecordingNodeWriter } from './node-writer';
import type { ClusterKind, ClusterState, NodeWriter, ObjectOfKind, StateSource } from './types';

/** A source that keeps an indexed cache (CachedStateSource). */
export interface IndexedStateSource extends StateSource {
  state(): ClusterState;
}

/** A source that can write to this node's own Node (KubernetesSource). */
export interface NodeWritingSource extends StateSource {
  nodeWriter(): NodeWriter;
}

export function hasIndexedState(source: StateSource): source is IndexedStateSource {
  return typeof (source as Partial<IndexedStateSource>).state === 'function';
}

export function clusterStateOf(source: StateSource): ClusterState {
  if (hasIndexedState(source)) return source.state();
  return {
    hasSynced: () => source.hasSynced(),
    get: (kind, key) => source.get(kind, key),
    values: <K extends ClusterKind>(kind: K) => source.list(kind).values() as IterableIterator<ObjectOfKind<K>>,
    size: (kind) => source.list(kind).length,
    endpointSlicesByService: (key) => source.list('EndpointSlice').filter((s) => s.serviceName !== undefined && `${s.meta.namespace}/${s.serviceName}` === key),
    podsByIP: (ip) => source.list('Pod').filter((p) => p.podIPs.includes(ip)),
    podsByNode: (node) => source.list('Pod').filter((p) => p.nodeName === node),
    servicesByClusterIP: (ip) => source.list('Service').filter((s) => s.clusterIPs.includes(ip)),
  };
}

/** Objects of a kind in the source's cache, without copying the table when the source is indexed. */
export function objectCount(source: StateSource, kind: ClusterKind): number {
  return hasIndexedState(source) ? source.state().size(kind) : source.list(kind).length;
}

export function nodeWriterOf(source: StateSource): NodeWriter {
  const w = source as Partial<NodeWritingSource>;
  return typeof w.nodeWriter === 'function' ? w.nodeWriter() : new RecordingNodeWriter();
}
