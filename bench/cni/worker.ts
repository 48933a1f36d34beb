/**
 * Runs inside the lab's node namespace (started by run.ts with `ip netns exec`), so the
 * plugins it spawns run there the way a container runtime runs them (CNI_* env + stdin,
 * exec'd in the node namespace), with no per-call namespace-entry cost for any of them.
 * Prints one JSON document (WorkerResult) on stdout.
 */
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';

export interface PluginSpec {
  name: string;
  file: string;
  env: Record<string, string>;
  /** The network config on stdin (text, exactly as the runtime would pass it). */
  conf: string;
  pods: string[];
}

export interface WorkerInput {
  plugins: PluginSpec[];
  parallel: number;
  rounds: number;
}

export interface Failure {
  command: string;
  pod: number;
  round: number;
  exitCode: number | null;
  /** The CNI error code from the plugin's stdout, when it printed one. */
  code: number | undefined;
  out: string;
}

export interface PhaseTimes {
  /** Times of successful calls only: a failed call's time says nothing about the plugin. */
  add: number[];
  del: number[];
  /** The same times per round (serial mode only), for the per-round ratios. */
  addByRound?: number[][];
  /** Concurrent: wall-clock totals of the ADD and DEL phases. Serial: the sum of the plugin's call times (its calls are interleaved with the others'). */
  addTotal: number;
  delTotal: number;
  failures: Failure[];
}

export type WorkerResult = Record<string, { serial: PhaseTimes; concurrent: PhaseTimes; warmup: Failure[] }>;

interface CallResult {
  ms: number;
  ok: boolean;
  exitCode: number | null;
  out: string;
}

function call(p: PluginSpec, command: string, pod: string, id: string): Promise<CallResult> {
  return new Promise((resolveCall) => {
    const t0 = performance.now();
    const child = spawn(p.file, [], {
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        CNI_COMMAND: command,
        CNI_CONTAINERID: id,
        CNI_NETNS: `/run/netns/${pod}`,
        CNI_IFNAME: 'eth0',
        CNI_PATH: '/usr/lib/cni',
        ...p.env,
      },
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.on('error', (e) => resolveCall({ ms: performance.now() - t0, ok: false, exitCode: null, out: `spawn ${p.file}: ${e.message}` }));
    child.on('close', (code) => {
      const ms = performance.now() - t0;
      // ADD must print a result with at least one IP; DEL prints nothing. Exit 0 alone is not success.
      const ok = code === 0 && (command !== 'ADD' || /"ips"\s*:\s*\[\s*\{/.test(out));
      resolveCall({ ms, ok, exitCode: code, out });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(p.conf);
  });
}

function failure(command: string, pod: number, round: number, r: CallResult): Failure {
  let code: number | undefined;
  try {
    const j = JSON.parse(r.out) as { code?: unknown };
    if (typeof j.code === 'number') code = j.code;
  } catch {
    /* not JSON */
  }
  return { command, pod, round, exitCode: r.exitCode, code, out: r.out.slice(0, 300) };
}

async function phase(p: PluginSpec, command: string, width: number, times: number[], failures: Failure[], round: number): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < p.pods.length) {
        const i = next++;
        const r = await call(p, command, p.pods[i]!, `bench-${round}-${i}`);
        if (r.ok) times.push(r.ms);
        else failures.push(failure(command, i, round, r));
      }
    }),
  );
  return performance.now() - t0;
}

function empty(): PhaseTimes {
  return { add: [], del: [], addTotal: 0, delTotal: 0, failures: [] };
}

/**
 * Serial, interleaved: pod by pod, each plugin's call right after the other's (the order
 * rotating with the pod), so all of them see the same moment of a shared machine's load;
 * ADDs of every pod first, then the DELs. Returns the wall-clock total per plugin.
 */
async function serialInterleaved(plugins: PluginSpec[], command: string, result: WorkerResult, round: number): Promise<Map<string, number>> {
  const totals = new Map<string, number>(plugins.map((p) => [p.name, 0]));
  const pods = Math.min(...plugins.map((p) => p.pods.length));
  for (let i = 0; i < pods; i++) {
    for (let k = 0; k < plugins.length; k++) {
      const p = plugins[(i + k) % plugins.length]!;
      const t = result[p.name]!.serial;
      // The container ID names the host veth, and all plugins' veths share the node namespace.
      const r = await call(p, command, p.pods[i]!, `bench-s${round}-${plugins.indexOf(p)}-${i}`);
      totals.set(p.name, totals.get(p.name)! + r.ms);
      if (r.ok) {
        (command === 'ADD' ? t.add : t.del).push(r.ms);
        if (command === 'ADD') t.addByRound![round - 1]!.push(r.ms);
      } else t.failures.push(failure(command, i, round, r));
    }
  }
  return totals;
}

export async function runWorker(input: WorkerInput): Promise<WorkerResult> {
  const result: WorkerResult = {};
  for (const p of input.plugins) result[p.name] = { serial: { ...empty(), addByRound: [] }, concurrent: empty(), warmup: [] };
  // Warm-up: one ADD/DEL each (page cache, code caches, bridge creation) outside the measurements.
  for (const p of input.plugins) {
    for (const command of ['ADD', 'DEL']) {
      const r = await call(p, command, p.pods[0]!, 'warmup');
      if (!r.ok) result[p.name]!.warmup.push(failure(command, 0, 0, r));
    }
  }
  let round = 0;
  for (let r = 0; r < input.rounds; r++) {
    for (const p of input.plugins) result[p.name]!.serial.addByRound!.push([]);
    const add = await serialInterleaved(input.plugins, 'ADD', result, r + 1);
    const del = await serialInterleaved(input.plugins, 'DEL', result, r + 1);
    for (const p of input.plugins) {
      result[p.name]!.serial.addTotal += add.get(p.name)!;
      result[p.name]!.serial.delTotal += del.get(p.name)!;
    }
    // Concurrent: one plugin at a time (their calls would compete with each other otherwise);
    // the order alternates between rounds so no plugin always runs first.
    const order = r % 2 === 0 ? input.plugins : [...input.plugins].reverse();
    for (const p of order) {
      const t = result[p.name]!.concurrent;
      round++;
      t.addTotal += await phase(p, 'ADD', input.parallel, t.add, t.failures, round);
      t.delTotal += await phase(p, 'DEL', input.parallel, t.del, t.failures, round);
    }
  }
  return result;
}

if (require.main === module && !process.env.TAP) {
  const input = JSON.parse(process.argv[2]!) as WorkerInput;
  runWorker(input).then(
    (r) => {
      process.stdout.write(JSON.stringify(r));
      process.exit(0);
    },
    (e: unknown) => {
      process.stderr.write(String(e));
      process.exit(1);
    },
  );
}
