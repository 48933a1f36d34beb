/**
 * bench/cni: podwire-cni vs the reference bridge + host-local, same run, alternating.
 *   node dist/bench/cni/run.js [--pods 100] [--parallel 4] [--rounds 3] [--out bench/results/cni.json]
 *                              [--prefix pwc-bench] [--inprocess] [--cpu-prof DIR]
 * 100 pods serially and 4-way concurrently per plugin and round; prints ADD and DEL
 * p50/p90/max and totals, the ratios to the reference with each target met or not, and
 * writes JSON to bench/results/ (the shared, gitignored place for bench output).
 * `--prefix` is the lab's namespace prefix (each helper runs in its own).
 */
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { exec, withLab } from '../../test-netns/harness';
import type { PhaseTimes, PluginSpec, WorkerInput, WorkerResult } from './worker';

const ROOT = resolve(__dirname, '..', '..', '..');
const SHIM = join(ROOT, 'native', 'cni-shim', 'build', 'Release', 'podwire-cni-shim');

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

export interface Summary {
  p50: number;
  p90: number;
  max: number;
}
function summary(xs: number[]): Summary {
  return { p50: pct(xs, 50), p90: pct(xs, 90), max: Math.max(...xs) };
}

async function main(): Promise<void> {
  const pods = Number(arg('pods', '100'));
  const parallel = Number(arg('parallel', '4'));
  const rounds = Number(arg('rounds', '3'));
  const out = arg('out', join(ROOT, 'bench', 'results', 'cni.json'));
  const prefix = arg('prefix', 'pwc-bench');
  const withInprocess = process.argv.includes('--inprocess');
  const data = mkdtempSync(join(tmpdir(), 'pwc-bench-'));
  try {
    const result = await withLab(prefix, async (lab) => {
      const host = await lab.addNetns('host');
      const names = ['reference', 'podwire', ...(withInprocess ? ['podwire-inprocess'] : [])];
      const podsOf: Record<string, string[]> = {};
      for (const n of names) {
        podsOf[n] = [];
        for (let i = 0; i < pods; i++) podsOf[n]!.push(await lab.addPod());
      }
      const socket = join(data, 'podwire.sock');
      const base = (type: string, bridge: string, subnet: string, dir: string): Record<string, unknown> => ({
        cniVersion: '1.0.0',
        name: `bench-${bridge}`,
        type,
        bridge,
        isGateway: true,
        isDefaultGateway: true,
        ipMasq: false,
        hairpinMode: true,
        ipam: { type: 'host-local', ranges: [[{ subnet }]], dataDir: join(data, dir) },
      });
      const plugins: PluginSpec[] = [
        { name: 'reference', file: '/usr/lib/cni/bridge', env: {}, conf: base('bridge', 'cni0', '10.244.20.0/24', 'ref'), pods: podsOf.reference! },
        {
          name: 'podwire',
          file: SHIM,
          env: { PODWIRE_CONTROL_SOCKET: socket, PODWIRE_CNI_INPROCESS: '0' },
          conf: base('podwire', 'pw0', '10.244.21.0/24', 'pw'),
          pods: podsOf.podwire!,
        },
      ];
      if (withInprocess) {
        plugins.push({
          name: 'podwire-inprocess',
          file: SHIM,
          env: { PODWIRE_CNI_INPROCESS: '1' },
          conf: base('podwire', 'pw1', '10.244.22.0/24', 'pwi'),
          pods: podsOf['podwire-inprocess']!,
        });
      }
      // --cpu-prof DIR: profile the daemon (a .cpuprofile is written to DIR when it exits).
      const profDir = arg('cpu-prof', '');
      const nodeFlags = profDir ? ['--cpu-prof', '--cpu-prof-dir', resolve(profDir)] : [];
      const daemon = lab.spawn(host, [process.execPath, ...nodeFlags, join(ROOT, 'dist', 'src', 'cni-plugin', 'fastpath', 'serve.js'), socket], {
        env: { PODWIRE_CNI_MAIN: '1', PODWIRE_LOG_LEVEL: 'warn' },
      });
      await daemon.waitForOutput(/listening/, 10_000);
      const input: WorkerInput = { plugins, parallel, rounds };
      const r = await exec(host, [process.execPath, join(__dirname, 'worker.js'), JSON.stringify(input)], { timeoutMs: 590_000 });
      process.stderr.write(daemonCpu(daemon.child.pid));
      if (profDir) await daemon.stop(10_000); // SIGTERM: a clean exit writes the profile
      if (r.exitCode !== 0) throw new Error(`worker failed: ${r.stderr}`);
      return JSON.parse(r.stdout) as WorkerResult;
    });
    report(result, { pods, parallel, rounds }, out);
  } finally {
    rmSync(data, { recursive: true, force: true });
  }
}

/**
 * The daemon's CPU for the whole run (all plugins' phases; it idles during the reference's),
 * per thread, from /proc: where the fast path's CPU goes (JS main thread, libuv pool, the
 * addon's netlink/netns threads). Best effort: empty when /proc cannot be read.
 */
function daemonCpu(pid: number | undefined): string {
  if (pid === undefined) return '';
  try {
    const tick = 100; // USER_HZ on Linux
    const rows: string[] = [];
    let user = 0;
    let sys = 0;
    const byName = new Map<string, { user: number; sys: number; n: number }>();
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const u = Number(f[11]) / tick;
      const s = Number(f[12]) / tick;
      user += u;
      sys += s;
      const e = byName.get(name) ?? { user: 0, sys: 0, n: 0 };
      byName.set(name, { user: e.user + u, sys: e.sys + s, n: e.n + 1 });
    }
    // Threads that already exited are only in the process totals.
    const p = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const pf = p.slice(p.lastIndexOf(')') + 2).split(' ');
    rows.push(`daemon CPU (s): process user ${(Number(pf[11]) / tick).toFixed(2)} sys ${(Number(pf[12]) / tick).toFixed(2)}; live threads user ${user.toFixed(2)} sys ${sys.toFixed(2)}`);
    for (const [name, e] of byName) rows.push(`  ${name.padEnd(16)} x${e.n}  user ${e.user.toFixed(2)} sys ${e.sys.toFixed(2)}`);
    return rows.join('\n') + '\n';
  } catch {
    return '';
  }
}

function report(r: WorkerResult, params: Record<string, number>, out: string): void {
  const json: Record<string, unknown> = { params, date: new Date().toISOString(), plugins: {} as Record<string, unknown> };
  const ref = r.reference!;
  const rows: string[] = [];
  const f = (x: number): string => x.toFixed(1).padStart(7);
  rows.push(`${'plugin'.padEnd(18)} ${'mode'.padEnd(10)} ${'ADD p50'.padStart(7)} ${'p90'.padStart(7)} ${'max'.padStart(7)} | ${'DEL p50'.padStart(7)} ${'p90'.padStart(7)} ${'max'.padStart(7)} | ${'ADD tot'.padStart(8)} ${'DEL tot'.padStart(8)}  (ms)  failures`);
  for (const [name, modes] of Object.entries(r)) {
    const entry: Record<string, unknown> = {};
    for (const mode of ['serial', 'concurrent'] as const) {
      const t: PhaseTimes = modes[mode];
      const add = summary(t.add);
      const del = summary(t.del);
      const rounds = params.rounds!;
      entry[mode] = { add, del, addTotalPerRound: t.addTotal / rounds, delTotalPerRound: t.delTotal / rounds, samples: t.add.length, failures: t.failures };
      rows.push(
        `${name.padEnd(18)} ${mode.padEnd(10)} ${f(add.p50)} ${f(add.p90)} ${f(add.max)} | ${f(del.p50)} ${f(del.p90)} ${f(del.max)} | ${(t.addTotal / rounds).toFixed(0).padStart(8)} ${(t.delTotal / rounds).toFixed(0).padStart(8)}        ${t.failures.length}`,
      );
    }
    (json.plugins as Record<string, unknown>)[name] = entry;
  }
  const pw = r.podwire!;
  const ratios = {
    addP50Serial: pct(pw.serial.add, 50) / pct(ref.serial.add, 50),
    delP50Serial: pct(pw.serial.del, 50) / pct(ref.serial.del, 50),
    addP50Concurrent: pct(pw.concurrent.add, 50) / pct(ref.concurrent.add, 50),
    delP50Concurrent: pct(pw.concurrent.del, 50) / pct(ref.concurrent.del, 50),
    concurrentAddTotal: pw.concurrent.addTotal / ref.concurrent.addTotal,
  };
  json.ratiosVsReference = ratios;
  const targets: { name: string; ratio: number; limit: number }[] = [
    { name: 'ADD p50 (serial)', ratio: ratios.addP50Serial, limit: 0.5 },
    { name: 'DEL p50 (serial)', ratio: ratios.delP50Serial, limit: 1.0 },
    { name: '100-pod 4-way ADD total', ratio: ratios.concurrentAddTotal, limit: 0.5 },
  ];
  json.targets = Object.fromEntries(targets.map((t) => [t.name, { ratio: t.ratio, limit: t.limit, met: t.ratio <= t.limit }]));
  rows.push('');
  rows.push(`${'podwire / reference'.padEnd(26)} ${'ratio'.padStart(6)} ${'target'.padStart(7)}  result`);
  for (const t of targets) {
    rows.push(`${t.name.padEnd(26)} ${t.ratio.toFixed(2).padStart(5)}x ${`<= ${t.limit.toFixed(1)}x`.padStart(7)}  ${t.ratio <= t.limit ? 'met' : 'NOT met'}`);
  }
  rows.push(`${'(ADD p50 4-way)'.padEnd(26)} ${ratios.addP50Concurrent.toFixed(2).padStart(5)}x`);
  rows.push(`${'(DEL p50 4-way)'.padEnd(26)} ${ratios.delP50Concurrent.toFixed(2).padStart(5)}x`);
  process.stdout.write(rows.join('\n') + '\n');
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(json, null, 2) + '\n');
  process.stdout.write(`wrote ${out}\n`);
}

if (require.main === module && !process.env.TAP) {
  main().catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
    process.exit(1);
  });
}
