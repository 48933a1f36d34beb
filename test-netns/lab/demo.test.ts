/**
 * The lab demo end to end, each run a child process (`node dist/test-netns/lab/demo.js`):
 *   - default run (2 nodes x 2 pods, real podwired + the installed CNI shim): exit 0, every row
 *     of the summary table PASS, pods got distinct IPs inside their node's pod CIDR, nothing
 *     left behind (namespaces, temp dir, daemons);
 *   - negative control `--no-host-gw-routes`: the cross-node rows FAIL and the demo exits 1
 *     (so a PASS above depends on real packets crossing nodes), and it still tears down cleanly;
 *   - bad input exits 2 naming the value;
 *   - SIGINT in the middle still removes every namespace, the temp dir and the daemons.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Cidr, IpAddress } from '../../src/common/ip';
import { labTest, listNetns, type LabTestFn } from '../harness';

const DEMO = join(__dirname, 'demo.js');

interface Run {
  code: number | string;
  out: string;
}

function runDemo(args: string[], interruptWhen?: RegExp, env?: Record<string, string>): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [DEMO, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let out = '';
    let interrupted = false;
    const onData = (b: Buffer): void => {
      out += b.toString();
      if (interruptWhen && !interrupted && interruptWhen.test(out)) {
        interrupted = true;
        child.kill('SIGINT');
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    // A backstop for a hung demo, not an assertion: the demo bounds every wait itself.
    const timer = setTimeout(() => child.kill('SIGKILL'), 100_000);
    child.on('exit', (code, sig) => {
      clearTimeout(timer);
      resolve({ code: code ?? String(sig), out });
    });
  });
}

interface Row {
  n: number;
  check: string;
  from: string;
  to: string;
  expect: string;
  result: string;
  observed: string;
}

/** The summary table's rows (columns are separated by two or more spaces). */
function tableRows(out: string): Row[] {
  return out
    .split('\n')
    .filter((l) => /^\d+\s{2,}/.test(l))
    .map((l) => {
      const [n, check, from, to, expect, result, ...rest] = l.split(/\s{2,}/);
      return { n: Number(n), check: check!, from: from!, to: to!, expect: expect!, result: result!, observed: rest.join('  ') };
    });
}

/** What the demo printed about itself: lab id, temp dir, daemon pids. */
function leftovers(out: string): { labId?: string; runDir?: string; pids: number[] } {
  return {
    labId: /lab (pwlab-\d+-\d+):/.exec(out)?.[1],
    runDir: /per-run dir (\S+)/.exec(out)?.[1],
    pids: [...out.matchAll(/started podwired \(pid (\d+)\)/g)].map((m) => Number(m[1])),
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function assertNothingLeft(t: Parameters<LabTestFn>[0], out: string): void {
  const l = leftovers(out);
  t.ok(l.labId, 'lab id printed');
  t.same(l.labId ? listNetns(l.labId) : ['?'], [], 'no namespace of the demo left');
  t.ok(l.runDir, 'temp dir printed');
  t.notOk(l.runDir && existsSync(l.runDir), 'temp dir removed');
  t.ok(l.pids.length > 0, 'daemon pids printed');
  t.same(l.pids.filter(alive), [], 'no podwired left running');
}

labTest('demo: 2 nodes x 2 pods on real podwired + CNI, every check passes, exit 0', { prefix: 'pwdm-demo', timeout: 110_000 }, async (t) => {
  const r = await runDemo([]);
  t.equal(r.code, 0, 'exit 0', { out: r.out });
  const rows = tableRows(r.out);
  t.ok(rows.length >= 40, `summary table has all rows (${rows.length})`);
  t.same(rows.filter((row) => row.result !== 'PASS'), [], 'every check PASS');
  const count = (check: string): number => rows.filter((row) => row.check === check).length;
  t.equal(count('podwired ready'), 2, 'a ready row per node');
  t.equal(count('CNI ADD'), 4, 'a CNI ADD row per pod');
  t.equal(count('CNI CHECK'), 4, 'a CNI CHECK row per pod');
  t.equal(count('CNI DEL'), 4, 'a CNI DEL row per pod');
  t.equal(count('ADD via fast path'), 2, 'fast-path ADD served by each daemon');
  t.equal(count('DEL via fast path'), 2, 'fast-path DEL served by each daemon');
  t.equal(count('ping pod->gateway'), 4);
  t.equal(count('ping pod->pod same node'), 4);
  t.equal(count('ping pod->pod x-node'), 4);
  t.equal(count('tcp nc x-node'), 2);
  t.equal(count('podwired SIGTERM'), 2);
  t.equal(count('root namespace unchanged'), 1);
  t.equal(count('overlay routes (podwired)'), 2, 'podwired programmed the routes on both nodes');

  // Pods got distinct addresses, each inside its own node's pod CIDR (from the CNI results).
  const adds = rows.filter((row) => row.check === 'CNI ADD');
  const ips: string[] = [];
  for (const a of adds) {
    const m = /^(\d+\.\d+\.\d+\.\d+)\/\d+ gw (\S+)/.exec(a.observed);
    t.ok(m, `${a.to}: the result has an address (${a.observed})`);
    if (!m) continue;
    const nodeIndex = Number(/^node(\d+)$/.exec(a.from)?.[1]);
    const cidr = Cidr.parse(`10.244.${nodeIndex}.0/24`);
    t.ok(cidr.contains(IpAddress.parse(m[1]!)), `${a.to}: ${m[1]} is in ${cidr}`);
    t.equal(m[2], cidr.nth(1).toString(), `${a.to}: gateway is the first address of ${cidr}`);
    ips.push(m[1]!);
  }
  t.equal(new Set(ips).size, 4, `4 distinct pod IPs: ${ips.join(' ')}`);

  t.match(r.out, /podwired programs the host-gw routes/, 'says who adds the routes');
  t.match(r.out, /podwire status \(node1, exit 0\):\n.*Node:\s+node1/, 'podwire status printed');
  t.match(r.out, /lab demo: (\d+)\/\1 checks passed\n/, 'final summary: all passed');
  assertNothingLeft(t, r.out);
});

labTest('demo negative control: without host-gw routes the cross-node checks FAIL, exit 1, still cleans up', { prefix: 'pwdm-demo', timeout: 110_000 }, async (t) => {
  const r = await runDemo(['--nodes', '2', '--pods-per-node', '1', '--no-host-gw-routes']);
  t.equal(r.code, 1, 'exit 1', { out: r.out });
  const rows = tableRows(r.out);
  const x = rows.filter((row) => row.check === 'ping pod->pod x-node' || row.check === 'tcp nc x-node');
  t.equal(x.length, 4, '2 cross-node pings + 2 TCP checks');
  t.ok(x.every((row) => row.result === 'FAIL'), 'every cross-node check FAILs', { rows: x });
  const local = rows.filter((row) => row.check === 'ping pod->gateway');
  t.ok(local.length === 2 && local.every((row) => row.result === 'PASS'), 'pod -> own gateway still PASSes');
  const teardown = rows.filter((row) => ['CNI DEL', 'podwired SIGTERM', 'root namespace unchanged', 'after DEL: nothing left'].includes(row.check));
  t.ok(teardown.length === 7 && teardown.every((row) => row.result === 'PASS'), 'teardown rows still PASS', { rows: teardown });
  t.match(r.out, /NEGATIVE CONTROL/);
  t.match(r.out, /FAILED ping pod->pod x-node/, 'failures listed with their output');
  t.match(r.out, /checks passed, FAILED\n/);
  assertNothingLeft(t, r.out);
});

labTest('demo: a podwired that cannot start fails the demo (exit 1) and it still cleans up', { prefix: 'pwdm-demo', timeout: 110_000 }, async (t) => {
  // podwired reads PODWIRE_* from its environment (the demo's): a Service CIDR overlapping the
  // cluster CIDR is a configuration error, so every daemon exits 2 at start-up.
  const r = await runDemo(['--pods-per-node', '1'], undefined, { PODWIRE_SERVICE_CIDR: '10.244.0.0/16' });
  t.equal(r.code, 1, 'exit 1', { out: r.out });
  const rows = tableRows(r.out);
  const ready = rows.filter((row) => row.check === 'podwired ready');
  t.ok(ready.length === 2 && ready.every((row) => row.result === 'FAIL'), 'both "podwired ready" rows FAIL', { rows: ready });
  t.ok(rows.some((row) => row.check === 'demo ran to the end' && row.result === 'FAIL'), 'the abort is a FAIL row');
  t.notOk(rows.some((row) => row.check === 'CNI ADD'), 'no pod was created');
  t.match(r.out, /serviceCIDR/, "the daemon's own error (naming the key) is shown");
  t.match(r.out, /demo ABORTED before the end, FAILED\n/);
  assertNothingLeft(t, r.out);
});

labTest('demo: bad input exits 2 and names the value', { prefix: 'pwdm-demo' }, async (t) => {
  const r = await runDemo(['--nodes', '0']);
  t.equal(r.code, 2, 'exit 2', { out: r.out });
  t.match(r.out, /--nodes="0": must be an integer 1\.\.8/);
  t.notMatch(r.out, /lab pwlab-/, 'no lab was created');
  const r2 = await runDemo(['--pods-per-node', '17']);
  t.equal(r2.code, 2, 'pods per node over the bound: exit 2');
  t.match(r2.out, /--pods-per-node="17": must be an integer 1\.\.16/);
});

labTest('demo: SIGINT during the checks still cleans up', { prefix: 'pwdm-demo', timeout: 110_000 }, async (t) => {
  const r = await runDemo([], /running connectivity checks/);
  t.equal(r.code, 'SIGINT', 'ended by SIGINT', { out: r.out });
  t.match(r.out, /SIGINT: cleaning up 1 lab/, 'cleanup announced');
  assertNothingLeft(t, r.out);
});
