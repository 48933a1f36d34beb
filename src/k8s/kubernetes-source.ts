/**
 * StateSource over the Kubernetes API: one Reflector (list+watch loop) per kind, all
 * feeding one compact ObjectCache. See reflector.ts for the loop and api-client.ts for
 * why we do not use the library's informer.
 */
import type { Clock, Logger } from '../common';
import { InvalidInputError } from '../common';
import { type ApiTransport, createCredentials, HttpTransport } from './api-client';
import { ObjectCache } from './cache';
import { CachedStateSource } from './cached-source';
import { KubeNodeWriter, type NodeWriteRetry } from './kube-node-writer';
import { DEFAULT_TUNING, Reflector, type ReflectorStats, type ReflectorTuning, type ResourceDef } from './reflector';
import type { ClusterKind, NodeWriter } from './types';

export interface KubernetesSourceOptions {
  /** Path of a kubeconfig file. Ignored when inCluster is true. Neither: $KUBECONFIG / ~/.kube/config. */
  kubeconfigPath?: string;
  /** Use the Pod's service account (KUBERNETES_SERVICE_HOST/PORT and /var/run/secrets/...). */
  inCluster?: boolean;
  /** This node's name; its Node is `get('Node', nodeName)`, and Pods are limited to it by default. */
  nodeName: string;
  logger: Logger;
  /** Kinds to watch. Default: all six. */
  kinds?: readonly ClusterKind[];
  /** Pods of this node only (default, fieldSelector spec.nodeName) or of the whole cluster. */
  podScope?: 'node' | 'cluster';
  /**
   * Every Node (default: the overlay needs each peer's podCIDR and addresses) or only this
   * node's own Node (fieldSelector metadata.name, as kube-proxy watches it), for a node that
   * runs only the proxy and DNS beside another CNI.
   */
  nodeScope?: 'cluster' | 'own';
  /** Namespace whose ConfigMaps are watched (default kube-system); '*' for all namespaces. */
  configMapNamespace?: string;
  /** Label selector for ConfigMaps (e.g. `app.kubernetes.io/part-of=podwire`). */
  configMapLabelSelector?: string;
  /** Loop tuning (page size, backoff, watch timeout). Tests shorten the backoff. */
  tuning?: Partial<ReflectorTuning>;
  clock?: Clock;
  random?: () => number;
  /**
   * Where @kubernetes/client-node runs: 'helper' (default) resolves the kubeconfig in a
   * short-lived child process and keeps its ~65 MB out of the daemon; 'in-process'
   * imports it here (needed for proxies; chosen automatically then).
   */
  credentials?: 'helper' | 'in-process';
  /** Helper mode: re-resolve credentials this often (default 5 min) and after any 401. */
  credentialRefreshMs?: number;
  /** For tests: a transport instead of one built from the kubeconfig. */
  transport?: ApiTransport;
  /** Retry policy of the node writer (tests shorten it). */
  nodeWriteRetry?: Partial<NodeWriteRetry>;
}

export const ALL_KINDS: readonly ClusterKind[] = ['Node', 'Service', 'EndpointSlice', 'Pod', 'Namespace', 'ConfigMap'];

export function resourceDefs(options: KubernetesSourceOptions, tuning: ReflectorTuning = DEFAULT_TUNING): ResourceDef[] {
  const kinds = options.kinds ?? ALL_KINDS;
  const cmNs = options.configMapNamespace ?? 'kube-system';
  const defs: Record<ClusterKind, ResourceDef> = {
    Node:
      options.nodeScope === 'own'
        ? { kind: 'Node', path: '/api/v1/nodes', fieldSelector: `metadata.name=${options.nodeName}` }
        : { kind: 'Node', path: '/api/v1/nodes' },
    Service: { kind: 'Service', path: '/api/v1/services' },
    EndpointSlice: {
      kind: 'EndpointSlice',
      path: '/apis/discovery.k8s.io/v1/endpointslices',
      pageSize: Math.min(tuning.pageSize, tuning.endpointSlicePageSize),
    },
    Pod:
      options.podScope === 'cluster'
        ? { kind: 'Pod', path: '/api/v1/pods' }
        : { kind: 'Pod', path: '/api/v1/pods', fieldSelector: `spec.nodeName=${options.nodeName}` },
    Namespace: { kind: 'Namespace', path: '/api/v1/namespaces' },
    ConfigMap: {
      kind: 'ConfigMap',
      path: cmNs === '*' ? '/api/v1/configmaps' : `/api/v1/namespaces/${encodeURIComponent(cmNs)}/configmaps`,
      labelSelector: options.configMapLabelSelector,
    },
  };
  return kinds.map((k) => defs[k]);
}

export class KubernetesSource extends CachedStateSource {
  readonly name = 'kubernetes';
  private reflectors: Reflector[] = [];
  private running: Promise<void>[] = [];
  private syncedCount = 0;
  private readonly writer: KubeNodeWriter;
  private transportReady!: (t: ApiTransport) => void;
  private readonly transportPromise = new Promise<ApiTransport>((resolve) => (this.transportReady = resolve));

  constructor(private readonly options: KubernetesSourceOptions) {
    if (typeof options.nodeName !== 'string' || options.nodeName === '') {
      throw new InvalidInputError('nodeName', options.nodeName, 'required');
    }
    super(new ObjectCache(options.logger));
    this.writer = new KubeNodeWriter({
      nodeName: options.nodeName,
      transport: () => this.transportPromise,
      logger: options.logger,
      clock: options.clock,
      random: options.random,
      retry: options.nodeWriteRetry,
    });
  }

  /**
   * The writer for this node's own Node (annotations, conditions), over the same
   * connection and credentials as the list/watch. Writes made before start() wait for it.
   */
  nodeWriter(): NodeWriter {
    return this.writer;
  }

  /** The source's API transport (same server and credentials), once start() made it. */
  apiTransport(): Promise<ApiTransport> {
    return this.transportPromise;
  }

  async start(signal: AbortSignal): Promise<void> {
    if (this.reflectors.length > 0) throw new InvalidInputError('start', 'twice', 'source already started');
    let transport = this.options.transport;
    if (transport === undefined) {
      const http = new HttpTransport(
        await createCredentials({
          kubeconfigPath: this.options.kubeconfigPath,
          inCluster: this.options.inCluster,
          mode: this.options.credentials,
          refreshMs: this.options.credentialRefreshMs,
        }),
      );
      signal.addEventListener('abort', () => http.close(), { once: true });
      transport = http;
    }
    this.transportReady(transport);
    const log = this.options.logger.child({ component: 'k8s-source' });
    const tuning = { ...DEFAULT_TUNING, ...this.options.tuning };
    const defs = resourceDefs(this.options, tuning);
    this.reflectors = defs.map(
      (def) =>
        new Reflector(def, {
          transport,
          cache: this.cache,
          problems: this.problemSet,
          logger: log,
          tuning,
          clock: this.options.clock,
          random: this.options.random,
          onSynced: () => {
            this.syncedCount++;
            if (this.syncedCount === defs.length) {
              log.info({ kinds: defs.map((d) => d.kind) }, 'initial sync complete');
              this.latch.set();
            }
          },
        }),
    );
    if (defs.length === 0) this.latch.set();
    this.running = this.reflectors.map((r) =>
      r.run(signal).catch((err: unknown) => {
        log.error({ err: String(err) }, 'reflector stopped unexpectedly');
      }),
    );
  }

  /** Resolves once every loop has stopped (after the start signal aborted). */
  async stopped(): Promise<void> {
    await Promise.all(this.running);
  }

  /** Per-kind loop state (resourceVersion, lists, watches, 410s, bookmarks, errors) for health and tests. */
  stats(): ReflectorStats[] {
    return this.reflectors.map((r) => r.snapshot());
  }
}

export function createKubernetesSource(options: KubernetesSourceOptions): KubernetesSource {
  return new KubernetesSource(options);
}
