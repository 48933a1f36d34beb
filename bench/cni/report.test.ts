/**
 * The bench's verdict: a failed call fails the bench. A podwired that is down answers fast
 * with an error; those times must not be percentiles, and no target may be "met" on them.
 * Run: node node_modules/tap/dist/esm/run.mjs dist/bench/cni/report.test.js
 */
import t from 'tap';
import { evaluate, FAST, INPROC, REF } from './report';
import type { Failure, PhaseTimes, WorkerResult } from './worker';

const times = (ms: number, n = 10): number[] => Array.from({ length: n }, () => ms);
const phase = (add: number, del: number, failures: Failure[] = []): PhaseTimes => ({ add: times(add), del: times(del), addTotal: add * 10, delTotal: del * 10, failures });
const fail = (n: number): Failure[] => Array.from({ length: n }, (_, i) => ({ command: 'ADD', pod: i, round: 1, exitCode: 1, code: 11, out: '{"code":11,"msg":"podwired is not answering"}' }));

function result(fastFailures: Failure[]): WorkerResult {
  return {
    [REF]: { serial: phase(10, 24), concurrent: phase(30, 40), warmup: [] },
    [FAST]: { serial: phase(fastFailures.length ? 1 : 4, fastFailures.length ? 1 : 30, fastFailures), concurrent: phase(10, 30), warmup: [] },
    [INPROC]: { serial: phase(45, 60), concurrent: phase(90, 100), warmup: [] },
  };
}

t.test('all calls succeed: targets judged on the ratios, exit 0', async (t) => {
  const v = evaluate(result([]), { rounds: 1, parallel: 4 });
  t.equal(v.exitCode, 0);
  t.same(v.targets.map((x) => [x.name, x.result]), [
    ['fast ADD p50 (serial)', 'met'],
    ['fast DEL p50 (serial)', 'missed'],
    ['in-process ADD p50 (serial)', 'met'],
  ]);
  t.notMatch(v.table, /FAILED CALLS/);
});

t.test('a podwired that answers quickly with errors fails the bench and meets nothing', async (t) => {
  const v = evaluate(result(fail(100)), { rounds: 1, parallel: 4 });
  t.equal(v.exitCode, 1, 'non-zero exit');
  t.equal(v.targets.find((x) => x.name === 'fast ADD p50 (serial)')?.result, 'invalid', 'not met on the ratio of failed calls');
  t.equal(v.targets.find((x) => x.name === 'fast DEL p50 (serial)')?.result, 'invalid');
  t.equal(v.targets.find((x) => x.name === 'in-process ADD p50 (serial)')?.result, 'met', 'the other plugin is still judged');
  t.match(v.table, /FAILED CALLS/);
  t.match(v.table, new RegExp(`${FAST.replace(/[()+]/g, '\\$&')} serial: 100 failed \\(100x ADD code 11\\)`), 'the table says which');
  t.match(v.table, /FAILED calls\s+100/);
});

t.test('one failed warm-up call is a failure too', async (t) => {
  const r = result([]);
  r[REF]!.warmup.push(fail(1)[0]!);
  const v = evaluate(r, { rounds: 1, parallel: 4 });
  t.equal(v.exitCode, 1);
  t.ok(v.targets.every((x) => x.result === 'invalid'), 'every ratio uses the reference');
});

t.test('per-round ratios of the interleaved serial ADDs are printed and in the JSON', async (t) => {
  const r = result([]);
  r[REF]!.serial.addByRound = [times(10, 5), times(20, 5)];
  r[INPROC]!.serial.addByRound = [times(40, 5), times(60, 5)];
  const v = evaluate(r, { rounds: 2, parallel: 4 });
  t.match(v.table, /\(in-process ADD p50, per round\)\s+4\.00x 3\.00x/);
  const inproc = (v.json.plugins as Record<string, { serial: { addP50ByRound?: number[] } }>)[INPROC]!;
  t.same(inproc.serial.addP50ByRound, [40, 60]);
});
