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
 * Not watched: the list of namespaces (/run/netns files are not root-namespace state),
 * neighbours, conntrack, statistics.
 *
 * Hand-written (no library) because it is a thin layer over the iproute2/iptables/nft CLIs.
 */
import { readFileSync, statSync } from 'node:fs';
import { exec, type NsName } from './exec';

/** The namespace a guard watches: `null` = the current process's netns (the root ns in our tests). */
export type GuardTarget = NsName;

export interface Snapshot {
  target: GuardTarget;
  /** section name -> normalised lines */
  sections: Record<string, string[]>;
  /** sections whose command failed or is missing (recorded as such, so a change is still seen) */
  errors: Record<string, string>;
}

export interface SectionDiff {
  section: string;
  removed: string[];
  added: string[];
  /** same lines, different order (rule order matters in iptables/nft) */
  reordered: boolean;
}

export const INIT_NET_INODE = 0xeffffff9; // PROC_NET_INIT_INO: the fixed inode of init_net on kernels >= 6.x

/** Inode of this process's network namespace. */
export function selfNetnsInode(): number {
  return statSync('/proc/self/ns/net').ino;
}

/**
 * Is this process in the root (initial) network namespace? Compares with PID 1's namespace
 * when readable, else with the fixed init_net inode number. `undefined` when neither works.
 */
export function inRootNetns(): boolean | undefined {
  const self = selfNetnsInode();
  try {
    return statSync('/proc/1/ns/net').ino === self;
  } catch {
    /* /proc/1/ns is not readable in some sandboxes; fall through */
  }
  if (self === INIT_NET_INODE) return true;
  return undefined;
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

function parseJsonArray(out: string): JsonLink[] {
  const v: unknown = JSON.parse(out.trim() || '[]');
  return Array.isArray(v) ? (v as JsonLink[]) : [];
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

function safeRead(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (e) {
    return `<${(e as NodeJS.ErrnoException).code ?? 'error'}>`;
  }
}

/** Take a snapshot of `target` (default: this process's namespace). */
export async function snapshot(target: GuardTarget = null): Promise<Snapshot> {
  const snap: Snapshot = { target, sections: {}, errors: {} };
  await Promise.all(
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
  const s = await readSysctls(target);
  snap.sections.sysctl = s.lines;
  if (s.error) snap.errors.sysctl = s.error;
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
    const removed = multisetMinus(a, b);
    const added = multisetMinus(b, a);
    diffs.push({ section, removed, added, reordered: removed.length === 0 && added.length === 0 });
  }
  return diffs;
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
    out.push(`  [${d.section}]${d.reordered ? ' (same lines, order changed)' : ''}`);
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
