/** Object builders and a component harness for proxy tests, the integration host and the bench. */
import { Registry } from 'prom-client';
import { silentLogger } from '../common/log';
import type { Clock } from '../common/clock';
import type { Kernel } from '../kernel';
import type { ClusterEvent, ClusterKind, ClusterObject, ClusterState, EndpointSliceObject, ObjectOfKind, ServiceObject, ServicePort } from '../k8s/types';
import type { DaemonConfig } from '../daemon/config';
import type { ComponentContext } from '../daemon/component';
import { FakeClock } from '../daemon/testing/fake-clock';
import type { Logger } from '../common/log';
import { buildProxySection, type ProxySection } from './config';
import { NftProxier } from './proxier';

export interface SvcOptions {
  type?: ServiceObject['type'];
  ports?: Partial<ServicePort>[];
  externalIPs?: string[];
  loadBalancerIPs?: string[];
  loadBalancerSourceRanges?: string[];
  sessionAffinity?: 'None' | 'ClientIP';
  affinityTimeout?: number;
  externalTrafficPolicy?: 'Cluster' | 'Local';
  internalTrafficPolicy?: 'Cluster' | 'Local';
  healthCheckNodePort?: number;
  labels?: Record<string, string>;
  rv?: string;
}

export function svc(key: string, clusterIP: string | string[], o: SvcOptions = {}): ServiceObject {
  const [namespace, name] = key.split('/') as [string, string];
  const ips = Array.isArray(clusterIP) ? clusterIP : [clusterIP];
  return {
    kind: 'Service',
    meta: { key, name, namespace, uid: `uid-${key}`, resourceVersion: o.rv ?? '1', labels: o.labels ?? {}, annotations: {} },
    type: o.type ?? 'ClusterIP',
    clusterIPs: ips,
    ipFamilies: ips.map((ip) => (ip.includes(':') ? 'IPv6' : 'IPv4')),
    ports: (o.ports ?? [{}]).map((p) => ({ name: p.name ?? '', protocol: p.protocol ?? 'TCP', port: p.port ?? 80, targetPort: p.targetPort ?? 8080, nodePort: p.nodePort, appProtocol: undefined })),
    selector: {},
    externalIPs: o.externalIPs ?? [],
    loadBalancerIPs: o.loadBalancerIPs ?? [],
    loadBalancerSourceRanges: o.loadBalancerSourceRanges ?? [],
    externalName: undefined,
    sessionAffinity: o.sessionAffinity ?? 'None',
    sessionAffinityTimeoutSeconds: o.affinityTimeout,
    externalTrafficPolicy: o.externalTrafficPolicy ?? 'Cluster',
    internalTrafficPolicy: o.internalTrafficPolicy ?? 'Cluster',
    healthCheckNodePort: o.healthCheckNodePort,
    publishNotReadyAddresses: false,
  };
}

export interface EpSpec {
  ip: string;
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
  node?: string;
}

export function slice(
  serviceKey: string,
  eps: (string | EpSpec)[],
  ports: { name?: string; port: number; protocol?: 'TCP' | 'UDP' | 'SCTP' }[] = [{ port: 8080 }],
  o: { name?: string; addressType?: 'IPv4' | 'IPv6'; annotations?: Record<string, string> } = {},
): EndpointSliceObject {
  const [namespace, service] = serviceKey.split('/') as [string, string];
  const name = o.name ?? `${service}-abc`;
  return {
    kind: 'EndpointSlice',
    meta: { key: `${namespace}/${name}`, name, namespace, uid: `uid-${namespace}/${name}`, resourceVersion: '1', labels: { 'kubernetes.io/service-name': service }, annotations: o.annotations ?? {} },
    serviceName: service,
    addressType: o.addressType ?? (typeof eps[0] === 'string' ? eps[0] : eps[0]?.ip ?? '')?.includes(':') ? 'IPv6' : 'IPv4',
    endpoints: eps.map((e) => {
      const s: EpSpec = typeof e === 'string' ? { ip: e } : e;
      return {
        address: s.ip,
        conditions: { ready: s.ready ?? true, serving: s.serving ?? s.ready ?? true, terminating: s.terminating ?? false },
        hostname: undefined,
        nodeName: s.node,
        zone: undefined,
      };
    }),
    ports: ports.map((p) => ({ name: p.name ?? '', port: p.port, protocol: p.protocol ?? 'TCP', appProtocol: undefined })),
  };
}

/** A ClusterState over plain maps, with an EndpointSlice index by Service. */
export class MemoryState implements ClusterState {
  private readonly objects = new Map<ClusterKind, Map<string, ClusterObject>>();
  private readonly slicesBySvc = new Map<string, Map<string, EndpointSliceObject>>();
  synced = true;

  hasSynced(): boolean {
    return this.synced;
  }
  get<K extends ClusterKind>(kind: K, key: string): ObjectOfKind<K> | undefined {
    return this.objects.get(kind)?.get(key) as ObjectOfKind<K> | undefined;
  }
  values<K extends ClusterKind>(kind: K): IterableIterator<ObjectOfKind<K>> {
    return (this.objects.get(kind)?.values() ?? new Map().values()) as IterableIterator<ObjectOfKind<K>>;
  }
  size(kind: ClusterKind): number {
    return this.objects.get(kind)?.size ?? 0;
  }
  endpointSlicesByService(key: string): readonly EndpointSliceObject[] {
    return [...(this.slicesBySvc.get(key)?.values() ?? [])];
  }
  podsByIP(): readonly never[] {
    return [];
  }
  podsByNode(): readonly never[] {
    return [];
  }
  servicesByClusterIP(ip: string): readonly ServiceObject[] {
    return [...this.values('Service')].filter((s) => s.clusterIPs.includes(ip));
  }

  /** Store and return the event a source would emit. */
  apply(obj: ClusterObject): ClusterEvent {
    let m = this.objects.get(obj.kind);
    if (!m) this.objects.set(obj.kind, (m = new Map()));
    const previous = m.get(obj.meta.key);
    m.set(obj.meta.key, obj);
    if (obj.kind === 'EndpointSlice') {
      if (previous) this.unindex(previous as EndpointSliceObject);
      const k = `${obj.meta.namespace}/${obj.serviceName}`;
      let s = this.slicesBySvc.get(k);
      if (!s) this.slicesBySvc.set(k, (s = new Map()));
      s.set(obj.meta.key, obj);
    }
    return (previous ? { type: 'update', kind: obj.kind, previous, current: obj } : { type: 'add', kind: obj.kind, current: obj }) as ClusterEvent;
  }

  remove(kind: ClusterKind, key: string): ClusterEvent | undefined {
    const previous = this.objects.get(kind)?.get(key);
    if (!previous) return undefined;
    this.objects.get(kind)!.delete(key);
    if (previous.kind === 'EndpointSlice') this.unindex(previous);
    return { type: 'delete', kind, previous } as ClusterEvent;
  }

  private unindex(s: EndpointSliceObject): void {
    this.slicesBySvc.get(`${s.meta.namespace}/${s.serviceName}`)?.delete(s.meta.key);
  }
}

export function testConfig(over: Partial<DaemonConfig> = {}): DaemonConfig {
  return {
    nodeName: 'node-a',
    kubeconfig: undefined,
    manifests: undefined,
    clusterCIDR: '10.244.0.0/16',
    serviceCIDR: '10.96.0.0/12',
    clusterDomain: 'cluster.local',
    backend: 'vxlan',
    proxyMode: 'nftables',
    dnsListen: [],
    healthListen: '127.0.0.1:0',
    metricsListen: '127.0.0.1:0',
    controlSocket: '/tmp/unused.sock',
    cniConfDir: '/tmp',
    cniBinDir: '/tmp',
    cniBinSource: undefined,
    stateDir: '/tmp',
    logLevel: 'silent',
    enable: ['proxy'],
    mtu: 0,
    minSyncInterval: 0,
    syncInterval: 30_000,
    ...over,
  };
}

export interface ProxierHarness {
  proxier: NftProxier;
  state: MemoryState;
  registry: Registry;
  /** Store an object and hand its event to the proxier. */
  apply(obj: ClusterObject): boolean;
  remove(kind: ClusterKind, key: string): boolean;
}

export function proxierHarness(kernel: Kernel, clock: Clock, opts: { section?: Record<string, unknown>; config?: Partial<DaemonConfig>; logger?: Logger; state?: MemoryState } = {}): ProxierHarness {
  const config = testConfig(opts.config);
  const section: ProxySection = buildProxySection({ healthzBindAddress: '', ...(opts.section ?? {}) }, config);
  const state = opts.state ?? new MemoryState();
  const registry = new Registry();
  const proxier = new NftProxier({ config, section, state, node: { patchAnnotations: async () => undefined, setCondition: async () => undefined, writesBack: false }, kernel, logger: opts.logger ?? silentLogger, clock, metrics: registry });
  return {
    proxier,
    state,
    registry,
    apply: (obj) => proxier.handleEvent(state.apply(obj)),
    remove: (kind, key) => {
      const ev = state.remove(kind, key);
      return ev ? proxier.handleEvent(ev) : false;
    },
  };
}

/** A proxier's ComponentContext over fakes (no control socket, no health ports, a fake clock unless given). */
export function proxyContext(kernel: Kernel, state: ClusterState, config: DaemonConfig, section: Record<string, unknown> = {}, clock?: Clock): ComponentContext<ProxySection> {
  return {
    config,
    section: buildProxySection({ healthzBindAddress: '', ...section }, config),
    state,
    node: { patchAnnotations: async () => undefined, setCondition: async () => undefined, writesBack: false },
    kernel,
    logger: silentLogger,
    clock: clock ?? new FakeClock(),
    metrics: new Registry(),
  };
}
