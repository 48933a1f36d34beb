/**
 * DNS integration test helpers: manifests, the lab (a node running the DNS component,
 * a pod wired to it, extra namespaces for upstream servers), and `dig` from a pod.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { exec, type BackgroundProcess, type Lab, type LabNode, type Underlay } from '../harness';

export const NODE_LOCAL = '169.254.20.10';
const HOST_JS = path.join(__dirname, 'host.js');
const AUTH_JS = path.join(__dirname, 'auth-server.js');

export type Manifest = Record<string, unknown>;

export const m = {
  namespace: (name: string): Manifest => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, uid: `ns-${name}` } }),
  service: (ns: string, name: string, spec: Record<string, unknown>): Manifest => ({ apiVersion: 'v1', kind: 'Service', metadata: { namespace: ns, name, uid: `svc-${ns}-${name}`, resourceVersion: '1' }, spec }),
  slice: (ns: string, svc: string, endpoints: Record<string, unknown>[], ports: Record<string, unknown>[] = [], suffix = 'a'): Manifest => ({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { namespace: ns, name: `${svc}-${suffix}`, uid: `es-${ns}-${svc}-${suffix}`, labels: { 'kubernetes.io/service-name': svc } },
    addressType: 'IPv4',
    endpoints,
    ports,
  }),
  pod: (ns: string, name: string, ip: string, spec: Record<string, unknown> = {}): Manifest => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { namespace: ns, name, uid: `pod-${ns}-${name}` },
    spec: { nodeName: 'n1', ...spec },
    status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
  }),
  configMap: (ns: string, name: string, data: Record<string, string>): Manifest => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace: ns, name, uid: `cm-${ns}-${name}` }, data }),
};

export class ManifestDir {
  readonly dir: string;
  constructor(prefix: string) {
    this.dir = mkdtempSync(path.join(tmpdir(), `${prefix}-`));
  }
  /** Write (replace) one file of manifests, atomically. */
  write(file: string, docs: Manifest[]): void {
    const tmp = path.join(this.dir, `.${file}.tmp`);
    writeFileSync(tmp, docs.map((d) => YAML.stringify(d)).join('---\n'));
    require('node:fs').renameSync(tmp, path.join(this.dir, file));
  }
  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface DnsLab {
  ul: Underlay;
  node: LabNode;
  /** A pod namespace wired to the node (10.244.1.2 via 10.244.1.1). */
  pod: string;
  podIp: string;
  /** Extra nodes on the underlay for upstream servers: 198.18.0.2, .3, ... */
  others: LabNode[];
}

export async function dnsLab(lab: Lab, upstreamNodes = 0): Promise<DnsLab> {
  const ul = await lab.addUnderlay();
  const node = await lab.addNode(ul);
  const others: LabNode[] = [];
  for (let i = 0; i < upstreamNodes; i++) others.push(await lab.addNode(ul));
  const pod = await lab.addPod();
  await lab.wirePod(pod, node, { address: '10.244.1.2', gateway: '10.244.1.1' });
  return { ul, node, pod, podIp: '10.244.1.2', others };
}

/** Start the DNS host in the node; resolves after its first sync. */
export async function startDns(lab: Lab, ns: string, manifests: string, section: Record<string, unknown>, listen = [`${NODE_LOCAL}:53`]): Promise<BackgroundProcess> {
  const p = lab.spawn(ns, [process.execPath, HOST_JS, JSON.stringify({ manifests, listen, section: { drainTimeout: 0, ...section } })]);
  await p.waitForOutput(/DNS SYNCED/, 30_000);
  return p;
}

/** The host's status(), through SIGUSR2. */
export async function hostStatus(p: BackgroundProcess): Promise<Record<string, unknown>> {
  const before = (p.stdout.match(/DNS STATUS /g) ?? []).length;
  process.kill(p.pid!, 'SIGUSR2');
  for (let i = 0; i < 50; i++) {
    const all = [...p.stdout.matchAll(/DNS STATUS (.*)\n/g)];
    if (all.length > before) return JSON.parse(all[all.length - 1]![1]!) as Record<string, unknown>;
    await sleep(50);
  }
  throw new Error('no status from the DNS host');
}

export async function startAuth(lab: Lab, ns: string, listen: string, zone: string, records: Record<string, Record<string, string[]>>, extra: Record<string, unknown> = {}): Promise<BackgroundProcess> {
  const p = lab.spawn(ns, [process.execPath, AUTH_JS, JSON.stringify({ listen, zone, records, ...extra })]);
  await p.waitForOutput(/AUTH READY/, 10_000);
  return p;
}

export interface DigResult {
  status: string;
  flags: string;
  /** Answer lines as [name, ttl, type, rdata]. */
  answers: [string, number, string, string][];
  authority: string[];
  raw: string;
}

/** `dig` from `ns` at `server` (a pod's view of the DNS server). */
export async function dig(ns: string, name: string, type = 'A', opts: { server?: string; args?: string[] } = {}): Promise<DigResult> {
  const r = await exec(ns, ['dig', `@${opts.server ?? NODE_LOCAL}`, '+tries=2', '+timeout=2', '+nocookie', ...(opts.args ?? []), name, type], { timeoutMs: 15_000 });
  const raw = r.stdout + r.stderr;
  const status = /status: (\w+)/.exec(raw)?.[1] ?? (r.timedOut || /timed out|no servers/.test(raw) ? 'TIMEOUT' : 'UNKNOWN');
  const flags = /;; flags: ([^;]*);/.exec(raw)?.[1]?.trim() ?? '';
  const section = (title: string): string[] => {
    const m = new RegExp(`;; ${title} SECTION:\\n([\\s\\S]*?)(?:\\n\\n|$)`).exec(raw);
    return m ? m[1]!.split('\n').filter((l) => l && !l.startsWith(';')) : [];
  };
  const answers = section('ANSWER').map((l) => {
    const f = l.split(/\s+/);
    return [f[0]!, Number(f[1]), f[3]!, f.slice(4).join(' ')] as [string, number, string, string];
  });
  return { status, flags, answers, authority: section('AUTHORITY'), raw };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `/etc/netns/<ns>/resolv.conf` (what `ip netns exec` mounts over /etc/resolv.conf); returns the remover. */
export function podResolvConf(ns: string, text: string): () => void {
  const dir = path.join('/etc/netns', ns);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'resolv.conf'), text);
  return () => rmSync(dir, { recursive: true, force: true });
}

/** A resolv.conf file for the node (never the machine's own). */
export function writeResolvConf(dir: string, servers: string[]): string {
  const f = path.join(dir, 'node-resolv.conf');
  writeFileSync(f, servers.map((s) => `nameserver ${s}`).join('\n') + '\n');
  return f;
}

const REPO = path.resolve(__dirname, '../../..');

/**
 * The real daemon (bin/podwired `--enable dns`) in `ns` on a manifest folder, everything on the
 * command line; `dir` holds its config.yaml, resolv.conf, state and control socket.
 */
export function realPodwired(lab: Lab, ns: string, dir: string, manifests: string, opts: { drain: string; extra?: string[] }): BackgroundProcess {
  return lab.spawn(ns, [
    process.execPath, path.join(REPO, 'bin/podwired'),
    '--config', path.join(dir, 'config.yaml'),
    '--node-name', 'n1',
    '--enable', 'dns',
    '--manifests', manifests,
    '--state-dir', path.join(dir, 'state'),
    '--control-socket', path.join(dir, 'podwire.sock'),
    '--health-listen', '127.0.0.1:10266',
    '--metrics-listen', '127.0.0.1:10269',
    '--dns-listen', `${NODE_LOCAL}:53`,
    '--dns-resolv-conf', path.join(dir, 'resolv.conf'),
    '--dns-drain-timeout', opts.drain,
    '--log-level', 'info',
    ...(opts.extra ?? []),
  ]);
}

/**
 * A node and a pod for the real daemon, a manifest folder with prod/web (10.96.1.10) and a run
 * dir (config.yaml and resolv.conf without upstreams), both removed at teardown.
 */
export async function realPodwiredLab(t: { teardown(fn: () => void): void }, lab: Lab, prefix: string): Promise<{ pod: string; nodeNs: string; dir: string; manifests: string; md: ManifestDir }> {
  const md = new ManifestDir(prefix);
  const dir = mkdtempSync(path.join(tmpdir(), `${prefix}-run-`));
  t.teardown(() => {
    md.remove();
    rmSync(dir, { recursive: true, force: true });
  });
  writeFileSync(path.join(dir, 'config.yaml'), '# everything on the command line\n');
  writeFileSync(path.join(dir, 'resolv.conf'), '# no upstreams\n');
  md.write('cluster.yaml', [m.namespace('prod'), m.service('prod', 'web', { clusterIP: '10.96.1.10', ports: [{ name: 'http', port: 80, protocol: 'TCP' }] })]);
  const { node, pod } = await dnsLab(lab);
  return { pod, nodeNs: node.ns, dir, manifests: md.dir, md };
}
