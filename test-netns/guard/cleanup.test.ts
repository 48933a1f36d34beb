/**
 * Tests that lab cleanup always happens: SIGTERM, SIGINT, uncaught exception, process.exit,
 * a throwing labTest body; that sweepStale removes a SIGKILLed run's leftovers but not a live
 * run's namespaces; and that labTest fails a test whose body changes the watched namespace.
 * Each scenario runs in a child process (fixtures/child.js) so it can really die.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Lab, labTest, listNetns, NETNS_DIR, netnsPath, sweepStale, type LabNode } from '../harness';

const PREFIX = 'pwl-cleanup';
const CHILD = join(__dirname, 'fixtures', 'child.js');

interface Child {
  proc: ChildProcess;
  stdout: () => string;
  exited: Promise<number | string>;
}

interface Ready {
  ns: string[];
  sleepPid: number;
}

function startChild(mode: string, prefix: string, env: Record<string, string> = {}): Child {
  const proc = spawn(process.execPath, [CHILD, mode, prefix], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  proc.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  proc.stderr!.on('data', () => undefined);
  const exited = new Promise<number | string>((resolve) => proc.on('exit', (code, sig) => resolve(code ?? String(sig))));
  // bounded: no child outlives 30 s
  const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
  void exited.then(() => clearTimeout(timer));
  return { proc, stdout: () => out, exited };
}

async function waitReady(c: Child): Promise<Ready> {
  for (let i = 0; i < 300; i++) {
    const m = /^READY (.*)$/m.exec(c.stdout());
    if (m) return JSON.parse(m[1]!) as Ready;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`child never became ready; stdout: ${c.stdout()}`);
}

/** gone = no such pid, or a zombie waiting to be reaped */
function processGone(pid: number): boolean {
  try {
    return /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return true;
  }
}

async function eventually(check: () => boolean, tries = 60): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return check();
}

const exists = (ns: string): boolean => existsSync(`${NETNS_DIR}/${ns}`);

const scenarios: { name: string; mode: string; kill?: NodeJS.Signals; exit: (e: number | string) => boolean }[] = [
  { name: 'SIGTERM', mode: 'hold', kill: 'SIGTERM', exit: (e) => e === 'SIGTERM' },
  { name: 'SIGINT', mode: 'hold', kill: 'SIGINT', exit: (e) => e === 'SIGINT' },
  { name: 'an uncaught exception', mode: 'throw', exit: (e) => e === 1 },
  { name: 'process.exit without cleanup()', mode: 'exit', exit: (e) => e === 3 },
];

for (const s of scenarios) {
  labTest(`cleanup on ${s.name}: namespaces deleted, processes killed`, { prefix: PREFIX }, async (t) => {
    const prefix = `pwl-cl-${s.mode}`;
    const child = startChild(s.mode, prefix);
    t.teardown(async () => {
      child.proc.kill('SIGKILL');
      await sweepStale(prefix, { includeLive: true });
    });
    const ready = await waitReady(child);
    t.equal(ready.ns.length, 2, 'child built two namespaces');
    t.ok(ready.ns.every(exists), 'they exist while the child runs');
    t.notOk(processGone(ready.sleepPid), 'its background sleep runs');
    if (s.kill) child.proc.kill(s.kill);
    else child.proc.stdin!.write('go\n');
    const how = await child.exited;
    t.ok(s.exit(how), `child ended by ${s.name} (got ${how})`);
    t.ok(await eventually(() => !ready.ns.some(exists)), 'namespaces deleted', { left: ready.ns.filter(exists).join(' ') });
    t.ok(await eventually(() => processGone(ready.sleepPid)), 'background process killed');
  });
}

labTest('sweepStale removes a SIGKILLed run, keeps a live run', { prefix: PREFIX }, async (t) => {
  const prefix = 'pwl-cl-sweep';
  const live = startChild('hold', prefix);
  const dead = startChild('sigkill', prefix);
  t.teardown(async () => {
    live.proc.kill('SIGKILL');
    await sweepStale(prefix, { includeLive: true });
  });
  const liveReady = await waitReady(live);
  const deadReady = await waitReady(dead);
  dead.proc.stdin!.write('go\n');
  t.equal(await dead.exited, 'SIGKILL', 'the dead run was SIGKILLed');
  t.ok(deadReady.ns.every(exists), 'SIGKILL left its namespaces behind (nothing can catch it)');
  t.notOk(processGone(deadReady.sleepPid), 'and its sleep is still running inside');

  const removed = await sweepStale(prefix);
  t.same(removed.sort(), [...deadReady.ns].sort(), 'sweepStale removed exactly the dead run\'s namespaces');
  t.notOk(deadReady.ns.some(exists), 'they are gone');
  t.ok(await eventually(() => processGone(deadReady.sleepPid)), 'the leftover process was killed');
  t.ok(liveReady.ns.every(exists), 'the live run (same prefix, pid alive) was left alone');

  live.proc.kill('SIGTERM');
  await live.exited;
  t.ok(await eventually(() => !liveReady.ns.some(exists)), 'the live run cleaned itself up on SIGTERM');
  t.same(listNetns(prefix), [], `no ${prefix}-* namespace left`);
});

labTest('labTest cleans up when the body throws and reports the failure', { prefix: PREFIX }, async (t) => {
  const prefix = 'pwl-cl-lt';
  const child = startChild('labtest-throws', prefix);
  t.teardown(() => sweepStale(prefix, { includeLive: true }));
  const code = await child.exited;
  const out = child.stdout();
  const created = /# CREATED (\S+)/.exec(out)?.[1];
  t.ok(created, 'the body created a namespace', { out });
  t.notOk(created && exists(created), 'it is gone after the test');
  t.match(out, /not ok \d+ - deliberate failure in the test body/, 'the thrown error is a failure in TAP');
  t.match(out, /ok \d+ - root namespace unchanged/, 'the guard still ran after the failure');
  t.not(code, 0, 'the tap process exits non-zero');
});

labTest('labTest fails a test that changes the watched namespace and prints the diff', { prefix: PREFIX }, async (t, lab) => {
  const standIn = await lab.addNetns('standin');
  const child = startChild('labtest-violates', 'pwl-cl-vio', { PWL_TARGET: standIn });
  t.teardown(() => sweepStale('pwl-cl-vio', { includeLive: true }));
  const code = await child.exited;
  const out = child.stdout();
  t.match(out, /ok \d+ - body ran/, 'the body ran');
  t.match(out, /not ok \d+ - root namespace unchanged/, 'the guard assertion failed');
  t.match(out, /\+ blackhole 10\.96\.0\.0\/12/, 'the diff names the added route');
  t.not(code, 0, 'the tap process exits non-zero');
});

labTest('addNode/wirePod build what they promise', { prefix: PREFIX }, async (t, lab) => {
  const ul = await lab.addUnderlay();
  const n1: LabNode = await lab.addNode(ul);
  const n2 = await lab.addNode(ul, { address: '198.19.7.7/16', role: 'custom' });
  t.equal(n2.ns, `${lab.id}-custom`, 'role names the namespace');
  t.match(await lab.ip(n2.ns, ['-4', 'addr', 'show', 'eth0']), /inet 198\.19\.7\.7\/16/, 'caller-chosen address');
  t.equal((await lab.execOk(n1.ns, ['cat', '/proc/sys/net/ipv4/ip_forward'])).trim(), '1', 'ip_forward=1 in the node');
  t.match(await lab.ip(n1.ns, ['link', 'show', 'lo']), /state UNKNOWN|LOWER_UP/, 'lo is up in the node');
  t.match(await lab.ip(ul.ns, ['link', 'show', 'n1']), /master br0/, 'node veth is a port of the underlay bridge');
  const pod = await lab.addPod();
  t.ok(existsSync(netnsPath(pod)), 'netnsPath(pod) is the bind mount under /run/netns');
  await lab.wirePod(pod, n1, { address: '10.244.1.2', gateway: '10.244.1.1' });
  t.match(await lab.ip(pod, ['route']), /default via 10\.244\.1\.1 dev eth0/, 'pod default route');
  t.match(await lab.ip(n1.ns, ['route']), /10\.244\.1\.2 dev vp\d+/, 'node host route to the pod');
  const proc = lab.spawn(pod, ['sleep', '300']);
  await new Promise((r) => setTimeout(r, 100));
  t.match(await lab.execOk(null, ['ip', 'netns', 'pids', pod]), new RegExp(`\\b${proc.pid}\\b`), 'spawned process runs inside the pod netns');
  await t.rejects(Lab.create('Bad_Prefix'), /must match/, 'a bad prefix is refused');
});
