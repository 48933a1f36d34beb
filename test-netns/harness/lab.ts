/**
 * The Lab: a set of network namespaces (underlay, nodes, pods) owned by one test, with
 * cleanup that always happens: explicit cleanup(), process 'exit', SIGINT/SIGTERM/SIGHUP.
 *
 * Naming: every namespace is `<prefix>-<pid>-<seq>-<role>`, e.g. `pwl-4711-3-n1`. The pid
 * lets sweepStale() tell a crashed run's leftovers (pid dead) from a concurrent live run of the
 * same prefix (pid alive). Link names are chosen per namespace (`eth0`, `br0`, `n1`, `vp1`)
 * so they stay well under the 15-char IFNAMSIZ limit whatever the prefix.
 *
 * Nothing here ever touches the namespace the test runs in: veth pairs are created inside a
 * lab namespace with the peer placed directly into another (`peer name X netns Y`).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { exec, execOk, ip, type ExecOptions, type ExecResult, type NsName } from './exec';
import { BackgroundProcess, type SpawnOptions } from './process';

export const NETNS_DIR = '/run/netns';
const PREFIX_RE = /^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$/;
const ROLE_RE = /^[a-z0-9][a-z0-9.-]{0,30}$/;

export interface NetnsOptions {
  /** Bring `lo` up (default true). */
  loUp?: boolean;
  /** Set net.ipv4.ip_forward (and ipv6 all.forwarding) to 1 inside (default false). */
  forwarding?: boolean;
}

export interface Underlay {
  ns: string;
  /** Name of the Linux bridge inside the underlay namespace. */
  bridge: string;
  /** Number of nodes attached so far. */
  nodes: number;
}

export interface UnderlayOptions {
  role?: string;
  bridge?: string;
  mtu?: number;
}

export interface LabNode {
  ns: string;
  role: string;
  /** 1-based index on its underlay. */
  index: number;
  /** The node's underlay address, e.g. `198.18.0.1`. */
  ip: string;
  /** With prefix length, e.g. `198.18.0.1/24`. */
  cidr: string;
  /** Interface name inside the node namespace (on the underlay). */
  ifname: string;
  /** The veth end inside the underlay namespace (a bridge port). */
  underlayPort: string;
}

export interface NodeOptions {
  role?: string;
  /** Address with prefix length. Default `198.18.0.<index>/24`. */
  address?: string;
  /** Interface name inside the node (default `eth0`). */
  ifname?: string;
  mtu?: number;
}

export interface WirePodOptions {
  /** Pod address without prefix, e.g. `10.244.1.2`. Installed as /32 on the pod's interface. */
  address: string;
  /** Gateway the pod routes through (an address owned by the node side of the veth), e.g. `10.244.1.1`. */
  gateway: string;
  /** Interface name inside the pod (default `eth0`). */
  podIfName?: string;
  /** Host-side veth name inside the node (default `vp<n>`). */
  hostIfName?: string;
  mtu?: number;
}

export interface WiredPod {
  ns: string;
  node: LabNode;
  ip: string;
  gateway: string;
  podIfName: string;
  hostIfName: string;
}

export interface LabOptions {
  /** Remove leftovers of crashed earlier runs with the same prefix first (default true). */
  sweep?: boolean;
}

let labSeq = 0;
const liveLabs = new Set<Lab>();
let hooksInstalled = false;

export class Lab {
  /** `<prefix>-<pid>-<seq>`; every namespace of this lab starts with it. */
  readonly id: string;
  private readonly nsList: string[] = [];
  private readonly procs: BackgroundProcess[] = [];
  private podSeq = 0;
  private vethSeq = 0;
  private cleaned = false;

  private constructor(readonly prefix: string) {
    this.id = `${prefix}-${process.pid}-${++labSeq}`;
  }

  /** Create an empty lab. `prefix` is your helper/test prefix, e.g. `pwl` or `pwc-add`. */
  static async create(prefix: string, opts: LabOptions = {}): Promise<Lab> {
    if (!PREFIX_RE.test(prefix) || prefix.length > 24)
      throw new TypeError(`Lab prefix ${JSON.stringify(prefix)} must match ${PREFIX_RE} and be at most 24 chars`);
    if (opts.sweep ?? true) await sweepStale(prefix);
    const lab = new Lab(prefix);
    installHooks();
    liveLabs.add(lab);
    return lab;
  }

  /** The namespaces this lab created (in creation order) and has not deleted yet. */
  get namespaces(): readonly string[] {
    return this.nsList;
  }

  nsName(role: string): string {
    return `${this.id}-${role}`;
  }

  /** Create a bare namespace `<id>-<role>`. */
  async addNetns(role: string, opts: NetnsOptions = {}): Promise<string> {
    this.assertOpen();
    if (!ROLE_RE.test(role)) throw new TypeError(`namespace role ${JSON.stringify(role)} must match ${ROLE_RE}`);
    const ns = this.nsName(role);
    if (this.nsList.includes(ns)) throw new Error(`lab ${this.id} already has a namespace ${ns}`);
    await execOk(null, ['ip', 'netns', 'add', ns]);
    this.nsList.push(ns);
    if (opts.loUp ?? true) await ip(ns, ['link', 'set', 'lo', 'up']);
    if (opts.forwarding) {
      await execOk(ns, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    }
    return ns;
  }

  /** An underlay: a namespace holding a Linux bridge that nodes attach to. */
  async addUnderlay(opts: UnderlayOptions = {}): Promise<Underlay> {
    const ns = await this.addNetns(opts.role ?? 'ul');
    const bridge = opts.bridge ?? 'br0';
    await ip(ns, ['link', 'add', bridge, 'type', 'bridge', ...(opts.mtu ? ['mtu', String(opts.mtu)] : [])]);
    await ip(ns, ['link', 'set', bridge, 'up']);
    return { ns, bridge, nodes: 0 };
  }

  /**
   * A node: a namespace with `eth0` (veth) on the underlay bridge, address 198.18.0.<index>/24
   * by default, lo up and net.ipv4.ip_forward=1 (+ ipv6 forwarding).
   */
  async addNode(underlay: Underlay, opts: NodeOptions = {}): Promise<LabNode> {
    const index = underlay.nodes + 1;
    if (!opts.address && index > 254) throw new RangeError('at most 254 nodes with default addresses');
    const role = opts.role ?? `n${index}`;
    const cidr = opts.address ?? `198.18.0.${index}/24`;
    if (!/^\d+\.\d+\.\d+\.\d+\/\d+$/.test(cidr)) throw new TypeError(`node address ${JSON.stringify(cidr)} must be A.B.C.D/len`);
    const ns = await this.addNetns(role, { forwarding: true });
    const ifname = opts.ifname ?? 'eth0';
    const underlayPort = `n${index}`;
    const mtu = opts.mtu ? ['mtu', String(opts.mtu)] : [];
    await ip(underlay.ns, ['link', 'add', underlayPort, ...mtu, 'type', 'veth', 'peer', 'name', ifname, ...mtu, 'netns', ns]);
    underlay.nodes = index;
    await ip(underlay.ns, ['link', 'set', underlayPort, 'master', underlay.bridge, 'up']);
    await ip(ns, ['addr', 'add', cidr, 'dev', ifname]);
    await ip(ns, ['link', 'set', ifname, 'up']);
    return { ns, role, index, ip: cidr.split('/')[0]!, cidr, ifname, underlayPort };
  }

  /** A pod: a bare namespace with lo up (the CNI plugin, or wirePod, gives it an interface). */
  addPod(role: string = `p${++this.podSeq}`, opts: NetnsOptions = {}): Promise<string> {
    return this.addNetns(role, opts);
  }

  /**
   * Wire a pod to a node by hand (no CNI): a veth `hostIfName` (node) <-> `podIfName` (pod).
   * Pod: `address/32`, `gateway dev eth0 scope link`, `default via gateway`.
   * Node: `gateway/32` on the host veth and a host route `address/32 dev hostIf`.
   * (Calico-style /32 routing, so several pods of one node can share one gateway address.)
   */
  async wirePod(pod: string, node: LabNode, opts: WirePodOptions): Promise<WiredPod> {
    const podIfName = opts.podIfName ?? 'eth0';
    const hostIfName = opts.hostIfName ?? `vp${++this.vethSeq}`;
    const mtu = opts.mtu ? ['mtu', String(opts.mtu)] : [];
    await ip(node.ns, ['link', 'add', hostIfName, ...mtu, 'type', 'veth', 'peer', 'name', podIfName, ...mtu, 'netns', pod]);
    await ip(node.ns, ['addr', 'add', `${opts.gateway}/32`, 'dev', hostIfName]);
    await ip(node.ns, ['link', 'set', hostIfName, 'up']);
    await ip(node.ns, ['route', 'add', `${opts.address}/32`, 'dev', hostIfName]);
    await ip(pod, ['addr', 'add', `${opts.address}/32`, 'dev', podIfName]);
    await ip(pod, ['link', 'set', podIfName, 'up']);
    await ip(pod, ['route', 'add', opts.gateway, 'dev', podIfName, 'scope', 'link']);
    await ip(pod, ['route', 'add', 'default', 'via', opts.gateway, 'dev', podIfName]);
    return { ns: pod, node, ip: opts.address, gateway: opts.gateway, podIfName, hostIfName };
  }

  exec(ns: NsName, argv: readonly string[], opts?: ExecOptions): Promise<ExecResult> {
    return exec(ns, argv, opts);
  }
  execOk(ns: NsName, argv: readonly string[], opts?: ExecOptions): Promise<string> {
    return execOk(ns, argv, opts);
  }
  ip(ns: string, args: readonly string[], opts?: ExecOptions): Promise<string> {
    return ip(ns, args, opts);
  }

  /** Start a long-running command inside one of this lab's namespaces; stopped at cleanup. */
  spawn(ns: string, argv: readonly string[], opts?: SpawnOptions): BackgroundProcess {
    this.assertOpen();
    if (!this.nsList.includes(ns)) throw new Error(`lab.spawn: ${ns} is not a namespace of lab ${this.id}`);
    const p = new BackgroundProcess(ns, argv, opts);
    this.procs.push(p);
    return p;
  }

  /**
   * Stop every process started in the lab, kill anything else still inside its namespaces,
   * delete the namespaces. Idempotent; attempts every step even if one fails, then throws
   * one error listing what could not be removed.
   */
  async cleanup(): Promise<void> {
    if (this.cleaned) return;
    this.cleaned = true;
    liveLabs.delete(this);
    const problems: string[] = [];
    await Promise.all(this.procs.map((p) => p.stop().catch((e: unknown) => problems.push(`${p.description}: ${String(e)}`))));
    for (const ns of [...this.nsList].reverse()) {
      try {
        await removeNetns(ns);
      } catch (e) {
        problems.push(String(e));
      }
    }
    this.nsList.length = 0;
    if (problems.length) throw new Error(`lab ${this.id} cleanup incomplete:\n  ${problems.join('\n  ')}`);
  }

  /** Synchronous variant for exit/signal handlers. Best effort, never throws. */
  cleanupSync(): void {
    if (this.cleaned) return;
    this.cleaned = true;
    liveLabs.delete(this);
    for (const p of this.procs) p.killNow();
    for (const ns of [...this.nsList].reverse()) removeNetnsSync(ns);
    this.nsList.length = 0;
  }

  private assertOpen(): void {
    if (this.cleaned) throw new Error(`lab ${this.id} was already cleaned up`);
  }
}

/** `/run/netns/NS`: the path to give the CNI plugin as CNI_NETNS, or to nsenter --net=. */
export function netnsPath(ns: string): string {
  return `${NETNS_DIR}/${ns}`;
}

/** Kill every process inside `ns`, then delete it. A namespace that is already gone is fine. */
export async function removeNetns(ns: string): Promise<void> {
  if (!existsSync(`${NETNS_DIR}/${ns}`)) return;
  for (let round = 0; round < 3; round++) {
    const pids = await netnsPids(ns);
    if (pids.length === 0) break;
    for (const pid of pids) killPid(pid, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 50));
  }
  const r = await exec(null, ['ip', 'netns', 'del', ns]);
  if (r.exitCode !== 0 && existsSync(`${NETNS_DIR}/${ns}`)) throw new Error(`ip netns del ${ns}: ${r.stderr.trim()}`);
}

export function removeNetnsSync(ns: string): void {
  if (!existsSync(`${NETNS_DIR}/${ns}`)) return;
  try {
    const out = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', timeout: 5_000, stdio: ['ignore', 'pipe', 'ignore'] });
    for (const pid of parsePids(out)) killPid(pid, 'SIGKILL');
  } catch {
    /* best effort */
  }
  spawnSync('ip', ['netns', 'del', ns], { timeout: 5_000, stdio: 'ignore' });
}

async function netnsPids(ns: string): Promise<number[]> {
  const r = await exec(null, ['ip', 'netns', 'pids', ns]);
  return r.exitCode === 0 ? parsePids(r.stdout) : [];
}

function parsePids(out: string): number[] {
  return out
    .split(/\s+/)
    .filter((s) => /^\d+$/.test(s))
    .map(Number)
    .filter((pid) => pid !== process.pid);
}

function killPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    /* gone */
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Namespaces (names in /run/netns) that start with `<prefix>-`. */
export function listNetns(prefix: string): string[] {
  if (!existsSync(NETNS_DIR)) return [];
  return readdirSync(NETNS_DIR).filter((n) => n.startsWith(`${prefix}-`));
}

/**
 * Remove leftovers of earlier crashed runs of the same prefix: namespaces named
 * `<prefix>-<pid>-<seq>-<role>` whose creating pid is no longer alive. Namespaces of a live
 * run (another test file running concurrently with the same prefix) are left alone unless
 * `includeLive` is set. Returns the names removed.
 */
export async function sweepStale(prefix: string, opts: { includeLive?: boolean } = {}): Promise<string[]> {
  const re = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&')}-(\\d+)-\\d+-`);
  const removed: string[] = [];
  for (const ns of listNetns(prefix)) {
    const m = re.exec(ns);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid && liveLabsOwn(ns)) continue;
    if (!opts.includeLive && pid !== process.pid && pidAlive(pid)) continue;
    await removeNetns(ns);
    removed.push(ns);
  }
  return removed;
}

function liveLabsOwn(ns: string): boolean {
  for (const lab of liveLabs) if (lab.namespaces.includes(ns)) return true;
  return false;
}

/** Labs not yet cleaned up in this process (for diagnostics). */
export function openLabs(): readonly Lab[] {
  return [...liveLabs];
}

function cleanupAllSync(): void {
  for (const lab of [...liveLabs]) lab.cleanupSync();
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', cleanupAllSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      if (liveLabs.size) process.stderr.write(`\n[lab] ${sig}: cleaning up ${liveLabs.size} lab(s)\n`);
      cleanupAllSync();
      process.removeListener(sig, onSignal);
      // Re-raise so the default action (or tap's own handler) still ends the process.
      process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}
