/**
 * bench/cni's verdict, as a pure function of the worker's result (unit-tested in
 * report.test.ts): the table (one column per plugin), the targets with met/missed, and the
 * exit status. A failed call fails the bench: its time is not in the percentiles, its row
 * says how many and which, no target counts as met for a plugin that had one, and the
 * exit status is non-zero.
 */
import type { Failure, PhaseTimes, WorkerResult } from './worker';

export const FAST = 'fast path (shim→podwired)';
export const INPROC = 'in-process (bin/podwire-cni)';
export const REF = 'reference (bridge+host-local)';

export interface Summary {
  p50: number;
  p90: number;
  max: number;
  n: number;
}

export function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

export function summary(xs: number[]): Summary {
  return { p50: pct(xs, 50), p90: pct(xs, 90), max: xs.length ? Math.max(...xs) : NaN, n: xs.length };
}

export interface Target {
  name: string;
  plugin: string;
  ratio: number;
  limit: number;
  /** 'met' | 'missed' | 'invalid' (a call failed: the ratio means nothing). */
  result: 'met' | 'missed' | 'invalid';
}

export interface Verdict {
  table: string;
  targets: Target[];
  failures: { plugin: string; mode: string; failures: Failure[] }[];
  exitCode: number;
  json: Record<string, unknown>;
}

const MODES = ['serial', 'concurrent'] as const;

function allFailures(r: WorkerResult, name: string): Failure[] {
  const e = r[name];
  return e ? [...e.warmup, ...e.serial.failures, ...e.concurrent.failures] : [];
}

export function evaluate(r: WorkerResult, params: Record<string, number>): Verdict {
  const names = [FAST, INPROC, REF].filter((n) => r[n]);
  const rounds = params.rounds ?? 1;
  const f = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : '-');
  const rows: [string, (t: PhaseTimes) => string][] = [
    ['ADD p50 (ms)', (t) => f(pct(t.add, 50))],
    ['ADD p90', (t) => f(pct(t.add, 90))],
    ['ADD max', (t) => f(t.add.length ? Math.max(...t.add) : NaN)],
    ['DEL p50', (t) => f(pct(t.del, 50))],
    ['DEL p90', (t) => f(pct(t.del, 90))],
    ['DEL max', (t) => f(t.del.length ? Math.max(...t.del) : NaN)],
    ['ADD total/round', (t) => f(t.addTotal / rounds)],
    ['DEL total/round', (t) => f(t.delTotal / rounds)],
    ['ok calls', (t) => String(t.add.length + t.del.length)],
    ['FAILED calls', (t) => String(t.failures.length)],
  ];
  const w0 = 24;
  const w = Math.max(...names.map((n) => n.length)) + 2;
  const lines: string[] = [];
  lines.push(`${'metric'.padEnd(w0)}${names.map((n) => n.padStart(w)).join('')}`);
  for (const mode of MODES) {
    lines.push(`-- ${mode}${mode === 'concurrent' ? ` (${params.parallel}-way, one plugin at a time)` : ' (interleaved pod by pod across the plugins)'}`);
    for (const [label, get] of rows) lines.push(`${label.padEnd(w0)}${names.map((n) => get(r[n]![mode]).padStart(w)).join('')}`);
  }
  lines.push(`${'warm-up failures'.padEnd(w0)}${names.map((n) => String(r[n]!.warmup.length).padStart(w)).join('')}`);

  const failed = (n: string): boolean => allFailures(r, n).length > 0;
  const ratio = (n: string, cmd: 'add' | 'del'): number => pct(r[n]?.serial[cmd] ?? [], 50) / pct(r[REF]?.serial[cmd] ?? [], 50);
  const target = (name: string, plugin: string, cmd: 'add' | 'del', limit: number): Target => {
    const x = ratio(plugin, cmd);
    const invalid = !r[plugin] || failed(plugin) || failed(REF) || !Number.isFinite(x);
    return { name, plugin, ratio: x, limit, result: invalid ? 'invalid' : x <= limit ? 'met' : 'missed' };
  };
  const targets = [
    target('fast ADD p50 (serial)', FAST, 'add', 0.5),
    target('fast DEL p50 (serial)', FAST, 'del', 1.0),
    target('in-process ADD p50 (serial)', INPROC, 'add', 5.0),
  ];
  lines.push('');
  lines.push(`${'target (vs reference)'.padEnd(30)} ${'ratio'.padStart(7)} ${'limit'.padStart(7)}  result`);
  for (const t of targets) {
    const res = t.result === 'met' ? 'met' : t.result === 'missed' ? 'MISSED' : 'INVALID: calls failed (see below)';
    lines.push(`${t.name.padEnd(30)} ${(Number.isFinite(t.ratio) ? `${t.ratio.toFixed(2)}x` : '-').padStart(7)} ${`<= ${t.limit.toFixed(1)}x`.padStart(7)}  ${res}`);
  }
  const info = [
    ['(fast ADD p50, 4-way)', pct(r[FAST]?.concurrent.add ?? [], 50) / pct(r[REF]?.concurrent.add ?? [], 50)],
    ['(fast 4-way ADD total)', (r[FAST]?.concurrent.addTotal ?? NaN) / (r[REF]?.concurrent.addTotal ?? NaN)],
    ['(in-process DEL p50)', ratio(INPROC, 'del')],
  ] as const;
  for (const [label, x] of info) lines.push(`${label.padEnd(30)} ${(Number.isFinite(x) ? `${x.toFixed(2)}x` : '-').padStart(7)}`);
  // The same ratios round by round (serial calls are interleaved pod by pod, so each round's
  // ratio compares the plugins at the same moments): how stable the verdict is.
  const perRound = (n: string): number[] => (r[n]?.serial.addByRound ?? []).map((xs, i) => pct(xs, 50) / pct(r[REF]?.serial.addByRound?.[i] ?? [], 50));
  for (const [label, n] of [['(fast ADD p50, per round)', FAST], ['(in-process ADD p50, per round)', INPROC]] as const) {
    const xs = perRound(n);
    if (xs.length > 0) lines.push(`${label.padEnd(30)} ${xs.map((x) => (Number.isFinite(x) ? `${x.toFixed(2)}x` : '-')).join(' ')}`);
  }

  const failures: Verdict['failures'] = [];
  for (const n of names) {
    for (const mode of ['warmup', ...MODES] as const) {
      const list = mode === 'warmup' ? r[n]!.warmup : r[n]![mode].failures;
      if (list.length) failures.push({ plugin: n, mode, failures: list });
    }
  }
  if (failures.length) {
    lines.push('');
    lines.push('FAILED CALLS (the bench fails):');
    for (const g of failures) {
      const byCode = new Map<string, number>();
      for (const x of g.failures) byCode.set(`${x.command} code ${x.code ?? '-'}`, (byCode.get(`${x.command} code ${x.code ?? '-'}`) ?? 0) + 1);
      lines.push(`  ${g.plugin} ${g.mode}: ${g.failures.length} failed (${[...byCode].map(([k, v]) => `${v}x ${k}`).join(', ')}); first: ${g.failures[0]!.command} pod ${g.failures[0]!.pod} exit ${g.failures[0]!.exitCode}: ${g.failures[0]!.out.trim() || '(no output)'}`);
    }
  }
  const exitCode = failures.length > 0 ? 1 : 0;
  const json: Record<string, unknown> = {
    params,
    date: new Date().toISOString(),
    plugins: Object.fromEntries(
      names.map((n) => [
        n,
        Object.fromEntries(
          MODES.map((m) => {
            const t = r[n]![m];
            return [m, { add: summary(t.add), del: summary(t.del), ...(t.addByRound ? { addP50ByRound: t.addByRound.map((xs) => pct(xs, 50)) } : {}), addTotalPerRound: t.addTotal / rounds, delTotalPerRound: t.delTotal / rounds, failures: t.failures }];
          }),
        ),
      ]),
    ),
    warmupFailures: Object.fromEntries(names.map((n) => [n, r[n]!.warmup])),
    targets: targets.map((t) => ({ ...t })),
    failed: failures.length > 0,
  };
  return { table: lines.join('\n') + '\n', targets, failures, exitCode, json };
}
