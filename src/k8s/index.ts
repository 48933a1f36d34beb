/**
 * Cluster state sources. The daemon picks one:
 *  - createKubernetesSource: list+watch against the API server (kubeconfig or in-cluster);
 *  - createManifestSource: a folder of Kubernetes YAML/JSON manifests (standalone, lab, demo).
 * Both produce the compact objects and {previous, current} events of ./types.
 */
export * from './types';
export { createKubernetesSource, KubernetesSource, ALL_KINDS } from './kubernetes-source';
export type { KubernetesSourceOptions } from './kubernetes-source';
export { createManifestSource, ManifestSource } from './manifest-source';
export type { ManifestSourceOptions } from './manifest-source';
export type { ReflectorStats, ReflectorTuning } from './reflector';
export { ApiError } from './api-client';
export { compact, InvalidObjectError, sameContent } from './compact';
export { clusterStateOf, hasIndexedState, nodeWriterOf, objectCount } from './cluster-state';
export type { IndexedStateSource, NodeWritingSource } from './cluster-state';
export { RecordingNodeWriter } from './node-writer';
export { KubeNodeWriter, NodeWriteError } from './kube-node-writer';
export type { NodeWriteRetry } from './kube-node-writer';
export { LeaderElector, type LeaderElectionOptions, type LeaseRecord } from './leader-election';
