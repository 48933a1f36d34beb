/**
 * One bench/sources run of the REAL daemon: `node [flags] bin/podwired` as a child
 * process against the fixture API server (forked, IPC-driven), everything in a temp dir.
 * The orchestrator (run.ts) starts this process inside a network namespace of its own,
 * so the fixture, the daemon and its 127.0.0.1 listeners never touch the root namespace.
 *
 * Measures from outside, as an operator would:
 *   - spawn → source synced (the /readyz body stops saying "not synced") and
 *     spawn → /readyz 200, both by a bounded 50 ms poll;
 *   - that the daemon really holds every Service, EndpointSlice and Node
 *     (podwire_source_objects on /metrics must equal what the fixture loaded);
 *   - VmRSS from /proc/<pid>/status right after ready and after S seconds idle, and
 *     VmHWM (the peak) at the end; the daemon's own heap gauges for detail;
 *   - event → handler latency of single EndpointSlice changes: bench clock before the
 *     fixture write → first /metrics scrape whose podwire_source_events_total
 *     {kind="EndpointSlice",type="update"} went up. Scrapes run back to back, so each
 *     sample is an upper bound that includes one scrape (the scrape p50 is reported).
 * Prints one `RESULT {json}` line. Every wait is bounded; the daemon and the fixture
 * are killed on exit, on failure and on SIGINT/SIGTERM.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fixtureCaller } from '../../test-netns/fixtures/apiserver/ipc-client';
import { median, writeManifestFolder, type ManifestFolder } from './manifests';

export interface DaemonRunResult {
  kind: 'daemon';
  /** Where its state came from: the fixture API server, or a manifest folder (--manifests). */
  source: 'api' | 'manifests';
  date: string;
  node: string;
  /** How it was started, and the node flags read back from /proc/<pid>/cmdline. */
  launch: string;
  nodeFlags: string;
  /** The components it ran (`--enable`), or 'all' (its default). */
  components: string;
  layout: { services: number; endpointsPerService: number; endpointSlices: number; endpoints: number; nodes: number; namespaces: number };
  spawnToSyncedMs: number;
  spawnToReadyMs: number;
  objects: { Service: number; EndpointSlice: number; Node: number; Namespace: number };
  rss: { afterReadyMb: number; afterIdleMb: number; peakMb: number; idleSeconds: number };
  heap: { usedMb: number; totalMb: number } | null;
  eventLatencyMs: { changes: number; p50: number; p90: number; max: number; scrapeP50: number };
  /** Manifest mode: write of one changed file → first /metrics scrape counting the Service update. */
  manifestLatencyMs?: { rounds: number; median: number; max: number; scrapeP50: number; files: number; megabytes: number };
  exitCode: number | null;
  rssTargetMb: number;
  judgedRssMb: number;
  rssWithinTarget: boolean;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const round = (n: number): number => Math.round(n * 100) / 100;

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** VmRSS / VmHWM of a process, in MB (the kernel reports kB). */
function procMemoryMb(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
    if (!m) throw new Error(`/proc/${pid}/status has no ${field}`);
    return Number(m[1]);
  };
  return { rss: Math.round((kb('VmRSS') / 1024) * 10) / 10, hwm: Math.round((kb('VmHWM') / 1024) * 10) / 10 };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** GET http://127.0.0.1:port/path; rejects on connection errors and after timeoutMs. */
function httpGet(port: number, path: string, timeoutMs = 5000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET', agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** The value of one sample in Prometheus text, e.g. metric('podwire_source_objects', {kind: 'Service'}). */
function metric(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)) got[k!] = v!;
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}

export interface DaemonRunOptions {
  services: number;
  endpointsPerService: number;
  /**
   * null: execute bin/podwired itself, as the image and the DaemonSet do (its shebang
   * supplies the node flags); otherwise `node <nodeFlags> bin/podwired`.
   */
  nodeFlags: string[] | null;
  changes: number;
  idleSeconds: number;
  rssTargetMb: number;
  /** bin/podwired and the fixture's main.js. */
  podwiredPath: string;
  fixturePath: string;
  /** podwired's `--enable` (components to run); undefined: its default (every component). */
  enable?: string[];
  /** 'manifests': no API server; podwired reads a folder of `perFile` Services per file (default 'api'). */
  source?: 'api' | 'manifests';
  perFile?: number;
  /** More podwired flags (bench/proxy: `--enable proxy`). */
  extraArgs?: string[];
  /** Nodes the daemon's cache must hold (default: all the fixture loaded; 1 when only its own Node is watched). */
  expectNodes?: number;
}

export async function runDaemon(o: DaemonRunOptions): Promise<DaemonRunResult> {
  const tmp = mkdtempSync(join(tmpdir(), 'pwb-daemon-bench-'));
  const mode = o.source ?? 'api';
  const fixture: ChildProcess | undefined = mode === 'api' ? fork(o.fixturePath, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }) : undefined;
  let daemon: ChildProcess | undefined;
  let daemonExit: Promise<number | null> | undefined;
  const onSignal = (sig: NodeJS.Signals): void => {
    daemon?.kill('SIGKILL');
    fixture?.kill('SIGKILL');
    rmSync(tmp, { recursive: true, force: true });
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const call = fixture ? fixtureCaller(fixture) : async (): Promise<Record<string, unknown>> => ({});

  const logPath = join(tmp, 'podwired.log');
  try {
    const shape = { services: o.services, endpointsPerService: o.endpointsPerService, nodes: 100, namespaces: 20 };
    let counts: { services: number; endpointSlices: number; endpoints: number; nodes: number };
    let folder: ManifestFolder | undefined;
    const kubeconfig = join(tmp, 'kubeconfig');
    if (mode === 'api') {
      await call({}); // ready
      const loaded = await call({ cmd: 'load', shape }, 300_000);
      counts = loaded.counts as typeof counts;
      await call({ cmd: 'kubeconfig', path: kubeconfig });
    } else {
      folder = writeManifestFolder(join(tmp, 'manifests'), { ...shape, perFile: o.perFile ?? 20 });
      counts = folder.counts;
    }

    const [healthPort, metricsPort, dnsPort] = [await freePort(), await freePort(), await freePort()];
    // An explicit, empty config file: a /etc/podwire/config.yaml on this machine must not leak in.
    const configFile = join(tmp, 'config.yaml');
    writeFileSync(configFile, '# bench/sources: everything comes from flags\n');
    for (const d of ['state', 'net.d', 'bin']) mkdirSync(join(tmp, d));
    const args = [
      '--config', configFile,
      '--node-name', 'node-0', // the fixture's node-0 has podCIDR 10.244.0.0/24, so the CNI installer can finish
      ...(mode === 'api' ? ['--kubeconfig', kubeconfig] : ['--manifests', folder!.dir]),
      '--health-listen', `127.0.0.1:${healthPort}`,
      '--metrics-listen', `127.0.0.1:${metricsPort}`,
      '--dns-listen', `127.0.0.1:${dnsPort}`,
      '--control-socket', join(tmp, 'podwire.sock'),
      '--state-dir', join(tmp, 'state'),
      '--cni-conf-dir', join(tmp, 'net.d'),
      '--cni-bin-dir', join(tmp, 'bin'),
      ...(o.enable ?? []).flatMap((c) => ['--enable', c]),
      ...(o.extraArgs ?? []),
    ];
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('PODWIRE_') && k !== 'NODE_OPTIONS') env[k] = v;
    const logFd = openSync(logPath, 'w');
    const t0 = performance.now();
    daemon =
      o.nodeFlags === null
        ? spawn(o.podwiredPath, args, { stdio: ['ignore', logFd, logFd], env })
        : spawn(process.execPath, [...o.nodeFlags, o.podwiredPath, ...args], { stdio: ['ignore', logFd, logFd], env });
    closeSync(logFd);
    const child = daemon;
    daemonExit = new Promise((r) => child.once('exit', (code) => r(code)));
    let exited = false;
    void daemonExit.then(() => (exited = true));
    const pid = child.pid!;
    // `env -S` in the shebang execs node in place, so pid is the daemon either way.
    // The node flags actually in effect, from the daemon's own command line.
    let nodeFlags = '';
    for (let i = 0; i < 100 && !exited; i++) {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      const script = argv.findIndex((a) => a.endsWith('bin/podwired'));
      if (script > 0 && /(^|\/)node$/.test(argv[0]!)) {
        nodeFlags = argv.slice(1, script).join(' ');
        break;
      }
      await sleep(10);
    }

    // spawn → synced and → ready: bounded poll of /readyz every 50 ms.
    let syncedAt: number | undefined;
    let readyAt: number | undefined;
    let lastBody = '';
    for (let i = 0; i < 6000 && readyAt === undefined; i++) {
      if (exited) throw new Error(`podwired exited before ready`);
      try {
        const r = await httpGet(healthPort, '/readyz', 2000);
        lastBody = r.body;
        const now = performance.now() - t0;
        if (syncedAt === undefined && (r.status === 200 || !r.body.includes('not synced'))) syncedAt = now;
        if (r.status === 200) readyAt = now;
      } catch {
        // not listening yet
      }
      if (readyAt === undefined) await sleep(50);
    }
    if (readyAt === undefined || syncedAt === undefined) throw new Error(`podwired not ready within 300 s; last /readyz: ${lastBody.trim()}`);
    const afterReady = procMemoryMb(pid);

    // The daemon must really hold the whole cluster: a run that loaded nothing cannot pass.
    const m0 = (await httpGet(metricsPort, '/metrics')).body;
    const objects = {
      Service: metric(m0, 'podwire_source_objects', { kind: 'Service' }) ?? -1,
      EndpointSlice: metric(m0, 'podwire_source_objects', { kind: 'EndpointSlice' }) ?? -1,
      Node: metric(m0, 'podwire_source_objects', { kind: 'Node' }) ?? -1,
      Namespace: metric(m0, 'podwire_source_objects', { kind: 'Namespace' }) ?? -1,
    };
    if (metric(m0, 'podwire_source_synced') !== 1) throw new Error('podwire_source_synced is not 1 after /readyz 200');
    // With only some components enabled (o.enable) the source may watch just this node's Node
    // (no component needs the others); Services and EndpointSlices must always all be there.
    const nodesOk = objects.Node === counts.nodes || (o.enable !== undefined && objects.Node === 1) || objects.Node === o.expectNodes;
    if (objects.Service !== counts.services || objects.EndpointSlice !== counts.endpointSlices || !nodesOk) {
      throw new Error(`daemon cache mismatch: metrics say ${JSON.stringify(objects)}, fixture loaded ${JSON.stringify(counts)}`);
    }

    // Event latency, observed from outside. One warm-up change (not counted) proves the
    // EndpointSlice watch is open, so no timed change is replayed after a reconnect.
    const updates = async (): Promise<{ n: number; ms: number }> => {
      const t = performance.now();
      const body = (await httpGet(metricsPort, '/metrics')).body;
      return { n: metric(body, 'podwire_source_events_total', { kind: 'EndpointSlice', type: 'update' }) ?? 0, ms: performance.now() - t };
    };
    const latencies: number[] = [];
    const scrapes: number[] = [];
    let manifestLatencyMs: DaemonRunResult['manifestLatencyMs'];
    if (folder !== undefined) {
      // Manifest mode: write one changed file, then scrape until the Service update is counted.
      const serviceUpdates = async (): Promise<{ n: number; ms: number }> => {
        const t = performance.now();
        const body = (await httpGet(metricsPort, '/metrics')).body;
        return { n: metric(body, 'podwire_source_events_total', { kind: 'Service', type: 'update' }) ?? 0, ms: performance.now() - t };
      };
      const rounds = Math.max(1, Math.min(o.changes, 51));
      const ms: number[] = [];
      const mScrapes: number[] = [];
      for (let i = -1; i < rounds; i++) {
        const before = (await serviceUpdates()).n;
        const t = folder.change(i + 1).writtenAt;
        let seen = false;
        for (let j = 0; j < 5000 && performance.now() - t < 10_000; j++) {
          const u = await serviceUpdates();
          mScrapes.push(u.ms);
          if (u.n > before) {
            seen = true;
            break;
          }
        }
        if (!seen) throw new Error(`manifest change ${i} not counted by the daemon within 10 s`);
        if (i >= 0) ms.push(performance.now() - t);
        await sleep(50);
      }
      manifestLatencyMs = { rounds: ms.length, median: round(median(ms)), max: round(Math.max(...ms)), scrapeP50: round(median(mScrapes)), files: folder.files, megabytes: round(folder.bytes / 1048576) };
    }
    for (let i = -1; folder === undefined && i < o.changes; i++) {
      const before = (await updates()).n;
      const t = performance.now();
      await call({ cmd: 'touchSlice', index: (i + 1) * 7919 });
      let seen = false;
      for (let j = 0; j < 5000 && performance.now() - t < 10_000; j++) {
        const u = await updates();
        scrapes.push(u.ms);
        if (u.n > before) {
          seen = true;
          break;
        }
      }
      if (!seen) throw new Error(`EndpointSlice change ${i} not counted by the daemon within 10 s`);
      if (i >= 0) latencies.push(performance.now() - t);
    }

    // Idle (no scrapes), then sample again.
    await sleep(o.idleSeconds * 1000);
    const afterIdle = procMemoryMb(pid);
    const m1 = (await httpGet(metricsPort, '/metrics')).body;
    const heapUsed = metric(m1, 'podwire_nodejs_heap_size_used_bytes');
    const heapTotal = metric(m1, 'podwire_nodejs_heap_size_total_bytes');

    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    const exitCode = await daemonExit;
    clearTimeout(timer);

    const sorted = [...latencies].sort((a, b) => a - b);
    const sortedScrapes = [...scrapes].sort((a, b) => a - b);
    // Judged conservatively: the larger of the two steady samples (just ready, and idle).
    const judged = Math.max(afterReady.rss, afterIdle.rss);
    return {
      kind: 'daemon',
      source: mode,
      manifestLatencyMs,
      date: new Date().toISOString(),
      node: process.version,
      launch: o.nodeFlags === null ? 'bin/podwired (shebang)' : `node ${[...o.nodeFlags, 'bin/podwired'].join(' ')}`,
      components: o.enable ? o.enable.join(',') : 'all',
      nodeFlags,
      layout: { services: o.services, endpointsPerService: o.endpointsPerService, endpointSlices: counts.endpointSlices, endpoints: counts.endpoints, nodes: counts.nodes, namespaces: 20 },
      spawnToSyncedMs: Math.round(syncedAt),
      spawnToReadyMs: Math.round(readyAt),
      objects,
      rss: { afterReadyMb: afterReady.rss, afterIdleMb: afterIdle.rss, peakMb: afterIdle.hwm, idleSeconds: o.idleSeconds },
      heap: heapUsed !== undefined && heapTotal !== undefined ? { usedMb: round(heapUsed / 1048576), totalMb: round(heapTotal / 1048576) } : null,
      eventLatencyMs: { changes: sorted.length, p50: round(percentile(sorted, 50)), p90: round(percentile(sorted, 90)), max: round(sorted.at(-1) ?? NaN), scrapeP50: round(percentile(sortedScrapes, 50)) },
      exitCode,
      rssTargetMb: o.rssTargetMb,
      judgedRssMb: judged,
      rssWithinTarget: judged <= o.rssTargetMb,
    };
  } catch (err) {
    try {
      const log = readFileSync(logPath, 'utf8');
      process.stderr.write(`--- podwired log (tail) ---\n${log.slice(-3000)}\n`);
    } catch {
      // no log yet
    }
    throw err;
  } finally {
    if (daemon && daemon.exitCode === null && daemon.signalCode === null) {
      daemon.kill('SIGKILL');
      await Promise.race([daemonExit, sleep(5000)]);
    }
    if (fixture) {
      if (fixture.connected) fixture.send({ cmd: 'exit' });
      const fixtureExit = new Promise((r) => (fixture.exitCode !== null || fixture.signalCode !== null ? r(null) : fixture.once('exit', r)));
      const timer = setTimeout(() => fixture.kill('SIGKILL'), 5000);
      await fixtureExit;
      clearTimeout(timer);
    }
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    rmSync(tmp, { recursive: true, force: true });
  }
}
