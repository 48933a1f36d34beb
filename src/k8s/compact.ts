/**
 * Converters from raw Kubernetes JSON (API responses, manifest documents) to the
 * compact shapes in ./types. Every object is converted the moment it arrives and the
 * raw object is dropped, so 10k Services and 100k endpoints stay small in memory.
 *
 * Validation happens here, once: an object that fails is reported as an
 * InvalidObjectError naming kind, key, field and value, and the caller keeps the last
 * good version of that object.
 *
 * Memory: repeated small strings (node names, zones, namespaces, protocol names) are
 * interned and empty maps/condition triples are shared frozen objects, because with
 * 100k endpoints every per-endpoint allocation counts.
 */
import { isIP } from 'node:net';
import { Cidr, InvalidInputError } from '../common';
import type {
  ClusterKind,
  ClusterObject,
  ConfigMapObject,
  Endpoint,
  EndpointConditions,
  EndpointSliceObject,
  NamespaceObject,
  NodeObject,
  ObjectMeta,
  PodObject,
  ServiceObject,
  ServicePort,
  ServiceType,
} from './types';

/** An object that failed validation. `field` is the dotted path inside the object. */
export class InvalidObjectError extends InvalidInputError {
  readonly kind: ClusterKind | string;
  readonly key: string | undefined;
  readonly objectField: string;
  constructor(kind: ClusterKind | string, key: string | undefined, field: string, value: unknown, reason: string) {
    super(`${kind}${key === undefined ? '' : ` ${key}`} ${field}`, value, reason);
    this.kind = kind;
    this.key = key;
    this.objectField = field;
  }

  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), kind: this.kind, key: this.key, objectField: this.objectField };
  }
}

/** Kinds we understand, keyed by `apiVersion/kind` group-less name. */
export const SUPPORTED_KINDS: readonly ClusterKind[] = [
  'Node',
  'Service',
  'EndpointSlice',
  'Pod',
  'Namespace',
  'ConfigMap',
];

const NAMESPACED: Readonly<Record<ClusterKind, boolean>> = {
  Node: false,
  Namespace: false,
  Service: true,
  EndpointSlice: true,
  Pod: true,
  ConfigMap: true,
};

export function isNamespaced(kind: ClusterKind): boolean {
  return NAMESPACED[kind];
}

export function isSupportedKind(kind: unknown): kind is ClusterKind {
  return typeof kind === 'string' && (SUPPORTED_KINDS as readonly string[]).includes(kind);
}

/** Annotations that are large or change on every write and that no Podwire module reads. */
const DROPPED_ANNOTATIONS = new Set([
  'kubectl.kubernetes.io/last-applied-configuration',
  'endpoints.kubernetes.io/last-change-trigger-time',
  'deployment.kubernetes.io/revision',
]);

type Raw = Record<string, unknown>;

const EMPTY_MAP: Readonly<Record<string, string>> = Object.freeze({});
// Shared, frozen values for the common cases (most Services have no externalIPs, one
// family): consumers must treat compact objects as immutable anyway.
const EMPTY_STRINGS = Object.freeze([]) as unknown as string[];
const FAMILIES: Readonly<Record<string, ('IPv4' | 'IPv6')[]>> = {
  '': Object.freeze([]) as unknown as ('IPv4' | 'IPv6')[],
  IPv4: Object.freeze(['IPv4']) as unknown as ('IPv4' | 'IPv6')[],
  IPv6: Object.freeze(['IPv6']) as unknown as ('IPv4' | 'IPv6')[],
  'IPv4,IPv6': Object.freeze(['IPv4', 'IPv6']) as unknown as ('IPv4' | 'IPv6')[],
  'IPv6,IPv4': Object.freeze(['IPv6', 'IPv4']) as unknown as ('IPv4' | 'IPv6')[],
};
const sharedFamilies = (f: ('IPv4' | 'IPv6')[]): ('IPv4' | 'IPv6')[] => FAMILIES[f.join(',')] ?? f;
const orEmpty = (a: string[]): string[] => (a.length === 0 ? EMPTY_STRINGS : a);
/** Label values repeat a lot (managed-by, app names); intern the short ones. */
const MAX_INTERNED_VALUE = 64;

// ---- interning ------------------------------------------------------------------

/**
 * A bounded intern pool. Values that repeat across many objects (node names, zones,
 * namespaces) are stored once. Bounded so a hostile stream of unique values cannot
 * grow it without limit: when full it stops interning (returns the input).
 */
class InternPool {
  private readonly pool = new Map<string, string>();
  constructor(private readonly max: number) {}
  get(s: string): string {
    const hit = this.pool.get(s);
    if (hit !== undefined) return hit;
    if (this.pool.size < this.max) this.pool.set(s, s);
    return s;
  }
}
const interned = new InternPool(100_000);
const intern = (s: string): string => interned.get(s);

const CONDITIONS: EndpointConditions[] = [];
for (let i = 0; i < 8; i++) {
  CONDITIONS.push(Object.freeze({ ready: (i & 1) !== 0, serving: (i & 2) !== 0, terminating: (i & 4) !== 0 }));
}
function sharedConditions(ready: boolean, serving: boolean, terminating: boolean): EndpointConditions {
  return CONDITIONS[(ready ? 1 : 0) | (serving ? 2 : 0) | (terminating ? 4 : 0)]!;
}

// ---- small field readers -----------------------------------------------------------

/** Reads fields of one raw object and throws InvalidObjectError with the full path. */
class Reader {
  /** Intern map values in stringMap (labels, selectors: yes; ConfigMap data: no). */
  internValues = true;

  constructor(
    readonly kind: string,
    readonly key: string | undefined,
  ) {}

  fail(field: string, value: unknown, reason: string): never {
    throw new InvalidObjectError(this.kind, this.key, field, value, reason);
  }

  obj(v: unknown, field: string): Raw | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'object' || Array.isArray(v)) this.fail(field, v, 'expected an object');
    return v as Raw;
  }

  arr(v: unknown, field: string): unknown[] {
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) this.fail(field, v, 'expected a list');
    return v;
  }

  str(v: unknown, field: string): string | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') this.fail(field, v, 'expected a string');
    return v;
  }

  bool(v: unknown, field: string): boolean | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'boolean') this.fail(field, v, 'expected true or false');
    return v;
  }

  int(v: unknown, field: string, min: number, max: number): number | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      this.fail(field, v, `expected an integer in ${min}..${max}`);
    }
    return v;
  }

  port(v: unknown, field: string): number | undefined {
    return this.int(v, field, 1, 65535);
  }

  oneOf<T extends string>(v: unknown, field: string, allowed: readonly T[], dflt: T): T {
    if (v === undefined || v === null || v === '') return dflt;
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
      this.fail(field, v, `expected one of ${allowed.join(', ')}`);
    }
    return v as T;
  }

  ip(v: unknown, field: string): string {
    if (typeof v !== 'string' || isIP(v) === 0) this.fail(field, v, 'expected an IPv4 or IPv6 address');
    return v;
  }

  cidr(v: unknown, field: string): string {
    if (typeof v !== 'string') this.fail(field, v, 'expected a CIDR string');
    try {
      Cidr.parse(v, field);
    } catch (err) {
      this.fail(field, v, err instanceof Error ? err.message : 'not a CIDR');
    }
    return v;
  }

  stringMap(v: unknown, field: string, drop?: ReadonlySet<string>): Readonly<Record<string, string>> {
    const o = this.obj(v, field);
    if (o === undefined) return EMPTY_MAP;
    let out: Record<string, string> | undefined;
    for (const k of Object.keys(o)) {
      if (drop?.has(k)) continue;
      const val = o[k];
      if (typeof val !== 'string') this.fail(`${field}.${k}`, val, 'expected a string');
      (out ??= {})[intern(k)] = this.internValues && val.length <= MAX_INTERNED_VALUE ? intern(val) : val;
    }
    return out === undefined ? EMPTY_MAP : out;
  }
}

const NAME_RE = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/** Reads metadata; returns the compact meta. The key is computed before any other check. */
function readMeta(kind: ClusterKind, raw: Raw): { meta: ObjectMeta; r: Reader } {
  const pre = new Reader(kind, undefined);
  const m = pre.obj(raw.metadata, 'metadata') ?? pre.fail('metadata', raw.metadata, 'missing');
  const name = pre.str(m.name, 'metadata.name') ?? '';
  if (name === '') pre.fail('metadata.name', m.name, 'missing');
  const nsRaw = pre.str(m.namespace, 'metadata.namespace');
  const namespaced = NAMESPACED[kind];
  const namespace = namespaced ? intern(nsRaw || 'default') : undefined;
  const key = namespace === undefined ? name : `${namespace}/${name}`;
  const r = new Reader(kind, key);
  if (name.length > 253 || !NAME_RE.test(name)) r.fail('metadata.name', name, 'not a valid DNS subdomain name');
  const meta: ObjectMeta = {
    key,
    name,
    namespace,
    uid: r.str(m.uid, 'metadata.uid') ?? '',
    resourceVersion: r.str(m.resourceVersion, 'metadata.resourceVersion') ?? '',
    labels: r.stringMap(m.labels, 'metadata.labels'),
    annotations: r.stringMap(m.annotations, 'metadata.annotations', DROPPED_ANNOTATIONS),
  };
  return { meta, r };
}

/** The `namespace/name` (or `name`) key of a raw object, or undefined if it has none. */
export function rawKey(kind: ClusterKind, raw: unknown): string | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const m = (raw as Raw).metadata;
  if (typeof m !== 'object' || m === null) return undefined;
  const name = (m as Raw).name;
  if (typeof name !== 'string' || name === '') return undefined;
  if (!NAMESPACED[kind]) return name;
  const ns = (m as Raw).namespace;
  return `${typeof ns === 'string' && ns !== '' ? ns : 'default'}/${name}`;
}

// ---- per kind -------------------------------------------------------------------

const SERVICE_TYPES: readonly ServiceType[] = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'];
const PROTOCOLS = ['TCP', 'UDP', 'SCTP'] as const;
const IANA_SVC_NAME = /^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/;

export function compactService(raw: Raw): ServiceObject {
  const { meta, r } = readMeta('Service', raw);
  const spec = r.obj(raw.spec, 'spec') ?? {};
  const status = r.obj(raw.status, 'status') ?? {};
  const type = r.oneOf(spec.type, 'spec.type', SERVICE_TYPES, 'ClusterIP');

  let clusterIPs: string[];
  const ipsRaw = r.arr(spec.clusterIPs, 'spec.clusterIPs');
  const single = r.str(spec.clusterIP, 'spec.clusterIP');
  if (ipsRaw.length > 0) {
    clusterIPs = ipsRaw.map((ip, i) => (ip === 'None' ? 'None' : r.ip(ip, `spec.clusterIPs[${i}]`)));
    if (single !== undefined && single !== '' && single !== clusterIPs[0]) {
      r.fail('spec.clusterIP', single, `must equal spec.clusterIPs[0] (${clusterIPs[0]})`);
    }
  } else if (single !== undefined && single !== '') {
    clusterIPs = [single === 'None' ? 'None' : r.ip(single, 'spec.clusterIP')];
  } else {
    clusterIPs = [];
  }
  if (clusterIPs.length > 2) r.fail('spec.clusterIPs', clusterIPs, 'at most two (one per family)');

  const famRaw = r.arr(spec.ipFamilies, 'spec.ipFamilies');
  const ipFamilies: ('IPv4' | 'IPv6')[] =
    famRaw.length > 0
      ? famRaw.map((f, i) => r.oneOf(f, `spec.ipFamilies[${i}]`, ['IPv4', 'IPv6'] as const, 'IPv4'))
      : clusterIPs.filter((ip) => ip !== 'None').map((ip) => (isIP(ip) === 6 ? 'IPv6' : 'IPv4'));

  const ports: ServicePort[] = r.arr(spec.ports, 'spec.ports').map((p, i) => {
    const f = `spec.ports[${i}]`;
    const po = r.obj(p, f) ?? r.fail(f, p, 'expected an object');
    const port = r.port(po.port, `${f}.port`) ?? r.fail(`${f}.port`, po.port, 'missing');
    let targetPort: number | string = port;
    const tp = po.targetPort;
    if (typeof tp === 'number') targetPort = r.port(tp, `${f}.targetPort`)!;
    else if (typeof tp === 'string' && tp !== '') {
      if (/^\d+$/.test(tp)) targetPort = r.port(Number(tp), `${f}.targetPort`)!;
      else if (!IANA_SVC_NAME.test(tp) || !/[a-z]/.test(tp)) r.fail(`${f}.targetPort`, tp, 'not a port number or port name');
      else targetPort = tp;
    } else if (tp !== undefined && tp !== null && tp !== '') r.fail(`${f}.targetPort`, tp, 'expected a number or a name');
    const nodePort = po.nodePort === 0 ? undefined : r.port(po.nodePort, `${f}.nodePort`);
    return {
      name: intern(r.str(po.name, `${f}.name`) ?? ''),
      protocol: r.oneOf(po.protocol, `${f}.protocol`, PROTOCOLS, 'TCP'),
      port,
      targetPort,
      nodePort,
      appProtocol: r.str(po.appProtocol, `${f}.appProtocol`),
    };
  });
  const seen = new Set<string>();
  ports.forEach((p, i) => {
    const k = `${p.port}/${p.protocol}`;
    if (seen.has(k)) r.fail(`spec.ports[${i}]`, k, 'duplicate port and protocol');
    seen.add(k);
  });

  const externalIPs = r.arr(spec.externalIPs, 'spec.externalIPs').map((ip, i) => r.ip(ip, `spec.externalIPs[${i}]`));
  const lbStatus = r.obj(status.loadBalancer, 'status.loadBalancer') ?? {};
  const loadBalancerIPs: string[] = [];
  r.arr(lbStatus.ingress, 'status.loadBalancer.ingress').forEach((ing, i) => {
    const o = r.obj(ing, `status.loadBalancer.ingress[${i}]`) ?? {};
    if (o.ip !== undefined && o.ip !== null && o.ip !== '') {
      loadBalancerIPs.push(r.ip(o.ip, `status.loadBalancer.ingress[${i}].ip`));
    }
  });
  const loadBalancerSourceRanges = r
    .arr(spec.loadBalancerSourceRanges, 'spec.loadBalancerSourceRanges')
    .map((c, i) => r.cidr(typeof c === 'string' ? c.trim() : c, `spec.loadBalancerSourceRanges[${i}]`));

  const sessionAffinity = r.oneOf(spec.sessionAffinity, 'spec.sessionAffinity', ['None', 'ClientIP'] as const, 'None');
  let sessionAffinityTimeoutSeconds: number | undefined;
  if (sessionAffinity === 'ClientIP') {
    const cfg = r.obj(spec.sessionAffinityConfig, 'spec.sessionAffinityConfig') ?? {};
    const cip = r.obj(cfg.clientIP, 'spec.sessionAffinityConfig.clientIP') ?? {};
    sessionAffinityTimeoutSeconds =
      r.int(cip.timeoutSeconds, 'spec.sessionAffinityConfig.clientIP.timeoutSeconds', 1, 86400) ?? 10800;
  }
  // 'Global' is the pre-1.18 spelling of 'Cluster'.
  const etp = spec.externalTrafficPolicy === 'Global' ? 'Cluster' : spec.externalTrafficPolicy;
  const externalName = r.str(spec.externalName, 'spec.externalName');
  if (type === 'ExternalName' && !externalName) r.fail('spec.externalName', spec.externalName, 'required for type ExternalName');

  const selectorMap = r.stringMap(spec.selector, 'spec.selector');
  return {
    kind: 'Service',
    meta,
    type,
    clusterIPs,
    ipFamilies: sharedFamilies(ipFamilies),
    ports,
    selector: spec.selector === undefined || spec.selector === null ? undefined : selectorMap,
    externalIPs: orEmpty(externalIPs),
    loadBalancerIPs: orEmpty(loadBalancerIPs),
    loadBalancerSourceRanges: orEmpty(loadBalancerSourceRanges),
    externalName: type === 'ExternalName' ? externalName : undefined,
    sessionAffinity,
    sessionAffinityTimeoutSeconds,
    externalTrafficPolicy: r.oneOf(etp, 'spec.externalTrafficPolicy', ['Cluster', 'Local'] as const, 'Cluster'),
    internalTrafficPolicy: r.oneOf(
      spec.internalTrafficPolicy,
      'spec.internalTrafficPolicy',
      ['Cluster', 'Local'] as const,
      'Cluster',
    ),
    healthCheckNodePort: spec.healthCheckNodePort === 0 ? undefined : r.port(spec.healthCheckNodePort, 'spec.healthCheckNodePort'),
    publishNotReadyAddresses: r.bool(spec.publishNotReadyAddresses, 'spec.publishNotReadyAddresses') ?? false,
    ...(typeof spec.trafficDistribution === 'string' && spec.trafficDistribution !== '' ? { trafficDistribution: intern(spec.trafficDistribution) } : {}),
  };
}

export function compactEndpointSlice(raw: Raw): EndpointSliceObject {
  const { meta, r } = readMeta('EndpointSlice', raw);
  const addressType = r.oneOf(raw.addressType, 'addressType', ['IPv4', 'IPv6', 'FQDN'] as const, 'IPv4');
  const family = addressType === 'IPv4' ? 4 : addressType === 'IPv6' ? 6 : 0;
  const endpoints: Endpoint[] = r.arr(raw.endpoints, 'endpoints').map((e, i) => {
    const f = `endpoints[${i}]`;
    const eo = r.obj(e, f) ?? r.fail(f, e, 'expected an object');
    const addrs = r.arr(eo.addresses, `${f}.addresses`);
    if (addrs.length === 0) r.fail(`${f}.addresses`, eo.addresses, 'at least one address');
    const addresses = addrs.map((a, j) => {
      const af = `${f}.addresses[${j}]`;
      if (family === 0) return r.str(a, af) ?? r.fail(af, a, 'missing');
      const ip = r.ip(a, af);
      if (isIP(ip) !== family) r.fail(af, a, `not an ${addressType} address`);
      return ip;
    });
    const c = r.obj(eo.conditions, `${f}.conditions`) ?? {};
    // API semantics: a nil `ready` means ready; a nil `serving` means the same as ready.
    const ready = r.bool(c.ready, `${f}.conditions.ready`) ?? true;
    const serving = r.bool(c.serving, `${f}.conditions.serving`) ?? ready;
    const terminating = r.bool(c.terminating, `${f}.conditions.terminating`) ?? false;
    const nodeName = r.str(eo.nodeName, `${f}.nodeName`);
    const zone = r.str(eo.zone, `${f}.zone`);
    const ho = r.obj(eo.hints, `${f}.hints`);
    const hintNames = (list: unknown, hf: string): string[] =>
      r.arr(list, hf).map((h, j) => intern(r.str((r.obj(h, `${hf}[${j}]`) ?? {}).name, `${hf}[${j}].name`) ?? r.fail(`${hf}[${j}].name`, h, 'missing')));
    const hints = ho ? { forZones: hintNames(ho.forZones, `${f}.hints.forZones`), forNodes: hintNames(ho.forNodes, `${f}.hints.forNodes`) } : undefined;
    return {
      address: addresses[0]!,
      ...(addresses.length > 1 ? { moreAddresses: addresses.slice(1) } : {}),
      conditions: sharedConditions(ready, serving, terminating),
      hostname: r.str(eo.hostname, `${f}.hostname`),
      nodeName: nodeName === undefined ? undefined : intern(nodeName),
      zone: zone === undefined ? undefined : intern(zone),
      ...(hints && (hints.forZones.length > 0 || hints.forNodes.length > 0) ? { hints } : {}),
    };
  });
  const ports: EndpointSliceObject['ports'] = [];
  r.arr(raw.ports, 'ports').forEach((p, i) => {
    const f = `ports[${i}]`;
    const po = r.obj(p, f) ?? r.fail(f, p, 'expected an object');
    // A nil port means "all ports" (only for selector-less slices); kube-proxy ignores it.
    const port = r.port(po.port, `${f}.port`);
    if (port === undefined) return;
    ports.push({
      name: intern(r.str(po.name, `${f}.name`) ?? ''),
      port,
      protocol: r.oneOf(po.protocol, `${f}.protocol`, PROTOCOLS, 'TCP'),
      appProtocol: r.str(po.appProtocol, `${f}.appProtocol`),
    });
  });
  const svc = meta.labels['kubernetes.io/service-name'];
  return {
    kind: 'EndpointSlice',
    meta,
    serviceName: svc === undefined ? undefined : intern(svc),
    addressType,
    endpoints,
    // A copy of exactly its length: the push-grown array holds 17 slots for one port (~1.3 MB at 10k slices).
    ports: ports.slice(),
  };
}

const ADDRESS_ORDER: Readonly<Record<string, number>> = { InternalIP: 0, ExternalIP: 1 };

export function compactNode(raw: Raw): NodeObject {
  const { meta, r } = readMeta('Node', raw);
  const spec = r.obj(raw.spec, 'spec') ?? {};
  const status = r.obj(raw.status, 'status') ?? {};
  const cidrs = r.arr(spec.podCIDRs, 'spec.podCIDRs');
  const podCIDRs =
    cidrs.length > 0
      ? cidrs.map((c, i) => r.cidr(c, `spec.podCIDRs[${i}]`))
      : spec.podCIDR
        ? [r.cidr(spec.podCIDR, 'spec.podCIDR')]
        : [];
  const addresses = r.arr(status.addresses, 'status.addresses').map((a, i) => {
    const f = `status.addresses[${i}]`;
    const ao = r.obj(a, f) ?? r.fail(f, a, 'expected an object');
    const type = intern(r.str(ao.type, `${f}.type`) ?? r.fail(`${f}.type`, ao.type, 'missing'));
    const address =
      type === 'InternalIP' || type === 'ExternalIP'
        ? r.ip(ao.address, `${f}.address`)
        : (r.str(ao.address, `${f}.address`) ?? '');
    return { type, address };
  });
  // Stable sort: InternalIP first, then ExternalIP, then the rest in API order.
  addresses.sort((a, b) => (ADDRESS_ORDER[a.type] ?? 2) - (ADDRESS_ORDER[b.type] ?? 2));
  return {
    kind: 'Node',
    meta,
    podCIDRs,
    addresses,
    unschedulable: r.bool(spec.unschedulable, 'spec.unschedulable') ?? false,
  };
}

export function compactPod(raw: Raw): PodObject {
  const { meta, r } = readMeta('Pod', raw);
  const spec = r.obj(raw.spec, 'spec') ?? {};
  const status = r.obj(raw.status, 'status') ?? {};
  const list = r.arr(status.podIPs, 'status.podIPs');
  const podIPs =
    list.length > 0
      ? list.map((p, i) => r.ip((r.obj(p, `status.podIPs[${i}]`) ?? {}).ip, `status.podIPs[${i}].ip`))
      : status.podIP
        ? [r.ip(status.podIP, 'status.podIP')]
        : [];
  const nodeName = r.str(spec.nodeName, 'spec.nodeName');
  const phase = r.str(status.phase, 'status.phase');
  return {
    kind: 'Pod',
    meta,
    nodeName: nodeName ? intern(nodeName) : undefined,
    hostNetwork: r.bool(spec.hostNetwork, 'spec.hostNetwork') ?? false,
    podIPs,
    hostname: r.str(spec.hostname, 'spec.hostname') || undefined,
    subdomain: r.str(spec.subdomain, 'spec.subdomain') || undefined,
    phase: phase === undefined ? undefined : intern(phase),
  };
}

export function compactNamespace(raw: Raw): NamespaceObject {
  const { meta } = readMeta('Namespace', raw);
  return { kind: 'Namespace', meta };
}

export function compactConfigMap(raw: Raw): ConfigMapObject {
  const { meta, r } = readMeta('ConfigMap', raw);
  r.internValues = false;
  return { kind: 'ConfigMap', meta, data: r.stringMap(raw.data, 'data') };
}

const CONVERTERS: { readonly [K in ClusterKind]: (raw: Raw) => Extract<ClusterObject, { kind: K }> } = {
  Node: compactNode,
  Service: compactService,
  EndpointSlice: compactEndpointSlice,
  Pod: compactPod,
  Namespace: compactNamespace,
  ConfigMap: compactConfigMap,
};

/** Converts one raw object of a known kind; throws InvalidObjectError. */
export function compact<K extends ClusterKind>(kind: K, raw: unknown): Extract<ClusterObject, { kind: K }> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new InvalidObjectError(kind, undefined, '', raw, 'expected an object');
  }
  return CONVERTERS[kind](raw as Raw) as Extract<ClusterObject, { kind: K }>;
}

/** Raw kind name from a manifest document, with its API group checked. */
export function kindOfDocument(doc: Raw): ClusterKind | undefined {
  const kind = doc.kind;
  if (!isSupportedKind(kind)) return undefined;
  const apiVersion = doc.apiVersion;
  const expected = kind === 'EndpointSlice' ? 'discovery.k8s.io/v1' : 'v1';
  return apiVersion === expected ? kind : undefined;
}

/**
 * Structural equality of two compact objects, ignoring metadata.resourceVersion, so
 * an API write that changes nothing Podwire uses produces no event.
 */
export function sameContent(a: ClusterObject, b: ClusterObject): boolean {
  if (a.kind !== b.kind) return false;
  const ma = a.meta;
  const mb = b.meta;
  if (ma.key !== mb.key || ma.uid !== mb.uid) return false;
  if (!deepEqual(ma.labels, mb.labels) || !deepEqual(ma.annotations, mb.annotations)) return false;
  for (const k of Object.keys(a) as (keyof ClusterObject)[]) {
    if (k === 'meta') continue;
    if (!deepEqual(a[k], (b as unknown as Record<string, unknown>)[k])) return false;
  }
  return Object.keys(a).length === Object.keys(b).length;
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!deepEqual(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  for (const k of ka) {
    if (!Object.prototype.hasOwnProperty.call(b, k)) return false;
    if (!deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  }
  return true;
}
