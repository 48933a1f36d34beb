/**
 * What the kubernetes handler reads, and nothing more (CoreDNS's `dnsController`). The
 * real one is a thin view over the daemon's indexed ClusterState; tests use a fake.
 */
import type { ClusterState, ConfigMapObject, EndpointSliceObject, PodObject, ServiceObject } from '../k8s/types';

export interface DnsController {
  hasSynced(): boolean;
  services(): Iterable<ServiceObject>;
  service(key: string): ServiceObject | undefined;
  /** EndpointSlices of the Service `namespace/name`. */
  endpointSlices(serviceKey: string): readonly EndpointSliceObject[];
  /** Namespace names (Namespace objects; Services' namespaces count too). */
  namespaces(): Iterable<string>;
  pods(): Iterable<PodObject>;
  podsByIP(ip: string): readonly PodObject[];
  configMap(key: string): ConfigMapObject | undefined;
}

export function stateController(state: ClusterState): DnsController {
  return {
    hasSynced: () => state.hasSynced(),
    services: () => state.values('Service'),
    service: (key) => state.get('Service', key),
    endpointSlices: (key) => state.endpointSlicesByService(key),
    namespaces: function* () {
      for (const n of state.values('Namespace')) yield n.meta.name;
    },
    pods: () => state.values('Pod'),
    podsByIP: (ip) => state.podsByIP(ip),
    configMap: (key) => state.get('ConfigMap', key),
  };
}

/** An in-memory controller for unit tests. */
export class FakeController implements DnsController {
  synced = true;
  readonly svc = new Map<string, ServiceObject>();
  readonly slices = new Map<string, EndpointSliceObject[]>();
  readonly ns = new Set<string>();
  readonly podList: PodObject[] = [];
  readonly cms = new Map<string, ConfigMapObject>();
  hasSynced(): boolean {
    return this.synced;
  }
  services(): Iterable<ServiceObject> {
    return this.svc.values();
  }
  service(key: string): ServiceObject | undefined {
    return this.svc.get(key);
  }
  endpointSlices(serviceKey: string): readonly EndpointSliceObject[] {
    return this.slices.get(serviceKey) ?? [];
  }
  namespaces(): Iterable<string> {
    return this.ns;
  }
  pods(): Iterable<PodObject> {
    return this.podList;
  }
  podsByIP(ip: string): readonly PodObject[] {
    return this.podList.filter((p) => p.podIPs.includes(ip));
  }
  configMap(key: string): ConfigMapObject | undefined {
    return this.cms.get(key);
  }
}
