/**
 * A crash of the only podwired (kill -9) with the real daemon (bin/podwired, `--enable dns`):
 * the DNS socket keeper (native/dns-keeper, src/dns/keeper.ts) holds the listening sockets, so
 *   - while no podwired runs, the address stays bound: a query sent then (UDP and TCP) is not
 *     refused but waits, and the restarted podwired answers it;
 *   - a killed keeper is replaced at podwired's next sync;
 *   - under a dig loop and a 200 QPS loop, a kill -9 and a restart lose no query;
 *   - a graceful stop releases the sockets and the keeper exits (nothing left, queries refused);
 *   - with `--dns-keeper ''` the same crash leaves nothing bound: a query is refused at once
 *     (the behaviour the keeper removes);
 *   - with `--dns-workers 2` the keeper holds the main thread's sockets; the worker's UDP socket
 *     and TCP listener die with the process, and the kernel sends their share to the kept ones:
 *     UDP and TCP queries sent during the crash are answered by the restarted podwired, whose
 *     worker serves UDP and TCP again.
 */
import path from 'node:path';
import { exec, labTest, type BackgroundProcess, type Lab } from '../harness';
import { dig, m, NODE_LOCAL, realPodwired, realPodwiredLab, sleep } from './helpers';

const CLIENT = path.join(__dirname, 'load-client.js');
const NAME = 'web.prod.svc.cluster.local';

function podwired(lab: Lab, ns: string, dir: string, manifests: string, extra: string[] = []): BackgroundProcess {
  return realPodwired(lab, ns, dir, manifests, { drain: '0s', extra });
}

/** Which threads answered `worker.podwire.invalid TXT` over TCP, from `n` connections. */
async function tcpThreads(pod: string, n: number): Promise<string[]> {
  const seen = new Set<string>();
  for (let i = 0; i < n; i++) seen.add((await dig(pod, 'worker.podwire.invalid', 'TXT', { args: ['+tcp'] })).answers[0]?.[3] ?? 'none');
  return [...seen].sort();
}

/** Listening TCP sockets on the node-local address (one line each, with the owning process). */
async function tcpListeners(ns: string): Promise<string[]> {
  return (await exec(ns, ['ss', '-Hlntp', 'src', `${NODE_LOCAL}:53`])).stdout.trim().split('\n').filter((l) => l);
}

/** Wait (bounded) until `p` answers the cluster name: it has synced. */
async function answering(pod: string): Promise<string[]> {
  let r = await dig(pod, NAME);
  for (let i = 0; i < 40 && r.answers.length === 0; i++) {
    await sleep(250);
    r = await dig(pod, NAME);
  }
  return r.answers.map((a) => a[3]);
}

/** kill -9 of podwired alone (not its process group), as the OOM killer would. */
async function crash(p: BackgroundProcess): Promise<void> {
  process.kill(p.pid!, 'SIGKILL');
  for (let i = 0; i < 100 && !p.exit; i++) await sleep(50);
}

/** Processes in `ns` whose command line mentions `needle`. */
async function procsIn(ns: string, needle: string): Promise<number[]> {
  const r = await exec(null, ['ip', 'netns', 'pids', ns]);
  const pids = r.stdout.split(/\s+/).filter((s) => /^\d+$/.test(s));
  const out: number[] = [];
  for (const pid of pids) {
    const c = await exec(null, ['cat', `/proc/${pid}/cmdline`]);
    if (c.stdout.includes(needle)) out.push(Number(pid));
  }
  return out;
}

labTest('kill -9 of the only podwired: the kept DNS sockets queue queries for its successor', { prefix: 'pwdns-crash', timeout: 120_000 }, async (t, lab) => {
  const { pod, nodeNs, dir, manifests, md } = await realPodwiredLab(t, lab, 'pwdns-crash');
  const first = podwired(lab, nodeNs, dir, manifests);
  await first.waitForOutput(/"msg":"DNS serving"/, 30_000);
  t.same(await answering(pod), ['10.96.1.10'], 'the first podwired answers');
  t.match(first.stdout + first.stderr, /started the DNS socket keeper/, 'it started the socket keeper');
  t.equal((await procsIn(nodeNs, 'podwire-dns-keeper')).length, 1, 'one keeper runs in the node namespace');

  await crash(first);
  const ss = await exec(nodeNs, ['ss', '-Hlnup', 'src', `${NODE_LOCAL}:53`]);
  t.match(ss.stdout, /podwire-dns-kee/, `with podwired dead, ${NODE_LOCAL}:53/udp is still bound, by the keeper`, { ss: ss.stdout });
  // Sent while nothing serves: a UDP and a TCP query wait in the kept sockets.
  const udpQ = exec(pod, ['dig', `@${NODE_LOCAL}`, '+tries=1', '+timeout=10', '+nocookie', NAME, 'A'], { timeoutMs: 20_000 });
  const tcpQ = exec(pod, ['dig', `@${NODE_LOCAL}`, '+tcp', '+tries=1', '+timeout=10', '+nocookie', NAME, 'A'], { timeoutMs: 20_000 });
  await sleep(1000);
  const second = podwired(lab, nodeNs, dir, manifests);
  const [u, c] = await Promise.all([udpQ, tcpQ]);
  t.match(u.stdout, /status: NOERROR[\s\S]*10\.96\.1\.10/, 'the UDP query sent while no podwired ran is answered by the restarted one', { out: u.stdout + u.stderr });
  t.match(c.stdout, /status: NOERROR[\s\S]*10\.96\.1\.10/, 'and the TCP query too', { out: c.stdout + c.stderr });
  t.match(second.stdout + second.stderr, /DNS sockets kept across a crash/, 'the restarted podwired took the kept sockets');
  t.equal((await procsIn(nodeNs, 'podwire-dns-keeper')).length, 1, 'still one keeper (not a second one)');

  // The keeper itself killed: at its next sync podwired starts another and hands it the sockets.
  const [keeperPid] = await procsIn(nodeNs, 'podwire-dns-keeper');
  process.kill(keeperPid!, 'SIGKILL');
  md.write('more.yaml', [m.service('prod', 'api', { clusterIP: '10.96.1.11', ports: [{ name: 'http', port: 80, protocol: 'TCP' }] })]);
  await second.waitForOutput(/DNS sockets handed to a new socket keeper/, 30_000);
  const keepers = await procsIn(nodeNs, 'podwire-dns-keeper');
  t.ok(keepers.length === 1 && keepers[0] !== keeperPid, 'a killed keeper is replaced at the next sync', { keepers, keeperPid });

  // Under load: a dig loop like a pod's resolver and a 200 QPS loop, through kill -9 + restart.
  const digLoop = lab.spawn(pod, ['sh', '-c', `end=$(( $(date +%s) + 20 )); n=0; while [ $n -lt 400 ] && [ $(date +%s) -lt $end ]; do n=$((n+1)); a=$(dig @${NODE_LOCAL} +short +time=2 +tries=3 ${NAME} A); case "$(echo "$a" | tail -n 1)" in 10.*) echo ok;; *) echo "fail #$n $a";; esac; sleep 0.05; done; echo DONE`]);
  const loop = lab.spawn(pod, [process.execPath, CLIENT, 'loop', JSON.stringify({ server: NODE_LOCAL, names: [NAME], qps: 200, durationMs: 8_000, tries: 3, timeoutMs: 1000 })]);
  await sleep(2000);
  await crash(second);
  const third = podwired(lab, nodeNs, dir, manifests);
  await third.waitForOutput(/"msg":"DNS serving"/, 30_000);
  await loop.waitForOutput(/\{"sent"/, 30_000);
  const res = JSON.parse(/\{"sent".*\}/.exec(loop.stdout)![0]) as { sent: number; answered: number; failed: number; firstTryLost: number };
  await digLoop.waitForOutput(/DONE/, 40_000);
  const digs = digLoop.stdout.split('\n').filter((l) => l.startsWith('ok') || l.startsWith('fail'));
  t.ok(res.sent >= 1000 && digs.length >= 20, `${res.sent} queries and ${digs.length} digs sent`);
  t.equal(res.failed, 0, '0 failed queries of the 200 QPS loop across kill -9 and restart', res);
  t.same(digs.filter((l) => l.startsWith('fail')), [], '0 failed digs');

  // A graceful stop lets go: nothing is kept, nothing stays bound, the keeper exits.
  const exit = await third.stop(15_000);
  t.equal(exit.exitCode, 0, 'the last podwired stops cleanly');
  let left = await procsIn(nodeNs, 'podwire-dns-keeper');
  for (let i = 0; i < 40 && left.length > 0; i++) {
    await sleep(100);
    left = await procsIn(nodeNs, 'podwire-dns-keeper');
  }
  t.same(left, [], 'the keeper exited after the graceful stop');
  const refused = await exec(pod, ['dig', `@${NODE_LOCAL}`, '+tries=1', '+timeout=3', NAME, 'A'], { timeoutMs: 10_000 });
  t.match(refused.stdout + refused.stderr, /refused/i, 'and a query is refused at once: nothing is bound any more');
});

labTest('without the keeper (--dns-keeper ""), a kill -9 leaves the DNS address unbound', { prefix: 'pwdns-nokeep', timeout: 60_000 }, async (t, lab) => {
  const { pod, nodeNs, dir, manifests } = await realPodwiredLab(t, lab, 'pwdns-nokeep');
  const first = podwired(lab, nodeNs, dir, manifests, ['--dns-keeper', '']);
  await first.waitForOutput(/"msg":"DNS serving"/, 30_000);
  t.same(await answering(pod), ['10.96.1.10'], 'podwired answers');
  t.same(await procsIn(nodeNs, 'podwire-dns-keeper'), [], 'no keeper runs');
  await crash(first);
  const r = await exec(pod, ['dig', `@${NODE_LOCAL}`, '+tries=1', '+timeout=3', NAME, 'A'], { timeoutMs: 10_000 });
  t.match(r.stdout + r.stderr, /refused/i, 'a query during the crash is refused at once (port unreachable)', { out: r.stdout + r.stderr });
});

labTest('kill -9 with dns.workers: 2: the kept sockets take the workers\' share too', { prefix: 'hdt-crashwrk', timeout: 120_000 }, async (t, lab) => {
  const { pod, nodeNs, dir, manifests } = await realPodwiredLab(t, lab, 'hdt-crashwrk');
  const workers = ['--dns-workers', '2'];
  const first = podwired(lab, nodeNs, dir, manifests, workers);
  await first.waitForOutput(/"msg":"DNS serving"/, 30_000);
  t.same(await answering(pod), ['10.96.1.10'], 'the first podwired answers');
  t.equal((await tcpListeners(nodeNs)).length, 2, 'two TCP listeners: the main thread and the worker');
  t.same(await tcpThreads(pod, 16), ['"main"', '"worker-1"'], 'both threads answer over TCP');

  await crash(first);
  const down = await tcpListeners(nodeNs);
  t.ok(down.length === 1 && /podwire-dns-kee/.test(down[0]!), 'with podwired dead, only the kept TCP listener is left (the keeper\'s)', { down });
  // Sent while nothing serves, from several source ports: they all wait in the kept sockets.
  const sent = [...Array(4).keys()].flatMap(() => [
    exec(pod, ['dig', `@${NODE_LOCAL}`, '+tries=1', '+timeout=10', '+nocookie', NAME, 'A'], { timeoutMs: 20_000 }),
    exec(pod, ['dig', `@${NODE_LOCAL}`, '+tcp', '+tries=1', '+timeout=10', '+nocookie', NAME, 'A'], { timeoutMs: 20_000 }),
  ]);
  await sleep(1000);
  const second = podwired(lab, nodeNs, dir, manifests, workers);
  const answers = await Promise.all(sent);
  t.same(
    answers.filter((r) => !/status: NOERROR[\s\S]*10\.96\.1\.10/.test(r.stdout)).map((r) => r.stdout + r.stderr),
    [],
    'the 4 UDP and 4 TCP queries sent during the crash are answered by the restarted podwired',
  );
  t.match(second.stdout + second.stderr, /DNS sockets kept across a crash/, 'the restarted podwired took the kept sockets');
  await second.waitForOutput(/"msg":"DNS serving"/, 30_000);
  t.equal((await tcpListeners(nodeNs)).length, 2, 'two TCP listeners again');
  t.same(await tcpThreads(pod, 16), ['"main"', '"worker-1"'], 'and both threads answer over TCP again');
  const exit = await second.stop(15_000);
  t.equal(exit.exitCode, 0, 'a graceful stop');
});
