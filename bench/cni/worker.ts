/**
 * Runs inside the lab's node namespace (started by run.ts with `ip netns exec`), so the
 * plugins it spawns run there with no per-call namespace-entry cost for either side.
 * Prints one JSON document (WorkerResult) on stdout.
 */
import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';

export interface PluginSpec {
  name: string;
  file: string;
  env: Record<string, string>;
  conf: Record<string, unknown>;
  pods: string[];
}

export interface WorkerInput {
  plugins: PluginSpec[];
  parallel: number;
  rounds: number;
}

export interface PhaseTimes {
  add: number[];
  del: number[];
  /** Wall-clock totals of the ADD and DEL phases. */
  addTotal: number;
  delTotal: number;
  failures: string[];
}

export type WorkerResult = Record<string, { serial: PhaseTimes; concurrent: PhaseTimes }>;

function call(p: PluginSpec, command: string, pod: string, id: string): Promise<{ ms: number; ok: boolean; out: string }> {
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
    child.on('close', (code) => resolveCall({ ms: performance.now() - t0, ok: code === 0, out }));
    child.stdin.end(JSON.stringify(p.conf));
  });
}

async function phase(p: PluginSpec, command: string, width: number, times: number[], failures: string[], round: number): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < p.pods.length) {
        const i = next++;
        const r = await call(p, command, p.pods[i]!, `bench-${round}-${i}`);
        times.push(r.ms);
        if (!r.ok) failures.push(`${command} ${i}: ${r.out.slice(0, 300)}`);
      }
    }),
  );
  return performance.now() - t0;
}

function empty(): PhaseTimes {
  return { add: [], del: [], addTotal: 0, delTotal: 0, failures: [] };
}

export async function runWorker(input: WorkerInput): Promise<WorkerResult> {
  const result: WorkerResult = {};
  for (const p of input.plugins) result[p.name] = { serial: empty(), concurrent: empty() };
  // Warm-up: one ADD/DEL each (page cache, bridge creation) outside the measurements.
  for (const p of input.plugins) {
    await call(p, 'ADD', p.pods[0]!, 'warmup');
    await call(p, 'DEL', p.pods[0]!, 'warmup');
  }
  let round = 0;
  for (let r = 0; r < input.rounds; r++) {
    // Alternate the order between rounds so neither plugin always runs first.
    const order = r % 2 === 0 ? input.plugins : [...input.plugins].reverse();
    for (const [mode, width] of [['serial', 1], ['concurrent', input.parallel]] as const) {
      for (const p of order) {
        const t = result[p.name]![mode];
        round++;
        t.addTotal += await phase(p, 'ADD', width, t.add, t.failures, round);
        t.delTotal += await phase(p, 'DEL', width, t.del, t.failures, round);
      }
    }
  }
  return result;
}

if (require.main === module && !process.env.TAP) {
  const input = JSON.parse(process.argv[2]!) as WorkerInput;
  void join;
  void resolve;
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
