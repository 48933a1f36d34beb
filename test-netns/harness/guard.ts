/**
 * The root-namespace guard: snapshot a network namespace (by default the one this process
 * runs in, which for our tests is the root namespace) before and after a test, and report any
 * difference as a violation.
 *
 * What is watched (each a "section" of normalised text lines):
 *   links      name, kind, flags, operstate, master, mtu, MAC   (ip -j -d link)
 *   addresses  per link: family, address/prefix, scope          (ip -j addr; lifetimes dropped)
 *   routes4/6  `ip -4/-6 route show table all`                  (`expires N` dropped)
 *   rules4/6   `ip -4/-6 rule`
 *   iptables, ip6tables, iptables-legacy, ip6tables-legacy  `*-save` (comments, counters dropped)
 *   nft        `nft list ruleset`                               (counters, expiry dropped)
 *   sysctl     net.ipv4.ip_forward, net.ipv6.conf.all.forwarding
 *   sysctl-ipv4-conf  every key under /proc/sys/net/ipv4/conf/<all|default|each link>/
 *   sysctl-bridge     every key under /proc/sys/net/bridge/ (br_netfilter), or "absent"
 *   neighbours ARP/NDP entries that are configuration: PERMANENT, extern_learn, NOARP set by
 *              somebody (not the kernel's own multicast/broadcast/loopback ones), proxy entries;
 *              the kernel's cache states (REACHABLE STALE DELAY PROBE INCOMPLETE FAILED) are not
 *   conntrack  entries touching TEST_RANGES (198.18.0.0/15, 10.244.0.0/16, 10.96.0.0/12,
 *              169.254.20.10, the IPv6 test prefixes), tuples only; growth only: an entry that
 *              appears is a violation, one that times out is not. nf_conntrack_count is
 *              recorded (Snapshot.info) and printed with a conntrack diff, never compared:
 *              every process on the machine moves it.
 * Not watched: the list of namespaces (/run/netns files are not root-namespace state),
 * bridge FDB, statistics and counters.
 *
 * The guard only means something when "this process's namespace" is the root one:
 * rootNetnsCheck() establishes that (see there), and labTest/withLab/test-all refuse to run
 * the guard otherwise.
 *
 * Hand-written (no library) because it is a thin layer over the iproute2/iptables/nft CLIs.
 */
import { readFileSync, statSync } from 'node:fs';
import { release as osRelease } from 'node:os';
import { Cidr, IpAddress } from '../../src/common/ip';
import { exec, type NsName } from './exec';

/** The namespace a guard watches: `null` = the current process's netns (the root ns in our tests). */
export type GuardTarget = NsName;

export interface Snapshot {
  target: GuardTarget;
  /** section name -> normalised lines */
  sections: Record<string, string[]>;
  /** sections whose command failed or is missing (recorded as such, so a change is still seen) */
  errors: Record<string, string>;
  /** reported, never compared: e.g. nf_conntrack_count (other processes on the machine move it) */
  info: Record<string, string>;
}

export interface SectionDiff {
  section: string;
  removed: string[];
  added: string[];
  /** same lines, different order (rule order matters in iptables/nft) */
  reordered: boolean;
  /** extra context printed with the diff (e.g. the conntrack count before and after) */
  note?: string;
}

/**
 * PROC_NET_INIT_INO (include/uapi/linux/nsfs.h NET_NS_INIT_INO): the fixed inode of init_net's
 * nsfs file on Linux >= 6.18. Earlier kernels numbered init_net from the dynamic range like any
 * other netns (typically 0xF0000098 = 4026531992, but that depends on boot order: no guarantee).
 * Dynamic namespace inodes start at 0xF0000000 (PROC_DYNAMIC_FIRST), so on any kernel no netns
 * other than init_net can ever have this number.
 */
export const INIT_NET_INODE = 0xeffffff9;
/** First kernel release that gives init_net the fixed inode INIT_NET_INODE. */
export const INIT_NET_INODE_SINCE: readonly [number, number] = [6, 18];
/** PF_KTHREAD in /proc/PID/stat field 9 (flags): set only on kernel threads, never settable from user space. */
const PF_KTHREAD = 0x00200000;

/** Inode of this process's network namespace. */
export function selfNetnsInode(): number {
  return statSync('/proc/self/ns/net').ino;
}

export interface RootNetnsCheck {
  /** true = in init_net, false = in another netns, undefined = cannot tell (treat as "not confirmed") */
  inRoot: boolean | undefined;
  /** which evidence decided: 'kthreadd' | 'init-inode' | 'none' */
  method: 'kthreadd' | 'init-inode' | 'none';
  /** one human-readable sentence: what was compared */
  detail: string;
}

/** What rootNetnsCheck reads; injectable so the decision logic is testable without namespaces. */
export interface RootNetnsIo {
  /** stat of an nsfs link: dev + ino, or throws */
  statNs(path: string): { dev: number; ino: number };
  readFile(path: string): string;
  /** os.release() */
  release(): string;
}

const defaultIo: RootNetnsIo = {
  statNs: (path) => {
    const s = statSync(path);
    return { dev: s.dev, ino: s.ino };
  },
  readFile: (path) => readFileSync(path, 'utf8'),
  release: () => osRelease(),
};

/** /proc/PID/stat of a kernel thread named `comm`? (comm may contain spaces and parens: parse after the last ')') */
export function isKernelThreadStat(stat: string, comm: string): boolean {
  const open = stat.indexOf('(');
  const close = stat.lastIndexOf(')');
  if (open < 0 || close < open) return false;
  if (stat.slice(open + 1, close) !== comm) return false;
  const fields = stat.slice(close + 1).trim().split(/\s+/); // state ppid pgrp session tty_nr tpgid flags ...
  const flags = Number(fields[6]);
  return Number.isInteger(flags) && (flags & PF_KTHREAD) !== 0;
}

function releaseAtLeast(release: string, want: readonly [number, number]): boolean {
  const m = /^(\d+)\.(\d+)/.exec(release);
  if (!m) return false;
  const [maj, min] = [Number(m[1]), Number(m[2])];
  return maj > want[0] || (maj === want[0] && min >= want[1]);
}

/**
 * Is this process in the initial network namespace (init_net)? Two independent kinds of evidence,
 * neither of which is "shares PID 1's netns" (PID 1 of a PID namespace can itself sit in any netns:
 * `ip netns exec X unshare --pid --fork --mount-proc ...` makes exactly that):
 *
 *   1. kthreadd. Kernel threads exist only in the initial PID namespace and all run with
 *      init_nsproxy, so kthreadd (PID 2, PF_KTHREAD in /proc/2/stat, which user space cannot set)
 *      is always in init_net. If this procfs shows it, comparing (dev, inode) of /proc/self/ns/net
 *      and /proc/2/ns/net answers the question either way.
 *   2. The fixed init_net inode (PROC_NET_INIT_INO 0xEFFFFFF9, Linux >= 6.18). Equal = init_net
 *      on any kernel (no dynamically numbered netns can have it). Different = another netns, but
 *      only on a kernel that assigns it; on older kernels this says nothing.
 *
 * When neither applies (a procfs of another PID namespace on a kernel < 6.18), the answer is
 * undefined: callers treat that as "not confirmed" and refuse to vouch for the root namespace.
 */
export function rootNetnsCheck(io: RootNetnsIo = defaultIo): RootNetnsCheck {
  let self: { dev: number; ino: number };
  try {
    self = io.statNs('/proc/self/ns/net');
  } catch (e) {
    return { inRoot: undefined, method: 'none', detail: `cannot stat /proc/self/ns/net: ${String(e)}` };
  }
  let kthreadd: { dev: number; ino: number } | undefined;
  let why = '';
  try {
    if (isKernelThreadStat(io.readFile('/proc/2/stat'), 'kthreadd')) kthreadd = io.statNs('/proc/2/ns/net');
    else why = '/proc/2 is not kthreadd (a procfs of a non-initial PID namespace)';
  } catch (e) {
    why = `kthreadd not readable (${(e as NodeJS.ErrnoException).code ?? String(e)})`;
  }
  if (kthreadd) {
    const same = kthreadd.dev === self.dev && kthreadd.ino === self.ino;
    return {
      inRoot: same,
      method: 'kthreadd',
      detail: `netns inode ${self.ino} ${same ? '==' : '!='} kthreadd's (init_net) ${kthreadd.ino}`,
    };
  }
  const hex = `0x${self.ino.toString(16)}`;
  if (self.ino === INIT_NET_INODE) return { inRoot: true, method: 'init-inode', detail: `${why}; netns inode ${hex} is PROC_NET_INIT_INO` };
  const release = io.release();
  if (releaseAtLeast(release, INIT_NET_INODE_SINCE)) {
    return {
      inRoot: false,
      method: 'init-inode',
      detail: `${why}; netns inode ${hex} is not PROC_NET_INIT_INO 0xeffffff9 (kernel ${release} numbers init_net with it)`,
    };
  }
  return {
    inRoot: undefined,
    method: 'none',
    detail: `${why}; kernel ${release} < ${INIT_NET_INODE_SINCE.join('.')} has no fixed init_net inode (netns inode ${hex})`,
  };
}

/** rootNetnsCheck().inRoot: true, false, or undefined when it cannot be told. */
export function inRootNetns(): boolean | undefined {
  return rootNetnsCheck().inRoot;
}

/** The message labTest / withLab / scripts/test-all.js fail with when the runner is not confirmed in init_net. */
export function notInRootNetnsMessage(c: RootNetnsCheck): string {
  return (
    `the test runner is ${c.inRoot === false ? 'not' : 'not confirmed to be'} in the initial (root) network namespace ` +
    `(${c.detail}); the root-namespace guard would watch some other namespace, so "root namespace unchanged" ` +
    'would mean nothing. Run the tests from the host\'s root network namespace.'
  );
}

interface Probe {
  section: string;
  argv: string[];
  normalise: (stdout: string) => string[];
  /** a missing binary is not an error for optional probes */
  optional?: boolean;
  /**
   * Run only when this /proc file lists something. `iptables-legacy-save` instantiates the legacy
   * tables in the namespace it reads once their module is loaded, so the guard must not call it
   * where no legacy table exists: reading the list has no side effect.
   */
  onlyIfListed?: string;
}

const lines = (s: string): string[] => s.split('\n').map((l) => l.trimEnd()).filter((l) => l.length > 0);

/**
 * `*-save` output without comments and counters. A table with no rules and only built-in chains
 * at policy ACCEPT filters nothing, so it is dropped: it is what a namespace shows once a test
 * elsewhere has merely loaded iptable_filter (the module instantiates the table in every netns),
 * and it is equivalent to no table at all.
 */
export function normaliseSave(out: string): string[] {
  const kept: string[] = [];
  let table: string[] = [];
  for (const line of lines(out)) {
    if (line.startsWith('#')) continue;
    const l = line.replace(/\[\d+:\d+\]/g, '[-]');
    if (l.startsWith('*')) table = [l];
    else if (table.length > 0) table.push(l);
    else kept.push(l);
    if (l === 'COMMIT') {
      if (!isInertTable(table)) kept.push(...table);
      table = [];
    }
  }
  return kept.concat(table);
}

function isInertTable(table: string[]): boolean {
  return table.slice(1, -1).every((l) => /^:[A-Z]+ ACCEPT \[-\]$/.test(l));
}

function normaliseNft(out: string): string[] {
  return lines(out).map((l) =>
    l
      .replace(/counter packets \d+ bytes \d+/g, 'counter')
      .replace(/\bexpires \S+/g, '')
      .replace(/\bused \d+ bytes \d+/g, '')
      .trim(),
  );
}

function normaliseRoutes(out: string): string[] {
  return lines(out).map((l) => l.replace(/\s+expires \S+/g, '').replace(/\s+hoplimit \d+/g, ''));
}

interface JsonLink {
  ifname?: string;
  ifindex?: number;
  flags?: string[];
  operstate?: string;
  master?: string;
  mtu?: number;
  address?: string;
  link_type?: string;
  linkinfo?: { info_kind?: string; info_slave_kind?: string };
  addr_info?: { family?: string; local?: string; prefixlen?: number; scope?: string; peer?: string }[];
}

function parseJsonArray<T = JsonLink>(out: string): T[] {
  const v: unknown = JSON.parse(out.trim() || '[]');
  return Array.isArray(v) ? (v as T[]) : [];
}

function normaliseLinks(out: string): string[] {
  return parseJsonArray(out)
    .map((l) =>
      [
        `${l.ifname ?? '?'}`,
        `index=${l.ifindex ?? '?'}`,
        `kind=${l.linkinfo?.info_kind ?? l.link_type ?? '?'}`,
        `state=${l.operstate ?? '?'}`,
        `flags=${(l.flags ?? []).join(',')}`,
        `master=${l.master ?? '-'}`,
        `mtu=${l.mtu ?? '?'}`,
        `mac=${l.address ?? '-'}`,
      ].join(' '),
    )
    .sort();
}

function normaliseAddrs(out: string): string[] {
  const res: string[] = [];
  for (const l of parseJsonArray(out))
    for (const a of l.addr_info ?? [])
      res.push(`${l.ifname ?? '?'} ${a.family ?? '?'} ${a.local ?? '?'}/${a.prefixlen ?? '?'}${a.peer ? ` peer ${a.peer}` : ''} scope ${a.scope ?? '?'}`);
  return res.sort();
}

const PROBES: Probe[] = [
  { section: 'links', argv: ['ip', '-j', '-d', 'link', 'show'], normalise: normaliseLinks },
  { section: 'addresses', argv: ['ip', '-j', 'addr', 'show'], normalise: normaliseAddrs },
  { section: 'routes4', argv: ['ip', '-4', 'route', 'show', 'table', 'all'], normalise: normaliseRoutes },
  { section: 'routes6', argv: ['ip', '-6', 'route', 'show', 'table', 'all'], normalise: normaliseRoutes },
  { section: 'rules4', argv: ['ip', '-4', 'rule', 'show'], normalise: lines },
  { section: 'rules6', argv: ['ip', '-6', 'rule', 'show'], normalise: lines },
  { section: 'iptables', argv: ['iptables-save'], normalise: normaliseSave },
  { section: 'ip6tables', argv: ['ip6tables-save'], normalise: normaliseSave },
  { section: 'iptables-legacy', argv: ['iptables-legacy-save'], normalise: normaliseSave, optional: true, onlyIfListed: '/proc/net/ip_tables_names' },
  { section: 'ip6tables-legacy', argv: ['ip6tables-legacy-save'], normalise: normaliseSave, optional: true, onlyIfListed: '/proc/net/ip6_tables_names' },
  { section: 'nft', argv: ['nft', 'list', 'ruleset'], normalise: normaliseNft },
];

const SYSCTLS = ['net/ipv4/ip_forward', 'net/ipv6/conf/all/forwarding'];

async function readSysctls(target: GuardTarget): Promise<{ lines: string[]; error?: string }> {
  if (target === null) {
    // /proc/sys/net resolves against the opening thread's netns: ours.
    return { lines: SYSCTLS.map((k) => `${k.replace(/\//g, '.')} = ${safeRead(`/proc/sys/${k}`)}`) };
  }
  const r = await exec(target, ['cat', ...SYSCTLS.map((k) => `/proc/sys/${k}`)]);
  if (r.exitCode !== 0) return { lines: [], error: r.stderr.trim() || `exit ${r.exitCode}` };
  const vals = lines(r.stdout);
  return { lines: SYSCTLS.map((k, i) => `${k.replace(/\//g, '.')} = ${vals[i] ?? '?'}`) };
}

/** The sysctl trees watched whole: every key of every interface, and br_netfilter's keys. */
const SYSCTL_TREES = [
  { section: 'sysctl-ipv4-conf', dir: '/proc/sys/net/ipv4/conf' },
  { section: 'sysctl-bridge', dir: '/proc/sys/net/bridge' },
] as const;

/**
 * `grep -r -H '' DIR...` output (`/proc/sys/a/b:value` per line) as `a.b = value`, per tree,
 * sorted. A tree with no key at all is one line `<tree>: absent` (net.bridge exists only while
 * br_netfilter is loaded; its appearing is a change of root-namespace behaviour, so it is shown).
 */
export function normaliseSysctlTrees(out: string): Record<string, string[]> {
  const res: Record<string, string[]> = {};
  for (const t of SYSCTL_TREES) res[t.section] = [];
  for (const line of lines(out)) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const path = line.slice(0, colon);
    const tree = SYSCTL_TREES.find((t) => path.startsWith(`${t.dir}/`));
    if (!tree) continue;
    res[tree.section]!.push(`${path.slice('/proc/sys/'.length).replace(/\//g, '.')} = ${line.slice(colon + 1).trim()}`);
  }
  for (const t of SYSCTL_TREES) {
    const l = res[t.section]!;
    if (l.length === 0) l.push(`${t.dir.slice('/proc/sys/'.length).replace(/\//g, '.')}: absent`);
    l.sort();
  }
  return res;
}

async function readSysctlTrees(target: GuardTarget): Promise<{ sections: Record<string, string[]>; error?: string }> {
  // -s: a missing tree (no br_netfilter) is not an error; exit 1 = nothing found, 2 = some file unreadable
  const r = await exec(target, ['grep', '-r', '-H', '-s', '', ...SYSCTL_TREES.map((t) => t.dir)], { timeoutMs: 60_000 });
  if (r.exitCode === null || r.exitCode > 2) {
    const error = (r.stderr.trim() || `exit ${String(r.exitCode)}`).split('\n')[0]!;
    return { sections: Object.fromEntries(SYSCTL_TREES.map((t) => [t.section, [`<error: ${error}>`]])), error };
  }
  return { sections: normaliseSysctlTrees(r.stdout) };
}

interface JsonNeigh {
  dst?: string;
  dev?: string;
  lladdr?: string;
  state?: string[];
  router?: null;
  extern_learn?: null;
}

/**
 * Neighbour entries (ARP and NDP, `ip -j neigh show nud all` + `ip -j neigh show proxy`) that are
 * configuration, not cache:
 *   PERMANENT             static entries (`ip neigh add/replace`, default nud permanent)
 *   extern_learn          entries owned by a control plane (the kernel never ages them); their
 *                         reachability state is dropped from the line, the kernel moves it
 *   NOARP                 only when somebody set it: the kernel itself makes NOARP entries for
 *                         multicast/broadcast destinations (group-bit or ff:ff:.. lladdr), on
 *                         NOARP/loopback/point-to-point links and with an all-zero or no lladdr;
 *                         those come and go with traffic and are ignored
 *   proxy entries         `ip neigh add proxy ADDR dev DEV`
 * Ignored as the kernel's own cache: REACHABLE STALE DELAY PROBE INCOMPLETE FAILED NONE.
 */
export function normaliseNeighbours(neighOut: string, proxyOut: string, linkOut: string): string[] {
  const flags = new Map<string, string[]>();
  for (const l of parseJsonArray(linkOut)) if (l.ifname) flags.set(l.ifname, l.flags ?? []);
  const family = (dst: string): string => (dst.includes(':') ? 'inet6' : 'inet');
  const out: string[] = [];
  for (const n of parseJsonArray<JsonNeigh>(neighOut)) {
    const dst = n.dst ?? '?';
    const state = n.state ?? [];
    let kind: string | null = null;
    if ('extern_learn' in n) kind = 'extern_learn';
    else if (state.includes('PERMANENT')) kind = 'PERMANENT';
    else if (state.includes('NOARP') && !kernelMadeNoarp(n, flags.get(n.dev ?? ''))) kind = 'NOARP';
    if (kind === null) continue;
    out.push(`${family(dst)} ${dst} dev ${n.dev ?? '?'} lladdr ${n.lladdr ?? '-'} ${kind}${'router' in n ? ' router' : ''}`);
  }
  for (const n of parseJsonArray<JsonNeigh>(proxyOut)) out.push(`proxy ${family(n.dst ?? '')} ${n.dst ?? '?'} dev ${n.dev ?? '-'}`);
  return out.sort();
}

function kernelMadeNoarp(n: JsonNeigh, linkFlags: string[] | undefined): boolean {
  if (linkFlags?.some((f) => f === 'NOARP' || f === 'LOOPBACK' || f === 'POINTOPOINT')) return true;
  const mac = n.lladdr;
  if (!mac || !/^[0-9a-f]{2}(:[0-9a-f]{2})+$/i.test(mac)) return true;
  if (/^(00:)+00$/.test(mac)) return true;
  return (parseInt(mac.slice(0, 2), 16) & 1) === 1; // I/G bit: multicast, and ff:ff:ff:ff:ff:ff broadcast
}

async function readNeighbours(target: GuardTarget): Promise<{ lines: string[]; error?: string }> {
  const [neigh, proxy, link] = await Promise.all([
    exec(target, ['ip', '-j', 'neigh', 'show', 'nud', 'all'], { timeoutMs: 60_000 }),
    exec(target, ['ip', '-j', 'neigh', 'show', 'proxy'], { timeoutMs: 60_000 }),
    exec(target, ['ip', '-j', 'link', 'show'], { timeoutMs: 60_000 }),
  ]);
  const failed = [neigh, proxy, link].find((r) => r.exitCode !== 0);
  if (failed) {
    const error = (failed.stderr.trim() || `exit ${String(failed.exitCode)}`).split('\n')[0]!;
    return { lines: [`<error: ${error}>`], error };
  }
  return { lines: normaliseNeighbours(neigh.stdout, proxy.stdout, link.stdout) };
}

/**
 * The address ranges Podwire's tests use: lab nodes (198.18.0.0/15, RFC 2544), pods, Services,
 * node-local DNS, and the IPv6 pod/service/test prefixes. A root-namespace conntrack entry that
 * touches one of them means lab traffic went through the root namespace.
 */
export const TEST_RANGES: readonly string[] = [
  '198.18.0.0/15',
  '10.244.0.0/16',
  '10.96.0.0/12',
  '169.254.20.10/32',
  'fd00:10::/32',
  'fd00:244::/32',
  'fd99::/16',
];

const TEST_CIDRS = TEST_RANGES.map((r) => Cidr.parse(r));

function inTestRanges(addr: string, ranges: readonly Cidr[]): boolean {
  const ip = IpAddress.tryParse(addr);
  return ip !== undefined && ranges.some((c) => c.contains(ip));
}

/** Tuple keys kept from a conntrack entry: what identifies it. State, timeout, counters, mark, use are dropped. */
const CT_KEYS = new Set(['src', 'dst', 'sport', 'dport', 'type', 'code', 'id', 'zone', 'orig-zone', 'reply-zone']);

/**
 * `conntrack -L -o extended` (or /proc/net/nf_conntrack: same format) as one line per entry that
 * touches the test ranges: `ipv4 tcp src=.. dst=.. sport=.. dport=.. src=.. dst=.. sport=.. dport=..`
 * (original tuple, then reply tuple). Entries of other addresses belong to other processes.
 */
export function normaliseConntrack(out: string, ranges: readonly string[] = TEST_RANGES): string[] {
  const cidrs = ranges === TEST_RANGES ? TEST_CIDRS : ranges.map((r) => Cidr.parse(r));
  const res = new Set<string>();
  for (const line of lines(out)) {
    const tok = line.trim().split(/\s+/);
    if (tok[0] !== 'ipv4' && tok[0] !== 'ipv6') continue;
    const kept = tok
      .filter((x) => {
        const eq = x.indexOf('=');
        return eq > 0 && CT_KEYS.has(x.slice(0, eq)) && x !== 'zone=0';
      })
      .map((x) => {
        // /proc/net/nf_conntrack writes IPv6 uncompressed (fd00:0010:...), the CLI compressed
        if (!x.startsWith('src=') && !x.startsWith('dst=')) return x;
        const ip = IpAddress.tryParse(x.slice(4));
        return ip ? `${x.slice(0, 4)}${ip.toString()}` : x;
      });
    const addrs = kept.filter((x) => x.startsWith('src=') || x.startsWith('dst=')).map((x) => x.slice(4));
    if (!addrs.some((a) => inTestRanges(a, cidrs))) continue;
    res.add(`${tok[0]} ${tok[2] ?? '?'} ${kept.join(' ')}`);
  }
  return [...res].sort();
}

/**
 * Conntrack entries of `target`. Nothing is run unless nf_conntrack is loaded (its count file
 * exists): listing through ctnetlink would otherwise load modules. /proc/net/nf_conntrack is read
 * first (no side effect at all); the conntrack CLI is the fallback where that file is not built in.
 */
async function readConntrack(target: GuardTarget): Promise<{ lines: string[]; count: string; error?: string }> {
  const countR = await exec(target, ['cat', '/proc/sys/net/netfilter/nf_conntrack_count']);
  if (countR.exitCode !== 0) return { lines: [], count: 'absent (nf_conntrack not loaded)' };
  const count = countR.stdout.trim();
  const proc = await exec(target, ['cat', '/proc/net/nf_conntrack'], { timeoutMs: 60_000 });
  if (proc.exitCode === 0) return { lines: normaliseConntrack(proc.stdout), count };
  // conntrack >= 1.4.5 lists both families without -f; older ones only IPv4, hence the second call
  const [all, v6] = await Promise.all([
    exec(target, ['conntrack', '-L', '-o', 'extended'], { timeoutMs: 60_000 }),
    exec(target, ['conntrack', '-L', '-o', 'extended', '-f', 'ipv6'], { timeoutMs: 60_000 }),
  ]);
  if (all.exitCode === 0 && v6.exitCode === 0) return { lines: normaliseConntrack(`${all.stdout}\n${v6.stdout}`), count };
  const error = (all.stderr.trim() || v6.stderr.trim() || `conntrack exit ${String(all.exitCode)}`).split('\n')[0]!;
  return { lines: [`<error: ${error}>`], count, error };
}

/**
 * Sections compared for growth only: a line that appears is a violation, one that disappears is
 * not (conntrack entries time out by themselves).
 */
const GROWTH_ONLY = new Set(['conntrack']);

function safeRead(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (e) {
    return `<${(e as NodeJS.ErrnoException).code ?? 'error'}>`;
  }
}

/** Take a snapshot of `target` (default: this process's namespace). */
export async function snapshot(target: GuardTarget = null): Promise<Snapshot> {
  const snap: Snapshot = { target, sections: {}, errors: {}, info: {} };
  const extra = Promise.all([
    readSysctls(target).then((s) => {
      snap.sections.sysctl = s.lines;
      if (s.error) snap.errors.sysctl = s.error;
    }),
    readSysctlTrees(target).then((s) => {
      Object.assign(snap.sections, s.sections);
      if (s.error) for (const k of Object.keys(s.sections)) snap.errors[k] = s.error;
    }),
    readNeighbours(target).then((s) => {
      snap.sections.neighbours = s.lines;
      if (s.error) snap.errors.neighbours = s.error;
    }),
    readConntrack(target).then((s) => {
      snap.sections.conntrack = s.lines;
      snap.info.nf_conntrack_count = s.count;
      if (s.error) snap.errors.conntrack = s.error;
    }),
  ]);
  const probes = Promise.all(
    PROBES.map(async (p) => {
      if (p.onlyIfListed !== undefined) {
        const listed = await exec(target, ['cat', p.onlyIfListed], { timeoutMs: 60_000 });
        if (listed.exitCode !== 0 || listed.stdout.trim() === '') {
          snap.sections[p.section] = [];
          return;
        }
      }
      const r = await exec(target, p.argv, { timeoutMs: 60_000 });
      if (r.exitCode === 0) {
        snap.sections[p.section] = p.normalise(r.stdout);
      } else if (p.optional && r.exitCode === 127) {
        snap.sections[p.section] = [];
      } else {
        // keep the failure text as the section content, so failing before/after differently is visible
        snap.errors[p.section] = (r.stderr.trim() || `exit ${String(r.exitCode)}`).split('\n')[0]!;
        snap.sections[p.section] = [`<error: ${snap.errors[p.section]}>`];
      }
    }),
  );
  await Promise.all([probes, extra]);
  return snap;
}

/** Differences between two snapshots, section by section (empty array = identical). */
export function diffSnapshots(before: Snapshot, after: Snapshot): SectionDiff[] {
  const diffs: SectionDiff[] = [];
  const names = [...new Set([...Object.keys(before.sections), ...Object.keys(after.sections)])].sort();
  for (const section of names) {
    const a = before.sections[section] ?? [];
    const b = after.sections[section] ?? [];
    if (a.length === b.length && a.every((l, i) => l === b[i])) continue;
    if (GROWTH_ONLY.has(section)) {
      const added = multisetMinus(b, a);
      if (added.length === 0) continue;
      const note = section === 'conntrack' ? conntrackNote(before, after) : undefined;
      diffs.push({ section, removed: [], added, reordered: false, ...(note ? { note } : {}) });
      continue;
    }
    const removed = multisetMinus(a, b);
    const added = multisetMinus(b, a);
    diffs.push({ section, removed, added, reordered: removed.length === 0 && added.length === 0 });
  }
  return diffs;
}

function conntrackNote(before: Snapshot, after: Snapshot): string {
  return `nf_conntrack_count ${before.info?.nf_conntrack_count ?? '?'} -> ${after.info?.nf_conntrack_count ?? '?'} (all entries; only new ones in the test ranges count)`;
}

function multisetMinus(a: string[], b: string[]): string[] {
  const counts = new Map<string, number>();
  for (const l of b) counts.set(l, (counts.get(l) ?? 0) + 1);
  const out: string[] = [];
  for (const l of a) {
    const c = counts.get(l) ?? 0;
    if (c > 0) counts.set(l, c - 1);
    else out.push(l);
  }
  return out;
}

export function formatDiff(diffs: SectionDiff[], target: GuardTarget = null): string {
  if (diffs.length === 0) return 'no change';
  const out = [
    `namespace ${target ?? '(self/root)'} changed during the guarded run ` +
      '(by this test, or by any other process running meanwhile; nothing may change the root namespace):',
  ];
  for (const d of diffs) {
    out.push(`  [${d.section}]${d.reordered ? ' (same lines, order changed)' : ''}${d.note ? ` (${d.note})` : ''}`);
    for (const l of d.removed) out.push(`    - ${l}`);
    for (const l of d.added) out.push(`    + ${l}`);
  }
  return out.join('\n');
}

/** Thrown by withGuard / Guard.check when the watched namespace changed. */
export class RootNamespaceChangedError extends Error {
  readonly code = 'PW_LAB_ROOT_NS_CHANGED';
  constructor(readonly diffs: SectionDiff[], readonly target: GuardTarget) {
    super(`root-namespace guard: ${formatDiff(diffs, target)}`);
    this.name = 'RootNamespaceChangedError';
  }
}

/** before/after in two calls, for code that cannot wrap a callback. */
export class Guard {
  private constructor(readonly target: GuardTarget, readonly before: Snapshot) {}

  static async start(target: GuardTarget = null): Promise<Guard> {
    return new Guard(target, await snapshot(target));
  }

  /** Snapshot again and return the differences (empty = clean). */
  async diff(): Promise<SectionDiff[]> {
    return diffSnapshots(this.before, await snapshot(this.target));
  }

  /** Throw RootNamespaceChangedError on any difference. */
  async check(): Promise<void> {
    const d = await this.diff();
    if (d.length) throw new RootNamespaceChangedError(d, this.target);
  }
}

/**
 * Run fn between two snapshots of `target`. If fn throws, its error wins (the guard result is
 * attached as `guardDiffs` and printed to stderr); otherwise a change throws RootNamespaceChangedError.
 */
export async function withGuard<T>(fn: () => Promise<T>, target: GuardTarget = null): Promise<T> {
  const guard = await Guard.start(target);
  let result: T;
  try {
    result = await fn();
  } catch (e) {
    const d = await guard.diff();
    if (d.length) process.stderr.write(`${formatDiff(d, target)}\n`);
    throw e;
  }
  await guard.check();
  return result;
}
