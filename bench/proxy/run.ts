/**
 * Service proxy benchmark (nftables mode) against kube-proxy's nftables layout, in one run.
 *
 *   node dist/bench/proxy/run.js [--sizes 1000,5000,10000] [--anchor-bound-s 150] [--changes 20] [--out bench/results/proxy.json]
 *        [--modes nftables,iptables] [--ipt-sizes 1000,5000,10000] [--ipt-nft-sizes 1000] [--ipt-bound-s 200]
 *
 * The iptables mode's columns (Podwire's iptables mode vs kube-proxy's iptables layout applied
 * with iptables-legacy-restore) are described in bench/proxy/iptables.ts.
 *
 * Everything runs in lab namespaces (prefix pwp-bench), never in the root namespace:
 * - cold full sync: N Services × 10 endpoints (+ default/kubernetes) handed to the proxier
 *   as events; wall time from the first event until its sync resolved (rules live:
 *   every transaction applied), then the kernel is checked (services4 element count);
 * - the anchor: kube-proxy's layout (bench/proxy/kube-proxy-layout.ts) as one `nft -f`
 *   in a fresh namespace, bounded by --anchor-bound-s (a bound hit is reported as ">bound");
 * - render at the largest N: bench/proxy/render.ts in a child process (the same full sync
 *   into a runner that only keeps the scripts: model + diff + script, no kernel); judged on
 *   the first render's CPU time on its own thread, as the wall time of a 2-core machine
 *   shared by other jobs mostly measures the wait;
 * - one endpoint change: an EndpointSlice update event → the daemon's runner
 *   (minSyncPeriod 0) → sync resolved; the floor is a hand-written `nft -f` of the
 *   same one-element delta;
 * - daemon RSS: the real podwired (`--enable proxy`) against the fixture API server with
 *   the largest N Services × 10 endpoints (bench/sources' runner, in a lab namespace);
 *   VmRSS after /readyz (the proxy's first sync done) and after idling through three
 *   periodic reconciles (--proxy-sync-period 5s, 15 s); the bench then
 *   checks the daemon's table in that namespace holds every Service;
 * - connect rate: the 100- and N-Service namespaces are measured alternately, 3 rounds,
 *   medians (one 3 s round each is too noisy on a shared machine).
 * Any failed call fails the bench (exit 1).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { openKernel, netnsRef, runInNetns, type Kernel } from '../../src/kernel';
import { systemClock } from '../../src/common/clock';
import { BoundedFrequencyRunner } from '../../src/daemon/runner';
import { proxierHarness, slice, svc, MemoryState } from '../../src/proxy/testing';
import type { ClusterObject } from '../../src/k8s/types';
import { Lab, netnsPath, withLab } from '../../test-netns/harness';
import { benchEndpoint, benchObjects, benchVip, kubeProxyFull } from './kube-proxy-layout';
import { iptablesBench, iptablesTable } from './iptables';
import { arg } from '../args';

const E = 10;
const SIZES = arg('sizes', '1000,5000,10000').split(',').map(Number);
const ANCHOR_BOUND_S = Number(arg('anchor-bound-s', '150'));
const CHANGES = Number(arg('changes', '20'));
const MODES = arg('modes', 'nftables,iptables').split(',');
const IPT_SIZES = arg('ipt-sizes', '1000,5000,10000').split(',').filter((x) => x !== '').map(Number);
const IPT_NFT_SIZES = arg('ipt-nft-sizes', '1000').split(',').filter((x) => x !== '').map(Number);
const IPT_BOUND_S = Number(arg('ipt-bound-s', '200'));
const OUT = arg('out', path.resolve(__dirname, '../../../bench/results/proxy.json'));

const objects = (n: number): ClusterObject[] => benchObjects(n, E);

const ms = (t0: number): number => performance.now() - t0;
/** CPU seconds used so far by this process plus its waited-for children (nft, nsenter): load-independent. */
function cpuS(): number {
  const own = process.cpuUsage();
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  const tick = 100; // USER_HZ
  return (own.user + own.system) / 1e6 + (Number(f[13]) + Number(f[14])) / tick;
}
const pct = (a: number[], p: number): number => [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(p * a.length))]!;

async function countServices(kernel: Kernel): Promise<number> {
  const text = await kernel.nft.list('map inet podwire services4');
  return (text.match(/: goto /g) ?? []).length;
}

interface Row {
  n: number;
  podwireColdS: number;
  podwireCpuS: number;
  anchorCpuS: number | undefined;
  transactions: number;
  anchorS: number | undefined;
  anchorBoundHit: boolean;
  ratio: number | undefined;
  changeP50Ms?: number;
  changeMaxMs?: number;
  floorP50Ms?: number;
}

async function podwireCold(lab: Lab, n: number, row: Row, last: boolean, result: Record<string, unknown>): Promise<void> {
  const ns = await lab.addNetns(`pw${n}`);
  const kernel = await openKernel(netnsRef(netnsPath(ns)));
  try {
    const state = new MemoryState();
    const objs = objects(n);
    const h = proxierHarness(kernel, systemClock, { state });
    const signal = new AbortController().signal;
    const c0 = cpuS();
    const t0 = performance.now();
    for (const o of objs) h.apply(o);
    await h.proxier.sync(signal);
    row.podwireColdS = ms(t0) / 1000;
    row.podwireCpuS = cpuS() - c0;
    row.transactions = h.proxier.lastSync!.transactions;
    const live = await countServices(kernel);
    if (live !== n + 1) throw new Error(`cold sync at ${n}: ${live} Services live in the kernel, expected ${n + 1}`);
    // One endpoint change, through the runner the daemon gives the component (minSyncPeriod 0).
    let resolve: (() => void) | undefined;
    const runner = new BoundedFrequencyRunner({
      name: 'proxy',
      fn: (s) => h.proxier.sync(s).then(() => undefined),
      minIntervalMs: h.proxier.section.minSyncPeriodMs,
      maxIntervalMs: h.proxier.section.syncPeriodMs,
      retryIntervalMs: 1000,
      onRun: (o) => {
        if (!o.ok) throw o.error;
        resolve?.();
      },
    });
    const ac = new AbortController();
    const first = new Promise<void>((r) => (resolve = r));
    runner.start(ac.signal);
    await first;
    const changes: number[] = [];
    let elementChanges = 0;
    for (let c = 1; c <= CHANGES; c++) {
      const i = (c * 7919) % n;
      const key = `ns-${i % 50}/svc-${i}`;
      const eps = Array.from({ length: E }, (_, j) => benchEndpoint(i, j, E, c));
      const done = new Promise<void>((r) => (resolve = r));
      const t1 = performance.now();
      if (!h.apply(slice(key, eps, [{ name: 'http', port: 8080 }]))) throw new Error('the change was not recorded');
      runner.run();
      await done;
      changes.push(ms(t1));
      elementChanges += h.proxier.lastSync!.elementChanges;
    }
    ac.abort();
    await runner.idle();
    row.changeP50Ms = pct(changes, 0.5);
    row.changeMaxMs = Math.max(...changes);
    // Floor: the same one-element delta, hand-written, one `nft -f`.
    const floor: number[] = [];
    for (let c = 1; c <= CHANGES; c++) {
      const i = (c * 104729) % n;
      const vip = benchVip(i + 1);
      const script = `delete element inet podwire endpoints4-tcp { ${vip} . tcp . 80 . 0 }\nadd element inet podwire endpoints4-tcp { ${vip} . tcp . 80 . 0 : ${benchEndpoint(i, 0, E, 100 + c)} . 8080 }\n`;
      const t2 = performance.now();
      await kernel.nft.apply(script);
      floor.push(ms(t2));
    }
    row.floorP50Ms = pct(floor, 0.5);
    result[`elementChangesPerEndpointChange_${n}`] = elementChanges / CHANGES;
    if (last) {
      const mem = process.memoryUsage();
      result.benchProcessRssMB = Math.round(mem.rss / 2 ** 20);
    }
  } finally {
    kernel.close();
  }
}

async function anchor(lab: Lab, n: number, row: Row): Promise<void> {
  const ns = await lab.addNetns(`kp${n}`);
  const text = kubeProxyFull(n, E);
  const c0 = cpuS();
  const t0 = performance.now();
  try {
    await runInNetns(netnsRef(netnsPath(ns)), ['nft', '-f', '-'], { input: text, timeoutMs: ANCHOR_BOUND_S * 1000 });
    row.anchorS = ms(t0) / 1000;
    row.anchorCpuS = cpuS() - c0;
  } catch (err) {
    const elapsed = ms(t0) / 1000;
    if (elapsed >= ANCHOR_BOUND_S * 0.98) {
      row.anchorS = ANCHOR_BOUND_S;
      row.anchorBoundHit = true;
    } else throw err;
  }
}

const CONN_SERVER = `
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 8080)); s.listen(65535)
print('ready', flush=True)
while True:
    try:
        c, _ = s.accept(); c.close()
    except OSError:
        pass
`;
const CONN_CLIENT = `
import socket, struct, sys, time, json
ip, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
linger = struct.pack('ii', 1, 0); n = 0; err = 0; pc = time.perf_counter; end = pc() + seconds; t0 = pc()
while pc() < end:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger); s.settimeout(2.0)
    try:
        s.connect((ip, port)); n += 1
    except OSError:
        err += 1
    s.close()
print(json.dumps({'connections': n, 'errors': err, 'conn_per_s': round(n / (pc() - t0), 1)}))
`;

/** A namespace with n Services (+ bench/last → a listener in the namespace) programmed, and a server. */
async function connectSetup(lab: Lab, n: number): Promise<{ ns: string; close: () => Promise<void> }> {
  const ns = await lab.addNetns(`cr${n}`);
  const kernel = await openKernel(netnsRef(netnsPath(ns)));
  try {
    await lab.ip(ns, ['link', 'add', 'kpa', 'type', 'veth', 'peer', 'name', 'kpb']);
    await lab.ip(ns, ['link', 'set', 'kpa', 'up']);
    await lab.ip(ns, ['link', 'set', 'kpb', 'up']);
    await lab.ip(ns, ['addr', 'add', '10.1.0.1/32', 'dev', 'kpa']);
    await lab.ip(ns, ['addr', 'add', '10.0.0.1/32', 'dev', 'kpa']);
    await lab.ip(ns, ['route', 'add', '10.96.0.0/12', 'dev', 'kpa', 'src', '10.1.0.1']);
    const h = proxierHarness(kernel, systemClock);
    for (const o of objects(n)) h.apply(o);
    h.apply(svc('bench/last', '10.111.255.250', { ports: [{ name: 'http', port: 80 }] }));
    h.apply(slice('bench/last', ['10.0.0.1'], [{ name: 'http', port: 8080 }]));
    await h.proxier.sync(new AbortController().signal);
  } finally {
    kernel.close();
  }
  const server = lab.spawn(ns, ['python3', '-c', CONN_SERVER]);
  await server.waitForOutput(/ready/, 10_000);
  return { ns, close: () => server.stop().then(() => undefined) };
}

/** TCP connects/s to the LAST Service's VIP for `seconds`. */
async function connectRate(lab: Lab, ns: string, n: number, seconds: number): Promise<number> {
  const r = await lab.exec(ns, ['python3', '-c', CONN_CLIENT, '10.111.255.250', '80', String(seconds)], { timeoutMs: (seconds + 10) * 1000 });
  const out = JSON.parse(r.stdout) as { connections: number; errors: number; conn_per_s: number };
  if (out.errors > 0 || out.connections === 0) throw new Error(`connect rate at ${n}: ${r.stdout} ${r.stderr}`);
  return out.conn_per_s;
}

const median = (a: number[]): number => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/**
 * The daemon's periodic reconcile runs during the idle time (three syncPeriods), so the RSS
 * after idling includes what the proxy costs while it runs, not only after its first sync.
 */
const DAEMON_SYNC_PERIOD_S = 5;
const DAEMON_IDLE_S = 15;

/** The real daemon (`--enable proxy`) with n Services × E endpoints from the fixture API server, in a lab namespace. */
async function daemonRss(lab: Lab, n: number): Promise<Record<string, unknown>> {
  const ns = await lab.addNetns('rss');
  await lab.ip(ns, ['link', 'set', 'lo', 'up']);
  const runner = path.resolve(__dirname, '../sources/run.js');
  const r = await lab.exec(ns, [process.execPath, runner, '--single-daemon', '--services', String(n), '--endpoints-per-service', String(E), '--changes', '5', '--idle-seconds', String(DAEMON_IDLE_S), '--own-node-only', '--extra-args', `--enable proxy --proxy-sync-period ${DAEMON_SYNC_PERIOD_S}s`], { timeoutMs: 420_000 });
  const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (r.exitCode !== 0 || !line) throw new Error(`daemon RSS run failed (exit ${r.exitCode}): ${(r.stdout + r.stderr).slice(-1500)}`);
  const res = JSON.parse(line.slice(7)) as { rss: { afterReadyMb: number; afterIdleMb: number; peakMb: number }; heap: { usedMb: number } | null; spawnToReadyMs: number; nodeFlags: string };
  // The daemon leaves its data plane on SIGTERM: its table must hold every Service.
  const listed = await runInNetns(netnsRef(netnsPath(ns)), ['nft', 'list', 'map', 'inet', 'podwire', 'services4']);
  const live = (listed.stdout.match(/: goto /g) ?? []).length;
  if (live < n) throw new Error(`daemon RSS run: ${live} Services in the daemon's table, expected ${n}`);
  return { ...res.rss, heapUsedMb: res.heap?.usedMb, spawnToReadyMs: res.spawnToReadyMs, nodeFlags: res.nodeFlags, servicesLive: live };
}

function daemonLine(d: Record<string, unknown> | undefined): string {
  if (!d) return 'not measured (--no-daemon)';
  return `VmRSS ${String(d.afterReadyMb)} MB after ready, ${String(d.afterIdleMb)} MB after ${DAEMON_IDLE_S} s idle (syncPeriod ${DAEMON_SYNC_PERIOD_S} s), peak ${String(d.peakMb)} MB (heap ${String(d.heapUsedMb)} MB; node flags ${String(d.nodeFlags) || 'none'}; spawn → ready ${String(d.spawnToReadyMs)} ms; ${String(d.servicesLive)} Services in its table)`;
}

async function main(): Promise<void> {
  // The system clock's timers are unref'd (a daemon's runner must not keep it alive); the bench must stay up.
  const keepAlive = setInterval(() => undefined, 1000);
  const rows: Row[] = [];
  const result: Record<string, unknown> = { when: new Date().toISOString(), endpointsPerService: E, anchorBoundS: ANCHOR_BOUND_S };
  if (MODES.includes('iptables')) {
    await withLab('qi-bench', async (lab) => {
      result.iptables = await iptablesBench(lab, { sizes: IPT_SIZES, nftSizes: IPT_NFT_SIZES, changes: CHANGES, boundS: IPT_BOUND_S });
    });
    console.log(iptablesTable(result.iptables as Parameters<typeof iptablesTable>[0]).join('\n'));
  }
  if (!MODES.includes('nftables')) {
    mkdirSync(path.dirname(OUT), { recursive: true });
    writeFileSync(OUT, JSON.stringify(result, null, 2) + '\n');
    console.log(`wrote ${OUT}`);
    clearInterval(keepAlive);
    return;
  }
  await withLab('pwp-bench', async (lab) => {
    for (const [idx, n] of SIZES.entries()) {
      const row: Row = { n, podwireColdS: 0, podwireCpuS: 0, anchorCpuS: undefined, transactions: 0, anchorS: undefined, anchorBoundHit: false, ratio: undefined };
      process.stderr.write(`size ${n}: podwire\n`);
      await podwireCold(lab, n, row, idx === SIZES.length - 1, result);
      process.stderr.write(`size ${n}: anchor\n`);
      await anchor(lab, n, row);
      row.ratio = row.anchorS === undefined ? undefined : row.anchorS / row.podwireColdS;
      rows.push(row);
      process.stderr.write(`${JSON.stringify(row)}\n`);
    }
  });
  await withLab('pwp-bench', async (lab) => {
    const big = SIZES[SIZES.length - 1]!;
    const a = await connectSetup(lab, 100);
    const b = await connectSetup(lab, big);
    const small: number[] = [];
    const large: number[] = [];
    try {
      // ABBAAB: each side goes first as often as second (the one measured right after the
      // other sees the other's fresh conntrack entries and TIME_WAIT sockets).
      for (let round = 0; round < 3; round++) {
        if (round % 2 === 0) {
          small.push(await connectRate(lab, a.ns, 100, 3));
          large.push(await connectRate(lab, b.ns, big, 3));
        } else {
          large.push(await connectRate(lab, b.ns, big, 3));
          small.push(await connectRate(lab, a.ns, 100, 3));
        }
      }
    } finally {
      await a.close();
      await b.close();
    }
    result.connect = { at100PerS: median(small), atMaxPerS: median(large), ratio: median(large) / median(small), rounds: { at100: small, atMax: large } };
  });
  if (!process.argv.includes('--no-daemon')) {
    process.stderr.write(`daemon RSS at ${SIZES[SIZES.length - 1]!}\n`);
    await withLab('pwp-bench', async (lab) => {
      result.daemon = await daemonRss(lab, SIZES[SIZES.length - 1]!);
    });
  }
  result.rows = rows;
  const big = rows[rows.length - 1]!;
  // Render only, in a process of its own (bench/proxy/render.ts): this one's heap holds the
  // earlier phases' states, whose GC would be counted against the render.
  process.stderr.write(`render at ${big.n}\n`);
  const renderOut = path.join(path.dirname(OUT), 'proxy-render.json');
  execFileSync(process.execPath, [path.join(__dirname, 'render.js'), '--services', String(big.n), '--rounds', '4', '--out', renderOut], { stdio: ['ignore', 'inherit', 'inherit'] });
  const render = JSON.parse(readFileSync(renderOut, 'utf8')) as { coldThreadCpuMs: number; rounds: { threadCpuMs: number; processCpuMs: number; wallMs: number }[] };
  result.render = render;
  const targets = {
    coldLe5s: big.podwireColdS <= 5,
    coldGe15xAnchor: (big.ratio ?? 0) >= 15,
    renderLe500ms: render.coldThreadCpuMs <= 500,
    changeLe50ms: (big.changeP50Ms ?? Infinity) <= 50,
    daemonRssLe150MB: ((result.daemon as { afterIdleMb?: number } | undefined)?.afterIdleMb ?? Infinity) <= 150,
    connectGe0_9x: ((result.connect as { ratio: number }).ratio ?? 0) >= 0.9,
  };
  result.targets = targets;
  const f = (x: number | undefined, d = 2): string => (x === undefined ? '-' : x.toFixed(d));
  const lines = [
    '| Services×10 | podwire cold sync wall s (CPU s) | txs | kube-proxy layout nft -f wall s (CPU s) | ratio wall (CPU) | 1 endpoint change p50 / max ms | floor nft -f p50 ms |',
    '|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.n} | ${f(r.podwireColdS)} (${f(r.podwireCpuS)}) | ${r.transactions} | ${r.anchorBoundHit ? `>${r.anchorS} (bound)` : `${f(r.anchorS)} (${f(r.anchorCpuS)})`} | ${r.anchorBoundHit ? '>' : ''}${f(r.ratio, 1)}× (${r.anchorCpuS === undefined ? '-' : f(r.anchorCpuS / r.podwireCpuS, 1) + '×'}) | ${f(r.changeP50Ms, 1)} / ${f(r.changeMaxMs, 1)} | ${f(r.floorP50Ms, 1)} |`),
    '',
    `load average at the end: ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')} (2 CPUs shared; wall times scale with it, CPU times do not)`,
    `render at ${big.n} (model + diff + script, no kernel; first of 4 in a fresh process): ${f(render.coldThreadCpuMs, 0)} ms CPU on its thread (${f(render.rounds[0]!.processCpuMs, 0)} ms process CPU, ${f(render.rounds[0]!.wallMs, 0)} ms wall)`,
    `daemon (podwired --enable proxy, ${big.n}×${E} from the fixture API server): ${daemonLine(result.daemon as Record<string, unknown> | undefined)}`,
    `TCP connects/s to the last Service's VIP (median of 3 rounds, ABBAAB order): ${(result.connect as { at100PerS: number }).at100PerS} with 100 Services, ${(result.connect as { atMaxPerS: number }).atMaxPerS} with ${big.n} (${f((result.connect as { ratio: number }).ratio)}×)`,
    `targets at ${big.n}: ${Object.entries(targets).map(([k, v]) => `${k}=${v ? 'met' : 'MISSED'}`).join(', ')}`,
  ];
  console.log(lines.join('\n'));
  mkdirSync(path.dirname(OUT), { recursive: true });
  writeFileSync(OUT, JSON.stringify(result, null, 2) + '\n');
  console.log(`wrote ${OUT}`);
  clearInterval(keepAlive);
}

main().catch((err: unknown) => {
  console.error('bench failed:', err);
  process.exit(1);
});
