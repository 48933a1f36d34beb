/**
 * `podwire lab down`: remove everything a lab consists of, from its state file and by name, so it
 * also works after a crash or Ctrl-C of `lab up` (the state file may be partial, or missing).
 *   1. SIGTERM every process in the lab's namespaces (podwired first, then the pod servers),
 *      SIGKILL what is still alive after a bounded wait;
 *   2. delete the namespaces (pods, nodes, router, subnets);
 *   3. remove /etc/netns/<ns>/ (the pods' resolv.conf);
 *   4. remove the state dir's content that the lab wrote, then the dir if it is empty.
 * Nothing in the namespace this process runs in is touched.
 */
import { existsSync, readdirSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { exec, listNetns, removeNetns } from '../../test-netns/harness';
import { isLabNamespace, readState, statePath, type LabState } from './state';

export const ETC_NETNS = '/etc/netns';
export const STOP_GRACE_MS = 10_000;

export interface TeardownResult {
  namespaces: string[];
  killed: number;
  terminated: number;
  problems: string[];
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* gone */
  }
}

/** Is `pid` still the process we started (same command line), not a recycled pid? */
function isOurs(pid: number, needle: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(needle);
  } catch {
    return false;
  }
}

async function netnsPids(ns: string): Promise<number[]> {
  const r = await exec(null, ['ip', 'netns', 'pids', ns]);
  return r.exitCode === 0 ? r.stdout.split(/\s+/).filter((s) => /^\d+$/.test(s)).map(Number).filter((p) => p !== process.pid) : [];
}

/** The lab's namespaces: those in the state file plus any `<prefix>-{sub,router,node,pod,outside,dns}-*` (pods first). */
export function labNamespaces(prefix: string, state: LabState | undefined): string[] {
  const all = new Set<string>([...(state?.namespaces ?? []), ...listNetns(prefix).filter((n) => isLabNamespace(prefix, n))]);
  const order = (n: string): number =>
    n.startsWith(`${prefix}-pod-`) ? 0 : n.startsWith(`${prefix}-node-`) ? 1 : n === `${prefix}-outside` || n.startsWith(`${prefix}-dns-`) ? 2 : n === `${prefix}-router` ? 3 : 4;
  return [...all].sort((a, b) => order(a) - order(b) || a.localeCompare(b));
}

export async function teardown(stateDir: string, prefix: string, log: (m: string) => void, graceMs = STOP_GRACE_MS): Promise<TeardownResult> {
  const problems: string[] = [];
  let state: LabState | undefined;
  try {
    state = readState(stateDir);
  } catch (e) {
    problems.push(`state file unreadable (${(e as Error).message}); removing by name`);
  }
  const pfx = state?.prefix ?? prefix;
  const namespaces = labNamespaces(pfx, state).filter((n) => existsSync(`/run/netns/${n}`));

  // 1. processes: the recorded ones (if still ours) and everything inside the lab's namespaces.
  const pids = new Set<number>();
  for (const d of state?.daemons ?? []) if (d.pid && alive(d.pid) && isOurs(d.pid, d.socket)) pids.add(d.pid);
  for (const s of state?.servers ?? []) if (s.pid && alive(s.pid) && isOurs(s.pid, 'server.js')) pids.add(s.pid);
  for (const ns of namespaces) for (const p of await netnsPids(ns)) pids.add(p);
  if (state?.upPid && state.upPid !== process.pid && alive(state.upPid) && isOurs(state.upPid, 'lab')) {
    // SIGKILL, not SIGTERM: its own Ctrl-C handler would start a second teardown beside this one.
    log(`lab up (pid ${state.upPid}) is still running: killing it first`);
    signal(state.upPid, 'SIGKILL');
  }
  for (const p of pids) signal(p, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while ([...pids].some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  const stubborn = [...pids].filter(alive);
  for (const p of stubborn) signal(p, 'SIGKILL');
  if (pids.size) log(`stopped ${pids.size} process(es)${stubborn.length ? `, ${stubborn.length} needed SIGKILL after ${graceMs} ms` : ' with SIGTERM'}`);

  // 2. namespaces (removeNetns kills anything that appeared meanwhile).
  for (const ns of namespaces) {
    try {
      await removeNetns(ns);
    } catch (e) {
      problems.push(String(e));
    }
  }
  if (namespaces.length) log(`deleted ${namespaces.length} namespace(s): ${namespaces.join(' ')}`);

  // 3. /etc/netns/<ns>
  const etc = new Set<string>(state?.etcNetns ?? []);
  if (existsSync(ETC_NETNS)) for (const n of readdirSync(ETC_NETNS)) if (isLabNamespace(pfx, n)) etc.add(path.join(ETC_NETNS, n));
  let etcRemoved = 0;
  for (const d of etc) {
    if (path.dirname(d) !== ETC_NETNS || !isLabNamespace(pfx, path.basename(d))) {
      problems.push(`not removing ${d}: not a lab dir under ${ETC_NETNS}`);
      continue;
    }
    if (existsSync(d)) {
      rmSync(d, { recursive: true, force: true });
      etcRemoved++;
    }
  }
  if (etcRemoved) log(`removed ${etcRemoved} dir(s) under ${ETC_NETNS} (pod resolv.conf)`);
  try {
    if (existsSync(ETC_NETNS) && readdirSync(ETC_NETNS).length === 0 && etcRemoved > 0) rmdirSync(ETC_NETNS);
  } catch {
    /* someone else's */
  }

  // 4. the state dir: only what the lab writes, then the dir itself if empty.
  if (existsSync(stateDir)) {
    for (const f of ['manifests', 'topology', 'nodes', 'pods', 'logs', path.basename(statePath(stateDir))]) rmSync(path.join(stateDir, f), { recursive: true, force: true });
    for (const f of readdirSync(stateDir)) if (/^state\.json\.\d+\.tmp$/.test(f)) rmSync(path.join(stateDir, f), { force: true });
    try {
      rmdirSync(stateDir);
    } catch (e) {
      problems.push(`state dir ${stateDir} not removed: ${(e as Error).message}`);
    }
  }
  const left = labNamespaces(pfx, undefined);
  if (left.length) problems.push(`namespaces still present: ${left.join(' ')}`);
  return { namespaces, killed: stubborn.length, terminated: pids.size - stubborn.length, problems };
}
