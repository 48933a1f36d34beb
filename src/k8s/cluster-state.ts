/**
 * A ClusterState over any StateSource, by scanning. Interim: the indexed cache
 * (ObjectCache indexes) replaces the scans; the interface stays.
 */
import type { ClusterKind, ClusterState, ObjectOfKind, StateSource } from './types';

export function clusterStateOf(source: StateSource): ClusterState {
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
