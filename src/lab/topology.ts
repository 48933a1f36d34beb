/**
 * The lab's input: a folder of Kubernetes manifests (the format podwired's manifest source reads)
 * plus one `LabTopology` document (lab.podwire.io/v1alpha1) that says which underlay subnets and
 * nodes to build. Everything the lab needs about the cluster is read from the manifests with the
 * same converters podwired uses (src/k8s/compact), so a folder the lab accepts is one podwired
 * accepts too.
 *
 *   Node        spec.podCIDR(s), status.addresses InternalIP (must be inside its subnet)
 *   Pod         spec.nodeName, status.podIP (requested from the CNI plugin), the annotation
 *               lab.podwire.io/servers: "http:8080 udp-echo:9000" (what the lab runs in it)
 *   Service / EndpointSlice / ConfigMap / Namespace: passed to podwired; Services are listed by
 *               `lab status` and give the rows of the proxy and DNS components their targets.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { Cidr, IpAddress } from '../common/ip';
import { compact, kindOfDocument } from '../k8s/compact';
import type { ConfigMapObject, EndpointSliceObject, ServiceObject } from '../k8s/types';

export const TOPOLOGY_API_VERSION = 'lab.podwire.io/v1alpha1';
export const TOPOLOGY_KIND = 'LabTopology';
export const SERVERS_ANNOTATION = 'lab.podwire.io/servers';
export const NODE_LOCAL_DNS = '169.254.20.10';
/** Names become namespace names and file names: keep them DNS-label-ish and short. */
const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$/;

export class LabSpecError extends Error {
  constructor(
    readonly file: string,
    readonly field: string,
    readonly reason: string,
  ) {
    super(`${file}: ${field}: ${reason}`);
    this.name = 'LabSpecError';
  }
}

export interface LabSubnet {
  name: string;
  cidr: string;
  prefixLength: number;
  /** The router namespace's address on this subnet (every node's default gateway). */
  router: string;
}

export interface LabNodeSpec {
  name: string;
  subnet: string;
  /** InternalIP from the Node manifest. */
  ip: string;
  podCIDR: string;
  /** First address of podCIDR: the bridge address, every pod's gateway. */
  gateway: string;
}

export interface LabServer {
  kind: 'http' | 'udp-echo';
  port: number;
}

export interface LabPodSpec {
  name: string;
  namespace: string;
  node: string;
  ip: string;
  labels: Readonly<Record<string, string>>;
  servers: LabServer[];
}

/**
 * The "outside" namespace: the internet, reached through the router on a subnet of its own
 * (never in the cluster CIDR), running an HTTP server that answers with the client's address.
 */
export interface LabOutside {
  cidr: string;
  prefixLength: number;
  router: string;
  address: string;
  port: number;
}

/** An authoritative DNS server in its own namespace on an underlay subnet (a stub domain's server). */
export interface LabDnsServer {
  name: string;
  subnet: string;
  address: string;
  zone: string;
  records: Record<string, Record<string, string[]>>;
}

export interface LabSpec {
  dir: string;
  /** The file holding the LabTopology document (relative to dir); podwired is not given it. */
  topologyFile: string;
  name: string;
  subnets: LabSubnet[];
  nodes: LabNodeSpec[];
  pods: LabPodSpec[];
  services: ServiceObject[];
  endpointSlices: EndpointSliceObject[];
  configMaps: ConfigMapObject[];
  clusterDomain: string;
  /** The pod the rows run from. */
  client: string;
  outside: LabOutside | undefined;
  dnsServers: LabDnsServer[];
}

export interface ManifestDoc {
  file: string;
  index: number;
  doc: Record<string, unknown>;
}

/** Every document of every *.yaml / *.yml / *.json file under dir (dot-files skipped, sorted). */
export function readManifestDocs(dir: string): ManifestDoc[] {
  const files: string[] = [];
  const walk = (d: string, depth: number): void => {
    for (const name of readdirSync(d).sort()) {
      if (name.startsWith('.')) continue;
      const full = path.join(d, name);
      const st = statSync(full);
      if (st.isDirectory() && depth < 8) walk(full, depth + 1);
      else if (st.isFile() && /\.(ya?ml|json)$/i.test(name)) files.push(full);
    }
  };
  walk(dir, 0);
  const out: ManifestDoc[] = [];
  for (const file of files) {
    const rel = path.relative(dir, file);
    parseAllDocuments(readFileSync(file, 'utf8')).forEach((d, index) => {
      if (d.errors.length) throw new LabSpecError(rel, `document ${index}`, d.errors[0]!.message.split('\n')[0]!);
      const js = d.toJS() as unknown;
      if (js === null || js === undefined) return;
      if (typeof js !== 'object' || Array.isArray(js)) throw new LabSpecError(rel, `document ${index}`, 'not a mapping');
      const doc = js as Record<string, unknown>;
      const items = typeof doc.kind === 'string' && doc.kind.endsWith('List') && Array.isArray(doc.items) ? (doc.items as Record<string, unknown>[]) : [doc];
      for (const item of items) out.push({ file: rel, index, doc: item });
    });
  }
  return out;
}

/** `http:8080 udp-echo:9000` (spaces or commas). */
export function parseServers(text: string, where: string): LabServer[] {
  const out: LabServer[] = [];
  for (const tok of text.split(/[\s,]+/).filter(Boolean)) {
    const m = /^(http|udp-echo):(\d{1,5})$/.exec(tok);
    const port = Number(m?.[2]);
    if (!m || port < 1 || port > 65535) throw new LabSpecError(where, SERVERS_ANNOTATION, `${JSON.stringify(tok)}: expected http:PORT or udp-echo:PORT`);
    out.push({ kind: m[1] as LabServer['kind'], port });
  }
  return out;
}

function str(v: unknown, file: string, field: string): string {
  if (typeof v !== 'string' || v === '') throw new LabSpecError(file, field, 'required string');
  return v;
}

function name(v: unknown, file: string, field: string): string {
  const s = str(v, file, field);
  if (!NAME_RE.test(s)) throw new LabSpecError(file, field, `${JSON.stringify(s)} must match ${NAME_RE}`);
  return s;
}

/**
 * Read and cross-check a lab folder. Throws LabSpecError naming the file and field. `topologyDir`:
 * where the LabTopology document is when it is not in `dir` (the lab's copy keeps it apart).
 */
export function loadLabSpec(dir: string, topologyDir?: string): LabSpec {
  const docs = readManifestDocs(dir);
  const topoDocs = topologyDir ? readManifestDocs(topologyDir) : docs;
  const topo = topoDocs.filter((d) => d.doc.kind === TOPOLOGY_KIND);
  if (topo.length !== 1)
    throw new LabSpecError(dir, 'kind', `expected exactly one ${TOPOLOGY_KIND} document (apiVersion ${TOPOLOGY_API_VERSION}), found ${topo.length}`);
  const t = topo[0]!;
  if (t.doc.apiVersion !== TOPOLOGY_API_VERSION) throw new LabSpecError(t.file, 'apiVersion', `must be ${TOPOLOGY_API_VERSION}`);
  const spec = (t.doc.spec ?? {}) as Record<string, unknown>;
  const labName = name(((t.doc.metadata ?? {}) as Record<string, unknown>).name ?? 'lab', t.file, 'metadata.name');

  const nodesRaw = new Map<string, { podCIDR: string; ip: string }>();
  const pods: LabPodSpec[] = [];
  const services: ServiceObject[] = [];
  const endpointSlices: EndpointSliceObject[] = [];
  const configMaps: ConfigMapObject[] = [];
  for (const d of docs) {
    const kind = kindOfDocument(d.doc);
    if (!kind) continue;
    const where = `${d.file} document ${d.index}`;
    let obj;
    try {
      obj = compact(kind, d.doc);
    } catch (e) {
      throw new LabSpecError(where, String((e as { field?: string }).field ?? kind), (e as Error).message);
    }
    if (obj.kind === 'Node') {
      const ip = obj.addresses.find((a) => a.type === 'InternalIP')?.address;
      if (!ip) throw new LabSpecError(where, 'status.addresses', `Node ${obj.meta.name} has no InternalIP`);
      if (!obj.podCIDRs[0]) throw new LabSpecError(where, 'spec.podCIDR', `Node ${obj.meta.name} has no podCIDR`);
      nodesRaw.set(obj.meta.name, { podCIDR: obj.podCIDRs[0], ip });
    } else if (obj.kind === 'Pod') {
      if (obj.hostNetwork) continue;
      const podName = name(obj.meta.name, where, 'metadata.name');
      const node = str(obj.nodeName, where, 'spec.nodeName');
      const ip = obj.podIPs.find((a) => !a.includes(':'));
      if (!ip) throw new LabSpecError(where, 'status.podIP', `Pod ${podName}: the lab needs the pod's IPv4 address (it asks the CNI plugin for it)`);
      const ann = obj.meta.annotations[SERVERS_ANNOTATION];
      pods.push({ name: podName, namespace: obj.meta.namespace ?? 'default', node, ip, labels: obj.meta.labels, servers: ann ? parseServers(ann, where) : [] });
    } else if (obj.kind === 'Service') services.push(obj);
    else if (obj.kind === 'EndpointSlice') endpointSlices.push(obj);
    else if (obj.kind === 'ConfigMap') configMaps.push(obj);
  }

  const subnets: LabSubnet[] = (Array.isArray(spec.subnets) ? spec.subnets : []).map((s: Record<string, unknown>, i: number) => {
    const f = `spec.subnets[${i}]`;
    const cidr = Cidr.parse(str(s.cidr, t.file, `${f}.cidr`), `${f}.cidr`);
    const router = str(s.router, t.file, `${f}.router`);
    if (!cidr.contains(IpAddress.parse(router, `${f}.router`))) throw new LabSpecError(t.file, `${f}.router`, `${router} is not in ${cidr}`);
    return { name: name(s.name, t.file, `${f}.name`), cidr: cidr.toString(), prefixLength: cidr.prefixLength, router };
  });
  if (subnets.length === 0) throw new LabSpecError(t.file, 'spec.subnets', 'at least one subnet');
  const nodeList = Array.isArray(spec.nodes) ? (spec.nodes as Record<string, unknown>[]) : [];
  if (nodeList.length === 0) throw new LabSpecError(t.file, 'spec.nodes', 'at least one node');
  const nodes: LabNodeSpec[] = nodeList.map((n, i) => {
    const f = `spec.nodes[${i}]`;
    const nodeName = name(n.name, t.file, `${f}.name`);
    const subnet = subnets.find((s) => s.name === n.subnet);
    if (!subnet) throw new LabSpecError(t.file, `${f}.subnet`, `${JSON.stringify(n.subnet)} is not one of spec.subnets (${subnets.map((s) => s.name).join(', ')})`);
    const raw = nodesRaw.get(nodeName);
    if (!raw) throw new LabSpecError(t.file, `${f}.name`, `no Node manifest named ${nodeName} in ${dir}`);
    if (!Cidr.parse(subnet.cidr).contains(IpAddress.parse(raw.ip))) throw new LabSpecError(t.file, `${f}.subnet`, `Node ${nodeName}'s InternalIP ${raw.ip} is not in ${subnet.name} ${subnet.cidr}`);
    const podCidr = Cidr.parse(raw.podCIDR);
    return { name: nodeName, subnet: subnet.name, ip: raw.ip, podCIDR: podCidr.toString(), gateway: podCidr.nth(1).toString() };
  });
  const seen = new Set<string>();
  for (const n of nodes) {
    if (seen.has(n.name)) throw new LabSpecError(t.file, 'spec.nodes', `node ${n.name} listed twice`);
    seen.add(n.name);
  }
  const podNames = new Set<string>();
  for (const p of pods) {
    const node = nodes.find((n) => n.name === p.node);
    const where = `pod ${p.namespace}/${p.name}`;
    if (!node) throw new LabSpecError(where, 'spec.nodeName', `${p.node} is not a node of the lab (${nodes.map((n) => n.name).join(', ')})`);
    const cidr = Cidr.parse(node.podCIDR);
    if (!cidr.contains(IpAddress.parse(p.ip)) || p.ip === node.gateway) throw new LabSpecError(where, 'status.podIP', `${p.ip} is not a pod address of ${node.name}'s podCIDR ${node.podCIDR}`);
    if (podNames.has(p.name)) throw new LabSpecError(where, 'metadata.name', 'pod names must be unique across namespaces in the lab (they name the pod namespaces)');
    podNames.add(p.name);
  }
  const client = typeof spec.client === 'string' ? spec.client : pods[0]?.name;
  if (!client || !pods.some((p) => p.name === client)) throw new LabSpecError(t.file, 'spec.client', `${JSON.stringify(spec.client ?? null)} is not a pod of the lab`);
  const clusterDomain = typeof spec.clusterDomain === 'string' ? spec.clusterDomain : 'cluster.local';
  const outside = parseOutside(spec.outside, t.file, subnets);
  const dnsServers = parseDnsServers(spec.dnsServers, t.file, subnets, nodes, outside);
  return { dir, topologyFile: t.file, name: labName, subnets, nodes, pods, services, endpointSlices, configMaps, clusterDomain, client, outside, dnsServers };
}

const CLUSTER_CIDR = Cidr.parse('10.244.0.0/16');
const SERVICE_CIDR = Cidr.parse('10.96.0.0/12');

function parseOutside(v: unknown, file: string, subnets: readonly LabSubnet[]): LabOutside | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw new LabSpecError(file, 'spec.outside', 'must be a mapping {cidr, router, address, port}');
  const o = v as Record<string, unknown>;
  const cidr = Cidr.parse(str(o.cidr, file, 'spec.outside.cidr'), 'spec.outside.cidr');
  for (const [what, c] of [['the cluster CIDR', CLUSTER_CIDR], ['the Service CIDR', SERVICE_CIDR]] as const)
    if (c.overlaps(cidr)) throw new LabSpecError(file, 'spec.outside.cidr', `${cidr} overlaps ${what} ${c}: "outside" stands for the internet`);
  for (const s of subnets) if (Cidr.parse(s.cidr).overlaps(cidr)) throw new LabSpecError(file, 'spec.outside.cidr', `${cidr} overlaps subnet ${s.name} ${s.cidr}`);
  const router = str(o.router, file, 'spec.outside.router');
  const address = str(o.address, file, 'spec.outside.address');
  for (const [f, a] of [['router', router], ['address', address]] as const)
    if (!cidr.contains(IpAddress.parse(a, `spec.outside.${f}`))) throw new LabSpecError(file, `spec.outside.${f}`, `${a} is not in ${cidr}`);
  if (router === address) throw new LabSpecError(file, 'spec.outside.address', 'must differ from spec.outside.router');
  const port = o.port === undefined ? 80 : Number(o.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new LabSpecError(file, 'spec.outside.port', `${JSON.stringify(o.port)}: expected a port number`);
  return { cidr: cidr.toString(), prefixLength: cidr.prefixLength, router, address, port };
}

function parseDnsServers(v: unknown, file: string, subnets: readonly LabSubnet[], nodes: readonly LabNodeSpec[], outside: LabOutside | undefined): LabDnsServer[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new LabSpecError(file, 'spec.dnsServers', 'must be a list');
  const taken = new Set<string>([...subnets.map((s) => s.router), ...nodes.map((n) => n.ip), ...(outside ? [outside.address, outside.router] : [])]);
  return v.map((x: unknown, i: number) => {
    const f = `spec.dnsServers[${i}]`;
    if (typeof x !== 'object' || x === null) throw new LabSpecError(file, f, 'must be a mapping');
    const d = x as Record<string, unknown>;
    const serverName = name(d.name, file, `${f}.name`);
    const subnet = subnets.find((s) => s.name === d.subnet);
    if (!subnet) throw new LabSpecError(file, `${f}.subnet`, `${JSON.stringify(d.subnet)} is not one of spec.subnets (${subnets.map((s) => s.name).join(', ')})`);
    const address = str(d.address, file, `${f}.address`);
    if (!Cidr.parse(subnet.cidr).contains(IpAddress.parse(address, `${f}.address`))) throw new LabSpecError(file, `${f}.address`, `${address} is not in ${subnet.name} ${subnet.cidr}`);
    if (taken.has(address)) throw new LabSpecError(file, `${f}.address`, `${address} is already used by a node, router or the outside`);
    taken.add(address);
    const zone = str(d.zone, file, `${f}.zone`).toLowerCase().replace(/\.$/, '');
    const recs = (d.records ?? {}) as Record<string, unknown>;
    if (typeof recs !== 'object' || Array.isArray(recs)) throw new LabSpecError(file, `${f}.records`, 'must be a mapping name → {A: [...], TXT: [...]}');
    const records: LabDnsServer['records'] = {};
    for (const [rn, rv] of Object.entries(recs)) {
      const key = rn.toLowerCase().replace(/\.$/, '');
      if (key !== zone && !key.endsWith(`.${zone}`)) throw new LabSpecError(file, `${f}.records.${rn}`, `not under the zone ${zone}`);
      const types: Record<string, string[]> = {};
      for (const [ty, vals] of Object.entries((rv ?? {}) as Record<string, unknown>)) {
        if (!['A', 'AAAA', 'TXT'].includes(ty)) throw new LabSpecError(file, `${f}.records.${rn}.${ty}`, 'supported types: A, AAAA, TXT');
        if (!Array.isArray(vals) || !vals.every((s) => typeof s === 'string')) throw new LabSpecError(file, `${f}.records.${rn}.${ty}`, 'must be a list of strings');
        if (ty === 'A') for (const a of vals as string[]) IpAddress.parse(a, `${f}.records.${rn}.A`);
        types[ty] = vals as string[];
      }
      records[key] = types;
    }
    return { name: serverName, subnet: subnet.name, address, zone, records };
  });
}

/** /etc/resolv.conf of a pod (ClusterFirst with node-local DNS). */
export function podResolvConf(pod: Pick<LabPodSpec, 'namespace'>, clusterDomain: string): string {
  return [
    `# written by podwire lab: the node-local DNS (podwired) and the cluster search path`,
    `nameserver ${NODE_LOCAL_DNS}`,
    `search ${pod.namespace}.svc.${clusterDomain} svc.${clusterDomain} ${clusterDomain}`,
    `options ndots:5`,
    '',
  ].join('\n');
}
