/**
 * Benchmark: the Kubernetes state source at 10,000 Services and 100,000 endpoints.
 *
 *   node dist/bench/sources/run.js [--services N] [--endpoints-per-service M] [--changes K] [--idle-seconds S] [--page-size P]
 *
 * Layout (default): 10,000 Services × 10 endpoints, one EndpointSlice per Service
 * (10,000 slices, 100,000 endpoints), as the EndpointSlice controller lays out
 * 10-replica Services; plus 100 Nodes and 20 Namespaces. `--services 1000
 * --endpoints-per-service 100` gives the other layout (1,000 full slices of 100).
 *
 * The orchestrator runs one process per configuration (node defaults; the flag we
 * recommend for podwired, --max-semi-space-size=4; client-node imported in-process),
 * because RSS is per process. Each run forks the fake API server as its own child, so
 * RSS is the source's alone, and measures: initial sync time (start → hasSynced), RSS
 * and heap after sync, after a forced GC, and after S seconds idle + GC; and
 * event-to-callback latency of single EndpointSlice changes (server write → our
 * handler, one change at a time; p50/p90/max over K changes).
 * Writes bench/results/sources.json. Target: RSS ≤ 150 MB (judged after a forced GC).
 * Bounded: every wait has a timeout; K ≤ 1000.
 */
import { fork } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { silentLogger } from '../../src/common';
import { createKubernetesSource } from '../../src/k8s';

const RSS_TARGET_MB = 150;

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 0) throw new Error(`--${name} expects a non-negative integer`);
  return v;
}

const mb = (n: number): number => Math.round((n / 1024 / 1024) * 10) / 10;

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function single(): Promise<void> {
  const idleMs = arg('idle-seconds', 10) * 1000;
  const services = arg('services', 10_000);
  const endpointsPerService = arg('endpoints-per-service', 10);
  const changes = Math.min(arg('changes', 50), 1000);
  const rssStart = process.memoryUsage().rss;

  const fixturePath = join(__dirname, '..', '..', 'test-netns', 'fixtures', 'apiserver', 'main.js');
  const child = fork(fixturePath, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const pending: ((m: Record<string, unknown>) => void)[] = [];
  child.on('message', (m) => pending.shift()?.(m as Record<string, unknown>));
  const call = (msg: Record<string, unknown>, timeoutMs = 120_000): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`fixture did not answer ${String(msg.cmd)}`)), timeoutMs);
      pending.push((m) => {
        clearTimeout(timer);
        if (m.ok === false) reject(new Error(String(m.error)));
        else resolve(m);
      });
      if (msg.cmd !== undefined) child.send(msg);
    });
  const tmp = mkdtempSync(join(tmpdir(), 'pws-bench-'));
  try {
    await call({}); // ready
    const loaded = await call({ cmd: 'load', shape: { services, endpointsPerService, nodes: 100, namespaces: 20 } }, 300_000);
    const kubeconfig = join(tmp, 'kubeconfig');
    await call({ cmd: 'kubeconfig', path: kubeconfig });
    const counts = loaded.counts as { services: number; endpointSlices: number; endpoints: number; nodes: number };

    const credentials = process.argv.includes('--in-process') ? 'in-process' : 'helper';
    const src = createKubernetesSource({
      kubeconfigPath: kubeconfig,
      nodeName: 'node-0',
      logger: silentLogger,
      credentials,
      tuning: { pageSize: arg('page-size', 500) },
    });
    const latencies: number[] = [];
    let waiting: ((key: string) => void) | undefined;
    src.onEvent((e) => {
      if (e.type !== 'update' || e.kind !== 'EndpointSlice') return;
      const sent = Number(e.current.meta.annotations['bench/sent-at']);
      if (Number.isFinite(sent)) latencies.push(performance.timeOrigin + performance.now() - sent);
      waiting?.(e.current.meta.key);
    });
    const ac = new AbortController();
    const t0 = performance.now();
    await src.start(ac.signal);
    await src.waitForSync(AbortSignal.timeout(300_000));
    const syncMs = performance.now() - t0;
    const afterSync = process.memoryUsage();
    const gc = (globalThis as { gc?: () => void }).gc;
    let afterGc: NodeJS.MemoryUsage | undefined;
    if (gc) {
      gc();
      gc();
      afterGc = process.memoryUsage();
    }
    const cached = {
      services: src.list('Service').length,
      endpointSlices: src.list('EndpointSlice').length,
      endpoints: src.list('EndpointSlice').reduce((n, s) => n + s.endpoints.length, 0),
    };
    if (cached.services !== counts.services || cached.endpoints !== counts.endpoints) {
      throw new Error(`cache mismatch: ${JSON.stringify(cached)} vs ${JSON.stringify(counts)}`);
    }

    // Wait for the EndpointSlice watch to be open before timing changes: the first
    // change must not be replayed from history after a reconnect.
    for (let i = 0; i < 500 && src.stats().some((s) => s.watches === 0); i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 200));
    for (let i = 0; i < changes; i++) {
      const seen = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`change ${i} not delivered within 10 s`)), 10_000);
        waiting = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      await call({ cmd: 'touchSlice', index: i * 7919 });
      await seen;
    }
    waiting = undefined;
    // Let V8's memory reducer run (it shrinks the heap after allocation stops).
    await new Promise((r) => setTimeout(r, idleMs));
    gc?.();
    const afterIdle = process.memoryUsage();
    const sorted = [...latencies].sort((a, b) => a - b);
    ac.abort();
    await src.stopped();

    const rssMb = mb((afterGc ?? afterSync).rss);
    const result = {
      date: new Date().toISOString(),
      node: process.version,
      nodeFlags: process.execArgv.join(' '),
      credentials,
      layout: { services, endpointsPerService, endpointSlices: counts.endpointSlices, endpoints: counts.endpoints, nodes: counts.nodes, namespaces: 20 },
      initialSyncMs: Math.round(syncMs),
      rssStartMb: mb(rssStart),
      afterSync: { rssMb: mb(afterSync.rss), heapUsedMb: mb(afterSync.heapUsed), heapTotalMb: mb(afterSync.heapTotal) },
      afterGc: afterGc ? { rssMb: mb(afterGc.rss), heapUsedMb: mb(afterGc.heapUsed), heapTotalMb: mb(afterGc.heapTotal) } : null,
      afterIdle: { seconds: idleMs / 1000, rssMb: mb(afterIdle.rss), heapUsedMb: mb(afterIdle.heapUsed), heapTotalMb: mb(afterIdle.heapTotal) },
      eventLatencyMs: { changes: sorted.length, p50: round(percentile(sorted, 50)), p90: round(percentile(sorted, 90)), max: round(sorted.at(-1) ?? NaN) },
      rssTargetMb: RSS_TARGET_MB,
      rssWithinTarget: rssMb <= RSS_TARGET_MB,
    };
    process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
  } finally {
    child.send({ cmd: 'exit' });
    const exited = new Promise((r) => child.once('exit', r));
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
    rmSync(tmp, { recursive: true, force: true });
  }
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}

interface Result {
  nodeFlags: string;
  credentials: string;
  layout: { services: number; endpointsPerService: number; endpointSlices: number; endpoints: number };
  initialSyncMs: number;
  rssStartMb: number;
  afterSync: { rssMb: number; heapUsedMb: number };
  afterGc: { rssMb: number; heapUsedMb: number } | null;
  afterIdle: { seconds: number; rssMb: number; heapUsedMb: number };
  eventLatencyMs: { changes: number; p50: number; p90: number; max: number };
  rssWithinTarget: boolean;
}

/** The daemon's recommended V8 flag (see docs/sources.md): a small young generation. */
const CONFIGS: { name: string; flags: string[]; extra: string[] }[] = [
  { name: 'node defaults, helper credentials', flags: ['--expose-gc'], extra: [] },
  { name: '--max-semi-space-size=4, helper credentials', flags: ['--expose-gc', '--max-semi-space-size=4'], extra: [] },
  { name: 'node defaults, client-node in-process', flags: ['--expose-gc'], extra: ['--in-process'] },
];

/** Runs each configuration in its own process (RSS is per process) and prints a table. */
async function orchestrate(): Promise<void> {
  const passThrough = process.argv.slice(2);
  const results: (Result & { config: string })[] = [];
  for (const cfg of CONFIGS) {
    const child = fork(__filename, ['--single', ...passThrough, ...cfg.extra], { execArgv: cfg.flags, stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
    let out = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    const line = out.split('\n').find((l) => l.startsWith('RESULT '));
    if (code !== 0 || !line) throw new Error(`bench run "${cfg.name}" failed (exit ${code}): ${out.slice(-500)}`);
    results.push({ config: cfg.name, ...(JSON.parse(line.slice(7)) as Result) });
  }
  const r0 = results[0]!;
  console.log(`bench/sources: Kubernetes source against the fixture API server (${r0.layout.services} Services × ${r0.layout.endpointsPerService} endpoints = ${r0.layout.endpoints} endpoints in ${r0.layout.endpointSlices} EndpointSlices; target RSS ≤ ${RSS_TARGET_MB} MB)`);
  const header = ['configuration', 'sync ms', 'RSS start', 'RSS synced', 'RSS after GC', `RSS idle+GC`, 'heap used', 'p50 ms', 'p90 ms', 'max ms', 'target'];
  const rows = results.map((r) => [
    r.config,
    String(r.initialSyncMs),
    `${r.rssStartMb}`,
    `${r.afterSync.rssMb}`,
    r.afterGc ? `${r.afterGc.rssMb}` : 'n/a',
    `${r.afterIdle.rssMb}`,
    r.afterGc ? `${r.afterGc.heapUsedMb}` : `${r.afterSync.heapUsedMb}`,
    String(r.eventLatencyMs.p50),
    String(r.eventLatencyMs.p90),
    String(r.eventLatencyMs.max),
    r.rssWithinTarget ? 'met' : 'NOT met',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const fmt = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ');
  console.log(fmt(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('-|-'));
  for (const row of rows) console.log(fmt(row));
  console.log(`(MB; latency = server write → our event handler over ${r0.eventLatencyMs.changes} single EndpointSlice changes; RSS target judged after a forced GC)`);
  const out = join(__dirname, '..', '..', '..', 'bench', 'results', 'sources.json');
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify({ date: new Date().toISOString(), node: process.version, rssTargetMb: RSS_TARGET_MB, results }, null, 2)}\n`);
  console.log(`wrote ${out}`);
}

(process.argv.includes('--single') ? single() : orchestrate()).catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
