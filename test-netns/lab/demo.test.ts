/**
 * The demo CLI end to end: success prints the table and exits 0; bad input exits non-zero; SIGINT
 * during the checks still removes every namespace. Each run is a child process.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { labTest, listNetns } from '../harness';

const DEMO = join(__dirname, 'demo.js');

interface Run {
  code: number | string;
  out: string;
}

function runDemo(args: string[], interruptWhen?: RegExp): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [DEMO, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
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
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('exit', (code, sig) => {
      clearTimeout(timer);
      resolve({ code: code ?? String(sig), out });
    });
  });
}

function labIdOf(out: string): string | undefined {
  return /lab (pwlab-\d+-\d+):/.exec(out)?.[1];
}

labTest('demo: 2 nodes, all checks pass, table printed, exit 0', { prefix: 'pwl-demo' }, async (t) => {
  const r = await runDemo(['--nodes', '2']);
  t.equal(r.code, 0, 'exit 0', { out: r.out });
  t.match(r.out, /check\s+from\s+to\s+expect\s+result/, 'summary table header');
  t.match(r.out, /pod->pod\s+10\.244\.1\.2\s+10\.244\.2\.2\s+reply\s+PASS/, 'pod 1 -> pod 2 across nodes passed');
  t.match(r.out, /negative\s+.*no reply\s+PASS/, 'negative control passed');
  t.match(r.out, /lab demo: 5\/5 checks passed/, 'final summary');
  t.match(r.out, /root namespace unchanged/, 'guard reported clean');
  const id = labIdOf(r.out);
  t.ok(id, 'lab id printed');
  t.same(id ? listNetns(id) : ['?'], [], 'no namespace left');
});

labTest('demo: bad input exits non-zero', { prefix: 'pwl-demo' }, async (t) => {
  const r = await runDemo(['--nodes', '0']);
  t.equal(r.code, 1, 'exit 1', { out: r.out });
  t.match(r.out, /FAIL: .*nodes=0/, 'names the bad value');
  const id = labIdOf(r.out);
  t.same(id ? listNetns(id) : [], [], 'no namespace left');
});

labTest('demo: SIGINT during the checks still cleans up', { prefix: 'pwl-demo' }, async (t) => {
  const r = await runDemo(['--nodes', '3', '--pods-per-node', '2'], /running connectivity checks/);
  t.equal(r.code, 'SIGINT', 'ended by SIGINT', { out: r.out });
  t.match(r.out, /SIGINT: cleaning up 1 lab/, 'cleanup announced');
  const id = labIdOf(r.out);
  t.ok(id, 'lab id printed');
  t.same(id ? listNetns(id) : ['?'], [], 'no namespace left');
});
