/**
 * `podwire lab` end to end, each command its own process (bin/podwire), with a test state dir and
 * the namespace prefix `pwlt` (never the default /run/podwire-lab or `pwlab-`):
 *   - `lab up` builds examples/lab, exits 0 and prints a table whose every row is ok;
 *   - `lab status` lists every node ready and every pod with its IP; `lab exec` runs in the pod;
 *   - `lab down` leaves nothing: no namespaces, no processes, no /etc/netns dirs, no state dir;
 *   - crash: `lab up` SIGKILLed mid-build (daemons already running, detached), then `lab down`
 *     removes everything all the same.
 * The harness guard checks that the root network namespace is unchanged around each test.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { labTest } from '../harness';
import { isLabNamespace } from '../../src/lab/state';
import { REPO_ROOT } from './podwired';

const PODWIRE = path.join(REPO_ROOT, 'bin/podwire');
const PREFIX = 'pwlt';

interface Run {
  code: number | string;
  out: string;
  err: string;
}

function podwire(args: string[], opts: { killWhen?: RegExp; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [PODWIRE, ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd: REPO_ROOT });
    let out = '';
    let err = '';
    let killed = false;
    const onData = (): void => {
      if (opts.killWhen && !killed && opts.killWhen.test(out)) {
        killed = true;
        child.kill('SIGKILL');
      }
    };
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      onData();
    });
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    // A backstop for a hung command, not an assertion: the lab bounds every wait itself.
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('exit', (code, sig) => {
      clearTimeout(timer);
      resolve({ code: code ?? String(sig), out, err });
    });
  });
}

/** Everything a lab could leave behind. */
function leftovers(stateDir: string): string[] {
  const left: string[] = [];
  for (const n of existsSync('/run/netns') ? readdirSync('/run/netns') : []) if (isLabNamespace(PREFIX, n)) left.push(`netns ${n}`);
  for (const n of existsSync('/etc/netns') ? readdirSync('/etc/netns') : []) if (isLabNamespace(PREFIX, n)) left.push(`/etc/netns/${n}`);
  if (existsSync(stateDir)) left.push(`state dir ${stateDir}`);
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (cmd.includes(stateDir) || (cmd.includes('dist/src/lab/server.js') && cmd.includes(`${PREFIX}-pod-`))) left.push(`process ${pid}: ${cmd.replace(/\0/g, ' ').slice(0, 120)}`);
  }
  return left;
}

/** Table rows: `N  check  result  observed`. */
function rows(out: string): { n: number; check: string; result: string }[] {
  return out
    .split('\n')
    .filter((l) => /^\d+\s{2,}/.test(l))
    .map((l) => {
      const [n, check, result] = l.split(/\s{2,}/);
      return { n: Number(n), check: check!, result: result! };
    });
}

labTest('podwire lab up, status, exec, down', { prefix: PREFIX, timeout: 200_000 }, async (t) => {
  const stateDir = `/tmp/${PREFIX}-${process.pid}-state`;
  const common = ['--state-dir', stateDir, '--prefix', PREFIX];
  try {
    const up = await podwire(['lab', 'up', ...common]);
    t.equal(up.code, 0, 'lab up exits 0', { output: up.out.slice(-4000), stderr: up.err.slice(-2000) });
    const table = rows(up.out);
    t.ok(table.length >= 9, `the table has the rows of today (${table.length})`);
    t.same(table.filter((r) => r.result !== 'ok'), [], 'every row is ok');
    for (const want of ['podwire status: node3', 'pod ↔ pod, same node', 'pod ↔ pod, across nodes', 'pod ↔ pod, across subnets', 'TCP (nc), across nodes', 'UDP echo'])
      t.ok(table.some((r) => r.check.startsWith(want)), `row "${want}"`);
    // podwired has its overlay component, so the cross-node rows ran over podwired's own routes.
    t.match(up.out, /overlay component present: cross-node routes are podwired's/, 'cross-node routes come from the overlay');
    t.notMatch(up.out, /FALLBACK|\[lab fallback routes\]/, 'no routes added by the lab itself');
    for (const want of ['Service web.shop by VIP 10.96.0.11:80', 'Service echo.shop by VIP 10.96.0.13:9000/udp', 'DNS A api.shop.svc.cluster.local', 'DNS SRV _http._tcp.api.shop.svc.cluster.local', 'DNS A db.shop.svc.cluster.local (headless', 'Service by name: http://api.shop/'])
      t.ok(table.some((r) => r.check.startsWith(want) && r.result === 'ok'), `row "${want}" ok`);
    t.match(up.out, /lab down --state-dir/, 'prints how to tear down');
    t.ok(existsSync('/etc/netns/pwlt-pod-web-0/resolv.conf'), 'pod resolv.conf under /etc/netns');

    const st = await podwire(['lab', 'status', ...common]);
    t.equal(st.code, 0, 'lab status exits 0 (every daemon healthy)', { output: st.out + st.err });
    for (const n of ['node1', 'node2', 'node3']) t.match(st.out, new RegExp(`${n}\\s.*ready \\[cni`), `${n} ready`);
    for (const [p, ip] of [['web-0', '10.244.1.10'], ['api-1', '10.244.3.20'], ['db-1', '10.244.3.40']]) t.match(st.out, new RegExp(`shop/${p}\\s+\\S+\\s+${ip.replace(/\./g, '\\.')}`), `${p} has ${ip}`);
    t.match(st.out, /shop\/api\s+NodePort\s+10\.96\.0\.12\s+80:30080\/TCP/, 'Services listed');

    const ex = await podwire(['lab', 'exec', 'web-0', ...common, '--', 'ip', '-4', 'addr', 'show', 'dev', 'eth0']);
    t.equal(ex.code, 0, 'lab exec exits 0');
    t.match(ex.out, /inet 10\.244\.1\.10\/24/, 'lab exec runs inside the pod');
    const dns = await podwire(['lab', 'exec', 'api-1', ...common, '--', 'cat', '/etc/resolv.conf']);
    t.match(dns.out, /nameserver 169\.254\.20\.10\nsearch shop\.svc\.cluster\.local svc\.cluster\.local cluster\.local/, 'pods resolve through the node-local DNS with the search path');
    const code = await podwire(['lab', 'exec', 'web-0', ...common, '--', 'sh', '-c', 'exit 7']);
    t.equal(code.code, 7, 'lab exec passes the exit status through');
    // Negative control: with node1 dropping what goes to node3's pods, the rows that need it FAIL and name the command.
    const del = await podwire(['lab', 'exec', 'node1', ...common, '--', 'ip', 'route', 'replace', 'blackhole', '10.244.3.0/24']);
    t.equal(del.code, 0, 'lab exec into a node: node1 blackholes node3\'s pods', { output: del.err });
    const chk = await podwire(['lab', 'check', ...common]);
    t.equal(chk.code, 1, 'lab check exits 1 when a row fails');
    const failed = rows(chk.out).filter((r) => r.result === 'FAILED').map((r) => r.check);
    t.ok(failed.some((c) => c.startsWith('pod ↔ pod, across subnets')), 'the cross-subnet ping row FAILS', { failed });
    t.ok(failed.some((c) => c.startsWith('TCP (nc), across nodes')), 'the cross-node TCP row FAILS', { failed });
    t.notOk(failed.some((c) => c.startsWith('pod ↔ pod, same node')), 'same-node rows still ok');
    t.match(chk.out, /re-run: \S*podwire lab exec web-0 --state-dir \S+ -- ping -n -c 2 -i 0\.2 -W 2 10\.244\.3\.20/, 'a FAILED row names the command to re-run it');
    const none = await podwire(['lab', 'exec', 'nope', ...common, '--', 'true']);
    t.equal(none.code, 1, 'lab exec of an unknown pod fails');
    t.match(none.err, /no pod or node "nope"/);
  } finally {
    const down = await podwire(['lab', 'down', ...common]);
    t.equal(down.code, 0, 'lab down exits 0', { output: down.out + down.err });
  }
  t.same(leftovers(stateDir), [], 'nothing left after lab down');
  const again = await podwire(['lab', 'down', ...common]);
  t.equal(again.code, 0, 'a second lab down is fine');
  t.match(again.out, /nothing to remove/);
});

labTest('lab up killed mid-build: lab down removes everything', { prefix: PREFIX, timeout: 120_000 }, async (t) => {
  const stateDir = `/tmp/${PREFIX}-${process.pid}-crash`;
  const common = ['--state-dir', stateDir, '--prefix', PREFIX];
  try {
    const up = await podwire(['lab', 'up', ...common], { killWhen: /pod shop\/web-1 on node2: CNI ADD/ });
    t.equal(up.code, 'SIGKILL', 'lab up was killed mid-build', { output: up.out.slice(-2000) });
    const before = leftovers(stateDir);
    t.ok(before.some((l) => l.startsWith('process')), 'the detached daemons outlived lab up', { before });
    t.ok(before.some((l) => l.startsWith('netns')), 'namespaces are there');
    const st = await podwire(['lab', 'status', ...common]);
    t.match(st.out, /Lab:\s+building/, 'lab status shows the interrupted build');
  } finally {
    const down = await podwire(['lab', 'down', ...common]);
    t.equal(down.code, 0, 'lab down exits 0', { output: down.out + down.err });
  }
  t.same(leftovers(stateDir), [], 'nothing left after lab down');
});
