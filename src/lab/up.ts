/**
 * `podwire lab up`: build the lab described by a manifest folder (topology.ts), leave it running,
 * and prove what works with the rows of rows/index.ts.
 *
 *   subnets   one namespace per underlay subnet, holding bridge br0
 *   router    one namespace with a leg on every subnet (ip_forward): the nodes' default gateway
 *   nodes     one namespace per node: eth0 on its subnet's bridge, its InternalIP, podwired
 *             running detached (own session, log file, control socket under the state dir)
 *   pods      one namespace per Pod manifest, wired by the CNI binary podwired installed, exec'd
 *             inside the node the way a runtime does (CNI_ARGS asks for the Pod's status.podIP),
 *             with /etc/netns/<ns>/resolv.conf pointing at the node-local DNS
 *   servers   the servers named by each Pod's lab.podwire.io/servers annotation (server.ts)
 *   outside   "the internet": a namespace behind the router outside every lab CIDR, HTTP server
 *   dns-*     authoritative DNS servers on an underlay subnet (the kube-dns stub domains' servers)
 *
 * Every resource is recorded in the state file before it is created (state.ts), so `lab down`
 * removes it whatever happens to this process. Nothing in this process's own namespace changes.
 */
import { spawn } from 'node:child_process';
import { closeSync, cpSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { exec, execOk, ip, netnsPath, type ExecResult } from '../../test-netns/harness';
import { pluginConfig, readConflist, resultIpv4, type Conflist } from '../../test-netns/lab/cni-client';
import { PODWIRE_CLI, PODWIRED_BIN, REPO_ROOT, SHIM } from '../../test-netns/lab/podwired';
import { errorMessage } from '../common/errors';
import { doctorSummaryLine } from '../doctor/summary';
import type { DaemonStatus } from '../daemon/daemon';
import type { Feature } from '../daemon/config';
import { request } from '../daemon/route-server';
import { formatRows, runRows, shq, type LabContext, type RowResult, type RunRowsResult } from './rows';
import { ROW_GROUPS } from './rows/index';
import { DEFAULT_STATE_DIR, nsNames, STATE_VERSION, writeState, type DaemonRecord, type LabState, type NodeRecord, type PodRecord } from './state';
import { ETC_NETNS } from './teardown';
import { loadLabSpec, podResolvConf, type LabSpec } from './topology';

/** Where the lab keeps its copy of the LabTopology file (outside the folder podwired reads). */
export function topologyDir(stateDir: string): string {
  return path.join(stateDir, 'topology');
}

export const SERVER_JS = path.join(REPO_ROOT, 'dist/src/lab/server.js');
/** The small authoritative DNS server the DNS tests use too (UDP + TCP, records from a JSON argument). */
export const AUTH_SERVER_JS = path.join(REPO_ROOT, 'dist/test-netns/dns/auth-server.js');
export const DEFAULT_MANIFESTS = path.join(REPO_ROOT, 'examples/lab');
const HEALTH_LISTEN = '127.0.0.1:10266';
const METRICS_LISTEN = '127.0.0.1:10269';
const UNDERLAY_MTU = 1500;
/** Bound on waiting for every podwired's status to say ready (wall clock, each poll at most 3 s). */
const READY_TIMEOUT_MS = 60_000;

export interface UpOptions {
  manifests: string;
  stateDir: string;
  prefix: string;
  backend: 'vxlan' | 'host-gw';
  proxyMode: 'nftables' | 'iptables';
  log: (m: string) => void;
  /** Set by the Ctrl-C handler: every step checks it. */
  aborted: () => boolean;
}

export class AbortedError extends Error {
  constructor() {
    super('interrupted');
  }
}

/** What must exist before anything is built (one clear line each instead of a failed step). */
export function prerequisites(): string[] {
  const problems: string[] = [];
  if (!existsSync(SHIM)) problems.push(`${SHIM} is not built (npm run build:native)`);
  for (const js of ['dist/src/daemon/main.js', 'dist/src/cli/main.js', 'dist/src/lab/server.js', 'dist/test-netns/dns/auth-server.js'])
    if (!existsSync(path.join(REPO_ROOT, js))) problems.push(`${js} is not built (npx tsc -p .)`);
  for (const tool of ['ip', 'ping', 'nc', 'ss', 'curl', 'dig']) {
    const found = (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').some((d) => d && existsSync(path.join(d, tool)));
    if (!found) problems.push(`${tool} not found on PATH (scripts/install-deps.sh installs it)`);
  }
  return problems;
}

function labCmd(stateDir: string, sub: string): string {
  const bin = process.cwd() === REPO_ROOT ? 'bin/podwire' : PODWIRE_CLI;
  return `${bin} lab ${sub}${stateDir === DEFAULT_STATE_DIR ? '' : ` --state-dir ${shq(stateDir)}`}`;
}

/** Start argv inside ns, detached (own session), stdout+stderr appended to logFile; returns its pid. */
function spawnDetached(ns: string, argv: readonly string[], logFile: string): number | undefined {
  mkdirSync(path.dirname(logFile), { recursive: true });
  const fd = openSync(logFile, 'a');
  try {
    const child = spawn('ip', ['netns', 'exec', ns, ...argv], { detached: true, stdio: ['ignore', fd, fd] });
    child.on('error', () => undefined);
    child.unref();
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

async function daemonStatus(socket: string): Promise<DaemonStatus | string> {
  try {
    const res = await request({ socketPath: socket }, 'GET', '/v1/status', undefined, 3_000);
    if (res.status !== 200) return `HTTP ${res.status}`;
    return JSON.parse(res.body.toString('utf8')) as DaemonStatus;
  } catch (e) {
    return errorMessage(e);
  }
}

export { daemonStatus };

function tail(file: string, chars = 1500): string {
  try {
    const s = readFileSync(file, 'utf8');
    return s.slice(-chars);
  } catch {
    return '(no log)';
  }
}

export interface UpResult {
  state: LabState;
  rows: RunRowsResult;
}

export async function up(opts: UpOptions, spec: LabSpec = loadLabSpec(opts.manifests)): Promise<UpResult> {
  const { log, prefix, stateDir } = opts;
  const check = (): void => {
    if (opts.aborted()) throw new AbortedError();
  };
  const state: LabState = {
    version: STATE_VERSION,
    prefix,
    stateDir,
    manifests: path.join(stateDir, 'manifests'),
    source: path.resolve(opts.manifests),
    backend: opts.backend,
    proxyMode: opts.proxyMode,
    clusterDomain: spec.clusterDomain,
    client: spec.client,
    upPid: process.pid,
    phase: 'building',
    startedAt: new Date().toISOString(),
    fallbackRoutes: [],
    components: [],
    namespaces: [],
    etcNetns: [],
    nodes: [],
    pods: [],
    daemons: [],
    servers: [],
  };
  const save = (): void => writeState(state);
  save();
  // podwired gets the Kubernetes documents only: the LabTopology file is kept beside them (topology/),
  // so that nothing but standard kinds reaches its manifest source.
  const topoSrc = path.resolve(opts.manifests, spec.topologyFile);
  cpSync(opts.manifests, state.manifests, { recursive: true, filter: (src) => (src === opts.manifests || !path.basename(src).startsWith('.')) && path.resolve(src) !== topoSrc });
  mkdirSync(topologyDir(stateDir), { recursive: true });
  cpSync(topoSrc, path.join(topologyDir(stateDir), path.basename(topoSrc)));
  log(`lab ${spec.name}: ${spec.subnets.length} subnet(s), ${spec.nodes.length} node(s), ${spec.pods.length} pod(s), ${spec.services.length} Service(s); manifests copied to ${state.manifests}`);

  const addNs = async (ns: string, forwarding = false): Promise<string> => {
    check();
    state.namespaces.push(ns);
    save();
    await execOk(null, ['ip', 'netns', 'add', ns]);
    await ip(ns, ['link', 'set', 'lo', 'up']);
    if (forwarding) await execOk(ns, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
    return ns;
  };

  // Underlay subnets and the router between them.
  const subnetNs = new Map<string, string>();
  for (const s of spec.subnets) {
    const ns = await addNs(nsNames.subnet(prefix, s.name));
    await ip(ns, ['link', 'add', 'br0', 'mtu', String(UNDERLAY_MTU), 'type', 'bridge']);
    await ip(ns, ['link', 'set', 'br0', 'up']);
    subnetNs.set(s.name, ns);
  }
  const router = await addNs(nsNames.router(prefix), true);
  for (const [i, s] of spec.subnets.entries()) {
    const sns = subnetNs.get(s.name)!;
    await ip(sns, ['link', 'add', 'router', 'mtu', String(UNDERLAY_MTU), 'type', 'veth', 'peer', 'name', `eth${i}`, 'netns', router]);
    await ip(sns, ['link', 'set', 'router', 'master', 'br0', 'up']);
    await ip(router, ['addr', 'add', `${s.router}/${s.prefixLength}`, 'dev', `eth${i}`]);
    await ip(router, ['link', 'set', `eth${i}`, 'up']);
  }
  log(`underlay: ${spec.subnets.map((s) => `${s.name} ${s.cidr} (ns ${subnetNs.get(s.name)})`).join(', ')}; router ${router} at ${spec.subnets.map((s) => s.router).join(' / ')}`);

  // "The internet": a namespace on a subnet of its own behind the router, with an HTTP server.
  if (spec.outside) {
    const o = spec.outside;
    const ns = await addNs(nsNames.outside(prefix));
    state.outside = { ns, ip: o.address, port: o.port, router: o.router };
    save();
    const rIf = `eth${spec.subnets.length}`;
    await ip(ns, ['link', 'add', 'eth0', 'mtu', String(UNDERLAY_MTU), 'type', 'veth', 'peer', 'name', rIf, 'netns', router]);
    await ip(ns, ['addr', 'add', `${o.address}/${o.prefixLength}`, 'dev', 'eth0']);
    await ip(ns, ['link', 'set', 'eth0', 'up']);
    await ip(ns, ['route', 'add', 'default', 'via', o.router, 'dev', 'eth0']);
    await ip(router, ['addr', 'add', `${o.router}/${o.prefixLength}`, 'dev', rIf]);
    await ip(router, ['link', 'set', rIf, 'up']);
    await startServer(state, save, ns, 'outside', [process.execPath, SERVER_JS, '--name', 'outside', '--http', String(o.port)], path.join(stateDir, 'logs', 'outside.log'));
    log(`outside ("the internet"): ns ${ns}, ${o.address}/${o.prefixLength} via router ${o.router}, HTTP :${o.port} (answers with the client address it sees)`);
  }
  // Authoritative DNS servers (stub domains), each in its own namespace on an underlay subnet.
  state.dnsServers = [];
  for (const [i, d] of spec.dnsServers.entries()) {
    const s = spec.subnets.find((x) => x.name === d.subnet)!;
    const ns = await addNs(nsNames.dns(prefix, d.name));
    state.dnsServers.push({ name: d.name, ns, ip: d.address, zone: d.zone, records: d.records });
    save();
    const sns = subnetNs.get(d.subnet)!;
    const port = `d${i + 1}`;
    await ip(sns, ['link', 'add', port, 'mtu', String(UNDERLAY_MTU), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    await ip(sns, ['link', 'set', port, 'master', 'br0', 'up']);
    await ip(ns, ['addr', 'add', `${d.address}/${s.prefixLength}`, 'dev', 'eth0']);
    await ip(ns, ['link', 'set', 'eth0', 'up']);
    await ip(ns, ['route', 'add', 'default', 'via', s.router, 'dev', 'eth0']);
    const args = JSON.stringify({ listen: `${d.address}:53`, zone: d.zone, records: d.records, ttl: 30 });
    await startServer(state, save, ns, `dns-${d.name}`, [process.execPath, AUTH_SERVER_JS, args], path.join(stateDir, 'logs', `dns-${d.name}.log`));
    log(`DNS server ${d.name}: ns ${ns}, ${d.address} on ${d.subnet}, authoritative for ${d.zone} (${Object.keys(d.records).length} name(s))`);
  }

  // Nodes.
  for (const [i, n] of spec.nodes.entries()) {
    const s = spec.subnets.find((x) => x.name === n.subnet)!;
    const ns = await addNs(nsNames.node(prefix, n.name), true);
    const rec: NodeRecord = { name: n.name, ns, subnet: n.subnet, ip: n.ip, podCIDR: n.podCIDR, gateway: n.gateway, router: s.router };
    state.nodes.push(rec);
    const sns = subnetNs.get(n.subnet)!;
    const port = `n${i + 1}`;
    await ip(sns, ['link', 'add', port, 'mtu', String(UNDERLAY_MTU), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    await ip(sns, ['link', 'set', port, 'master', 'br0', 'up']);
    await ip(ns, ['addr', 'add', `${n.ip}/${s.prefixLength}`, 'dev', 'eth0']);
    await ip(ns, ['link', 'set', 'eth0', 'up']);
    await ip(ns, ['route', 'add', 'default', 'via', s.router, 'dev', 'eth0']);
    log(`node ${n.name}: ns ${ns}, eth0 ${n.ip}/${s.prefixLength} on ${n.subnet}, default via ${s.router}, podCIDR ${n.podCIDR}`);
  }
  save();

  // podwired per node, detached.
  for (const n of state.nodes) {
    check();
    const dir = path.join(stateDir, 'nodes', n.name);
    mkdirSync(path.join(dir, 'run'), { recursive: true });
    const config = path.join(dir, 'config.yaml');
    writeFileSync(config, '# podwired config for podwire lab: everything is on the command line\n');
    const d: DaemonRecord = { node: n.name, ns: n.ns, pid: undefined, socket: path.join(dir, 'run', 'podwire.sock'), log: path.join(dir, 'podwired.log'), dir };
    state.daemons.push(d);
    save();
    const argv = [
      process.execPath, PODWIRED_BIN,
      '--config', config,
      '--node-name', n.name,
      '--manifests', state.manifests,
      '--cni-conf-dir', path.join(dir, 'net.d'),
      '--cni-bin-dir', path.join(dir, 'cni-bin'),
      '--cni-bin-source', SHIM,
      '--state-dir', path.join(dir, 'state'),
      '--control-socket', d.socket,
      '--health-listen', HEALTH_LISTEN,
      '--metrics-listen', METRICS_LISTEN,
      '--backend', opts.backend,
      '--proxy-mode', opts.proxyMode,
      '--cluster-domain', spec.clusterDomain,
      '--log-level', 'debug',
    ];
    d.pid = spawnDetached(n.ns, argv, d.log);
    save();
    log(`podwired on ${n.name}: pid ${d.pid ?? '?'}, socket ${d.socket}, log ${d.log}`);
  }
  const components = new Set<Feature>(['cni', 'overlay', 'proxy', 'dns']);
  await Promise.all(
    state.daemons.map(async (d: DaemonRecord) => {
      let last = '';
      const deadline = Date.now() + READY_TIMEOUT_MS;
      while (Date.now() < deadline) {
        check();
        const s = await daemonStatus(d.socket);
        if (typeof s !== 'string' && s.ready) {
          const have = new Set(s.components.map((c) => c.feature));
          for (const f of [...components]) if (!have.has(f)) components.delete(f);
          log(`podwired on ${d.node} ready (components: ${s.components.map((c) => c.name).join(', ') || 'none'})`);
          return;
        }
        last = typeof s === 'string' ? s : 'not ready';
        if (d.pid && !existsSync(`/proc/${d.pid}`)) throw new Error(`podwired on ${d.node} exited; log ${d.log}:\n${tail(d.log)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`podwired on ${d.node} not ready after ${READY_TIMEOUT_MS / 1000} s (${last}); log ${d.log}:\n${tail(d.log)}`);
    }),
  );

  state.components = [...components];
  save();
  // Cross-node routes: podwired's overlay when it has one; the lab's own routes until then.
  if (components.has('overlay')) {
    log(`overlay component present: cross-node routes are podwired's (${opts.backend})`);
  } else {
    log('FALLBACK: podwired has no overlay component yet, so the lab adds plain routes itself (not podwired\'s, not the overlay):');
    for (const a of state.nodes) {
      for (const b of state.nodes) {
        if (a === b) continue;
        const via = a.subnet === b.subnet ? b.ip : a.router;
        await ip(a.ns, ['route', 'add', b.podCIDR, 'via', via, 'dev', 'eth0']);
        state.fallbackRoutes.push(`${a.name}: ${b.podCIDR} via ${via}`);
      }
      const rIf = spec.subnets.findIndex((s) => s.name === a.subnet);
      await ip(router, ['route', 'add', a.podCIDR, 'via', a.ip, 'dev', `eth${rIf}`]);
      state.fallbackRoutes.push(`router: ${a.podCIDR} via ${a.ip}`);
    }
    for (const r of state.fallbackRoutes) log(`  fallback route ${r}`);
    save();
  }

  // host-gw routes pod traffic to a peer's node IP, so it only reaches peers on the same subnet
  // (podwired reports the others "not on-link"). Traffic to the others follows the node's default
  // route to the router, which then must know where each podCIDR is: what a cloud route table or a
  // BGP-speaking fabric gives host-gw in a real cluster. vxlan needs none of this.
  if (opts.backend === 'host-gw' && spec.subnets.length > 1 && components.has('overlay')) {
    state.underlayRoutes = [];
    for (const n of state.nodes) {
      const rIf = spec.subnets.findIndex((s) => s.name === n.subnet);
      await ip(router, ['route', 'add', n.podCIDR, 'via', n.ip, 'dev', `eth${rIf}`]);
      state.underlayRoutes.push(`router: ${n.podCIDR} via ${n.ip}`);
    }
    save();
    log(`host-gw across subnets: the router (the underlay) routes each podCIDR to its node: ${state.underlayRoutes.map((r) => r.replace('router: ', '')).join(', ')}`);
  }

  // Pods, wired by the installed CNI binary.
  const conflists = new Map<string, Conflist>();
  for (const d of state.daemons) conflists.set(d.node, readConflist(path.join(d.dir, 'net.d', '10-podwire.conflist')));
  for (const p of spec.pods) {
    check();
    const node = state.nodes.find((n) => n.name === p.node)!;
    const d = state.daemons.find((x) => x.node === p.node)!;
    const ns = nsNames.pod(prefix, p.name);
    const rec: PodRecord = { name: p.name, namespace: p.namespace, node: p.node, ns, ip: undefined, servers: p.servers, containerId: `lab-${ns}` };
    state.pods.push(rec);
    state.etcNetns.push(path.join(ETC_NETNS, ns));
    await addNs(ns);
    mkdirSync(path.join(ETC_NETNS, ns), { recursive: true });
    writeFileSync(path.join(ETC_NETNS, ns, 'resolv.conf'), podResolvConf(p, spec.clusterDomain));
    const r = await cniAdd(d, conflists.get(p.node)!, rec, p.ip);
    const addr = resultIpv4(r.json);
    if (r.exitCode !== 0 || !addr) throw new Error(`CNI ADD of ${p.name} on ${p.node} failed (exit ${String(r.exitCode)}): ${(r.stdout + r.stderr).trim().slice(0, 500)}`);
    rec.ip = addr.ip;
    save();
    log(`pod ${p.namespace}/${p.name} on ${node.name}: CNI ADD (installed ${path.join(d.dir, 'cni-bin', 'podwire')}) → ${addr.cidr} gw ${addr.gateway ?? '-'}`);
  }

  // Servers.
  for (const p of state.pods) {
    if (p.servers.length === 0) continue;
    check();
    const logFile = path.join(stateDir, 'pods', `${p.name}.log`);
    const argv = [process.execPath, SERVER_JS, '--name', p.name, ...p.servers.flatMap((s) => [s.kind === 'http' ? '--http' : '--udp-echo', String(s.port)])];
    const rec = { pod: p.name, ns: p.ns, pid: undefined as number | undefined, log: logFile };
    state.servers.push(rec);
    save();
    rec.pid = spawnDetached(p.ns, argv, logFile);
    save();
  }
  const waitListening = async (ns: string, what: string, proto: '-t' | '-u', port: number, logFile: string): Promise<void> => {
    for (let i = 0; i < 100; i++) {
      check();
      const r = await exec(ns, ['ss', '-Hln', proto, `sport = :${port}`]);
      if (r.stdout.trim() !== '') return;
      await new Promise((res) => setTimeout(res, 100));
    }
    throw new Error(`${what} did not start listening on ${port}; log ${logFile}:\n${tail(logFile)}`);
  };
  if (state.outside) await waitListening(state.outside.ns, 'the outside HTTP server', '-t', state.outside.port, path.join(stateDir, 'logs', 'outside.log'));
  for (const d of state.dnsServers) await waitListening(d.ns, `DNS server ${d.name}`, '-u', 53, path.join(stateDir, 'logs', `dns-${d.name}.log`));
  for (const p of state.pods) {
    for (const s of p.servers) {
      let ok = false;
      for (let i = 0; i < 100 && !ok; i++) {
        check();
        const r = await exec(p.ns, ['ss', '-Hln', s.kind === 'http' ? '-t' : '-u', `sport = :${s.port}`]);
        ok = r.stdout.trim() !== '';
        if (!ok) await new Promise((res) => setTimeout(res, 100));
      }
      if (!ok) throw new Error(`server ${s.kind}:${s.port} in ${p.name} did not start; log ${path.join(stateDir, 'pods', `${p.name}.log`)}:\n${tail(path.join(stateDir, 'pods', `${p.name}.log`))}`);
    }
    if (p.servers.length) log(`pod ${p.name}: ${p.servers.map((s) => `${s.kind} :${s.port}`).join(', ')} listening`);
  }
  state.phase = 'up';
  save();

  log('running the checks');
  const ctx = labContext(state, spec, components);
  const rows = await runRows(ROW_GROUPS, ctx, (r: RowResult) => log(`${r.status === 'ok' ? 'ok    ' : 'FAILED'} ${r.name}: ${r.detail}`));
  // Last step: `podwire doctor` in every node (informational: the rows decide the exit code).
  for (const d of state.daemons) {
    const r = await exec(d.ns, [process.execPath, PODWIRE_CLI, 'doctor', '--json', '--socket', d.socket, '--cni-conf-dir', path.join(d.dir, 'net.d')], { timeoutMs: 60_000 });
    log(doctorSummaryLine(d.node, r.exitCode, r.stdout, r.stderr));
  }
  return { state, rows };
}

async function startServer(state: LabState, save: () => void, ns: string, name: string, argv: string[], logFile: string): Promise<void> {
  mkdirSync(path.dirname(logFile), { recursive: true });
  const rec = { pod: name, ns, pid: undefined as number | undefined, log: logFile };
  state.servers.push(rec);
  save();
  rec.pid = spawnDetached(ns, argv, logFile);
  save();
}

function cniAdd(d: DaemonRecord, conf: Conflist, pod: PodRecord, wantIp: string): Promise<ExecResult & { json?: Record<string, unknown> }> {
  const env: Record<string, string> = {
    CNI_COMMAND: 'ADD',
    CNI_CONTAINERID: pod.containerId,
    CNI_NETNS: netnsPath(pod.ns),
    CNI_IFNAME: 'eth0',
    CNI_PATH: path.join(d.dir, 'cni-bin'),
    // As kubelet/containerd pass them; IP= asks host-local-style IPAM for the Pod's status.podIP.
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${pod.namespace};K8S_POD_NAME=${pod.name};K8S_POD_INFRA_CONTAINER_ID=${pod.containerId};IP=${wantIp}`,
    PODWIRE_CONTROL_SOCKET: d.socket,
  };
  return exec(d.ns, [path.join(d.dir, 'cni-bin', 'podwire')], { env, input: pluginConfig(conf, 0), timeoutMs: 30_000 }).then((r) => {
    let json: Record<string, unknown> | undefined;
    try {
      json = JSON.parse(r.stdout) as Record<string, unknown>;
    } catch {
      /* not JSON */
    }
    return { ...r, json };
  });
}

export function labContext(state: LabState, spec: Pick<LabSpec, 'services' | 'configMaps'>, components: ReadonlySet<Feature>): LabContext {
  const pod = (name: string): PodRecord => {
    const p = state.pods.find((x) => x.name === name);
    if (!p) throw new Error(`no pod ${name} in the lab`);
    return p;
  };
  const podwireArgv = (argv: readonly string[]): string[] => [process.execPath, PODWIRE_CLI, ...argv];
  return {
    state,
    services: spec.services,
    configMaps: spec.configMaps,
    outside: state.outside,
    components,
    client: pod(state.client),
    pod,
    node: (name) => {
      const n = state.nodes.find((x) => x.name === name);
      if (!n) throw new Error(`no node ${name} in the lab`);
      return n;
    },
    execInPod: (p, argv, o) => exec(p.ns, argv, { timeoutMs: o?.timeoutMs ?? 15_000, ...(o?.input !== undefined ? { input: o.input } : {}) }),
    execIn: (ns, argv, o) => exec(ns, argv, { timeoutMs: o?.timeoutMs ?? 15_000, ...(o?.input !== undefined ? { input: o.input } : {}) }),
    execCommand: (p, argv) => `${labCmd(state.stateDir, `exec ${p.name}`)} -- ${argv.map(shq).join(' ')}`,
    statusCommand: (n) => {
      const d = state.daemons.find((x) => x.node === n.name)!;
      return `${process.cwd() === REPO_ROOT ? 'bin/podwire' : PODWIRE_CLI} status --socket ${shq(d.socket)}`;
    },
    podwire: (argv) => exec(null, podwireArgv(argv), { timeoutMs: 15_000 }),
  };
}

export function summary(state: LabState, rows: RunRowsResult): string {
  const out = [formatRows(rows.results), ''];
  for (const s of rows.skipped) out.push(`not checked yet: ${s.group} (${s.reason})`);
  const features = ['overlay', 'proxy', 'dns'] as const;
  const absent = features.filter((f) => !state.components.includes(f));
  // The overlay's rows are the cross-node pod ↔ pod rows (core), which run over it when it is there.
  const noRows = features.filter((f) => f !== 'overlay' && state.components.includes(f) && !ROW_GROUPS.some((g) => g.requires === f));
  if (absent.length) out.push(`podwired components not built yet, so no rows for them: ${absent.join(', ')}`);
  if (noRows.length) out.push(`podwired components present but with no rows in src/lab/rows/ yet: ${noRows.join(', ')}`);
  if (!state.outside) out.push('not checked: NodePort from outside, egress masquerade (the topology has no `outside`)');
  if (!state.dnsServers?.length) out.push('not checked: the stub domain (the topology has no `dnsServers`)');
  if (state.fallbackRoutes.length) out.push('cross-node rows ran over routes the lab added itself ([lab fallback routes]): podwired has no overlay component yet');
  const failed = rows.results.filter((r) => r.status === 'FAILED').length;
  out.push(`${rows.results.length - failed}/${rows.results.length} rows ok${failed ? `, ${failed} FAILED` : ''}`);
  out.push('');
  out.push('The lab stays up. Explore it:');
  out.push(`  ${labCmd(state.stateDir, 'status')}`);
  out.push(`  ${labCmd(state.stateDir, `exec ${state.client}`)} -- ip -4 addr`);
  const other = state.pods.find((p) => p.name !== state.client && p.servers.some((s) => s.kind === 'http'));
  if (other) out.push(`  ${labCmd(state.stateDir, `exec ${state.client}`)} -- curl -s http://${other.ip}:${other.servers.find((s) => s.kind === 'http')!.port}/`);
  const byName = rows.results.map((r) => /^Service by name: (http:\/\/\S+)/.exec(r.name)?.[1]).find((u) => u);
  if (byName) out.push(`  ${labCmd(state.stateDir, `exec ${state.client}`)} -- curl -s ${byName}   (a Service by name, through the node-local DNS)`);
  const nodePort = rows.results.find((r) => r.name.startsWith('NodePort from outside'));
  if (nodePort) out.push(`  ${nodePort.command}   (a NodePort from "the internet")`);
  out.push('Tear it down:');
  out.push(`  ${labCmd(state.stateDir, 'down')}`);
  return out.join('\n') + '\n';
}

export { labCmd };
