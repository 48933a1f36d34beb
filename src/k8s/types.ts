/**
 * Compact cluster objects: only the fields Podwire uses, so 10k Services and 100k
 * endpoints stay small in memory. Both state sources (Kubernetes API informers and
 * the manifest folder) produce exactly these shapes.
 */

export interface ObjectMeta {
  /** `namespace/name` for namespaced objects, `name` for cluster-scoped ones. */
  key: string;
  name: string;
  namespace: string | undefined;
  uid: string;
  resourceVersion: string;
  labels: Readonly<Record<string, string>>;
  annotations: Readonly<Record<string, string>>;
}

export interface NodeObject {
  kind: 'Node';
  meta: ObjectMeta;
  podCIDRs: string[];
  /** InternalIP first, then ExternalIP. */
  addresses: { type: string; address: string }[];
  /** Podwire's own annotations (VTEP MAC, backend, public IP), flannel-style. */
  unschedulable: boolean;
}

export type ServiceType = 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';

export interface ServicePort {
  name: string;
  protocol: 'TCP' | 'UDP' | 'SCTP';
  port: number;
  /** Number or named port; resolved against endpoint ports. */
  targetPort: number | string;
  nodePort: number | undefined;
  appProtocol: string | undefined;
}

export interface ServiceObject {
  kind: 'Service';
  meta: ObjectMeta;
  type: ServiceType;
  /** 'None' for headless. */
  clusterIPs: string[];
  ipFamilies: ('IPv4' | 'IPv6')[];
  ports: ServicePort[];
  selector: Readonly<Record<string, string>> | undefined;
  externalIPs: string[];
  loadBalancerIPs: string[];
  loadBalancerSourceRanges: string[];
  externalName: string | undefined;
  sessionAffinity: 'None' | 'ClientIP';
  sessionAffinityTimeoutSeconds: number | undefined;
  externalTrafficPolicy: 'Cluster' | 'Local';
  internalTrafficPolicy: 'Cluster' | 'Local';
  healthCheckNodePort: number | undefined;
  publishNotReadyAddresses: boolean;
  /** spec.trafficDistribution (PreferClose, PreferSameZone, PreferSameNode); the EndpointSlice controller turns it into hints. */
  trafficDistribution?: string;
}

export interface EndpointConditions {
  ready: boolean;
  serving: boolean;
  terminating: boolean;
}

export interface Endpoint {
  /**
   * `addresses[0]`: the one the proxy uses (the API: addresses are fungible and "clients may
   * choose to only use the first element"). Not an array per endpoint: at 100k endpoints the
   * one-element arrays were ~5.6 MB of heap.
   */
  address: string;
  /** `addresses[1:]`, only when the endpoint lists more than one (DNS publishes them all). */
  moreAddresses?: string[];
  conditions: EndpointConditions;
  hostname: string | undefined;
  nodeName: string | undefined;
  zone: string | undefined;
  /** hints.forZones[].name / hints.forNodes[].name (topology-aware routing); absent when the slice has none. */
  hints?: { forZones: string[]; forNodes: string[] };
  // targetRef is not kept: no component reads it, and at 100k endpoints it cost ~7 MB.
}

export interface EndpointSliceObject {
  kind: 'EndpointSlice';
  meta: ObjectMeta;
  /** From label kubernetes.io/service-name. */
  serviceName: string | undefined;
  addressType: 'IPv4' | 'IPv6' | 'FQDN';
  endpoints: Endpoint[];
  ports: { name: string; port: number; protocol: 'TCP' | 'UDP' | 'SCTP'; appProtocol: string | undefined }[];
}

export interface PodObject {
  kind: 'Pod';
  meta: ObjectMeta;
  nodeName: string | undefined;
  hostNetwork: boolean;
  podIPs: string[];
  hostname: string | undefined;
  subdomain: string | undefined;
  phase: string | undefined;
}

export interface NamespaceObject {
  kind: 'Namespace';
  meta: ObjectMeta;
}

export interface ConfigMapObject {
  kind: 'ConfigMap';
  meta: ObjectMeta;
  data: Readonly<Record<string, string>>;
}

export type ClusterObject =
  | NodeObject
  | ServiceObject
  | EndpointSliceObject
  | PodObject
  | NamespaceObject
  | ConfigMapObject;

export type ClusterKind = ClusterObject['kind'];

export type ObjectOfKind<K extends ClusterKind> = Extract<ClusterObject, { kind: K }>;

/** One change. `previous` is absent on add, `current` on delete (kube-proxy's {previous, current}). */
export type ClusterEvent<K extends ClusterKind = ClusterKind> =
  | { type: 'add'; kind: K; current: ObjectOfKind<K> }
  | { type: 'update'; kind: K; previous: ObjectOfKind<K>; current: ObjectOfKind<K> }
  | { type: 'delete'; kind: K; previous: ObjectOfKind<K> };

export type ClusterEventHandler = (event: ClusterEvent) => void;

/**
 * A state source. Handlers only record events; they must not touch the kernel.
 * `start` resolves once the source is running (not necessarily synced).
 */
export interface StateSource {
  readonly name: string;
  start(signal: AbortSignal): Promise<void>;
  /** True once every kind has delivered its initial list. */
  hasSynced(): boolean;
  /** Resolves when hasSynced() first becomes true (or rejects on abort). */
  waitForSync(signal?: AbortSignal): Promise<void>;
  onEvent(handler: ClusterEventHandler): () => void;
  /** Read access to the current cache. */
  list<K extends ClusterKind>(kind: K): ObjectOfKind<K>[];
  get<K extends ClusterKind>(kind: K, key: string): ObjectOfKind<K> | undefined;
}

/**
 * An input the source could not use: an object that failed validation (kept at its
 * last good version) or a manifest file that could not be parsed. Added for health
 * reporting; a source that has none returns [].
 */
export interface SourceProblem {
  kind: ClusterKind | undefined;
  /** Object key (`namespace/name` or `name`) if known. */
  key: string | undefined;
  /** Dotted field path inside the object, e.g. `spec.ports[0].port`. */
  field: string | undefined;
  value: unknown;
  reason: string;
  /** Manifest source only: the file and the 0-based document index in it. */
  file?: string;
  documentIndex?: number;
}

/** Optional extension of StateSource implemented by both Podwire sources. */
export interface ProblemReporter {
  /** Current problems (cleared once the object or file is good again or gone). */
  problems(): SourceProblem[];
}

/**
 * Read-only, indexed view of the cluster cache that components get. Lookups go through
 * the indexes; nothing here copies a whole table. Iterables are live views: do not keep
 * them across an await, and do not mutate what they yield.
 */
export interface ClusterState {
  hasSynced(): boolean;
  get<K extends ClusterKind>(kind: K, key: string): ObjectOfKind<K> | undefined;
  /** Every object of a kind, without copying the table. */
  values<K extends ClusterKind>(kind: K): IterableIterator<ObjectOfKind<K>>;
  size(kind: ClusterKind): number;
  /** EndpointSlices whose `kubernetes.io/service-name` label names this Service (`namespace/name`). */
  endpointSlicesByService(serviceKey: string): readonly EndpointSliceObject[];
  /** Pods that have this IP in `status.podIPs` (several while an IP is being reused). */
  podsByIP(ip: string): readonly PodObject[];
  /** Pods scheduled to this node (`spec.nodeName`). */
  podsByNode(nodeName: string): readonly PodObject[];
  /** Services that have this IP among `spec.clusterIPs`. */
  servicesByClusterIP(ip: string): readonly ServiceObject[];
}

/** A Node status condition, as in `status.conditions`. */
export interface NodeConditionInput {
  /** e.g. `PodwireOverlayReady`, `NetworkUnavailable`. */
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
}

/**
 * Writes to this node's own Node object, and nothing else. Through the Kubernetes
 * source it PATCHes (annotations: merge patch on the Node; conditions: strategic merge
 * patch on the status subresource) with retry and conflict handling. In manifest mode
 * it writes nothing back and only records what it was asked (for `podwire status`).
 */
export interface NodeWriter {
  /** `null` removes the annotation. Resolves once the API server accepted it (or, in manifest mode, at once). */
  patchAnnotations(annotations: Readonly<Record<string, string | null>>, signal?: AbortSignal): Promise<void>;
  /** Sets one condition; `lastTransitionTime` changes only when `status` changes. */
  setCondition(condition: NodeConditionInput, signal?: AbortSignal): Promise<void>;
  /** True when writes reach the API server (false in manifest mode). */
  readonly writesBack: boolean;
}

/** Every address of an endpoint, in the API's order. */
export function endpointAddresses(ep: Endpoint): string[] {
  return ep.moreAddresses === undefined ? [ep.address] : [ep.address, ...ep.moreAddresses];
}
