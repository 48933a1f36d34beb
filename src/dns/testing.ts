/** Builders of compact cluster objects for DNS tests, and a way to ask the handler chain. */
import { createSocket } from 'node:dgram';
import type { ConfigMapObject, EndpointSliceObject, PodObject, ServiceObject, ServicePort } from '../k8s/types';
import type { Next } from './handler';
import { buildQuery, isQuery, parseQuery } from './wire';

const meta = (namespace: string | undefined, name: string) => ({
  key: namespace ? `${namespace}/${name}` : name,
  name,
  namespace,
  uid: `uid-${namespace}-${name}`,
  resourceVersion: '1',
  labels: {},
  annotations: {},
});

export function service(ns: string, name: string, o: Omit<Partial<ServiceObject>, 'ports'> & { ports?: Partial<ServicePort>[] } = {}): ServiceObject {
  return {
    kind: 'Service',
    meta: meta(ns, name),
    type: o.type ?? 'ClusterIP',
    clusterIPs: o.clusterIPs ?? [],
    ipFamilies: o.ipFamilies ?? ['IPv4'],
    ports: (o.ports ?? []).map((p) => ({ name: p.name ?? '', protocol: p.protocol ?? 'TCP', port: p.port ?? 80, targetPort: p.targetPort ?? p.port ?? 80, nodePort: undefined, appProtocol: undefined })),
    selector: undefined,
    externalIPs: [],
    loadBalancerIPs: [],
    loadBalancerSourceRanges: [],
    externalName: o.externalName,
    sessionAffinity: 'None',
    sessionAffinityTimeoutSeconds: undefined,
    externalTrafficPolicy: 'Cluster',
    internalTrafficPolicy: 'Cluster',
    healthCheckNodePort: undefined,
    publishNotReadyAddresses: o.publishNotReadyAddresses ?? false,
  };
}

export function slice(
  ns: string,
  svc: string,
  endpoints: { ip: string | string[]; ready?: boolean; hostname?: string }[],
  ports: { name: string; port: number; protocol?: 'TCP' | 'UDP' }[] = [],
  addressType: 'IPv4' | 'IPv6' = 'IPv4',
  suffix = 'abc',
): EndpointSliceObject {
  return {
    kind: 'EndpointSlice',
    meta: meta(ns, `${svc}-${suffix}`),
    serviceName: svc,
    addressType,
    endpoints: endpoints.map((e) => ({
      address: Array.isArray(e.ip) ? e.ip[0]! : e.ip,
      ...(Array.isArray(e.ip) && e.ip.length > 1 ? { moreAddresses: e.ip.slice(1) } : {}),
      conditions: { ready: e.ready ?? true, serving: e.ready ?? true, terminating: false },
      hostname: e.hostname,
      nodeName: undefined,
      zone: undefined,
    })),
    ports: ports.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol ?? 'TCP', appProtocol: undefined })),
  };
}

export function pod(ns: string, name: string, ip: string, o: { hostname?: string; subdomain?: string; node?: string } = {}): PodObject {
  return { kind: 'Pod', meta: meta(ns, name), nodeName: o.node ?? 'n1', hostNetwork: false, podIPs: [ip], hostname: o.hostname, subdomain: o.subdomain, phase: 'Running' };
}

export function configMap(ns: string, name: string, data: Record<string, string>): ConfigMapObject {
  return { kind: 'ConfigMap', meta: meta(ns, name), data };
}

/** Ask the chain `name`/`type` as a client would (optionally with EDNS) and get the raw reply. */
export async function ask(handler: Next, name: string, type: number, o: { edns?: number; id?: number; transport?: 'udp' | 'tcp'; client?: string } = {}): Promise<Buffer | null> {
  const msg = buildQuery(name, type, o.id ?? 4242, o.edns ? { ednsSize: o.edns } : {});
  const q = parseQuery(msg, o.transport ?? 'udp', o.client ?? '10.244.1.2');
  if (!isQuery(q)) throw new Error('test query did not parse');
  return await handler(q);
}

/** A UDP port on 127.0.0.1 that was free a moment ago (for a test server to bind). */
export async function freePort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}
