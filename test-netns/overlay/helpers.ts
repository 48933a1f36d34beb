/**
 * The overlay lab: up to 3 node namespaces, each running the real podwired on one manifest
 * folder, pods created through the CNI binary podwired installs.
 *
 *   ul1 (bridge): n1 198.18.0.1/24, n2 198.18.0.2/24, out 198.18.0.200/24 ("outside": no
 *                 route to the pod network), rt 198.18.0.254/24
 *   ul2 (bridge): n3 198.19.0.3/24, rt 198.19.0.254/24   (n3 is one routed hop away)
 *
 * With `ipv6Underlay` (or `ipv6Only`) every node also gets an IPv6 node IP, added `nodad`:
 *   ul1: n1 fd00:198:18::1/64, n2 fd00:198:18::2/64, out fd00:198:18::200/64, rt fd00:198:18::fe/64
 *   ul2: n3 fd00:198:19::3/64, rt fd00:198:19::fe/64, routed like the IPv4 subnets
 *
 * Every path podwired writes is in a per-run temp dir; every namespace comes from the Lab.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { exec, execOk, ip, ping, type Lab, type LabNode, type Underlay } from '../harness';
import { pluginConfig, readConflist, resultIpv4, runInstalledCni } from '../lab/cni-client';
import { createRunDir, PODWIRE_CLI, Podwired, type RunDir } from '../lab/podwired';
import { FakeApiServer } from '../fixtures/apiserver/server';
import { Registry } from 'prom-client';
import { silentLogger, systemClock } from '../../src/common';
import { loadConfig } from '../../src/daemon/config';
import { clusterStateOf, createKubernetesSource, nodeWriterOf } from '../../src/k8s';
import type { ClusterState } from '../../src/k8s/types';
import { netnsRef, openKernel, type Kernel } from '../../src/kernel';
import { defaultOverlaySection, OverlayComponent, type OverlaySection } from '../../src/overlay';
import { netnsPath } from '../harness';

export const PROTO = 77;
export const OUTSIDE_IP = '198.18.0.200';
export const OUTSIDE_IP6 = 'fd00:198:18::200';
/** The nodes' IPv6 node IPs (ipv6Underlay / ipv6Only), by node index. */
export const NODE_IP6 = ['fd00:198:18::1', 'fd00:198:18::2', 'fd00:198:19::3'];

export interface ONode {
  name: string;
  lab: LabNode;
  ip: string;
  podCidr: string;
  daemon: Podwired;
  extraArgs: string[];
  env: Record<string, string> | undefined;
}

export interface OPod {
  name: string;
  node: ONode;
  ns: string;
  ip: string;
  ip6?: string;
}

export interface OCluster {
  lab: Lab;
  run: RunDir;
  nodes: ONode[];
  pods: OPod[];
  outside: string;
  router: string;
  /** The first underlay (n1, n2, outside, router), for more nodes built by hand. */
  ul1: Underlay;
}

export interface ClusterOptions {
  backend: 'vxlan' | 'host-gw';
  env?: Record<string, string>;
  podsPerNode?: number[];
  /** Dual-stack: every node also gets fd00:10:244:<i>::/64 (cluster CIDR fd00:10:244::/56). */
  dualStack?: boolean;
  /** Every node also gets an IPv6 node IP (a second InternalIP), on an IPv6 underlay beside the IPv4 one. */
  ipv6Underlay?: boolean;
  /**
   * IPv6-only: each node's only pod CIDR is fd00:10:244:<i>::/64, its only InternalIP the IPv6
   * one, the cluster CIDR fd00:10:244::/56; the nodes' IPv4 addresses are removed.
   */
  ipv6Only?: boolean;
  /** Dual-stack Node objects list the IPv6 InternalIP first (a kubelet may); the node IP is still chosen per family. */
  v6First?: boolean;
  /** How many of n1, n2, n3 run podwired (default 3). */
  nodeCount?: number;
}

export function manifestPath(run: RunDir, name: string): string {
  return path.join(run.manifests, `node-${name}.yaml`);
}

export function writeNode(run: RunDir, name: string, podCIDR: string | string[], internalIP: string | string[], annotations: Record<string, string> = {}, uid = `pwo-uid-${name}`): void {
  const cidrs = Array.isArray(podCIDR) ? podCIDR : [podCIDR];
  writeFileSync(
    manifestPath(run, name),
    YAML.stringify({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name, uid, resourceVersion: '1', annotations },
      spec: { podCIDR: cidrs[0], podCIDRs: cidrs },
      // Dual-stack nodes list one InternalIP per family, as the kubelet does.
      status: { addresses: [...(Array.isArray(internalIP) ? internalIP : [internalIP]).map((address) => ({ type: 'InternalIP', address })), { type: 'Hostname', address: name }] },
    }),
  );
}

export function removeNode(run: RunDir, name: string): void {
  rmSync(manifestPath(run, name), { force: true });
}

export async function buildCluster(lab: Lab, opts: ClusterOptions): Promise<OCluster> {
  const run = createRunDir('pwo');
  const ul1 = await lab.addUnderlay({ role: 'ul1' });
  const ul2 = await lab.addUnderlay({ role: 'ul2' });
  const n1 = await lab.addNode(ul1, { role: 'n1', address: '198.18.0.1/24' });
  const n2 = await lab.addNode(ul1, { role: 'n2', address: '198.18.0.2/24' });
  const out = await lab.addNode(ul1, { role: 'out', address: `${OUTSIDE_IP}/24` });
  const rt = await lab.addNode(ul1, { role: 'rt', address: '198.18.0.254/24' });
  const n3 = await lab.addNode(ul2, { role: 'n3', address: '198.19.0.3/24' });
  // The router's second leg, on ul2.
  await ip(ul2.ns, ['link', 'add', 'rt', 'type', 'veth', 'peer', 'name', 'eth1', 'netns', rt.ns]);
  await ip(ul2.ns, ['link', 'set', 'rt', 'master', ul2.bridge, 'up']);
  await ip(rt.ns, ['addr', 'add', '198.19.0.254/24', 'dev', 'eth1']);
  await ip(rt.ns, ['link', 'set', 'eth1', 'up']);
  for (const n of [n1, n2, out]) await ip(n.ns, ['route', 'add', '198.19.0.0/24', 'via', '198.18.0.254']);
  await ip(n3.ns, ['route', 'add', '198.18.0.0/24', 'via', '198.19.0.254']);

  const v6 = opts.ipv6Underlay || opts.ipv6Only;
  if (v6) {
    // nodad: the addresses are usable at once (DAD would hold them tentative for a second or more).
    for (const [n, a] of [[n1, NODE_IP6[0]], [n2, NODE_IP6[1]], [out, OUTSIDE_IP6], [rt, 'fd00:198:18::fe'], [n3, NODE_IP6[2]]] as const) await ip(n.ns, ['addr', 'add', `${a}/64`, 'dev', 'eth0', 'nodad']);
    await ip(rt.ns, ['addr', 'add', 'fd00:198:19::fe/64', 'dev', 'eth1', 'nodad']);
    for (const n of [n1, n2, out]) await ip(n.ns, ['-6', 'route', 'add', 'fd00:198:19::/64', 'via', 'fd00:198:18::fe']);
    await ip(n3.ns, ['-6', 'route', 'add', 'fd00:198:18::/64', 'via', 'fd00:198:19::fe']);
  }
  const labNodes = [n1, n2, n3].slice(0, opts.nodeCount ?? 3);
  const names = ['n1', 'n2', 'n3'];
  const cidrsOf = (i: number): string[] => (opts.ipv6Only ? [`fd00:10:244:${i + 1}::/64`] : [`10.244.${i + 1}.0/24`, ...(opts.dualStack ? [`fd00:10:244:${i + 1}::/64`] : [])]);
  const ipsOf = (i: number, ln: LabNode): string[] => {
    const ips = opts.ipv6Only ? [NODE_IP6[i]!] : [ln.ip, ...(opts.ipv6Underlay ? [NODE_IP6[i]!] : [])];
    return opts.v6First ? ips.reverse() : ips;
  };
  labNodes.forEach((ln, i) => writeNode(run, names[i]!, cidrsOf(i), ipsOf(i, ln)));
  if (opts.ipv6Only) {
    // Nothing IPv4 between the nodes: the overlay must not need it.
    for (const ln of labNodes) await ip(ln.ns, ['addr', 'del', ln.cidr, 'dev', 'eth0']);
  }
  const clusterCidr = opts.ipv6Only ? ['--cluster-cidr', 'fd00:10:244::/56'] : opts.dualStack ? ['--cluster-cidr', '10.244.0.0/16,fd00:10:244::/56'] : [];
  const extraArgs = ['--backend', opts.backend, '--sync-interval', '2s', '--min-sync-interval', '100ms', '--enable', 'cni,overlay', ...clusterCidr];
  const nodes: ONode[] = labNodes.map((ln, i) => ({
    name: names[i]!,
    lab: ln,
    ip: opts.ipv6Only ? NODE_IP6[i]! : ln.ip,
    podCidr: cidrsOf(i)[0]!,
    extraArgs,
    env: opts.env,
    daemon: new Podwired(lab, ln.ns, { nodeName: names[i]!, run, extraArgs, env: opts.env, logLevel: 'info' }),
  }));
  const cluster: OCluster = { lab, run, nodes, pods: [], outside: out.ns, router: rt.ns, ul1 };
  for (const n of nodes) {
    const r = await n.daemon.waitReady();
    if (!r.ready) throw new Error(`${n.name}: podwired not ready: ${r.last}\n${n.daemon.tail()}`);
  }
  const perNode = opts.podsPerNode ?? [2, 1, 1];
  for (const [i, n] of nodes.entries()) {
    for (let p = 1; p <= (perNode[i] ?? 0); p++) cluster.pods.push(await addPod(cluster, n, `${n.name}p${p}`));
  }
  return cluster;
}

export async function addPod(c: OCluster, n: ONode, name: string): Promise<OPod> {
  const ns = await c.lab.addPod(name);
  const conf = readConflist(n.daemon.conflistPath);
  const r = await runInstalledCni(n.daemon, pluginConfig(conf, 0), { command: 'ADD', containerId: ns, podNs: ns });
  const addr = resultIpv4(r.json);
  const ip6 = (r.json?.ips as { address?: string }[] | undefined)?.find((x) => x.address?.includes(':'))?.address?.split('/')[0];
  // IPv6-only pods have no IPv4 address: `ip` is then the IPv6 one.
  if (!r.ok || !(addr ?? ip6)) throw new Error(`CNI ADD ${name} on ${n.name}: ${r.summary}\n${r.stderr}`);
  return { name, node: n, ns, ip: addr?.ip ?? ip6!, ip6 };
}

/** Restart a node's podwired (same run dir, same flags). */
export function startDaemon(c: OCluster, n: ONode): Podwired {
  n.daemon = new Podwired(c.lab, n.lab.ns, { nodeName: n.name, run: c.run, extraArgs: n.extraArgs, env: n.env, logLevel: 'info' });
  return n.daemon;
}

export interface NodeEntries {
  routes: string[];
  neigh: string[];
  fdb: string[];
}

/** Our routes (proto 77) and the neighbour/FDB entries on `dev` (pw.1; pw-v6.1 is the IPv6 device), as `ip` prints them. */
export async function entries(ns: string, family: 4 | 6 = 4, dev = 'pw.1'): Promise<NodeEntries> {
  // Our routes carry a per-prefix metric (see routeMetric); left out here so tests compare paths.
  const routes = (await execOk(ns, ['ip', `-${family}`, 'route', 'show', 'proto', String(PROTO)])).trim().split('\n').filter(Boolean).map((l) => l.trim().replace(/ metric \d+/, ''));
  const hasDev = (await exec(ns, ['ip', 'link', 'show', dev])).exitCode === 0;
  const neigh = hasDev ? (await execOk(ns, ['ip', `-${family}`, 'neigh', 'show', 'dev', dev])).trim().split('\n').filter(Boolean).map((l) => l.trim()) : [];
  const fdb = hasDev ? (await execOk(ns, ['bridge', 'fdb', 'show', 'dev', dev])).trim().split('\n').filter(Boolean).map((l) => l.trim()) : [];
  return { routes, neigh, fdb };
}

/** Packets sent and received on a device (from `ip -s -j link`); -1 when it is not there. */
export async function linkPackets(ns: string, dev: string): Promise<{ tx: number; rx: number }> {
  const r = await exec(ns, ['ip', '-s', '-j', 'link', 'show', dev]);
  if (r.exitCode !== 0) return { tx: -1, rx: -1 };
  const j = JSON.parse(r.stdout) as { stats64?: { tx?: { packets?: number }; rx?: { packets?: number } } }[];
  return { tx: j[0]?.stats64?.tx?.packets ?? -1, rx: j[0]?.stats64?.rx?.packets ?? -1 };
}

/** Poll (bounded: `tries` x 100 ms) until `pred` holds; returns the last value and whether it held. */
export async function until<T>(fn: () => Promise<T>, pred: (v: T) => boolean, tries = 100): Promise<{ ok: boolean; value: T }> {
  let value = await fn();
  for (let i = 0; i < tries && !pred(value); i++) {
    await new Promise((r) => setTimeout(r, 100));
    value = await fn();
  }
  return { ok: pred(value), value };
}

/** `podwire status` JSON of one node. */
export async function statusJson(n: ONode): Promise<{ components: { name: string; status: Record<string, unknown> }[] }> {
  const r = await execOk(n.lab.ns, ['curl', '-s', '--max-time', '3', '--unix-socket', n.daemon.socket, 'http://localhost/v1/status']);
  return JSON.parse(r) as { components: { name: string; status: Record<string, unknown> }[] };
}

export async function overlayStatus(n: ONode): Promise<Record<string, unknown>> {
  const s = await statusJson(n);
  return s.components.find((x) => x.name === 'overlay')?.status ?? {};
}

export async function podwireStatusText(n: ONode): Promise<string> {
  const r = await exec(n.lab.ns, [process.execPath, PODWIRE_CLI, 'status', '--socket', n.daemon.socket]);
  return `${r.stdout}${r.stderr}`;
}

/**
 * TCP with the client's source address as the server saw it: `nc -lvn` in the server
 * namespace prints "Connection received on <ip> <port>".
 */
export async function tcpSource(lab: Lab, serverNs: string, serverIp: string, clientNs: string, port: number): Promise<{ ok: boolean; source: string | undefined; output: string }> {
  const token = `pwo-${process.pid}-${port}-${Math.random().toString(36).slice(2, 8)}`;
  // OpenBSD nc listens on one family only (IPv4 unless told): -6 for an IPv6 server address.
  const srv = lab.spawn(serverNs, ['nc', ...(serverIp.includes(':') ? ['-6'] : []), '-lvn', '-p', String(port)]);
  try {
    for (let i = 0; i < 100; i++) {
      const r = await exec(serverNs, ['ss', '-Hltn', `sport = :${port}`]);
      if (r.stdout.trim() !== '') break;
      await new Promise((res) => setTimeout(res, 50));
    }
    const c = await exec(clientNs, ['nc', '-N', '-w', '3', serverIp, String(port)], { input: `${token}\n`, timeoutMs: 10_000 });
    await srv.waitForOutput(new RegExp(token), 3_000).catch(() => undefined);
    const out = `${srv.stdout}${srv.stderr}`;
    const source = /Connection received on (\S+)/.exec(out)?.[1];
    return { ok: c.exitCode === 0 && srv.stdout.includes(token), source, output: `client: ${c.stdout}${c.stderr} exit ${String(c.exitCode)}\nserver: ${out}` };
  } finally {
    await srv.stop(1_000);
  }
}

export { ping, existsSync };

/** The fixture API server for overlay components run in the test process, with what its teardown closes. */
export interface FixtureApi {
  api: FakeApiServer;
  /** A temp dir holding the kubeconfig (and whatever the test puts there), removed at teardown. */
  dir: string;
  kubeconfig: string;
  /** Aborted at teardown: the sources' and components' signal. */
  signal: AbortSignal;
  /** Kernels the test opens; closed at teardown. */
  kernels: Kernel[];
}

/** A started fixture API server and its kubeconfig, stopped and removed at the test's teardown. */
export async function fixtureApi(t: { teardown(fn: () => unknown): void }, dirPrefix: string): Promise<FixtureApi> {
  const api = new FakeApiServer();
  await api.start();
  const dir = mkdtempSync(path.join(tmpdir(), dirPrefix));
  const kubeconfig = path.join(dir, 'kubeconfig');
  api.writeKubeconfig(kubeconfig);
  const ac = new AbortController();
  const kernels: Kernel[] = [];
  t.teardown(async () => {
    ac.abort();
    for (const k of kernels) k.close();
    await api.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return { api, dir, kubeconfig, signal: ac.signal, kernels };
}

/**
 * One node of a Kubernetes-source overlay test: a real Kubernetes source (Nodes only) on the
 * fixture API, and the overlay component on the node namespace's kernel, in this process.
 */
export async function k8sOverlayMember(
  f: FixtureApi,
  name: string,
  ns: string,
  opts: { clusterCIDR: string; section?: (s: OverlaySection) => OverlaySection },
): Promise<{ comp: OverlayComponent; state: ClusterState; ns: string }> {
  const src = createKubernetesSource({ kubeconfigPath: f.kubeconfig, nodeName: name, logger: silentLogger, kinds: ['Node'], credentials: 'in-process' });
  await src.start(f.signal);
  await src.waitForSync(AbortSignal.timeout(15_000));
  const config = loadConfig({
    argv: ['--node-name', name, '--cluster-cidr', opts.clusterCIDR, '--control-socket', path.join(f.dir, name, 'podwire.sock'), '--backend', 'vxlan'],
    env: {},
    readFile: () => {
      throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    },
  }).config;
  const kernel = await openKernel(netnsRef(netnsPath(ns)));
  f.kernels.push(kernel);
  const base = defaultOverlaySection(config);
  const section = opts.section ? opts.section(base) : base;
  const state = clusterStateOf(src);
  const comp = new OverlayComponent({ config, section, state, node: nodeWriterOf(src), kernel, logger: silentLogger, clock: systemClock, metrics: new Registry() });
  return { comp, state, ns };
}
