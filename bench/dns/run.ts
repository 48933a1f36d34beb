/**
 * DNS bench (root): Podwire's DNS server against Knot and NSD serving the same
 * 5,000-Service cluster.local zone, inside a lab namespace, servers pinned to one core
 * (all but podwired-w2-unpinned) and dnsperf to another, alternating in the same run.
 *
 *   node dist/bench/dns/run.js [--duration 10] [--rounds 2] [--servers podwire,knot,nsd] [--services 5000]
 *                              [--server-cpu 1] [--client-cpu 0] [--fixed-qps 5000] [--out bench/results]
 *                              [--fwd-servers podwire,dnsmasq] [--fuzz 1000000]
 *
 * Servers: `podwire` is the dns component alone on the in-memory cluster state (bench/dns/server.ts,
 * which also reports the DNS part of the RSS), `podwire-dgram` the same on Node's dgram,
 * `podwired` the real daemon with `--enable dns` on the manifests (the whole process's RSS),
 * `podwired-w2-unpinned` the same with `--dns-workers 2` (the main thread and one worker
 * thread), NOT pinned: its threads may use both cores, the client's too, so its raw QPS is
 * what two threads reach on this machine and its QPS per CPU-second counts both threads.
 * Mixes: `cluster` (the 5,000-Service zone: 70% A, 10% SRV, 20% NXDOMAIN) against Knot and
 * NSD; `forward` (forwarded and cached: 2,000 names of an external zone behind an upstream
 * Knot pinned to the client core; 80% A, 10% AAAA NODATA, 10% NXDOMAIN; the cache warmed
 * first) against a CoreDNS-shaped anchor, dnsmasq → Knot (kube-dns's caching front end).
 * Then --fuzz packets (random and mutated, paced; 0 = skip) at Podwire, after which it must
 * still answer correctly over UDP and TCP.
 *
 * Per server and round: a saturating run (dnsperf -c 4 -q 200) → raw QPS, QPS per server
 * CPU-second, latency, lost; then a fixed-rate run at --fixed-qps → lost. RSS after load.
 * Writes JSON to bench/results/dns-<time>.json and prints a table with the targets.
 * Exit 1 when a query failed (a SERVFAIL/other rcode, or lost at the fixed rate).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { exec, withLab, type BackgroundProcess, type Lab } from '../../test-netns/harness';
import { generate, type BenchData } from './gen';

const PORT = 15353;
/** The upstream Knot of the forward mix. */
const UPSTREAM_PORT = 15354;
const REPO = path.resolve(__dirname, '../../..');
const HOST_JS = path.join(REPO, 'dist/test-netns/dns/host.js');
const SERVER_JS = path.join(REPO, 'dist/bench/dns/server.js');
const CLIENT_JS = path.join(REPO, 'dist/test-netns/dns/load-client.js');
/** podwired with `dns.workers: 2`, not pinned to one core (see the module doc). */
const PODWIRED_W2 = 'podwired-w2-unpinned';

interface Opts {
  duration: number;
  rounds: number;
  servers: string[];
  services: number;
  serverCpu: number;
  clientCpu: number;
  fixedQps: number;
  out: string;
  fwdServers: string[];
  fuzz: number;
}

function parseArgs(argv: string[]): Opts {
  const o: Opts = { duration: 10, rounds: 2, servers: ['podwire', 'knot', 'nsd', 'podwired', PODWIRED_W2], services: 5000, serverCpu: 1, clientCpu: 0, fixedQps: 5000, out: path.join(REPO, 'bench/results'), fwdServers: ['podwire', 'dnsmasq'], fuzz: 1_000_000 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = argv[++i] ?? '';
    if (a === '--duration') o.duration = Number(v);
    else if (a === '--rounds') o.rounds = Number(v);
    else if (a === '--servers') o.servers = v.split(',');
    else if (a === '--services') o.services = Number(v);
    else if (a === '--server-cpu') o.serverCpu = Number(v);
    else if (a === '--client-cpu') o.clientCpu = Number(v);
    else if (a === '--fixed-qps') o.fixedQps = Number(v);
    else if (a === '--out') o.out = path.resolve(v);
    else if (a === '--fwd-servers') o.fwdServers = v.split(',').filter((x) => x !== '');
    else if (a === '--fuzz') o.fuzz = Number(v);
    else throw new Error(`unknown option ${a}`);
  }
  return o;
}

const HZ = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());

function tree(pid: number): number[] {
  const out = [pid];
  const ppid = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = readFileSync(`/proc/${d}/stat`, 'utf8');
      const pp = Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]);
      ppid.set(pp, [...(ppid.get(pp) ?? []), Number(d)]);
    } catch {
      /* gone */
    }
  }
  for (let i = 0; i < out.length; i++) out.push(...(ppid.get(out[i]!) ?? []));
  return out;
}

function cpuTicks(pid: number): number {
  let sum = 0;
  for (const p of tree(pid)) {
    try {
      const st = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      sum += Number(f[11]) + Number(f[12]);
    } catch {
      /* gone */
    }
  }
  return sum;
}

function memKb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  let sum = 0;
  for (const p of tree(pid)) {
    try {
      const m = new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${p}/status`, 'utf8'));
      sum += Number(m?.[1] ?? 0);
    } catch {
      /* gone */
    }
  }
  return sum;
}

async function startServer(lab: Lab, ns: string, name: string, data: BenchData, work: string, cpu: number, mix: Mix = 'cluster'): Promise<BackgroundProcess> {
  const pin = ['taskset', '-c', String(cpu)];
  if (mix === 'forward') {
    if (name === 'podwire') {
      const args = { services: data.services, namespaces: 50, listen: `127.0.0.1:${PORT}`, upstreams: [`127.0.0.1:${UPSTREAM_PORT}`] };
      return lab.spawn(ns, [...pin, process.execPath, '--max-semi-space-size=4', '--expose-gc', SERVER_JS, JSON.stringify(args)]);
    }
    if (name === 'dnsmasq') {
      const d = path.join(work, 'dnsmasq');
      mkdirSync(d, { recursive: true });
      // CoreDNS-shaped: a forwarding cache (positive and negative entries) of the same capacity as Podwire's.
      writeFileSync(path.join(d, 'dnsmasq.conf'), [
        `port=${PORT}`, 'listen-address=127.0.0.1', 'bind-interfaces', 'no-resolv', 'no-hosts', 'no-poll', 'user=root', 'log-facility=-',
        `server=127.0.0.1#${UPSTREAM_PORT}`, 'cache-size=10000', 'dns-forward-max=1000', `pid-file=${d}/dnsmasq.pid`, '',
      ].join('\n'));
      return lab.spawn(ns, [...pin, 'dnsmasq', '-k', `--conf-file=${d}/dnsmasq.conf`]);
    }
    throw new Error(`unknown forward-mix server ${name}`);
  }
  if (name === 'upstream-knot') return startKnot(lab, ns, path.join(work, 'upstream'), data.fwdZoneFile, 'example.test', UPSTREAM_PORT, pin);
  if (name === 'podwire' || name === 'podwire-dgram') {
    // --max-semi-space-size=4: what bin/podwired runs Node with (see its comment).
    // podwire-dgram: the same server on Node's dgram instead of the native batched socket.
    const args = { services: data.services, namespaces: 50, listen: `127.0.0.1:${PORT}`, nativeUdp: name === 'podwire' };
    return lab.spawn(ns, [...pin, process.execPath, '--max-semi-space-size=4', '--expose-gc', SERVER_JS, JSON.stringify(args)]);
  }
  if (name === 'podwired' || name === PODWIRED_W2) {
    // The real daemon with only the dns component, on the bench's manifests: the whole process's RSS.
    // With two serving threads it is not pinned: one core cannot show what a second thread adds.
    const workers = name === PODWIRED_W2;
    const d = path.join(work, name);
    mkdirSync(d, { recursive: true });
    writeFileSync(path.join(d, 'config.yaml'), '# everything on the command line\n');
    writeFileSync(path.join(d, 'resolv.conf'), '# no upstreams\n');
    return lab.spawn(ns, [
      ...(workers ? [] : pin), process.execPath, '--max-semi-space-size=4', path.join(REPO, 'bin/podwired'),
      '--config', path.join(d, 'config.yaml'), '--node-name', 'bench', '--enable', 'dns', '--manifests', data.manifests,
      '--state-dir', path.join(d, 'state'), '--control-socket', path.join(d, 'podwire.sock'),
      '--health-listen', '127.0.0.1:10366', '--metrics-listen', '127.0.0.1:10369',
      '--dns-listen', `127.0.0.1:${PORT}`, '--dns-resolv-conf', path.join(d, 'resolv.conf'), '--dns-bind-interface', '', '--dns-drain-timeout', '0s', '--log-level', 'warn',
      ...(workers ? ['--dns-workers', '2'] : []),
    ]);
  }
  if (name === 'podwire-manifests') {
    const args = { manifests: data.manifests, listen: [`127.0.0.1:${PORT}`], logLevel: 'error', rescanMs: 0, section: { upstreams: [], resolvConf: '/nonexistent', bindInterface: '', drainTimeout: 0, log: false } };
    return lab.spawn(ns, [...pin, process.execPath, '--max-semi-space-size=4', HOST_JS, JSON.stringify(args)]);
  }
  const d = path.join(work, name);
  mkdirSync(path.join(d, 'db'), { recursive: true });
  execFileSync('cp', [data.zoneFile, d]);
  if (name === 'knot') return startKnot(lab, ns, d, data.zoneFile, 'cluster.local', PORT, pin);
  if (name === 'nsd') {
    writeFileSync(path.join(d, 'nsd.conf'), [
      'server:', `  ip-address: 127.0.0.1@${PORT}`, '  do-ip6: no', '  server-count: 1', '  username: ""', '  chroot: ""', `  zonesdir: "${d}"`, '  database: ""',
      `  zonelistfile: "${d}/zone.list"`, `  xfrdfile: "${d}/xfrd.state"`, `  xfrdir: "${d}"`, `  pidfile: "${d}/nsd.pid"`, `  logfile: "${d}/nsd.log"`, '  verbosity: 0', '  hide-version: yes', '  refuse-any: yes',
      '  rrl-ratelimit: 0', '  rrl-whitelist-ratelimit: 0',
      'remote-control:', '  control-enable: no',
      'zone:', '  name: cluster.local', '  zonefile: cluster.local.zone', '',
    ].join('\n'));
    return lab.spawn(ns, [...pin, 'nsd', '-d', '-c', path.join(d, 'nsd.conf')]);
  }
  throw new Error(`unknown server ${name}`);
}

function startKnot(lab: Lab, ns: string, d: string, zoneFile: string, zone: string, port: number, pin: string[]): BackgroundProcess {
  mkdirSync(path.join(d, 'db'), { recursive: true });
  execFileSync('cp', [zoneFile, d]);
  writeFileSync(path.join(d, 'knot.conf'), [
    'server:', `  rundir: "${d}"`, `  pidfile: "${d}/knot.pid"`, `  listen: 127.0.0.1@${port}`, '  udp-workers: 1', '  tcp-workers: 1', '  background-workers: 1',
    'log:', '  - target: stderr', '    any: warning',
    'database:', `  storage: "${d}/db"`,
    'control:', `  listen: "${d}/knot.sock"`,
    'template:', '  - id: default', `    storage: "${d}"`, '    file: "%s.zone"', '    zonefile-sync: -1', '    zonefile-load: whole', '    journal-content: none', '    semantic-checks: off',
    'zone:', `  - domain: ${zone}`, '',
  ].join('\n'));
  return lab.spawn(ns, [...pin, 'knotd', '-c', path.join(d, 'knot.conf')]);
}

type Mix = 'cluster' | 'forward';

async function waitReady(ns: string, proc: BackgroundProcess, port = PORT, name = 'svc-1.ns-1.svc.cluster.local', answer = /^10\./m): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (proc.exit) throw new Error(`server exited: ${proc.stderr.slice(-500)}`);
    const r = await exec(ns, ['dig', `@127.0.0.1`, '-p', String(port), '+tries=1', '+timeout=1', '+short', name, 'A']);
    if (answer.test(r.stdout)) return;
    await new Promise((res) => setTimeout(res, 200));
  }
  throw new Error('server not ready');
}

interface PerfResult {
  qps: number;
  avgLatencyMs: number;
  sent: number;
  lost: number;
  noerror: number;
  nxdomain: number;
  other: number;
  runSec: number;
}

async function dnsperf(ns: string, o: Opts, data: BenchData, extra: string[], mix: Mix = 'cluster'): Promise<PerfResult> {
  const r = await exec(ns, ['taskset', '-c', String(o.clientCpu), 'dnsperf', '-s', '127.0.0.1', '-p', String(PORT), '-d', mix === 'forward' ? data.fwdQueries : data.queries, '-l', String(o.duration), '-t', '2', ...extra], { timeoutMs: (o.duration + 30) * 1000 });
  const out = r.stdout;
  const num = (re: RegExp): number => Number(re.exec(out)?.[1] ?? NaN);
  const codes = /Response codes:\s+(.*)/.exec(out)?.[1] ?? '';
  let other = 0;
  for (const m of codes.matchAll(/([A-Z]+) (\d+)/g)) if (m[1] !== 'NOERROR' && m[1] !== 'NXDOMAIN') other += Number(m[2]);
  return {
    qps: num(/Queries per second:\s+([\d.]+)/),
    avgLatencyMs: num(/Average Latency \(s\):\s+([\d.]+)/) * 1000,
    sent: num(/Queries sent:\s+(\d+)/),
    lost: num(/Queries lost:\s+(\d+)/),
    noerror: Number(/NOERROR (\d+)/.exec(codes)?.[1] ?? 0),
    nxdomain: Number(/NXDOMAIN (\d+)/.exec(codes)?.[1] ?? 0),
    other,
    runSec: num(/Run time \(s\):\s+([\d.]+)/),
  };
}

interface Row {
  mix: Mix;
  server: string;
  round: number;
  qps: number;
  qpsPerServerCpuSec: number;
  serverCpuPct: number;
  avgLatencyMs: number;
  sent: number;
  lost: number;
  noerror: number;
  nxdomain: number;
  otherRcodes: number;
  fixedQps: number;
  fixedLost: number;
  fixedOther: number;
  fixedAvgLatencyMs: number;
  rssMb: number;
  peakRssMb: number;
  /** Podwire only: RSS minus the process's RSS before the DNS code was loaded (Node + cluster state). */
  dnsPartRssMb: number | null;
  /** The machine's 1-minute load average before the run (2 cores, shared with other tenants). */
  loadAvg1: number;
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const work = mkdtempSync(path.join(tmpdir(), 'pwdns-bench-'));
  const rows: Row[] = [];
  let fuzzResult: { packets: number; responses: number; tcpConnections: number; seconds: number; serverAlive: boolean; correctAfter: boolean } | undefined;
  try {
    const data = generate(work, o.services);
    await withLab('pwdns-bench', async (lab) => {
      const ns = await lab.addNetns('b');
      const measure = async (mix: Mix, s: string, round: number): Promise<void> => {
        process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] round ${round} ${mix}: ${s}\n`);
        const proc = await startServer(lab, ns, s, data, work, o.serverCpu, mix);
        if (mix === 'forward') await waitReady(ns, proc, PORT, 'host-1.example.test', /^192\.0\./m);
        else await waitReady(ns, proc);
        const pid = proc.pid!;
        // Warm-up (V8's JIT; for the forward mix, the cache), not measured.
        await dnsperf(ns, { ...o, duration: mix === 'forward' ? 4 : 2 }, data, ['-c', '2', '-q', '100', '-Q', '20000'], mix);
        const load1 = loadavg()[0]!;
        const t0 = cpuTicks(pid);
        const sat = await dnsperf(ns, o, data, ['-c', '4', '-q', '200', '-Q', '200000'], mix);
        const t1 = cpuTicks(pid);
        const fixed = await dnsperf(ns, o, data, ['-c', '2', '-q', '500', '-Q', String(o.fixedQps)], mix);
        const rss = memKb(pid, 'VmRSS') / 1024;
        const base = Number(/DNS BASE (\d+)/.exec(proc.stdout)?.[1] ?? 0);
        const peak = memKb(pid, 'VmHWM') / 1024;
        await proc.stop(5000);
        const cpuSec = (t1 - t0) / HZ;
        rows.push({
          mix,
          server: s,
          round,
          qps: Math.round(sat.qps),
          qpsPerServerCpuSec: cpuSec > 0 ? Math.round((sat.qps * sat.runSec) / cpuSec) : 0,
          serverCpuPct: Math.round((cpuSec / sat.runSec) * 100),
          avgLatencyMs: +sat.avgLatencyMs.toFixed(3),
          sent: sat.sent,
          lost: sat.lost,
          noerror: sat.noerror,
          nxdomain: sat.nxdomain,
          otherRcodes: sat.other,
          fixedQps: Math.round(fixed.qps),
          fixedLost: fixed.lost,
          fixedOther: fixed.other,
          fixedAvgLatencyMs: +fixed.avgLatencyMs.toFixed(3),
          rssMb: +rss.toFixed(1),
          peakRssMb: +peak.toFixed(1),
          dnsPartRssMb: base ? +(rss - base / 1048576).toFixed(1) : null,
          loadAvg1: +load1.toFixed(1),
        });
        process.stderr.write(`${JSON.stringify(rows[rows.length - 1])}\n`);
      };
      for (let round = 1; round <= o.rounds; round++) {
        const order = round % 2 ? o.servers : [...o.servers].reverse();
        for (const s of order) await measure('cluster', s, round);
        if (o.fwdServers.length === 0) continue;
        // The forward mix: the upstream Knot on the client's core, so it never takes the server's.
        const upstream = await startServer(lab, ns, 'upstream-knot', data, work, o.clientCpu);
        try {
          await waitReady(ns, upstream, UPSTREAM_PORT, 'host-1.example.test', /^192\.0\./m);
          const forder = round % 2 ? o.fwdServers : [...o.fwdServers].reverse();
          for (const s of forder) await measure('forward', s, round);
        } finally {
          await upstream.stop(5000);
        }
      }
      if (o.fuzz > 0) {
        process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] fuzz: ${o.fuzz} packets at podwire\n`);
        const proc = await startServer(lab, ns, 'podwire', data, work, o.serverCpu);
        try {
          await waitReady(ns, proc);
          const t0 = Date.now();
          const out = await exec(ns, ['taskset', '-c', String(o.clientCpu), process.execPath, CLIENT_JS, 'fuzz', JSON.stringify({ server: '127.0.0.1', port: PORT, count: o.fuzz, seed: 20261202, valid: 'svc-1.ns-1.svc.cluster.local' })], { timeoutMs: 900_000 });
          const res = JSON.parse(out.stdout.trim().split('\n').pop() ?? '{}') as { sent?: number; responses?: number; tcpConnections?: number };
          const a = await exec(ns, ['dig', '@127.0.0.1', '-p', String(PORT), '+tries=2', '+timeout=2', '+short', 'svc-1.ns-1.svc.cluster.local', 'A']);
          const srv = await exec(ns, ['dig', '@127.0.0.1', '-p', String(PORT), '+tcp', '+tries=2', '+timeout=2', '+short', '_http._tcp.svc-1.ns-1.svc.cluster.local', 'SRV']);
          fuzzResult = {
            packets: res.sent ?? 0,
            responses: res.responses ?? 0,
            tcpConnections: res.tcpConnections ?? 0,
            seconds: Math.round((Date.now() - t0) / 1000),
            serverAlive: proc.exit === null,
            correctAfter: a.stdout.trim() === '10.96.0.17' && srv.stdout.trim() === '0 100 80 svc-1.ns-1.svc.cluster.local.',
          };
          process.stderr.write(`${JSON.stringify({ fuzz: fuzzResult })}\n`);
        } finally {
          await proc.stop(5000);
        }
      }
    });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const median = (xs: number[]): number => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length ? s[Math.floor((s.length - 1) / 2)]! : NaN;
  };
  const summary: Record<string, Record<string, number>> = {};
  const keys = [...o.servers.map((s) => ['cluster', s] as const), ...o.fwdServers.map((s) => ['forward', s] as const)];
  for (const [mix, s] of keys) {
    const r = rows.filter((x) => x.server === s && x.mix === mix);
    if (r.length === 0) continue;
    summary[mix === 'cluster' ? s : `forward:${s}`] = {
      qps: median(r.map((x) => x.qps)),
      qpsPerServerCpuSec: median(r.map((x) => x.qpsPerServerCpuSec)),
      avgLatencyMs: median(r.map((x) => x.avgLatencyMs)),
      lostSaturated: r.reduce((a, x) => a + x.lost, 0),
      lostAtFixedQps: r.reduce((a, x) => a + x.fixedLost, 0),
      failedRcodes: r.reduce((a, x) => a + x.otherRcodes + x.fixedOther, 0),
      rssMb: Math.max(...r.map((x) => x.rssMb)),
      dnsPartRssMb: Math.max(...r.map((x) => x.dnsPartRssMb ?? NaN)),
    };
  }
  const pw = summary.podwire;
  const knot = summary.knot;
  const targets: Record<string, { value: number | undefined; met: boolean } | undefined> = pw
    ? {
        'qps/cpu-s >= 0.5x knot': knot ? { value: +(pw.qpsPerServerCpuSec! / knot.qpsPerServerCpuSec!).toFixed(2), met: pw.qpsPerServerCpuSec! >= 0.5 * knot.qpsPerServerCpuSec! } : undefined,
        [`0 lost at ${o.fixedQps} qps`]: { value: pw.lostAtFixedQps, met: pw.lostAtFixedQps === 0 },
        'rss <= 70 MB at 5000 services (whole process)': { value: pw.rssMb, met: pw.rssMb! <= 70 },
        ...(summary.podwired ? { 'rss <= 70 MB at 5000 services (podwired --enable dns, whole process)': { value: summary.podwired.rssMb, met: summary.podwired.rssMb! <= 70 } } : {}),
        'rss <= 70 MB at 5000 services (DNS part: minus Node + cluster state)': { value: pw.dnsPartRssMb, met: pw.dnsPartRssMb! <= 70 },
        '0 failed queries': { value: pw.failedRcodes, met: pw.failedRcodes === 0 },
      }
    : {};
  const fpw = summary['forward:podwire'];
  const fdm = summary['forward:dnsmasq'];
  const forward = fpw && fdm ? { qpsPerServerCpuSecRatioVsDnsmasq: +(fpw.qpsPerServerCpuSec! / fdm.qpsPerServerCpuSec!).toFixed(2) } : undefined;
  const result = { when: new Date().toISOString(), options: o, node: process.version, rows, summary, targets, forward, fuzz: fuzzResult };
  mkdirSync(o.out, { recursive: true });
  const file = path.join(o.out, `dns-${result.when.replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  const cols = ['server', 'qps', 'qpsPerServerCpuSec', 'avgLatencyMs', 'lostSaturated', 'lostAtFixedQps', 'failedRcodes', 'rssMb', 'dnsPartRssMb'];
  process.stdout.write(`${cols.join('\t')}\n`);
  for (const [s, v] of Object.entries(summary)) process.stdout.write(`${[s, ...cols.slice(1).map((c) => v[c])].join('\t')}\n`);
  for (const [k, v] of Object.entries(targets)) if (v) process.stdout.write(`target ${k}: ${v.value} ${v.met ? 'MET' : 'MISSED'}\n`);
  if (forward) process.stdout.write(`forward mix (cached): podwire ${forward.qpsPerServerCpuSecRatioVsDnsmasq}x dnsmasq's QPS per server CPU-second\n`);
  if (fuzzResult) process.stdout.write(`fuzz: ${fuzzResult.packets} packets (+${fuzzResult.tcpConnections} TCP connections) in ${fuzzResult.seconds} s, ${fuzzResult.responses} responses; server alive: ${fuzzResult.serverAlive}; correct after: ${fuzzResult.correctAfter}\n`);
  process.stdout.write(`machine load average during the runs: ${rows.map((r) => r.loadAvg1).join(', ')} (2 cores, shared: raw QPS is noisy, QPS per server CPU-second less so)\n`);
  process.stdout.write(`results: ${file}\n`);
  const failed =
    Object.values(summary).some((v) => v.failedRcodes! > 0) ||
    (pw !== undefined && pw.lostAtFixedQps! > 0) ||
    (fuzzResult !== undefined && (!fuzzResult.serverAlive || !fuzzResult.correctAfter || fuzzResult.packets !== o.fuzz));
  process.exit(failed ? 1 : 0);
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(2);
});
