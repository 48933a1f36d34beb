/**
 * An `nft -f` look-alike over an in-memory ruleset, with a packet tracer, so proxy tests
 * can ask "where does a packet to VIP:port from S go" without root.
 *
 * `apply(script)` records the script (`scripts`, `last`) and runs it against the model,
 * atomically: on any error nothing changes and a CommandError names the line
 * (`/dev/stdin:N:1-1: Error: ...` and `script line N: ...`, as the real runners).
 * Commands it models:
 *   add|create table F T [{ comment/flags }]          delete|destroy table F T    flush table F T
 *   add|create chain F T C [{ type X hook H priority P; policy accept|drop; }]
 *   delete|destroy chain F T C (with its rules; refused while referenced)      flush chain F T C
 *   add|insert rule F T C <rule>                      delete rule F T C handle N
 *   add|create set|map F T S { type|typeof ...; flags interval; elements = { ... } }
 *   delete|destroy set|map F T S                      flush set|map F T S
 *   add|create|delete|destroy element F T S { e1, e2 : verdict-or-data, ... }
 *   the block form `table F T { chain C { type ...; rules } set S { ... } map M { ... } }`
 * Anything else fails the apply with "fake nft does not understand: <line>".
 *
 * `trace(packet)` walks the base chains of `packet.hook` (tables of family ip/ip6 by
 * `packet.family`, and inet), in priority order, like the kernel: accept goes on to the
 * next base chain, drop/reject stop, dnat/snat/masquerade end their chain with accept
 * (later chains see the rewritten destination). Rules are parsed when the tracer first
 * reaches them. Matches it understands:
 *   ip|ip6 saddr|daddr, meta l4proto, meta nfproto, ip protocol, th|tcp|udp|sctp sport|dport,
 *   [meta] mark [and|or|xor M], ct state, ct status (a DNAT earlier in the trace, or
 *   `packet.ctStatus`), fib daddr type, iifname, oifname, meta iifname|oifname,
 *   with == / != / (nothing), a value, a range a-b, a CIDR, an anonymous set { a, b } or @set,
 *   and concatenations `ip daddr . meta l4proto . th dport` against sets and maps (intervals).
 * Statements: accept, drop, reject [with ...], return, continue, jump C, goto C,
 *   EXPR vmap @map | vmap { k : verdict, ... }, numgen random mod N [offset O] vmap|map,
 *   dnat [ip|ip6] [addr . port] to ADDR[:PORT] | to EXPR map @m|{ ... }, snat to ..., masquerade [flags],
 *   [meta] mark set V | mark set mark or|and|xor V, counter, log [prefix "x"] [level y], comment "x".
 * Anything else throws "tracer does not understand: <rule>" (an Error) when reached.
 *
 * numgen: with `packet.numgen` set, every numgen yields that value (mod N). Without it,
 * the tracer explores every value: the result is the outcome of value 0, and
 * `alternatives` lists one result per possible value (per combination, if nested).
 */
import { CommandError } from '../../common/errors';
import { Cidr, IpAddress } from '../../common/ip';
import type { NftGeneration, NftRunner, NftTableContent } from '../types';

// ---------------------------------------------------------------- public API

export type NftHook = 'prerouting' | 'input' | 'forward' | 'output' | 'postrouting';

export interface NftTracePacket {
  family: 4 | 6;
  saddr: string;
  daddr: string;
  protocol: 'tcp' | 'udp' | 'sctp' | 'icmp' | 'icmpv6' | number;
  dport?: number;
  sport?: number;
  hook: NftHook;
  /** Conntrack state the packet has; default `new` (the first packet of a connection). */
  ctState?: 'new' | 'established' | 'related' | 'invalid' | 'untracked';
  /** Packet mark on entry; default 0. */
  mark?: number;
  /** Conntrack status bits `ct status` sees besides a DNAT done in this trace (e.g. ['dnat'] for a postrouting trace of a DNATed flow). */
  ctStatus?: ('dnat' | 'snat' | 'confirmed' | 'seen-reply' | 'assured')[];
  /** What `fib daddr type local` sees; default false. */
  daddrLocal?: boolean;
  iifname?: string;
  oifname?: string;
  /** Value every `numgen` yields (mod N); when absent, every value is explored (`alternatives`). */
  numgen?: number;
  /** Start at this chain (of `table`, or the only table having it) instead of the hook's base chains. */
  chain?: string;
  table?: string;
}

export interface NftTraceResult {
  /** accept (also the default policy), drop or reject. */
  verdict: 'accept' | 'drop' | 'reject';
  /** Destination after DNAT (the last one applied). */
  dnat?: { addr: string; port?: number };
  snat?: { addr: string; port?: number };
  masquerade?: boolean;
  /** Packet mark at the end, when a rule set it. */
  mark?: number;
  /** Rules that matched, in order: `<table>/<chain>:<rule number from 1>`. */
  path: string[];
  /** The numgen values this outcome took, in the order met. */
  numgen?: number[];
  /** Every possible outcome when a numgen was met and `packet.numgen` was not given. */
  alternatives?: NftTraceResult[];
}

interface BaseSpec {
  type: string;
  hook: string;
  priority: number;
  policy: 'accept' | 'drop';
}

export interface NftModelChain {
  name: string;
  base?: BaseSpec;
  rules: { handle: number; text: string; tokens: Tok[] }[];
}

export interface NftModelSet {
  name: string;
  map: boolean;
  flags: string[];
  /** Element key parts (and value tokens for maps), keyed by their text. */
  elements: Map<string, { key: string[][]; value?: string[] }>;
}

export interface NftModelTable {
  family: string;
  name: string;
  chains: Map<string, NftModelChain>;
  sets: Map<string, NftModelSet>;
  nextHandle: number;
}

export class FakeNft implements NftRunner {
  readonly backend = 'nft' as const;
  readonly scripts: string[] = [];
  /** The modelled ruleset: `${family} ${table}` → table. */
  tables = new Map<string, NftModelTable>();
  private failure: { line: number; message: string } | undefined;
  /** What `list`/`listJson` return. */
  listText = '';
  listJsonValue: unknown = { nftables: [] };
  /** Unset: callers list the table (`listJson`). Tests set it to stand for the netlink read (nft-table.ts). */
  readTable?: (table: string, skipElements: (name: string) => boolean) => Promise<NftTableContent>;

  failNext(line: number, message = 'Error: syntax error'): void {
    this.failure = { line, message };
  }

  async apply(script: string): Promise<void> {
    if (this.failure) {
      const f = this.failure;
      this.failure = undefined;
      const text = script.split('\n')[f.line - 1] ?? '';
      throw new CommandError('nft -f -', 1, `/dev/stdin:${f.line}:1-1: ${f.message}\n${text}\nscript line ${f.line}: ${text}`);
    }
    const staged = cloneTables(this.tables);
    try {
      new ScriptRunner(staged, tokenize(script)).run();
    } catch (err) {
      if (!(err instanceof NftScriptError)) throw err;
      const text = script.split('\n')[err.line - 1] ?? '';
      throw new CommandError('nft -f -', 1, `/dev/stdin:${err.line}:1-1: Error: ${err.message}\n${text}\nscript line ${err.line}: ${text}`);
    }
    this.tables = staged;
    this.scripts.push(script);
    this.generationId++;
    this.ownCommits++;
  }

  /** The kernel's generation: one per committed transaction, ours or another program's. */
  generationId = 1;
  private ownCommits = 0;

  async generation(): Promise<NftGeneration> {
    return { generation: this.generationId, ownCommits: this.ownCommits };
  }

  /** Per chain, its rules' text (the model's prints). */
  async rulePrints(family: string, table: string): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    for (const c of this.tables.get(`${family} ${table}`)?.chains.values() ?? []) if (c.rules.length > 0) out.set(c.name, c.rules.map((r) => r.text));
    return out;
  }

  /** A transaction by another program (`nft` run by an admin): it counts in the generation only. */
  async applyForeign(script: string): Promise<void> {
    await this.apply(script);
    this.ownCommits--;
  }

  get last(): string | undefined {
    return this.scripts[this.scripts.length - 1];
  }

  /**
   * When set, `listJson('table F T')` answers from the model (`json()`, an error like nft's
   * when there is no such table) and `list('tables')` lists the modelled tables, as the real
   * runners do; otherwise both return the fixed values above.
   */
  fromModel = false;

  async listJson(what: string): Promise<unknown> {
    if (!this.fromModel) return this.listJsonValue;
    const m = /^table (\S+) (\S+)$/.exec(what);
    if (!m) throw new Error(`fake nft lists only 'table F T' from its model, not: ${what}`);
    const j = this.json(m[1]!, m[2]!);
    if (j === undefined) throw new CommandError('libnftables -j list', 1, 'Error: No such file or directory');
    return j;
  }

  async list(what: string): Promise<string> {
    if (this.fromModel && what === 'tables') return [...this.tables.values()].map((t) => `table ${t.family} ${t.name}\n`).join('');
    return this.listText;
  }

  /**
   * A table as `nft -j list table F T` shows it, in the shape the proxy's reader takes:
   * chains, rules (handle, and the rule's text standing for its expression), sets and
   * maps with elements (concatenations as `concat`, numbers as numbers, goto/jump
   * verdicts as objects). Undefined when there is no such table.
   */
  json(family: string, table: string): { nftables: unknown[] } | undefined {
    const t = this.tables.get(`${family} ${table}`);
    if (!t) return undefined;
    const part = (words: string[]): unknown => {
      const w = words.join(' ');
      return /^\d+$/.test(w) ? Number(w) : w;
    };
    const value = (toks: string[]): unknown => {
      if ((toks[0] === 'goto' || toks[0] === 'jump') && toks.length === 2) return { [toks[0]]: { target: toks[1] } };
      if (toks.length === 1 && ['accept', 'drop', 'return'].includes(toks[0]!)) return { [toks[0]!]: null };
      const parts = splitConcat(toks.map((v) => ({ v, line: 0 }))).map((p) => part(p.map((x) => x.v)));
      return parts.length === 1 ? parts[0] : { concat: parts };
    };
    const out: unknown[] = [{ table: { family, name: table, handle: 1 } }];
    for (const c of t.chains.values()) {
      out.push({ chain: { family, table, name: c.name, ...(c.base ? { type: c.base.type, hook: c.base.hook, prio: c.base.priority, policy: c.base.policy } : {}) } });
    }
    for (const s of t.sets.values()) {
      const elem = [...s.elements.values()].map((e) => {
        const k = e.key.length === 1 ? part(e.key[0]!) : { concat: e.key.map(part) };
        return s.map ? [k, value(e.value ?? [])] : k;
      });
      out.push({ [s.map ? 'map' : 'set']: { family, table, name: s.name, ...(s.flags.length > 0 ? { flags: s.flags } : {}), ...(elem.length > 0 ? { elem } : {}) } });
    }
    for (const c of t.chains.values()) for (const r of c.rules) out.push({ rule: { family, table, chain: c.name, handle: r.handle, expr: [{ text: r.text }] } });
    return { nftables: out };
  }

  /** Rules of a chain as text, or undefined if there is no such chain. */
  rules(family: string, table: string, chain: string): string[] | undefined {
    return this.tables.get(`${family} ${table}`)?.chains.get(chain)?.rules.map((r) => r.text);
  }

  /** Chain names of a table (undefined if there is no such table). */
  chains(family: string, table: string): string[] | undefined {
    const t = this.tables.get(`${family} ${table}`);
    return t ? [...t.chains.keys()] : undefined;
  }

  /** Elements of a set or map as text (`10.96.0.10 . tcp . 53 : goto svc-x`). */
  elements(family: string, table: string, set: string): string[] | undefined {
    const s = this.tables.get(`${family} ${table}`)?.sets.get(set);
    return s ? [...s.elements.entries()].map(([k, e]) => (e.value ? `${k} : ${e.value.join(' ')}` : k)) : undefined;
  }

  /** Where a packet goes; see the module comment. */
  trace(packet: NftTracePacket): NftTraceResult {
    return new Tracer(this.tables, packet).run();
  }
}

// ---------------------------------------------------------------- tokens

export interface Tok {
  v: string;
  line: number;
  /** Came from a quoted string. */
  q?: boolean;
}

const NL = '\n';

/** Words, quoted strings, and { } ; , as their own tokens; a ':' with a space on either side too. */
export function tokenize(script: string): Tok[] {
  const out: Tok[] = [];
  let line = 1;
  let i = 0;
  const n = script.length;
  while (i < n) {
    const c = script[i]!;
    if (c === '\n') {
      out.push({ v: NL, line });
      line++;
      i++;
    } else if (c === ' ' || c === '\t' || c === '\r') {
      i++;
    } else if (c === '#') {
      while (i < n && script[i] !== '\n') i++;
    } else if (c === '\\' && script[i + 1] === '\n') {
      i += 2;
      line++;
    } else if (c === '"') {
      let j = i + 1;
      while (j < n && script[j] !== '"' && script[j] !== '\n') j++;
      out.push({ v: script.slice(i + 1, j), line, q: true });
      i = j + 1;
    } else if ('{};,'.includes(c)) {
      out.push({ v: c, line });
      i++;
    } else {
      let j = i;
      while (j < n && !' \t\r\n{};,"#'.includes(script[j]!)) {
        // ':' followed by whitespace ends the word (`0 : goto x`, `10.0.0.1: goto`)
        if (script[j] === ':' && j > i && (j + 1 >= n || ' \t\r\n'.includes(script[j + 1]!))) break;
        j++;
      }
      if (j === i) j = i + 1; // a lone ':'
      out.push({ v: script.slice(i, j), line });
      i = j;
    }
  }
  return out;
}

class NftScriptError extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(message);
  }
}

function cloneTables(src: Map<string, NftModelTable>): Map<string, NftModelTable> {
  const out = new Map<string, NftModelTable>();
  for (const [k, t] of src) {
    out.set(k, {
      family: t.family,
      name: t.name,
      nextHandle: t.nextHandle,
      chains: new Map([...t.chains].map(([n, c]) => [n, { name: c.name, base: c.base ? { ...c.base } : undefined, rules: [...c.rules] }])),
      sets: new Map([...t.sets].map(([n, s]) => [n, { name: s.name, map: s.map, flags: [...s.flags], elements: new Map(s.elements) }])),
    });
  }
  return out;
}

const FAMILY_WORDS = new Set(['ip', 'ip6', 'inet', 'arp', 'bridge', 'netdev']);
const PRIORITY_NAMES: Record<string, number> = { raw: -300, mangle: -150, dstnat: -100, filter: 0, security: 50, srcnat: 100 };

function textOf(toks: Tok[]): string {
  let s = '';
  for (const t of toks) {
    const v = t.q ? `"${t.v}"` : t.v;
    if (s === '' || t.v === ',' || t.v === ';') s += v;
    else s += ` ${v}`;
  }
  return s;
}

// ---------------------------------------------------------------- script runner

class ScriptRunner {
  private pos = 0;

  constructor(
    private readonly tables: Map<string, NftModelTable>,
    private readonly toks: Tok[],
  ) {}

  private peek(): Tok | undefined {
    return this.toks[this.pos];
  }

  private line(): number {
    return (this.toks[this.pos] ?? this.toks[this.toks.length - 1])?.line ?? 1;
  }

  private next(what = 'a word'): Tok {
    const t = this.toks[this.pos];
    if (!t || t.v === NL) throw new NftScriptError(this.line(), `syntax error, expected ${what}`);
    this.pos++;
    return t;
  }

  private expect(v: string): void {
    const t = this.next(`"${v}"`);
    if (t.v !== v) throw new NftScriptError(t.line, `syntax error, unexpected "${t.v}", expected "${v}"`);
  }

  private skipSeparators(inBlock = false): void {
    while (this.peek() && (this.peek()!.v === NL || this.peek()!.v === ';' || (inBlock && this.peek()!.v === ','))) this.pos++;
  }

  /** The rest of the statement (to a newline or ';' outside braces). */
  private statement(): Tok[] {
    const out: Tok[] = [];
    let depth = 0;
    for (;;) {
      const t = this.peek();
      if (!t) break;
      if (depth === 0 && (t.v === NL || t.v === ';' || t.v === '}')) break;
      if (t.v === '{') depth++;
      if (t.v === '}') depth--;
      this.pos++;
      if (t.v !== NL) out.push(t);
    }
    return out;
  }

  private unsupported(from: number): never {
    const line = this.toks[from]?.line ?? 1;
    const rest: Tok[] = [];
    for (let i = from; i < this.toks.length && this.toks[i]!.line === line && this.toks[i]!.v !== NL; i++) rest.push(this.toks[i]!);
    throw new NftScriptError(line, `fake nft does not understand: ${textOf(rest)}`);
  }

  run(): void {
    for (;;) {
      this.skipSeparators();
      if (!this.peek()) return;
      this.command();
    }
  }

  private command(): void {
    const start = this.pos;
    const verb = this.next().v;
    if (verb === 'table') {
      const { family, name } = this.tableRef();
      const t = this.ensureTable(family, name);
      this.expect('{');
      this.tableBody(t);
      return;
    }
    const kind = this.peek()?.v;
    const verbs = ['add', 'create', 'delete', 'destroy', 'flush', 'insert', 'replace'];
    if (!verbs.includes(verb) || kind === undefined) this.unsupported(start);
    this.pos++;
    switch (`${verb} ${kind}`) {
      case 'add table':
      case 'create table': {
        const line = this.line();
        const { family, name } = this.tableRef();
        if (verb === 'create' && this.tables.has(`${family} ${name}`)) throw new NftScriptError(line, `Could not process rule: File exists (table ${family} ${name})`);
        const t = this.ensureTable(family, name);
        if (this.peek()?.v === '{') {
          this.pos++;
          this.tableBody(t);
        }
        return;
      }
      case 'delete table':
      case 'destroy table': {
        const line = this.line();
        const { family, name } = this.tableRef();
        if (!this.tables.delete(`${family} ${name}`) && verb === 'delete') throw new NftScriptError(line, `No such file or directory (table ${family} ${name})`);
        return;
      }
      case 'flush table': {
        const t = this.table(this.tableRef());
        for (const c of t.chains.values()) c.rules = [];
        for (const s of t.sets.values()) s.elements = new Map();
        return;
      }
      case 'add chain':
      case 'create chain': {
        const line = this.line();
        const t = this.table(this.tableRef());
        const name = this.next('a chain name').v;
        if (verb === 'create' && t.chains.has(name)) throw new NftScriptError(line, `Could not process rule: File exists (chain ${name})`);
        const c = this.ensureChain(t, name);
        if (this.peek()?.v === '{') {
          this.pos++;
          this.chainBody(t, c, false);
        }
        return;
      }
      case 'delete chain':
      case 'destroy chain': {
        const line = this.line();
        const t = this.table(this.tableRef());
        const name = this.next('a chain name').v;
        const c = t.chains.get(name);
        if (!c) {
          if (verb === 'delete') throw new NftScriptError(line, `No such file or directory (chain ${name})`);
          return;
        }
        // The kernel deletes a chain together with its rules (checked on 6.18 with nft 1.0.6);
        // only a chain that a jump, goto or verdict-map element still names is busy.
        const by = referencedBy(t, name);
        if (by) throw new NftScriptError(line, `Could not process rule: Device or resource busy (chain ${name} is referenced by ${by})`);
        t.chains.delete(name);
        return;
      }
      case 'flush chain': {
        const t = this.table(this.tableRef());
        this.chain(t, this.next('a chain name')).rules = [];
        return;
      }
      case 'add rule':
      case 'insert rule': {
        const t = this.table(this.tableRef());
        const c = this.chain(t, this.next('a chain name'));
        const body = this.statement();
        if (body.length === 0) throw new NftScriptError(this.line(), 'syntax error, empty rule');
        this.checkRuleRefs(t, body);
        const rule = { handle: t.nextHandle++, text: textOf(body), tokens: body };
        if (verb === 'insert') c.rules.unshift(rule);
        else c.rules.push(rule);
        return;
      }
      case 'delete rule': {
        const line = this.line();
        const t = this.table(this.tableRef());
        const c = this.chain(t, this.next('a chain name'));
        this.expect('handle');
        const h = Number(this.next('a handle').v);
        const i = c.rules.findIndex((r) => r.handle === h);
        if (i < 0) throw new NftScriptError(line, `Could not process rule: No such file or directory (handle ${h})`);
        c.rules.splice(i, 1);
        return;
      }
      case 'add set':
      case 'add map':
      case 'create set':
      case 'create map': {
        const line = this.line();
        const t = this.table(this.tableRef());
        const name = this.next('a set name').v;
        if (verb === 'create' && t.sets.has(name)) throw new NftScriptError(line, `Could not process rule: File exists (${kind} ${name})`);
        const s = this.ensureSet(t, name, kind === 'map');
        this.expect('{');
        this.setBody(t, s);
        return;
      }
      case 'delete set':
      case 'delete map':
      case 'destroy set':
      case 'destroy map': {
        const line = this.line();
        const t = this.table(this.tableRef());
        const name = this.next('a set name').v;
        if (!t.sets.has(name)) {
          if (verb === 'delete') throw new NftScriptError(line, `No such file or directory (${kind} ${name})`);
          return;
        }
        for (const c of t.chains.values()) {
          if (c.rules.some((r) => r.tokens.some((x) => x.v === `@${name}`))) throw new NftScriptError(line, `Could not process rule: Device or resource busy (${kind} ${name} is used by chain ${c.name})`);
        }
        t.sets.delete(name);
        return;
      }
      case 'flush set':
      case 'flush map': {
        const t = this.table(this.tableRef());
        this.set(t, this.next('a set name')).elements = new Map();
        return;
      }
      case 'add element':
      case 'create element':
      case 'delete element':
      case 'destroy element': {
        const t = this.table(this.tableRef());
        const s = this.set(t, this.next('a set name'));
        this.expect('{');
        for (const el of this.elementList()) {
          const key = keyText(el.key);
          if (verb === 'add' || verb === 'create') {
            if (verb === 'create' && s.elements.has(key)) throw new NftScriptError(el.line, `Could not process rule: File exists (element ${key})`);
            if (s.map && !el.value) throw new NftScriptError(el.line, `map ${s.name} needs a value for ${key}`);
            if (el.value) this.checkRuleRefs(t, el.valueToks!);
            s.elements.set(key, { key: el.key, value: el.value });
          } else if (!s.elements.delete(key) && verb === 'delete') {
            throw new NftScriptError(el.line, `Could not process rule: No such file or directory (element ${key})`);
          }
        }
        return;
      }
      default:
        this.unsupported(start);
    }
  }

  private tableRef(): { family: string; name: string } {
    const a = this.next('a table');
    if (FAMILY_WORDS.has(a.v) && this.peek() && this.peek()!.v !== NL && this.peek()!.v !== '{' && this.peek()!.v !== ';') {
      return { family: a.v, name: this.next('a table name').v };
    }
    return { family: 'ip', name: a.v }; // nft's default family
  }

  private ensureTable(family: string, name: string): NftModelTable {
    const key = `${family} ${name}`;
    let t = this.tables.get(key);
    if (!t) {
      t = { family, name, chains: new Map(), sets: new Map(), nextHandle: 1 };
      this.tables.set(key, t);
    }
    return t;
  }

  private table(ref: { family: string; name: string }): NftModelTable {
    const t = this.tables.get(`${ref.family} ${ref.name}`);
    if (!t) throw new NftScriptError(this.line(), `No such file or directory; did you mean table ${ref.family} ${ref.name}? (it does not exist)`);
    return t;
  }

  private ensureChain(t: NftModelTable, name: string): NftModelChain {
    let c = t.chains.get(name);
    if (!c) {
      c = { name, rules: [] };
      t.chains.set(name, c);
    }
    return c;
  }

  private chain(t: NftModelTable, name: Tok): NftModelChain {
    const c = t.chains.get(name.v);
    if (!c) throw new NftScriptError(name.line, `No such file or directory (chain ${name.v} in table ${t.family} ${t.name})`);
    return c;
  }

  private ensureSet(t: NftModelTable, name: string, map: boolean): NftModelSet {
    let s = t.sets.get(name);
    if (!s) {
      s = { name, map, flags: [], elements: new Map() };
      t.sets.set(name, s);
    }
    return s;
  }

  private set(t: NftModelTable, name: Tok): NftModelSet {
    const s = t.sets.get(name.v);
    if (!s) throw new NftScriptError(name.line, `No such file or directory (set ${name.v} in table ${t.family} ${t.name})`);
    return s;
  }

  /** jump/goto targets and @sets a rule names must exist (as the kernel checks). */
  private checkRuleRefs(t: NftModelTable, toks: Tok[]): void {
    for (let i = 0; i < toks.length; i++) {
      const v = toks[i]!.v;
      if ((v === 'jump' || v === 'goto') && toks[i + 1] && !t.chains.has(toks[i + 1]!.v)) {
        throw new NftScriptError(toks[i + 1]!.line, `Could not process rule: No such file or directory (chain ${toks[i + 1]!.v})`);
      }
      if (v.startsWith('@') && !toks[i]!.q && !t.sets.has(v.slice(1))) {
        throw new NftScriptError(toks[i]!.line, `Could not process rule: No such file or directory (set ${v.slice(1)})`);
      }
    }
  }

  private tableBody(t: NftModelTable): void {
    for (;;) {
      this.skipSeparators();
      const tok = this.next('"}"');
      switch (tok.v) {
        case '}':
          return;
        case 'chain': {
          const c = this.ensureChain(t, this.next('a chain name').v);
          this.expect('{');
          this.chainBody(t, c, true);
          break;
        }
        case 'set':
        case 'map': {
          const s = this.ensureSet(t, this.next('a set name').v, tok.v === 'map');
          this.expect('{');
          this.setBody(t, s);
          break;
        }
        case 'comment':
        case 'flags':
          this.statement();
          break;
        default:
          this.unsupported(this.pos - 1);
      }
    }
  }

  /** `type X hook H priority P; policy P;` and (in the block form) rules, up to '}'. */
  private chainBody(t: NftModelTable, c: NftModelChain, rulesAllowed: boolean): void {
    for (;;) {
      this.skipSeparators();
      const first = this.peek();
      if (!first) throw new NftScriptError(this.line(), 'syntax error, unexpected end of file');
      if (first.v === '}') {
        this.pos++;
        return;
      }
      const st = this.statement();
      const w = st.map((x) => x.v);
      if (w[0] === 'type') {
        const hookAt = w.indexOf('hook');
        const prioAt = w.indexOf('priority');
        if (hookAt < 0 || prioAt < 0) throw new NftScriptError(first.line, 'syntax error, base chain needs type, hook and priority');
        c.base = { type: w[1]!, hook: w[hookAt + 1]!, priority: parsePriority(w.slice(prioAt + 1), first.line), policy: c.base?.policy ?? 'accept' };
      } else if (w[0] === 'policy') {
        if (w[1] !== 'accept' && w[1] !== 'drop') throw new NftScriptError(first.line, `syntax error, policy ${w[1]}`);
        if (!c.base) throw new NftScriptError(first.line, 'policy on a chain that is not a base chain');
        c.base.policy = w[1];
      } else if (w[0] === 'comment' || w[0] === 'devices' || w[0] === 'device') {
        // not modelled
      } else if (rulesAllowed) {
        this.checkRuleRefs(t, st);
        c.rules.push({ handle: t.nextHandle++, text: textOf(st), tokens: st });
      } else {
        throw new NftScriptError(first.line, `fake nft does not understand: ${textOf(st)}`);
      }
    }
  }

  private setBody(t: NftModelTable, s: NftModelSet): void {
    for (;;) {
      this.skipSeparators();
      const tok = this.next('"}"');
      if (tok.v === '}') return;
      if (tok.v === 'elements') {
        this.expect('=');
        this.expect('{');
        for (const el of this.elementList()) {
          if (el.valueToks) this.checkRuleRefs(t, el.valueToks);
          s.elements.set(keyText(el.key), { key: el.key, value: el.value });
        }
      } else if (tok.v === 'flags') {
        s.flags = this.statement().filter((x) => x.v !== ',').map((x) => x.v);
      } else if (['type', 'typeof', 'comment', 'size', 'policy', 'timeout', 'gc-interval', 'auto-merge', 'counter'].includes(tok.v)) {
        this.statement();
      } else {
        this.unsupported(this.pos - 1);
      }
    }
  }

  /** Elements up to the closing '}': `k1 . k2 [comment "x"] [: value]`, comma separated. */
  private elementList(): { key: string[][]; value?: string[]; valueToks?: Tok[]; line: number }[] {
    const out: { key: string[][]; value?: string[]; valueToks?: Tok[]; line: number }[] = [];
    for (;;) {
      this.skipSeparators(true);
      const first = this.peek();
      if (!first) throw new NftScriptError(this.line(), 'syntax error, unexpected end of file in element list');
      if (first.v === '}') {
        this.pos++;
        return out;
      }
      const toks: Tok[] = [];
      while (this.peek() && this.peek()!.v !== ',' && this.peek()!.v !== '}') {
        const x = this.toks[this.pos++]!;
        if (x.v !== NL) toks.push(x);
      }
      const colon = toks.findIndex((x) => x.v === ':');
      const keyToks = colon >= 0 ? toks.slice(0, colon) : toks;
      const key = splitConcat(stripElementOptions(keyToks)).map((part) => part.map((x) => x.v));
      if (key.length === 0 || key.some((p) => p.length === 0)) throw new NftScriptError(first.line, `syntax error in element ${textOf(toks)}`);
      const valueToks = colon >= 0 ? toks.slice(colon + 1) : undefined;
      out.push({ key, value: valueToks?.map((x) => x.v), valueToks, line: first.line });
    }
  }
}

function parsePriority(words: string[], line: number): number {
  const [a, op, b] = words;
  let base: number;
  if (a !== undefined && /^-?\d+$/.test(a)) base = Number(a);
  else if (a !== undefined && a in PRIORITY_NAMES) base = PRIORITY_NAMES[a]!;
  else throw new NftScriptError(line, `syntax error, priority ${words.join(' ')}`);
  if ((op === '+' || op === '-') && b !== undefined && /^\d+$/.test(b)) base += op === '+' ? Number(b) : -Number(b);
  return base;
}

/** Removes `comment "x"`, `timeout T`, `expires T`, `counter [packets N bytes N]` from an element key. */
function stripElementOptions(toks: Tok[]): Tok[] {
  const out: Tok[] = [];
  for (let i = 0; i < toks.length; i++) {
    const v = toks[i]!.v;
    if (!toks[i]!.q && (v === 'comment' || v === 'timeout' || v === 'expires')) {
      i++;
      continue;
    }
    if (!toks[i]!.q && v === 'counter') {
      while (toks[i + 1] && (toks[i + 1]!.v === 'packets' || toks[i + 1]!.v === 'bytes')) i += 2;
      continue;
    }
    out.push(toks[i]!);
  }
  return out;
}

function splitConcat(toks: Tok[]): Tok[][] {
  const parts: Tok[][] = [[]];
  for (const t of toks) {
    if (t.v === '.' && !t.q) parts.push([]);
    else parts[parts.length - 1]!.push(t);
  }
  return parts;
}

function keyText(key: string[][]): string {
  return key.map((p) => p.join(' ')).join(' . ');
}

function referencedBy(t: NftModelTable, chain: string): string | undefined {
  for (const c of t.chains.values()) {
    for (const r of c.rules) {
      for (let i = 0; i + 1 < r.tokens.length; i++) {
        if ((r.tokens[i]!.v === 'jump' || r.tokens[i]!.v === 'goto') && r.tokens[i + 1]!.v === chain) return `chain ${c.name}`;
      }
    }
  }
  for (const s of t.sets.values()) {
    for (const e of s.elements.values()) {
      if (e.value && (e.value[0] === 'jump' || e.value[0] === 'goto') && e.value[1] === chain) return `map ${s.name}`;
    }
  }
  return undefined;
}

// ---------------------------------------------------------------- tracer

const PROTO_NUM: Record<string, number> = { icmp: 1, igmp: 2, tcp: 6, udp: 17, gre: 47, esp: 50, icmpv6: 58, 'ipv6-icmp': 58, sctp: 132 };
const SERVICES: Record<string, number> = { domain: 53, http: 80, https: 443, ssh: 22, ntp: 123, bootps: 67, bootpc: 68 };
const CT_STATES = new Set(['new', 'established', 'related', 'invalid', 'untracked']);
const HOOK_ORDER: NftHook[] = ['prerouting', 'input', 'forward', 'output', 'postrouting'];

type Kind = 'addr' | 'proto' | 'port' | 'mark' | 'ctstate' | 'fibtype' | 'ifname' | 'number' | 'nfproto' | 'ctstatus';

/** A value-producing expression: one selector or a concatenation. */
interface Selector {
  kind: Kind;
  text: string;
  get(s: State): string | number | undefined;
}

type Verdict = { v: 'accept' | 'drop' | 'reject' | 'return' | 'continue' } | { v: 'jump' | 'goto'; chain: string };

type Step =
  | { t: 'match'; sels: Selector[]; neg: boolean; test: (vals: (string | number | undefined)[], s: State) => boolean }
  | { t: 'vmap'; sels: Selector[]; lookup: (vals: (string | number | undefined)[], s: State) => string[] | undefined }
  | { t: 'verdict'; verdict: Verdict }
  | { t: 'nat'; kind: 'dnat' | 'snat'; target: (s: State) => { addr: string; port?: number } | undefined }
  | { t: 'masquerade' }
  | { t: 'markset'; value: (s: State) => number }
  | { t: 'nop' };

interface State {
  p: NftTracePacket;
  daddr: string;
  dport: number | undefined;
  mark: number;
  markSet: boolean;
  path: string[];
  dnat?: { addr: string; port?: number };
  snat?: { addr: string; port?: number };
  masquerade?: boolean;
  /** numgen choices: preset values in order, then recorded moduli. */
  picks: number[];
  pickAt: number;
  moduli: number[];
}

class TraceUnderstoodError extends Error {}

function protoNum(p: NftTracePacket['protocol']): number {
  return typeof p === 'number' ? p : PROTO_NUM[p] ?? -1;
}

class Tracer {
  private readonly parsed = new Map<string, Step[]>();

  constructor(
    private readonly tables: Map<string, NftModelTable>,
    private readonly packet: NftTracePacket,
  ) {}

  run(): NftTraceResult {
    if (!HOOK_ORDER.includes(this.packet.hook)) throw new Error(`trace: unknown hook ${String(this.packet.hook)}`);
    if (this.packet.numgen !== undefined) return this.onceWithModuli([this.packet.numgen], true).result;
    // Explore every numgen combination (odometer over the moduli each run met).
    const results: NftTraceResult[] = [];
    let picks: number[] = [];
    for (let guard = 0; guard < 4096; guard++) {
      const { result, moduli } = this.onceWithModuli(picks);
      results.push(result);
      // next combination
      const next = moduli.map((_, i) => picks[i] ?? 0);
      let i = next.length - 1;
      while (i >= 0 && next[i]! + 1 >= moduli[i]!) i--;
      if (i < 0) break;
      next[i]!++;
      picks = next.slice(0, i + 1);
    }
    const first = results[0]!;
    if (results.length > 1 || first.numgen) return { ...first, alternatives: results };
    return first;
  }

  private onceWithModuli(picks: number[], fixed = false): { result: NftTraceResult; moduli: number[] } {
    const p = this.packet;
    const s: State = { p, daddr: p.daddr, dport: p.dport, mark: p.mark ?? 0, markSet: false, path: [], picks, pickAt: 0, moduli: [] };
    if (fixed) s.picks = []; // every numgen yields p.numgen
    let verdict: NftTraceResult['verdict'] = 'accept';
    for (const { table, chain } of this.startChains()) {
      const v = this.walkBase(s, table, chain);
      if (v === 'drop' || v === 'reject') {
        verdict = v;
        break;
      }
    }
    const result: NftTraceResult = { verdict, path: s.path };
    if (s.dnat) result.dnat = s.dnat;
    if (s.snat) result.snat = s.snat;
    if (s.masquerade) result.masquerade = true;
    if (s.markSet) result.mark = s.mark;
    if (s.moduli.length > 0) result.numgen = s.moduli.map((m, i) => (fixed ? p.numgen! % m : picks[i] ?? 0));
    return { result, moduli: s.moduli };
  }

  private startChains(): { table: NftModelTable; chain: NftModelChain }[] {
    const fam = this.packet.family === 4 ? 'ip' : 'ip6';
    const tables = [...this.tables.values()].filter((t) => t.family === fam || t.family === 'inet');
    if (this.packet.chain !== undefined) {
      const hits = tables.filter((t) => (this.packet.table === undefined || t.name === this.packet.table) && t.chains.has(this.packet.chain!));
      if (hits.length !== 1) throw new Error(`trace: ${hits.length === 0 ? 'no' : 'more than one'} chain ${this.packet.chain}${this.packet.table ? ` in table ${this.packet.table}` : ''}; give table`);
      return [{ table: hits[0]!, chain: hits[0]!.chains.get(this.packet.chain)! }];
    }
    const out: { table: NftModelTable; chain: NftModelChain; prio: number }[] = [];
    for (const t of tables) for (const c of t.chains.values()) if (c.base?.hook === this.packet.hook) out.push({ table: t, chain: c, prio: c.base.priority });
    return out.sort((a, b) => a.prio - b.prio);
  }

  /** One base chain: accept | drop | reject (policy when it falls off the end). */
  private walkBase(s: State, t: NftModelTable, c: NftModelChain): 'accept' | 'drop' | 'reject' {
    const v = this.walk(s, t, c, 0);
    if (v === 'accept' || v === 'drop' || v === 'reject') return v;
    return c.base?.policy ?? 'accept';
  }

  /** Runs a chain; returns a final verdict, or 'return' when the chain ends or returns. */
  private walk(s: State, t: NftModelTable, c: NftModelChain, depth: number): 'accept' | 'drop' | 'reject' | 'return' {
    if (depth > 64) throw new Error(`trace: chain loop at ${t.name}/${c.name}`);
    for (let i = 0; i < c.rules.length; i++) {
      const rule = c.rules[i]!;
      const steps = this.steps(t, rule.text, rule.tokens);
      const out = this.evalRule(s, steps, `${t.name}/${c.name}:${i + 1}`);
      if (out === undefined) continue;
      if (out.v === 'continue') continue;
      if (out.v === 'return') return 'return';
      if (out.v === 'accept' || out.v === 'drop' || out.v === 'reject') return out.v;
      if (out.v !== 'jump' && out.v !== 'goto') continue;
      const target = t.chains.get(out.chain);
      if (!target) throw new Error(`trace: no chain ${out.chain} in table ${t.name}`);
      const r = this.walk(s, t, target, depth + 1);
      if (r !== 'return') return r;
      if (out.v === 'goto') return 'return';
    }
    return 'return';
  }

  /** undefined = the rule did not match (or matched with no verdict: next rule). */
  private evalRule(s: State, steps: Step[], where: string): Verdict | undefined {
    let recorded = false;
    const record = (): void => {
      if (!recorded) s.path.push(where);
      recorded = true;
    };
    for (const st of steps) {
      switch (st.t) {
        case 'match': {
          const ok = st.test(st.sels.map((x) => x.get(s)), s);
          if (ok === st.neg) return undefined;
          break;
        }
        case 'vmap': {
          const v = st.lookup(st.sels.map((x) => x.get(s)), s);
          if (!v) return undefined;
          record();
          return parseVerdict(v, where);
        }
        case 'verdict':
          record();
          return st.verdict;
        case 'nat': {
          const to = st.target(s);
          if (!to) return undefined; // map miss: the rule breaks
          record();
          if (st.kind === 'dnat') {
            s.dnat = to;
            s.daddr = to.addr;
            if (to.port !== undefined) s.dport = to.port;
          } else s.snat = to;
          return { v: 'accept' };
        }
        case 'masquerade':
          record();
          s.masquerade = true;
          return { v: 'accept' };
        case 'markset':
          record();
          s.mark = st.value(s) >>> 0;
          s.markSet = true;
          break;
        case 'nop':
          break;
      }
    }
    if (steps.length > 0) record();
    return undefined;
  }

  private steps(t: NftModelTable, text: string, toks: Tok[]): Step[] {
    const key = `${t.family} ${t.name}\u0000${text}`;
    let st = this.parsed.get(key);
    if (!st) {
      try {
        st = new RuleParser(t, toks).parse();
      } catch (err) {
        if (err instanceof TraceUnderstoodError) throw new Error(`tracer does not understand: ${text} (${err.message})`);
        throw err;
      }
      this.parsed.set(key, st);
    }
    return st;
  }
}

function parseVerdict(words: string[], where: string): Verdict {
  const [a, b] = words;
  if (a === 'accept' || a === 'drop' || a === 'return' || a === 'continue') return { v: a };
  if (a === 'reject') return { v: 'reject' };
  if ((a === 'jump' || a === 'goto') && b !== undefined) return { v: a, chain: b };
  throw new Error(`tracer does not understand verdict "${words.join(' ')}" at ${where}`);
}

// ---------------------------------------------------------------- rule parser

function pick(s: State, mod: number): number {
  const i = s.pickAt++;
  s.moduli[i] = mod;
  if (s.p.numgen !== undefined && s.picks.length === 0) return s.p.numgen % mod;
  return (s.picks[i] ?? 0) % mod;
}

function parseNum(v: string): number | undefined {
  if (/^0x[0-9a-f]+$/i.test(v)) return parseInt(v, 16);
  if (/^\d+$/.test(v)) return Number(v);
  return undefined;
}

/** Does one element/value part (`10.0.0.0/8`, `1-5`, `tcp`, `eth*`) match a value of `kind`? */
function partMatches(kind: Kind, spec: string, value: string | number | undefined): boolean {
  if (value === undefined) return false;
  switch (kind) {
    case 'addr': {
      const ip = IpAddress.tryParse(String(value));
      if (!ip) return false;
      if (spec.includes('/')) {
        const c = Cidr.parse(spec);
        return c.masked.contains(ip);
      }
      const dash = spec.indexOf('-');
      if (dash > 0) {
        const lo = IpAddress.tryParse(spec.slice(0, dash));
        const hi = IpAddress.tryParse(spec.slice(dash + 1));
        return !!lo && !!hi && lo.family === ip.family && ip.value >= lo.value && ip.value <= hi.value;
      }
      const e = IpAddress.tryParse(spec);
      return !!e && e.equals(ip);
    }
    case 'proto': {
      const n = PROTO_NUM[spec] ?? parseNum(spec);
      return n === value;
    }
    case 'port':
    case 'mark':
    case 'number': {
      const dash = spec.indexOf('-');
      if (dash > 0) {
        const lo = parseNum(spec.slice(0, dash)) ?? SERVICES[spec.slice(0, dash)];
        const hi = parseNum(spec.slice(dash + 1)) ?? SERVICES[spec.slice(dash + 1)];
        return lo !== undefined && hi !== undefined && Number(value) >= lo && Number(value) <= hi;
      }
      const n = parseNum(spec) ?? SERVICES[spec];
      return n !== undefined && n === Number(value);
    }
    case 'ctstate':
    case 'fibtype':
    case 'nfproto':
      return spec === value;
    case 'ctstatus':
      return String(value).split(',').includes(spec);
    case 'ifname':
      return spec.endsWith('*') ? String(value).startsWith(spec.slice(0, -1)) : spec === value;
  }
}

function checkSpec(kind: Kind, spec: string): void {
  const ok = (() => {
    switch (kind) {
      case 'addr':
        if (spec.includes('/')) {
          try {
            Cidr.parse(spec);
            return true;
          } catch {
            return false;
          }
        }
        if (spec.indexOf('-') > 0) return spec.split('-').every((x) => IpAddress.tryParse(x) !== undefined);
        return IpAddress.tryParse(spec) !== undefined;
      case 'proto':
        return PROTO_NUM[spec] !== undefined || parseNum(spec) !== undefined;
      case 'port':
      case 'mark':
      case 'number':
        return spec.split('-').every((x) => parseNum(x) !== undefined || SERVICES[x] !== undefined);
      case 'ctstate':
        return CT_STATES.has(spec);
      case 'nfproto':
        return spec === 'ipv4' || spec === 'ipv6';
      case 'ctstatus':
        return ['dnat', 'snat', 'confirmed', 'seen-reply', 'assured', 'expected'].includes(spec);
      case 'fibtype':
        return ['local', 'unicast', 'broadcast', 'multicast', 'blackhole', 'unreachable', 'prohibit'].includes(spec);
      case 'ifname':
        return spec.length > 0;
    }
  })();
  if (!ok) throw new TraceUnderstoodError(`"${spec}" is not a ${kind} value`);
}

class RuleParser {
  private i = 0;
  private readonly w: string[];

  constructor(
    private readonly table: NftModelTable,
    private readonly toks: Tok[],
  ) {
    this.w = toks.map((t) => t.v);
  }

  private peek(o = 0): string | undefined {
    return this.w[this.i + o];
  }

  private take(what: string): string {
    const v = this.w[this.i++];
    if (v === undefined) throw new TraceUnderstoodError(`expected ${what}`);
    return v;
  }

  parse(): Step[] {
    const out: Step[] = [];
    while (this.i < this.w.length) out.push(this.step());
    return out;
  }

  private step(): Step {
    const v = this.peek()!;
    const q = this.toks[this.i]!.q;
    if (q) throw new TraceUnderstoodError(`unexpected string "${v}"`);
    switch (v) {
      case 'accept':
      case 'drop':
      case 'return':
      case 'continue':
        this.i++;
        return { t: 'verdict', verdict: { v } };
      case 'reject':
        this.i++;
        // reject with icmp|icmpv6|icmpx [type] X | reject with tcp reset
        if (this.peek() === 'with') {
          this.i++;
          const fam = this.take('icmp, icmpv6, icmpx or tcp');
          if (fam === 'tcp') {
            if (this.take('reset') !== 'reset') throw new TraceUnderstoodError('expected reject with tcp reset');
          } else {
            if (this.peek() === 'type') this.i++;
            this.take('a reject type');
          }
        }
        return { t: 'verdict', verdict: { v: 'reject' } };
      case 'jump':
      case 'goto':
        this.i++;
        return { t: 'verdict', verdict: { v, chain: this.take('a chain name') } };
      case 'counter':
        this.i++;
        while (this.peek() === 'packets' || this.peek() === 'bytes') this.i += 2;
        return { t: 'nop' };
      case 'comment':
        this.i += 2;
        return { t: 'nop' };
      case 'log':
        this.i++;
        while (this.peek() === 'prefix' || this.peek() === 'level') this.i += 2;
        return { t: 'nop' };
      case 'masquerade':
        this.i++;
        while (this.peek() === 'fully-random' || this.peek() === 'random' || this.peek() === 'persistent' || this.peek() === ',') this.i++;
        return { t: 'masquerade' };
      case 'dnat':
      case 'snat':
        return this.nat(v);
      case 'vmap':
        throw new TraceUnderstoodError('vmap without a key');
      default:
        break;
    }
    // `mark set ...` / `meta mark set ...`
    if ((v === 'mark' && this.peek(1) === 'set') || (v === 'meta' && this.peek(1) === 'mark' && this.peek(2) === 'set')) {
      this.i += v === 'meta' ? 3 : 2;
      return { t: 'markset', value: this.markValue() };
    }
    // An expression, then a relation, a set/map lookup or a vmap.
    const sels = this.concat();
    const next = this.peek();
    if (next === 'vmap') {
      this.i++;
      return { t: 'vmap', sels, lookup: this.mapLookup(sels) };
    }
    let neg = false;
    if (next === '!=') {
      neg = true;
      this.i++;
    } else if (next === '==') this.i++;
    if (this.peek() === undefined) throw new TraceUnderstoodError('expected a value');
    if (this.peek()!.startsWith('@')) {
      const set = this.namedSet(this.take('a set').slice(1));
      return { t: 'match', sels, neg, test: (vals) => lookupSet(set, sels, vals) !== undefined };
    }
    if (this.peek() === '{') {
      const elements = this.anonElements(sels, false);
      return { t: 'match', sels, neg, test: (vals) => elements.some((e) => keyMatches(sels, e.key, vals)) };
    }
    if (sels.length !== 1) throw new TraceUnderstoodError('a concatenation compared to a single value');
    const sel = sels[0]!;
    // ct state new,established
    const specs = [this.take('a value')];
    while (this.peek() === ',') {
      this.i++;
      specs.push(this.take('a value'));
    }
    for (const sp of specs) checkSpec(sel.kind, sp);
    return { t: 'match', sels, neg, test: (vals) => specs.some((sp) => partMatches(sel.kind, sp, vals[0])) };
  }

  private namedSet(name: string): NftModelSet {
    const s = this.table.sets.get(name);
    if (!s) throw new TraceUnderstoodError(`no set ${name}`);
    return s;
  }

  /** `{ k : v, ... }` (map) or `{ k, ... }` (set) inside a rule. */
  private anonElements(sels: Selector[], map: boolean): { key: string[][]; value?: string[] }[] {
    if (this.take('"{"') !== '{') throw new TraceUnderstoodError('expected {');
    const out: { key: string[][]; value?: string[] }[] = [];
    let cur: Tok[] = [];
    const flush = (): void => {
      if (cur.length === 0) return;
      const colon = cur.findIndex((x) => x.v === ':');
      if (map && colon < 0) throw new TraceUnderstoodError(`map element without a value: ${textOf(cur)}`);
      const keyToks = colon >= 0 ? cur.slice(0, colon) : cur;
      const key = splitConcat(stripElementOptions(keyToks)).map((p) => p.map((x) => x.v));
      if (key.length !== sels.length) throw new TraceUnderstoodError(`element ${textOf(keyToks)} has ${key.length} parts, the key ${sels.length}`);
      key.forEach((p, i) => checkSpec(sels[i]!.kind, p.join(' ')));
      out.push({ key, value: colon >= 0 ? cur.slice(colon + 1).map((x) => x.v) : undefined });
      cur = [];
    };
    for (;;) {
      const t = this.toks[this.i++];
      if (!t) throw new TraceUnderstoodError('unterminated {');
      if (t.v === '}') break;
      if (t.v === ',') flush();
      else cur.push(t);
    }
    flush();
    return out;
  }

  /** A map lookup: `@m` or `{ ... }`; returns the value words of the matching element. */
  private mapLookup(sels: Selector[]): (vals: (string | number | undefined)[], s: State) => string[] | undefined {
    if (this.peek()?.startsWith('@')) {
      const set = this.namedSet(this.take('a map').slice(1));
      return (vals) => lookupSet(set, sels, vals)?.value;
    }
    const elements = this.anonElements(sels, true);
    return (vals) => elements.find((e) => keyMatches(sels, e.key, vals))?.value;
  }

  /** `sel [. sel]*` */
  private concat(): Selector[] {
    const out = [this.selector()];
    while (this.peek() === '.') {
      this.i++;
      out.push(this.selector());
    }
    return out;
  }

  private selector(): Selector {
    const a = this.take('an expression');
    const b = this.peek();
    const two = `${a} ${b ?? ''}`;
    const fam = (s: State): 4 | 6 => s.p.family;
    switch (two) {
      case 'ip saddr':
      case 'ip6 saddr':
        this.i++;
        return { kind: 'addr', text: two, get: (s) => (fam(s) === (a === 'ip' ? 4 : 6) ? s.p.saddr : undefined) };
      case 'ip daddr':
      case 'ip6 daddr':
        this.i++;
        return { kind: 'addr', text: two, get: (s) => (fam(s) === (a === 'ip' ? 4 : 6) ? s.daddr : undefined) };
      case 'meta l4proto':
      case 'ip protocol':
      case 'ip6 nexthdr':
        this.i++;
        return { kind: 'proto', text: two, get: (s) => protoNum(s.p.protocol) };
      case 'th dport':
      case 'th sport':
        this.i++;
        return { kind: 'port', text: two, get: (s) => (hasPorts(s) ? (b === 'dport' ? s.dport : s.p.sport) : undefined) };
      case 'tcp dport':
      case 'udp dport':
      case 'sctp dport':
      case 'tcp sport':
      case 'udp sport':
      case 'sctp sport':
        this.i++;
        return { kind: 'port', text: two, get: (s) => (protoNum(s.p.protocol) === PROTO_NUM[a] ? (b === 'dport' ? s.dport : s.p.sport) : undefined) };
      case 'meta mark':
        this.i++;
        return this.markExpr(two);
      case 'ct state':
        this.i++;
        return { kind: 'ctstate', text: two, get: (s) => s.p.ctState ?? 'new' };
      case 'ct status':
        this.i++;
        return { kind: 'ctstatus', text: two, get: (s) => [...(s.p.ctStatus ?? []), ...(s.dnat ? ['dnat'] : []), ...(s.snat ? ['snat'] : [])].join(',') };
      case 'meta nfproto':
        this.i++;
        return { kind: 'nfproto', text: two, get: (s) => (s.p.family === 4 ? 'ipv4' : 'ipv6') };
      case 'meta iifname':
      case 'meta oifname':
        this.i++;
        return { kind: 'ifname', text: two, get: (s) => (b === 'iifname' ? s.p.iifname : s.p.oifname) };
      case 'fib daddr':
        this.i++;
        if (this.take('type') !== 'type') throw new TraceUnderstoodError('only "fib daddr type" is understood');
        return { kind: 'fibtype', text: 'fib daddr type', get: (s) => (s.p.daddrLocal ? 'local' : 'unicast') };
      case 'numgen random': {
        this.i++;
        if (this.take('mod') !== 'mod') throw new TraceUnderstoodError('expected numgen random mod N');
        const mod = parseNum(this.take('a modulus'));
        if (!mod) throw new TraceUnderstoodError('bad numgen modulus');
        let offset = 0;
        if (this.peek() === 'offset') {
          this.i++;
          offset = parseNum(this.take('an offset')) ?? 0;
        }
        return { kind: 'number', text: `numgen random mod ${mod}`, get: (s) => pick(s, mod) + offset };
      }
      default:
        break;
    }
    if (a === 'mark') return this.markExpr('mark');
    if (a === 'iifname' || a === 'oifname') return { kind: 'ifname', text: a, get: (s) => (a === 'iifname' ? s.p.iifname : s.p.oifname) };
    throw new TraceUnderstoodError(`unknown expression "${a}${b !== undefined ? ` ${b}` : ''}"`);
  }

  /** `mark [and|&|or|xor M]` */
  private markExpr(text: string): Selector {
    const op = this.peek();
    if (op === 'and' || op === '&' || op === 'or' || op === '|' || op === 'xor' || op === '^') {
      this.i++;
      const m = parseNum(this.take('a mask'));
      if (m === undefined) throw new TraceUnderstoodError('bad mark mask');
      const f = op === 'and' || op === '&' ? (x: number) => x & m : op === 'or' || op === '|' ? (x: number) => x | m : (x: number) => x ^ m;
      return { kind: 'mark', text: `${text} ${op} ${m}`, get: (s) => f(s.mark) >>> 0 };
    }
    return { kind: 'mark', text, get: (s) => s.mark };
  }

  /** `V` or `mark or|and|xor V` (after `mark set`). */
  private markValue(): (s: State) => number {
    if (this.peek() === 'mark' || (this.peek() === 'meta' && this.peek(1) === 'mark')) {
      this.i += this.peek() === 'meta' ? 2 : 1;
      const op = this.take('or/and/xor');
      const m = parseNum(this.take('a value'));
      if (m === undefined) throw new TraceUnderstoodError('bad mark value');
      if (op === 'or' || op === '|') return (s) => s.mark | m;
      if (op === 'and' || op === '&') return (s) => s.mark & m;
      if (op === 'xor' || op === '^') return (s) => s.mark ^ m;
      throw new TraceUnderstoodError(`mark set mark ${op}`);
    }
    const m = parseNum(this.take('a mark'));
    if (m === undefined) throw new TraceUnderstoodError('bad mark value');
    return () => m;
  }

  /** dnat|snat [ip|ip6] [addr . port] to ADDR[:PORT] | to EXPR map @m|{...} */
  private nat(kind: 'dnat' | 'snat'): Step {
    this.i++;
    if (this.peek() === 'ip' || this.peek() === 'ip6') this.i++;
    if (this.peek() === 'addr' && this.peek(1) === '.' && this.peek(2) === 'port') this.i += 3;
    if (this.take('to') !== 'to') throw new TraceUnderstoodError(`expected ${kind} to`);
    const tgt = this.peek();
    const literal = tgt !== undefined ? parseAddrPort(tgt) : undefined;
    if (literal && this.peek(1) !== '.' && this.peek(1) !== 'map') {
      this.i++;
      return { t: 'nat', kind, target: () => literal };
    }
    const sels = this.concat();
    if (this.take('map') !== 'map') throw new TraceUnderstoodError(`expected ${kind} to ADDR or ${kind} to EXPR map`);
    const lookup = this.mapLookup(sels);
    return {
      t: 'nat',
      kind,
      target: (s) => {
        const v = lookup(sels.map((x) => x.get(s)), s);
        if (!v) return undefined;
        const parts = splitConcat(v.map((x) => ({ v: x, line: 0 }))).map((p) => p.map((x) => x.v).join(' '));
        if (parts.length === 2) return { addr: parts[0]!, port: Number(parts[1]) };
        const one = parseAddrPort(parts[0]!);
        if (!one) throw new Error(`tracer does not understand map value "${v.join(' ')}"`);
        return one;
      },
    };
  }
}

function hasPorts(s: State): boolean {
  const n = protoNum(s.p.protocol);
  return n === 6 || n === 17 || n === 132;
}

/** `10.0.0.1`, `10.0.0.1:80`, `[fd00::1]:80`, `fd00::1`. */
function parseAddrPort(v: string): { addr: string; port?: number } | undefined {
  const br = /^\[([^\]]+)\](?::(\d+))?$/.exec(v);
  if (br && IpAddress.tryParse(br[1]!)) return br[2] ? { addr: br[1]!, port: Number(br[2]) } : { addr: br[1]! };
  if (IpAddress.tryParse(v)) return { addr: v };
  const m = /^([0-9.]+):(\d+)$/.exec(v);
  if (m && IpAddress.tryParse(m[1]!)) return { addr: m[1]!, port: Number(m[2]) };
  return undefined;
}

function keyMatches(sels: Selector[], key: string[][], vals: (string | number | undefined)[]): boolean {
  if (key.length !== sels.length) return false;
  for (let i = 0; i < key.length; i++) if (!partMatches(sels[i]!.kind, key[i]!.join(' '), vals[i])) return false;
  return true;
}

function lookupSet(set: NftModelSet, sels: Selector[], vals: (string | number | undefined)[]): { key: string[][]; value?: string[] } | undefined {
  for (const e of set.elements.values()) if (keyMatches(sels, e.key, vals)) return e;
  return undefined;
}
