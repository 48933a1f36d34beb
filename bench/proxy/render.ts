/**
 * Render-only benchmark: the proxier's full sync of N Services × 10 endpoints into a runner
 * that only keeps the scripts (model + diff + script, no kernel). Each round is a fresh
 * proxier on the same cluster state, as after a restart, in a process of its own (the
 * earlier phases of bench/proxy/run.ts would leave their heaps to this one's GC).
 * Judged on the first round (cold code, growing heap: a podwired start) and on the CPU
 * time of the render's own thread, which a shared 2-core machine does not inflate the way
 * it does wall time; the process's CPU (V8's parallel GC and compiler threads too) and the
 * wall time are printed beside it.
 *
 *   node dist/bench/proxy/render.js [--services 10000] [--rounds 5] [--out bench/results/proxy-render.json]
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fakeKernel } from '../../src/kernel/testing';
import { systemClock } from '../../src/common/clock';
import { proxierHarness, MemoryState } from '../../src/proxy/testing';
import { benchObjects } from './kube-proxy-layout';
import { arg } from '../args';

const N = Number(arg('services', '10000'));
const ROUNDS = Number(arg('rounds', '5'));
const OUT = arg('out', path.resolve(__dirname, '../../../bench/results/proxy-render.json'));
/** This thread's CPU time (the render's own work; GC and compiler threads are counted in cpuMs). */
const threadCpuMs = (): number => Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e6;
const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

interface Round {
  round: number;
  /** The render's own thread. */
  threadCpuMs: number;
  /** The whole process: the render plus V8's GC and compiler threads. */
  processCpuMs: number;
  wallMs: number;
  scriptBytes: number;
  heapGrowthMb: number;
}

async function main(): Promise<void> {
  const state = new MemoryState();
  for (const o of benchObjects(N, 10)) state.apply(o);
  const signal = new AbortController().signal;
  const rows: Round[] = [];
  for (let r = 1; r <= ROUNDS; r++) {
    const fk = fakeKernel();
    const scripts: string[] = [];
    fk.nft.apply = async (script: string): Promise<void> => {
      scripts.push(script);
    };
    const h = proxierHarness(fk, systemClock, { state });
    for (const o of state.values('Service')) h.proxier.handleEvent({ type: 'add', kind: 'Service', current: o });
    const heap0 = process.memoryUsage().heapUsed;
    const c0 = cpuMs();
    const th0 = threadCpuMs();
    const t0 = performance.now();
    await h.proxier.sync(signal);
    const row: Round = {
      round: r,
      wallMs: performance.now() - t0,
      threadCpuMs: threadCpuMs() - th0,
      processCpuMs: cpuMs() - c0,
      scriptBytes: scripts.reduce((a, s) => a + s.length, 0),
      heapGrowthMb: (process.memoryUsage().heapUsed - heap0) / 2 ** 20,
    };
    if (row.scriptBytes === 0) throw new Error(`round ${r}: the sync rendered nothing`);
    rows.push(row);
    console.log(`round ${r}: ${row.threadCpuMs.toFixed(0)} ms CPU on the render's thread, ${row.processCpuMs.toFixed(0)} ms process CPU, ${row.wallMs.toFixed(0)} ms wall, ${row.scriptBytes} script bytes, heap +${row.heapGrowthMb.toFixed(1)} MB`);
  }
  const cold = rows[0]!;
  const warm = rows.slice(1);
  const med = (f: (r: Round) => number): number => {
    const v = warm.map(f).sort((a, b) => a - b);
    return v.length === 0 ? NaN : v[Math.floor(v.length / 2)]!;
  };
  const f0 = (x: number): string => (Number.isNaN(x) ? '-' : x.toFixed(0));
  const met = cold.threadCpuMs <= 500;
  console.log(`\n| render of ${N} Services×10 | thread CPU ms | process CPU ms | wall ms |\n|---|---:|---:|---:|`);
  console.log(`| first (cold: JIT, heap growth) | ${f0(cold.threadCpuMs)} | ${f0(cold.processCpuMs)} | ${f0(cold.wallMs)} |`);
  console.log(`| later rounds, median of ${warm.length} | ${f0(med((r) => r.threadCpuMs))} | ${f0(med((r) => r.processCpuMs))} | ${f0(med((r) => r.wallMs))} |`);
  console.log(`target: the first render ≤ 500 ms on its thread: ${met ? 'met' : 'MISSED'}`);
  mkdirSync(path.dirname(OUT), { recursive: true });
  writeFileSync(OUT, JSON.stringify({ services: N, rounds: rows, coldThreadCpuMs: cold.threadCpuMs, renderLe500ms: met }, null, 2));
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
