/**
 * An iptables-restore/-save look-alike over an in-memory ruleset, so proxy tests can
 * inspect the chains and rules a restore produced. Semantics follow iptables-restore:
 * without --noflush a `*table` section replaces the whole table; with --noflush a
 * `:CHAIN` line creates a user chain or flushes an existing one, built-in chains keep
 * their rules and only take the policy; `-A/-I/-D/-F/-X` edit; everything up to COMMIT
 * is atomic (an error leaves the ruleset untouched and names the line, like
 * "iptables-restore: line 7 failed").
 *
 * The packet tracer is deliberately small: `trace(table, chain, packet)` walks -A rules
 * whose matches it understands (-s, -d, -p, --dport, -i, -o, -m comment, and the proxy's
 * -m statistic / recent / addrtype / conntrack / mark / set, answered from the packet's fields)
 * and follows -j to user chains and RETURN, applying MARK --set-xmark; other matches are
 * treated as "does not match".
 */
import { CommandError, InvalidInputError } from '../../common/errors';
import { Cidr, IpAddress } from '../../common/ip';
import type { IptablesRunner } from '../types';

const BUILTIN: Record<string, string[]> = {
  filter: ['INPUT', 'FORWARD', 'OUTPUT'],
  nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
  mangle: ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'],
  raw: ['PREROUTING', 'OUTPUT'],
  security: ['INPUT', 'FORWARD', 'OUTPUT'],
};

export interface FakeChain {
  policy: string | undefined; // undefined for user chains
  rules: string[];
}

export type FakeTable = Map<string, FakeChain>;

function emptyTable(name: string): FakeTable {
  const t: FakeTable = new Map();
  for (const c of BUILTIN[name] ?? []) t.set(c, { policy: 'ACCEPT', rules: [] });
  return t;
}

function cloneTable(t: FakeTable): FakeTable {
  return new Map([...t].map(([k, v]) => [k, { policy: v.policy, rules: [...v.rules] }]));
}

/** Splits a rule line into words, honouring double quotes (comments). */
export function splitWords(line: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (const m of line.matchAll(re)) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!);
  return out;
}

export interface TracePacket {
  src?: string;
  dst?: string;
  protocol?: 'tcp' | 'udp' | 'icmp' | 'sctp';
  dport?: number;
  inIface?: string;
  outIface?: string;
  /** `-m statistic --mode random --probability p`: default never (falls through to the last endpoint). */
  coin?: (probability: number) => boolean;
  /** `-m recent --rcheck --name N`: the names this source is recorded under. */
  recent?: string[];
  /** `-m addrtype --src-type LOCAL` / `--dst-type LOCAL`. */
  localSrc?: boolean;
  localDst?: boolean;
  /** `-m conntrack --ctstate`: default NEW. */
  ctstate?: string;
  /** fwmark; MARK targets update it during the walk (read it back from TraceResult.mark). */
  mark?: number;
  /** `-m set --match-set NAME DIMS`: membership (FakeIpset.test answers it); default: in no set. */
  ipset?: (name: string, dims: string) => boolean;
}

export interface TraceResult {
  /** Final verdict (`ACCEPT`, `DROP`, `DNAT`, ..., or the policy / `RETURN` from a builtin). */
  verdict: string;
  /** Target arguments of the final rule, e.g. `--to-destination 10.244.1.5:80`. */
  args: string[];
  /** chain:rule-number visited, in order. */
  path: string[];
  /** The fwmark after the walk. */
  mark: number;
}

export class FakeIptables implements IptablesRunner {
  readonly tables = new Map<string, FakeTable>();
  readonly restores: { text: string; noflush: boolean; counters: boolean }[] = [];
  /** Which iptables this fake stands for (the proxier restores in chunks for 'nft'). */
  backend: 'legacy' | 'nft' | undefined = undefined;

  constructor(readonly family: 4 | 6 = 4) {}

  table(name: string): FakeTable {
    let t = this.tables.get(name);
    if (!t) {
      t = emptyTable(name);
      this.tables.set(name, t);
    }
    return t;
  }

  chains(table: string): string[] {
    return [...this.table(table).keys()];
  }

  rules(table: string, chain: string): string[] {
    return [...(this.table(table).get(chain)?.rules ?? [])];
  }

  async save(table: string): Promise<string> {
    if (!BUILTIN[table]) throw new InvalidInputError('table', table, `expected one of ${Object.keys(BUILTIN).join(', ')}`);
    const t = this.table(table);
    const lines = [`*${table}`];
    for (const [name, c] of t) lines.push(`:${name} ${c.policy ?? '-'} [0:0]`);
    for (const [name, c] of t) for (const r of c.rules) lines.push(`-A ${name} ${r}`);
    lines.push('COMMIT', '');
    return lines.join('\n');
  }

  async restore(text: string, options: { noflush?: boolean; counters?: boolean } = {}): Promise<void> {
    const noflush = options.noflush ?? true;
    const staged = new Map<string, FakeTable>();
    let current: { name: string; t: FakeTable } | undefined;
    const lines = text.split('\n');
    const fail = (n: number, why: string): never => {
      throw new CommandError('iptables-restore', 1, `iptables-restore: line ${n} failed: ${why}\ninput line ${n}: ${lines[n - 1]}`);
    };
    for (let i = 0; i < lines.length; i++) {
      const n = i + 1;
      const line = lines[i]!.trim();
      if (line === '' || line.startsWith('#')) continue;
      if (line.startsWith('*')) {
        const name = line.slice(1);
        if (!BUILTIN[name]) fail(n, `unknown table ${name}`);
        const base = staged.get(name) ?? (noflush ? cloneTable(this.table(name)) : emptyTable(name));
        current = { name, t: base };
        continue;
      }
      if (!current) fail(n, 'no table selected');
      const t = current!.t;
      if (line === 'COMMIT') {
        staged.set(current!.name, t);
        current = undefined;
        continue;
      }
      if (line.startsWith(':')) {
        const [name, policy] = line.slice(1).split(/\s+/);
        if (!name) fail(n, 'empty chain name');
        const builtin = BUILTIN[current!.name]!.includes(name!);
        const existing = t.get(name!);
        if (builtin) {
          existing!.policy = policy ?? 'ACCEPT';
        } else if (existing) existing.rules = [];
        else {
          if (name!.length > 28) fail(n, `chain name ${name} too long`);
          t.set(name!, { policy: undefined, rules: [] });
        }
        continue;
      }
      const words = splitWords(line);
      const [flag, chain] = words;
      const c = chain !== undefined ? t.get(chain) : undefined;
      const rest = line.slice(line.indexOf(chain ?? '') + (chain ?? '').length).trim();
      switch (flag) {
        case '-A':
        case '--append':
          if (!c) fail(n, `chain ${chain} does not exist`);
          this.checkJump(t, words, n, fail);
          c!.rules.push(rest);
          break;
        case '-I':
        case '--insert': {
          if (!c) fail(n, `chain ${chain} does not exist`);
          const pos = /^\d+\s/.test(rest) ? Number(rest.split(/\s+/)[0]) : 1;
          const spec = /^\d+\s/.test(rest) ? rest.replace(/^\d+\s+/, '') : rest;
          this.checkJump(t, splitWords(spec), n, fail);
          c!.rules.splice(pos - 1, 0, spec);
          break;
        }
        case '-D':
        case '--delete': {
          if (!c) fail(n, `chain ${chain} does not exist`);
          const idx = c!.rules.indexOf(rest);
          if (idx < 0) fail(n, 'rule to delete does not exist');
          c!.rules.splice(idx, 1);
          break;
        }
        case '-F':
        case '--flush':
          if (!c) fail(n, `chain ${chain} does not exist`);
          c!.rules = [];
          break;
        case '-X':
        case '--delete-chain': {
          if (!c) fail(n, `chain ${chain} does not exist`);
          if (c!.policy !== undefined) fail(n, `cannot delete built-in chain ${chain}`);
          if (c!.rules.length > 0) fail(n, `chain ${chain} is not empty`);
          for (const [other, oc] of t) {
            if (oc.rules.some((r) => jumpTarget(splitWords(r)) === chain)) fail(n, `chain ${chain} is referenced by ${other}`);
          }
          t.delete(chain!);
          break;
        }
        default:
          fail(n, `unknown command ${flag}`);
      }
    }
    if (current) fail(lines.length, 'missing COMMIT');
    for (const [name, t] of staged) this.tables.set(name, t);
    this.restores.push({ text, noflush, counters: options.counters ?? false });
  }

  private checkJump(t: FakeTable, words: string[], n: number, fail: (n: number, why: string) => never): void {
    const target = jumpTarget(words);
    if (target === undefined || TARGETS.has(target)) return;
    if (!t.has(target)) fail(n, `target ${target} does not exist`);
  }

  /** Walks `chain` of `table` for a packet; see the module comment for what it understands. */
  trace(table: string, chain: string, packet0: TracePacket): TraceResult {
    const path: string[] = [];
    const packet: TracePacket = { ...packet0, mark: packet0.mark ?? 0 };
    const walk = (name: string, depth: number): { verdict: string; args: string[] } | undefined => {
      if (depth > 32) throw new Error(`trace: chain loop at ${name}`);
      const c = this.table(table).get(name);
      if (!c) throw new Error(`trace: no chain ${name}`);
      for (let i = 0; i < c.rules.length; i++) {
        const words = splitWords(c.rules[i]!);
        if (!ruleMatches(words, packet)) continue;
        path.push(`${name}:${i + 1}`);
        const target = jumpTarget(words);
        if (target === undefined) continue;
        if (target === 'RETURN') return undefined;
        if (target === 'MARK') {
          const i = words.indexOf('--set-xmark');
          const [v, m] = (words[i + 1] ?? '0/0').split('/').map((x) => Number(x));
          packet.mark = ((packet.mark! & ~(m ?? 0xffffffff)) ^ (v ?? 0)) >>> 0;
          continue;
        }
        if (TERMINAL.has(target)) return { verdict: target, args: words.slice(words.indexOf(target) + 1) };
        if (!TARGETS.has(target)) {
          const r = walk(target, depth + 1);
          if (r) return r;
          if (words.includes('-g') || words.includes('--goto')) return undefined;
          continue;
        }
      }
      return undefined;
    };
    const r = walk(chain, 0);
    const policy = this.table(table).get(chain)?.policy;
    return r ? { ...r, path, mark: packet.mark! } : { verdict: policy ?? 'RETURN', args: [], path, mark: packet.mark! };
  }
}

const TERMINAL = new Set(['ACCEPT', 'DROP', 'REJECT', 'DNAT', 'SNAT', 'MASQUERADE', 'REDIRECT']);
const TARGETS = new Set([...TERMINAL, 'RETURN', 'MARK', 'LOG', 'CONNMARK', 'CT', 'NOTRACK', 'TPROXY']);

function jumpTarget(words: string[]): string | undefined {
  for (let i = 0; i < words.length - 1; i++) if (words[i] === '-j' || words[i] === '--jump' || words[i] === '-g' || words[i] === '--goto') return words[i + 1];
  return undefined;
}

function cidrMatch(spec: string, addr: string | undefined): boolean {
  if (addr === undefined) return false;
  const neg = spec.startsWith('!');
  const text = neg ? spec.slice(1) : spec;
  const c = text.includes('/') ? Cidr.parse(text) : Cidr.of(IpAddress.parse(text), IpAddress.parse(text).bits);
  const ip = IpAddress.tryParse(addr);
  const hit = ip !== undefined && c.masked.contains(ip);
  return neg ? !hit : hit;
}

function ruleMatches(words: string[], p: TracePacket): boolean {
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    let neg = false;
    if (w === '!') {
      neg = true;
      i++;
    }
    const opt = words[i]!;
    const val = words[i + 1];
    const check = (ok: boolean): boolean => (neg ? !ok : ok);
    switch (opt) {
      case '-s':
      case '--source':
        if (!check(cidrMatch(val!, p.src))) return false;
        i++;
        break;
      case '-d':
      case '--destination':
        if (!check(cidrMatch(val!, p.dst))) return false;
        i++;
        break;
      case '-p':
      case '--protocol':
        if (!check(p.protocol === val)) return false;
        i++;
        break;
      case '--dport':
        if (!check(p.dport === Number(val))) return false;
        i++;
        break;
      case '-i':
      case '--in-interface':
        if (!check(p.inIface === val)) return false;
        i++;
        break;
      case '-o':
      case '--out-interface':
        if (!check(p.outIface === val)) return false;
        i++;
        break;
      case '-m':
        if (!['comment', 'tcp', 'udp', 'sctp', 'statistic', 'recent', 'addrtype', 'conntrack', 'mark', 'set'].includes(val!)) return false;
        i++;
        break;
      case '--mode':
      case '--seconds':
      case '--mask':
        i++;
        break;
      case '--reap':
      case '--rsource':
      case '--set':
        break;
      case '--probability':
        if (!check((p.coin ?? (() => false))(Number(val)))) return false;
        i++;
        break;
      case '--rcheck': {
        const n = words.indexOf('--name');
        if (!check((p.recent ?? []).includes(words[n + 1] ?? ''))) return false;
        break;
      }
      case '--name':
        i++;
        break;
      case '--src-type':
        if (!check(val === 'LOCAL' && p.localSrc === true)) return false;
        i++;
        break;
      case '--dst-type':
        if (!check(val === 'LOCAL' && p.localDst === true)) return false;
        i++;
        break;
      case '--ctstate':
        if (!check(val!.split(',').includes(p.ctstate ?? 'NEW'))) return false;
        i++;
        break;
      case '--mark': {
        const [v, m] = val!.split('/').map((x) => Number(x));
        if (!check(((p.mark ?? 0) & (m ?? 0xffffffff)) === v)) return false;
        i++;
        break;
      }
      case '--comment':
        i++;
        break;
      case '--match-set':
        if (!check((p.ipset ?? (() => false))(val!, words[i + 2] ?? ''))) return false;
        i += 2;
        break;
      case '-j':
      case '--jump':
      case '-g':
      case '--goto':
        return true;
      default:
        return false; // a match the tracer does not understand
    }
  }
  return true;
}
