/**
 * What the e2e and fault tests share: `podwire lab up` run in-process (src/lab/up.ts, the code the
 * CLI runs) with a test prefix and state dir, the rows re-run against it, the proxy modes this
 * machine's podwired can run, a node's data-plane snapshot, podwired restarts, and load loops.
 *
 * Prefixes start with `ql` (never the lab's default `pwlab` or /run/podwire-lab), so a user's lab
 * and the tests never meet. `stopLab` is `lab down`: it leaves nothing behind.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Feature } from '../../src/daemon/config';
import { runRows, type RowResult, type RunRowsResult } from '../../src/lab/rows';
import { ROW_GROUPS } from '../../src/lab/rows/index';
import { isLabNamespace, type DaemonRecord, type LabState } from '../../src/lab/state';
import { teardown } from '../../src/lab/teardown';
import { loadLabSpec, type LabSpec } from '../../src/lab/topology';
import { daemonStatus, DEFAULT_MANIFESTS, labContext, up } from '../../src/lab/up';
import { exec, type Lab } from '../harness';
import { createRunDir, Podwired, writeNodeManifests } from '../lab/podwired';

export type Backend = 'vxlan' | 'host-gw';
export type ProxyMode = 'nftables' | 'iptables';
/** Every backend and proxy mode the lab offers; the e2e runs each combination this machine can run. */
export const BACKENDS: readonly Backend[] = ['host-gw', 'vxlan'];
export const PROXY_MODES: readonly ProxyMode[] = ['nftables', 'iptables'];

export interface RunningLab {
  state: LabState;
  spec: LabSpec;
  rows: RunRowsResult;
  log: string[];
  stateDir: string;
  prefix: string;
}

export function stateDirFor(prefix: string): string {
  return `/tmp/${prefix}-${process.pid}-state`;
}

/** `lab up` into a fresh state dir; on a build error the partial lab is removed and the error rethrown with the log. */
export async function startLab(prefix: string, opts: { backend?: Backend; proxyMode?: ProxyMode; manifests?: string } = {}): Promise<RunningLab> {
  const stateDir = stateDirFor(prefix);
  const log: string[] = [];
  await teardown(stateDir, prefix, () => undefined);
  const manifests = opts.manifests ?? DEFAULT_MANIFESTS;
  try {
    const spec = loadLabSpec(manifests);
    const { state, rows } = await up({ manifests, stateDir, prefix, backend: opts.backend ?? 'vxlan', proxyMode: opts.proxyMode ?? 'nftables', log: (m) => log.push(m), aborted: () => false }, spec);
    return { state, spec, rows, log, stateDir, prefix };
  } catch (e) {
    await teardown(stateDir, prefix, () => undefined);
    throw new Error(`lab up failed: ${(e as Error).message}\n${log.slice(-20).join('\n')}`);
  }
}

export async function stopLab(lab: Pick<RunningLab, 'stateDir' | 'prefix'>): Promise<string[]> {
  const r = await teardown(lab.stateDir, lab.prefix, () => undefined);
  return r.problems;
}

/**
 * The rows again (`lab check`), against the running lab, with the Services it was built from (a
 * fault test may have broken the folder's copy on purpose).
 */
export async function checkRows(lab: RunningLab): Promise<RunRowsResult> {
  return runRows(ROW_GROUPS, labContext(lab.state, lab.spec, new Set(lab.state.components as Feature[])));
}

export function failedRows(rows: RunRowsResult): RowResult[] {
  return rows.results.filter((r) => r.status !== 'ok');
}

/** Everything a lab with this prefix could leave behind (namespaces, /etc/netns dirs, the state dir, processes). */
export function leftovers(prefix: string, stateDir: string): string[] {
  const left: string[] = [];
  for (const n of existsSync('/run/netns') ? readdirSync('/run/netns') : []) if (isLabNamespace(prefix, n)) left.push(`netns ${n}`);
  for (const n of existsSync('/etc/netns') ? readdirSync('/etc/netns') : []) if (isLabNamespace(prefix, n)) left.push(`/etc/netns/${n}`);
  if (existsSync(stateDir)) left.push(`state dir ${stateDir}`);
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (cmd.includes(stateDir)) left.push(`process ${pid}: ${cmd.replace(/\0/g, ' ').slice(0, 120)}`);
  }
  return left;
}

const modeCache = new Map<ProxyMode, Promise<string | null>>();

/**
 * null when `podwired --proxy-mode MODE` starts here and reports its proxy component ready, else
 * why not (the first error it logged). Probed once per process with one podwired in a scratch
 * namespace of `lab` (so a mode another helper is still building is picked up as soon as it runs).
 */
export function proxyModeUnavailable(lab: Lab, mode: ProxyMode): Promise<string | null> {
  let p = modeCache.get(mode);
  if (!p) {
    p = probeProxyMode(lab, mode);
    modeCache.set(mode, p);
  }
  return p;
}

async function probeProxyMode(lab: Lab, mode: ProxyMode): Promise<string | null> {
  const ns = await lab.addNetns(`probe${mode.slice(0, 3)}`);
  for (const argv of [['link', 'set', 'lo', 'up'], ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0p'], ['addr', 'add', '198.18.9.1/24', 'dev', 'eth0'], ['link', 'set', 'eth0', 'up'], ['link', 'set', 'eth0p', 'up']])
    await exec(ns, ['ip', ...argv]);
  const run = createRunDir(`${lab.id}-probe-${mode}`);
  try {
    writeNodeManifests(run.manifests, [{ name: 'probe', podCIDR: '10.244.9.0/24', internalIP: '198.18.9.1' }]);
    const d = new Podwired(lab, ns, { nodeName: 'probe', run, logLevel: 'info', extraArgs: ['--proxy-mode', mode, '--backend', 'host-gw'] });
    const ready = await d.waitReady(100);
    const st = ready.ready ? await daemonStatus(d.socket) : 'not ready';
    const proxy = typeof st === 'string' ? undefined : st.components.find((c) => c.feature === 'proxy');
    await d.proc.stop();
    if (proxy?.ready) return null;
    const err = d.logLines().find((l) => l.level === 50 || l.level === 60);
    const errText = (v: unknown): string => (typeof v === 'string' ? v : v && typeof v === 'object' && 'message' in v ? String((v as { message: unknown }).message) : JSON.stringify(v));
    const why = err ? `${String(err.msg)}${err.err ? `: ${errText(err.err)}` : ''}` : ready.ready ? `no ready proxy component (${typeof st === 'string' ? st : st.components.map((c) => c.name).join(',')})` : ready.last;
    return `podwired --proxy-mode ${mode} does not run here yet: ${why.slice(0, 200)}`;
  } finally {
    rmSync(run.dir, { recursive: true, force: true });
  }
}

/** What a node's data plane is, for "unchanged" checks: routes, rules, links, nft (stateless), iptables, permanent neighbours/fdb. */
export async function dataPlane(ns: string): Promise<Record<string, string>> {
  const run = async (argv: string[], filter: (l: string) => boolean = () => true): Promise<string> => {
    const r = await exec(ns, argv);
    return r.stdout.split('\n').filter((l) => l.trim() !== '' && filter(l)).sort().join('\n');
  };
  return {
    routes: await run(['ip', '-4', 'route', 'show', 'table', 'all']),
    rules: await run(['ip', '-4', 'rule']),
    links: await run(['ip', '-o', 'link', 'show']),
    addrs: await run(['ip', '-o', '-4', 'addr', 'show']).then((s) => s.replace(/valid_lft \S+ preferred_lft \S+/g, '')),
    nft: (await exec(ns, ['nft', '-s', 'list', 'ruleset'])).stdout.replace(/expires \S+/g, ''),
    iptables: await run(['iptables-save'], (l) => !l.startsWith('#')).then((s) => s.replace(/\[\d+:\d+\]/g, '')),
    neigh: await run(['ip', 'neigh', 'show', 'nud', 'permanent']),
    fdb: await run(['bridge', 'fdb', 'show'], (l) => l.includes(' dst ')),
  };
}

export async function dataPlanes(state: LabState): Promise<Record<string, Record<string, string>>> {
  const out: Record<string, Record<string, string>> = {};
  for (const n of state.nodes) out[n.name] = await dataPlane(n.ns);
  return out;
}

/** A podwired's command line, as started (from /proc before it is killed). */
export function daemonArgv(d: DaemonRecord): string[] {
  return readFileSync(`/proc/${d.pid!}/cmdline`, 'utf8').split('\0').filter((s) => s !== '');
}

/** Start podwired again with the same argv in its node (detached, log appended), as the DaemonSet would. */
export function restartDaemon(d: DaemonRecord, argv: readonly string[]): number | undefined {
  mkdirSync(path.dirname(d.log), { recursive: true });
  const fd = openSync(d.log, 'a');
  try {
    const child = spawn('ip', ['netns', 'exec', d.ns, ...argv], { detached: true, stdio: ['ignore', fd, fd] });
    child.on('error', () => undefined);
    child.unref();
    d.pid = child.pid;
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

export function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Has process `pid` logged (pino JSON in the node's podwired log) a line with this msg? */
export function loggedBy(d: DaemonRecord, pid: number, msg: string): boolean {
  let text = '';
  try {
    text = readFileSync(d.log, 'utf8');
  } catch {
    return false;
  }
  return text.split('\n').some((l) => l.includes(`"pid":${pid},`) && l.includes(`"msg":${JSON.stringify(msg)}`));
}

/**
 * Wait (bounded) until the daemon's status says ready — and, with `pid`, until that process itself
 * logged `ready` (while a predecessor still runs, the socket may answer for the predecessor).
 * Returns the last answer on timeout.
 */
export async function waitReady(d: DaemonRecord, timeoutMs = 30_000, pid?: number): Promise<true | string> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    const s = await daemonStatus(d.socket);
    if (typeof s !== 'string' && s.ready && (pid === undefined || loggedBy(d, pid, 'ready'))) return true;
    if (pid !== undefined && !alive(pid)) return `podwired ${pid} exited`;
    last = typeof s === 'string' ? s : 'not ready';
    await new Promise((r) => setTimeout(r, 100));
  }
  return last;
}

export async function waitExit(pid: number | undefined, timeoutMs = 15_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  return !alive(pid);
}

/**
 * Load that runs inside pods while a fault happens, bounded by count and by a stop flag: an HTTP
 * loop (curl, one connection per request), a ping (one process, counted by its summary) and a dig
 * loop through the node-local DNS (a dig counts as ok when its last line is an address: a try that
 * timed out before a retry was answered is a delay, as for any resolver, not a failure). Each loop
 * is one shell process in the pod, so there is no
 * per-request spawn cost in this process. Stopping reads each loop's counts.
 */
export interface LoadResult {
  name: string;
  sent: number;
  failed: number;
  /** Wall-clock ms of each failed attempt (curl, dig). */
  failedAt: number[];
  detail: string;
}

export interface Load {
  stop(): Promise<LoadResult[]>;
}

export interface LoadSpec {
  name: string;
  ns: string;
  /** A shell loop writing one line `ok` or `fail ...` per attempt, or (ping) the ping command. */
  kind: 'curl' | 'dig' | 'ping';
  target: string;
}

export function startLoad(specs: readonly LoadSpec[], dir: string, maxSeconds = 120): Load {
  mkdirSync(dir, { recursive: true });
  const stopFile = path.join(dir, 'stop');
  rmSync(stopFile, { force: true });
  const procs = specs.map((s, i) => {
    const out = path.join(dir, `${i}-${s.kind}.out`);
    writeFileSync(out, '');
    // Each attempt bounded by its own timeout; the loop by the stop file, a count and a wall-clock bound.
    const script =
      s.kind === 'curl'
        ? `end=$(( $(date +%s) + ${maxSeconds} )); n=0; while [ ! -e ${stopFile} ] && [ $n -lt 20000 ] && [ $(date +%s) -lt $end ]; do n=$((n+1)); if curl -s -o /dev/null -m 3 -w '%{http_code}' ${s.target} | grep -q 200; then echo "ok $(date +%s%3N)"; else echo "fail $(date +%s%3N) #$n"; fi; sleep 0.2; done`
        : s.kind === 'dig'
          ? // +tries: the resolver retries (as a pod's resolv.conf `attempts` would) over the gap of a restart
            `end=$(( $(date +%s) + ${maxSeconds} )); n=0; while [ ! -e ${stopFile} ] && [ $n -lt 20000 ] && [ $(date +%s) -lt $end ]; do n=$((n+1)); a=$(dig @169.254.20.10 +short +time=1 +tries=5 ${s.target} A); case "$(echo "$a" | tail -n 1)" in [0-9]*) echo "ok $(date +%s%3N)";; *) echo "fail $(date +%s%3N) #$n $(echo $a | cut -c1-150)";; esac; sleep 0.2; done`
          : `ping -n -i 0.1 -W 2 -w ${maxSeconds} ${s.target} & p=$!; while [ ! -e ${stopFile} ] && kill -0 $p 2>/dev/null; do sleep 0.1; done; kill -INT $p 2>/dev/null; wait $p`;
    const fd = openSync(out, 'a');
    const child = spawn('ip', ['netns', 'exec', s.ns, 'sh', '-c', script], { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    const done = new Promise<void>((res) => child.on('exit', () => res()));
    return { s, out, child, done };
  });
  return {
    stop: async () => {
      writeFileSync(stopFile, '');
      const backstop = setTimeout(() => procs.forEach((p) => p.child.kill('SIGKILL')), 15_000);
      await Promise.all(procs.map((p) => p.done));
      clearTimeout(backstop);
      return procs.map((p) => {
        const text = readFileSync(p.out, 'utf8');
        if (p.s.kind === 'ping') {
          const m = /(\d+) packets transmitted, (\d+) received/.exec(text);
          const sent = Number(m?.[1] ?? 0);
          const got = Number(m?.[2] ?? 0);
          return { name: p.s.name, sent, failed: m ? sent - got : 1, failedAt: [], detail: m?.[0] ?? `no ping summary: ${text.slice(-200)}` };
        }
        const lines = text.split('\n').filter((l) => l !== '');
        const fails = lines.filter((l) => !l.startsWith('ok'));
        return { name: p.s.name, sent: lines.length, failed: fails.length, failedAt: fails.map((l) => Number(l.split(' ')[1])), detail: fails.slice(0, 3).join('; ') };
      });
    },
  };
}

/** The usual load for a fault: a Service by VIP (and by name), a ping across nodes, a dig loop, from pods on two nodes. */
export function standardLoad(lab: RunningLab, dir: string): Load {
  const pod = (n: string) => lab.state.pods.find((p) => p.name === n)!;
  const web0 = pod('web-0');
  const web1 = pod('web-1');
  return startLoad(
    [
      { name: 'curl web-0 → Service api 10.96.0.12', ns: web0.ns, kind: 'curl', target: 'http://10.96.0.12/' },
      { name: 'curl web-1 → Service api 10.96.0.12', ns: web1.ns, kind: 'curl', target: 'http://10.96.0.12/' },
      { name: 'curl web-1 → Service web by name (DNS)', ns: web1.ns, kind: 'curl', target: 'http://web.shop.svc.cluster.local/' },
      { name: 'ping web-0 → api-1 (across subnets)', ns: web0.ns, kind: 'ping', target: pod('api-1').ip! },
      { name: 'ping web-1 → api-1 (across subnets)', ns: web1.ns, kind: 'ping', target: pod('api-1').ip! },
      { name: 'dig web-0 → web.shop (DNS)', ns: web0.ns, kind: 'dig', target: 'web.shop.svc.cluster.local' },
      { name: 'dig web-1 → api.shop (DNS)', ns: web1.ns, kind: 'dig', target: 'api.shop.svc.cluster.local' },
    ],
    dir,
  );
}
