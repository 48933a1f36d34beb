/**
 * Applies the iptables desired state of one family with ONE `iptables-restore --noflush`
 * per sync. The applied state is kept in memory (chain → rules); a sync declares and
 * rewrites only the chains whose rules changed, inserts a missing jump from a built-in
 * chain once, and deletes (`-X`) our chains that are no longer wanted. Nothing else on the
 * node is named in the input, so other tables' and chains' rules are never touched.
 *
 * `adopt()` reads `iptables-save -t nat` / `-t filter` / `-t mangle` once (at start and on the periodic
 * resync) and keeps only our chains and our jumps: after a restart the first sync is a diff.
 */
import type { IptablesRunner } from '../../kernel/types';
import { JUMPS, owned } from './names';

export type TableName = 'nat' | 'filter' | 'mangle';

/**
 * iptables-nft 1.8.9's `--noflush` restore is quadratic in the chains of one input (its
 * userspace spends the time in chain-name lookups), while the chains already in the table
 * add little: measured here, kube-proxy's layout for 1,000 Services took 3.1 s in one
 * restore, and 1,000 more on top of those 3.7 s; 2,000 in one restore 52.7 s. So when the nft
 * backend gets more than this many Services' chains at once, they go in restores of this
 * many Services each (each Service's chains jump only to its own and to the fixed chains),
 * then one restore writes the top chains that jump to them and deletes what is gone. The
 * legacy backend replaces the whole table on every restore, so there one restore is cheapest.
 */
export const NFT_CHUNK_SERVICES = 200;

export const TABLES: TableName[] = ['nat', 'filter', 'mangle'];

/** What plan() reads of a table's desired chains (a Map, or Layers over several). */
export interface ChainLookup {
  get(chain: string): readonly string[] | undefined;
  has(chain: string): boolean;
  keys(): Iterable<string>;
}

export interface Desired {
  nat: ChainLookup;
  filter: ChainLookup;
  mangle: ChainLookup;
}

/** Several chain maps read as one (the fixed chains, and the per-Service chains kept across syncs). */
export class Layers implements ChainLookup {
  constructor(private readonly layers: readonly ReadonlyMap<string, readonly string[]>[]) {}
  get(chain: string): readonly string[] | undefined {
    for (const l of this.layers) {
      const r = l.get(chain);
      if (r !== undefined) return r;
    }
    return undefined;
  }
  has(chain: string): boolean {
    return this.get(chain) !== undefined;
  }
  *keys(): Iterable<string> {
    for (const l of this.layers) yield* l.keys();
  }
}

const lineCount = (text: string | undefined): number => {
  if (text === undefined || text === '') return 0;
  let n = 1;
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) n++;
  return n;
};

export interface IptPlan {
  text: string;
  /** Chains (re)written and deleted, per table. */
  written: Record<TableName, Map<string, string>>;
  deleted: Record<TableName, string[]>;
  jumps: Record<TableName, string[]>;
  changedChains: number;
}

interface AppliedTable {
  chains: Map<string, string>;
  /** Rules in `chains`, kept up to date (metrics). */
  rules: number;
  /** `BUILTIN>TARGET` for our jumps that are there. */
  jumps: Set<string>;
}

function emptyApplied(): Record<TableName, AppliedTable> {
  return { nat: { chains: new Map(), rules: 0, jumps: new Set() }, filter: { chains: new Map(), rules: 0, jumps: new Set() }, mangle: { chains: new Map(), rules: 0, jumps: new Set() } };
}

/** Our chains and jumps in an `iptables-save -t <table>` text. */
export function parseSave(text: string): AppliedTable {
  const out: AppliedTable = { chains: new Map(), rules: 0, jumps: new Set() };
  const rules = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    if (line.startsWith(':')) {
      const name = line.slice(1).split(/\s+/)[0]!;
      if (owned(name)) rules.set(name, []);
      continue;
    }
    if (!line.startsWith('-A ')) continue;
    const sp = line.indexOf(' ', 3);
    const chain = line.slice(3, sp < 0 ? undefined : sp);
    const body = sp < 0 ? '' : line.slice(sp + 1);
    const r = rules.get(chain);
    if (r) r.push(body);
    else {
      const m = /(?:^| )-[jg] (\S+)/.exec(body);
      if (m && owned(m[1]!)) out.jumps.add(`${chain}>${m[1]}`);
    }
  }
  for (const [k, v] of rules) {
    out.chains.set(k, v.join('\n'));
    out.rules += v.length;
  }
  return out;
}

// The rule arrays of unchanged Services are the same objects from sync to sync: join each once.
const joined = new WeakMap<object, string>();
function joinRules(rules: readonly string[]): string {
  let j = joined.get(rules);
  if (j === undefined) {
    j = rules.join('\n');
    joined.set(rules, j);
  }
  return j;
}

export class IptablesApplier {
  private applied = emptyApplied();

  constructor(readonly runner: IptablesRunner) {}

  get family(): 4 | 6 {
    return this.runner.family;
  }

  /** Chains and rules of ours the kernel has (as far as we know). */
  counts(): { chains: Record<TableName, number>; rules: Record<TableName, number> } {
    const chains = { nat: 0, filter: 0, mangle: 0 };
    const rules = { nat: 0, filter: 0, mangle: 0 };
    for (const t of TABLES) {
      chains[t] = this.applied[t].chains.size;
      rules[t] = this.applied[t].rules + this.applied[t].jumps.size;
    }
    return { chains, rules };
  }

  /** Replace what we believe is applied with what the kernel shows (our chains only). */
  async adopt(): Promise<{ chains: number }> {
    const next = emptyApplied();
    for (const t of TABLES) {
      const text = await this.runner.save(t).catch(() => '');
      next[t] = parseSave(text);
    }
    this.applied = next;
    return { chains: next.nat.chains.size + next.filter.chains.size };
  }

  /** Forget the applied state (the next plan writes every chain). */
  reset(): void {
    this.applied = emptyApplied();
  }

  /**
   * The restore input that makes the kernel match `desired`. With `touched` (the chains of
   * the Services that changed, before and after), only those and the fixed chains are
   * compared: a partial sync costs what changed, not the table's size. `jumps: false`: no
   * jump from a built-in chain is inserted (a chunk of Service chains, before their top chains exist).
   */
  plan(desired: Desired, touched?: Record<TableName, ReadonlySet<string>>, fixed: Record<TableName, readonly string[]> = { nat: [], filter: [], mangle: [] }, o: { jumps?: boolean } = {}): IptPlan {
    const plan: IptPlan = { text: '', written: { nat: new Map(), filter: new Map(), mangle: new Map() }, deleted: { nat: [], filter: [], mangle: [] }, jumps: { nat: [], filter: [], mangle: [] }, changedChains: 0 };
    const parts: string[] = [];
    for (const t of TABLES) {
      const want = desired[t];
      const have = this.applied[t];
      const decl: string[] = [];
      const body: string[] = [];
      const wantNames: Iterable<string> = touched ? new Set([...fixed[t], ...touched[t]]) : want.keys();
      for (const chain of wantNames) {
        const rules = want.get(chain);
        if (rules === undefined) continue;
        const text = joinRules(rules);
        if (have.chains.get(chain) === text) continue;
        plan.written[t].set(chain, text);
        decl.push(`:${chain} - [0:0]`);
        for (const r of rules) body.push(`-A ${chain} ${r}`);
      }
      for (const chain of touched ? touched[t] : have.chains.keys()) {
        if (want.has(chain) || !have.chains.has(chain)) continue;
        plan.deleted[t].push(chain);
        decl.push(`:${chain} - [0:0]`);
      }
      // Missing jumps, inserted at the top in reverse so they end up in JUMPS order.
      const jumps: string[] = [];
      for (const [builtin, rule, target] of o.jumps === false ? [] : JUMPS[t]) {
        if (!want.has(target) || have.jumps.has(`${builtin}>${target}`)) continue;
        plan.jumps[t].push(`${builtin}>${target}`);
        jumps.unshift(`-I ${builtin} 1 ${rule}`);
      }
      if (decl.length === 0 && jumps.length === 0) continue;
      // (no spread: at 10k Services these arrays are far beyond the argument limit)
      parts.push(`*${t}`, decl.join('\n'), body.join('\n'), jumps.join('\n'), plan.deleted[t].map((c) => `-X ${c}`).join('\n'), 'COMMIT');
      plan.changedChains += plan.written[t].size + plan.deleted[t].length;
    }
    plan.text = parts.length > 0 ? `${parts.filter((x) => x !== '').join('\n')}\n` : '';
    return plan;
  }

  async apply(plan: IptPlan): Promise<void> {
    if (plan.text === '') return;
    await this.runner.restore(plan.text, { noflush: true });
    for (const t of TABLES) {
      const a = this.applied[t];
      for (const [k, v] of plan.written[t]) {
        a.rules += lineCount(v) - lineCount(a.chains.get(k));
        a.chains.set(k, v);
      }
      for (const k of plan.deleted[t]) {
        a.rules -= lineCount(a.chains.get(k));
        a.chains.delete(k);
      }
      for (const j of plan.jumps[t]) a.jumps.add(j);
    }
  }
}

/**
 * Removes every chain of ours and our jumps from the built-ins, from what `iptables-save`
 * shows (cleanup and mode switch). Returns the number of chains removed.
 */
export async function removeOwnChains(runner: IptablesRunner): Promise<number> {
  const parts: string[] = [];
  let n = 0;
  for (const t of TABLES) {
    const text = await runner.save(t).catch(() => '');
    const a = parseSave(text);
    const dels: string[] = [];
    // Delete our jump rules exactly as iptables-save printed them.
    for (const line of text.split('\n')) {
      if (!line.startsWith('-A ')) continue;
      const sp = line.indexOf(' ', 3);
      const chain = line.slice(3, sp);
      const m = /(?:^| )-[jg] (\S+)/.exec(line.slice(sp + 1));
      if (!owned(chain) && m && owned(m[1]!)) dels.push(`-D ${line.slice(3)}`);
    }
    if (a.chains.size === 0 && dels.length === 0) continue;
    n += a.chains.size;
    const names = [...a.chains.keys()];
    parts.push(`*${t}`, names.map((c) => `:${c} - [0:0]`).join('\n'), dels.join('\n'), names.map((c) => `-X ${c}`).join('\n'), 'COMMIT');
  }
  if (parts.length > 0) await runner.restore(`${parts.filter((x) => x !== '').join('\n')}\n`, { noflush: true });
  return n;
}
