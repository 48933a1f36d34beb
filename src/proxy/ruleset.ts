/**
 * Desired vs applied nftables state, as elements and objects (maps, sets, chains),
 * with owners: each Service contributes elements; shared elements (hairpin pairs,
 * the shared load-balancing chains) are claimed by several owners and stay while one
 * claim remains. Changes are tracked per key, so a sync plans only what it touched.
 */

export interface ObjectDef {
  kind: 'set' | 'chain';
  /** `add set`/`add map` body or chain spec (`{ type nat hook ... }`, '' for a regular chain). */
  spec: string;
  /** `map` or `set` for kind set. */
  keyword?: 'map' | 'set';
  /** Chain rules. */
  rules?: string[];
}

export interface Contribution {
  /** Flat triples: map or set name, key, value ('' for a set element), ... (no per-element arrays). */
  elements: string[];
  objects: [string, ObjectDef][];
}

/** A key claimed by several owners: the primary's value (the primary is the claimant not in `more`) and the others'. */
interface Shared {
  value: string;
  more: Map<string, string>;
}

interface Claim<V> {
  value: V;
  owner: string;
  more?: Map<string, V>;
}

export interface Plan {
  addObjects: [string, ObjectDef][];
  /** Chains whose rules changed (flush + re-add). */
  rewriteChains: [string, ObjectDef][];
  deleteObjects: [string, ObjectDef][];
  /** Sets/maps to flush before adds (adopted content we could not read). */
  flush: [string, ObjectDef][];
  deleteElements: Map<string, string[]>;
  /** Flat pairs: key, value, key, value, ... */
  addElements: Map<string, string[]>;
  /** Elements and objects the plan covers (to commit after a successful apply). */
  touchedElements: Map<string, Set<string>>;
  touchedObjects: Set<string>;
  /** Owners whose contributions were (re)claimed: their keys are planned from the contribution, not a per-key touch. */
  touchedOwners: Set<string>;
  elementChanges: number;
}

/** What the kernel holds of our table, read back (adopt.ts's AdoptedTable). */
export interface KernelTable {
  objects: Map<string, 'set' | 'chain'>;
  elements: Map<string, Map<string, string>>;
  unknown: string[];
  maps: Set<string>;
  rules: Map<string, string[]>;
}

/** What a periodic read-back found changed behind our back (all planned for repair). */
export interface Drift {
  /** Objects we had applied that the kernel no longer has (re-added, with their elements). */
  missingObjects: string[];
  /** Objects in our table we did not put there and do not want (deleted). */
  foreignObjects: string[];
  /** Chains whose rules differ from what we applied (rewritten: flush chain + add rules). */
  chains: string[];
  /** Elements missing, foreign or with another value than the one we applied. */
  elements: number;
  /** Sets/maps whose elements could not be read back (left alone this time). */
  unreadable: string[];
}

export const driftSize = (d: Drift): number => d.missingObjects.length + d.foreignObjects.length + d.chains.length + d.elements;

const defString = (d: ObjectDef | undefined): string | undefined => (d === undefined ? undefined : `${d.kind}|${d.keyword ?? ''}|${d.spec}|${(d.rules ?? []).join('\n')}`);

export class Ruleset {
  /**
   * Desired elements: a plain string value while one owner claims the key (the common
   * case, no object per element), a Claim once a second owner claims it too.
   */
  private readonly desired = new Map<string, Map<string, string | Shared>>();
  /**
   * The applied elements, as where they differ from the desired ones: per key, the value the
   * kernel holds, or null when it holds none. Every other desired key is applied as desired.
   * In the steady state this is empty: a full applied copy was ~4.6 MB of hash tables at
   * 100k endpoints, all equal to the desired state.
   */
  private readonly behind = new Map<string, Map<string, string | null>>();
  private readonly desiredObjects = new Map<string, Claim<ObjectDef>>();
  /** Applied objects; `undefined` def = adopted from the kernel, content unknown. */
  readonly appliedObjects = new Map<string, ObjectDef | undefined>();
  private readonly contributions = new Map<string, Contribution>();
  private touchedElements = new Map<string, Set<string>>();
  private touchedObjects = new Set<string>();
  private touchedOwners = new Set<string>();
  /** Maps that hold (or held) a key claimed by several owners; in the others an owner's own value is the desired one. */
  private readonly sharedMaps = new Set<string>();
  /** Sets whose applied content is unknown (adopted): flushed and re-added on the next plan. */
  readonly unknownContent = new Set<string>();
  /**
   * Per chain, the kernel's prints of its rules at the last read-back that found it as we
   * applied it (`def`: the definition then applied). nft prints rules in its own syntax, not
   * ours, so a rule changed in place is noticed against this print; a rule added or
   * deleted is noticed at once by the count.
   */
  private readonly chainPrints = new Map<string, { def: string; print: string }>();
  /**
   * A chain we wrote has not been seen in a listing since (its print is not learnt): only a
   * listing can learn it, and without it a later in-place change of one of its rules by
   * someone else would go unnoticed.
   */
  /**
   * Forget the learnt rule prints: the next read-back learns them again. For a change of
   * where prints come from (netlink vs a libnftables listing), which print the same rule
   * differently.
   */
  forgetPrints(): void {
    this.chainPrints.clear();
  }

  needsPrints(): boolean {
    for (const [name, d] of this.appliedObjects) if (d?.kind === 'chain' && !this.chainPrints.has(name)) return true;
    return false;
  }

  /**
   * Learn the prints of the chains in needsPrints from the kernel's rules (`rules`: per chain,
   * one print per rule, as KernelTable.rules), when no other program committed since we wrote
   * them: their rules are then ours. False when a chain's rule count is not the one we applied
   * (only a full read-back can tell what happened).
   */
  learnPrints(rules: Map<string, string[]>): boolean {
    let ok = true;
    for (const [name, d] of this.appliedObjects) {
      if (d?.kind !== 'chain' || this.chainPrints.has(name)) continue;
      const prints = rules.get(name) ?? [];
      if (prints.length !== (d.rules ?? []).length) ok = false;
      else this.chainPrints.set(name, { def: defString(d)!, print: prints.join('\n') });
    }
    return ok;
  }

  owners(): IterableIterator<string> {
    return this.contributions.keys();
  }

  contribution(owner: string): Contribution | undefined {
    return this.contributions.get(owner);
  }

  elementCount(): number {
    let n = 0;
    for (const dm of this.desired.values()) n += dm.size;
    for (const [m, b] of this.behind) {
      const dm = this.desired.get(m);
      for (const [k, v] of b) n += (v !== null ? 1 : 0) - (dm?.has(k) ? 1 : 0);
    }
    return n;
  }

  /** One set's or map's applied elements (key → value, '' for a set element), as a new map. */
  appliedOf(m: string): Map<string, string> {
    const out = new Map<string, string>();
    for (const k of this.appliedKeys(m)) out.set(k, this.appliedValue(m, k)!);
    return out;
  }

  set(owner: string, c: Contribution | undefined): void {
    const old = this.contributions.get(owner);
    // A periodic full re-render gives most owners the same contribution again: keeping the
    // old one skips releasing and re-claiming its elements, and keeps the applied state and
    // the desired state holding the same string objects (new equal copies would double them).
    if (old && c && sameContribution(old, c)) return;
    if (old && c) reuseStrings(old.elements, c.elements);
    if (old) {
      const e = old.elements;
      let lastMap = '';
      let dm: Map<string, string | Shared> | undefined;
      for (let i = 0; i < e.length; i += 3) {
        if (e[i] !== lastMap) dm = this.desired.get((lastMap = e[i]!));
        if (dm) this.release(dm, lastMap, e[i + 1]!, owner);
      }
      // An object the owner keeps is re-claimed below (touched only if its definition
      // changed): releasing it first would touch it, and a cold start's next batch, planned
      // while the previous one is still being applied, would add its chain's rules again.
      const kept = new Set(c?.objects.map(([name]) => name) ?? []);
      for (const [name] of old.objects) if (!kept.has(name)) this.releaseObject(name, owner);
    }
    if (c === undefined || (c.elements.length === 0 && c.objects.length === 0)) this.contributions.delete(owner);
    else {
      this.contributions.set(owner, c);
      this.touchedOwners.add(owner);
      const e = c.elements;
      let lastMap = '';
      let dm: Map<string, string | Shared> | undefined;
      for (let i = 0; i < e.length; i += 3) {
        if (e[i] !== lastMap || !dm) {
          lastMap = e[i]!;
          dm = this.desired.get(lastMap);
          if (!dm) this.desired.set(lastMap, (dm = new Map()));
        }
        this.claim(dm, lastMap, e[i + 1]!, owner, e[i + 2]!);
      }
      for (const [name, d] of c.objects) this.claimObject(name, owner, d);
    }
  }

  /** Touch everything desired and applied (a full diff). */
  touchAll(): void {
    // The owners plan every desired key; an applied key differs from the desired state only in `behind`.
    for (const o of this.contributions.keys()) this.touchedOwners.add(o);
    for (const [m, b] of this.behind) for (const k of b.keys()) this.touch(m, k);
    for (const name of this.desiredObjects.keys()) this.touchedObjects.add(name);
    for (const name of this.appliedObjects.keys()) this.touchedObjects.add(name);
  }

  /** Forget what is applied (the table is gone); everything desired is planned again. */
  resetApplied(): void {
    this.behind.clear();
    for (const m of this.desired.keys()) this.clearApplied(m);
    this.appliedObjects.clear();
    this.unknownContent.clear();
    this.chainPrints.clear();
    this.touchAll();
  }

  pendingTouches(): number {
    let n = this.touchedObjects.size;
    for (const s of this.touchedElements.values()) n += s.size;
    return n;
  }

  plan(): Plan {
    const plan: Plan = {
      addObjects: [],
      rewriteChains: [],
      deleteObjects: [],
      flush: [],
      deleteElements: new Map(),
      addElements: new Map(),
      touchedElements: this.touchedElements,
      touchedObjects: this.touchedObjects,
      touchedOwners: this.touchedOwners,
      elementChanges: 0,
    };
    this.touchedElements = new Map();
    this.touchedObjects = new Set();
    this.touchedOwners = new Set();
    for (const name of plan.touchedObjects) {
      const d = this.desiredObjects.get(name)?.value;
      const has = this.appliedObjects.has(name);
      const a = this.appliedObjects.get(name);
      if (d && !has) plan.addObjects.push([name, d]);
      else if (!d && has) plan.deleteObjects.push([name, a ?? { kind: 'chain', spec: '' }]);
      else if (d && has && a === undefined) {
        // Adopted: a set/map keeps its elements (diffed below); a chain is rewritten.
        if (d.kind === 'chain') plan.rewriteChains.push([name, d]);
      } else if (d && a && defString(d) !== defString(a)) {
        if (d.kind === 'chain' && a.kind === 'chain' && d.spec === a.spec) plan.rewriteChains.push([name, d]);
        else {
          plan.deleteObjects.push([name, a]);
          plan.addObjects.push([name, d]);
        }
      }
    }
    const recreated = new Set(plan.addObjects.filter(([n]) => this.appliedObjects.has(n)).map(([n]) => n));
    for (const m of this.unknownContent) {
      const d = this.desiredObjects.get(m)?.value;
      if (d && !recreated.has(m)) plan.flush.push([m, d]);
    }
    const skipMaps = (m: string): boolean => recreated.has(m) || this.unknownContent.has(m);
    const consider = (m: string, k: string, d: string | undefined): void => {
      const a = skipMaps(m) ? undefined : this.appliedValue(m, k);
      if (d === a) return;
      if (a !== undefined) push(plan.deleteElements, m, k);
      if (d !== undefined) push2(plan.addElements, m, k, d);
      plan.elementChanges++;
    };
    for (const [m, keys] of plan.touchedElements) {
      const dm = this.desired.get(m);
      for (const k of keys) consider(m, k, valueOf(dm?.get(k)));
    }
    // Keys of (re)claimed contributions: each is planned once, by its primary owner, unless a
    // per-key touch above already planned it.
    const shared = this.sharedMaps;
    for (const owner of plan.touchedOwners) {
      const e = this.contributions.get(owner)?.elements;
      if (!e) continue;
      let lastMap = '';
      let dm: Map<string, string | Shared> | undefined;
      let tk: Set<string> | undefined;
      let b: Map<string, string | null> | undefined;
      let skip = false;
      for (let i = 0; i < e.length; i += 3) {
        const m = e[i]!;
        if (m !== lastMap) {
          lastMap = m;
          dm = this.desired.get(m);
          tk = plan.touchedElements.get(m);
          skip = skipMaps(m);
          b = this.behind.get(m);
        }
        const k = e[i + 1]!;
        if (tk?.has(k)) continue;
        let d: string;
        if (!shared.has(m)) d = e[i + 2]!; // the owner's own value: it is the key's only claimant
        else {
          const c = dm?.get(k);
          // A plain string: this owner is the key's only claimant; shared: the primary is the one not in `more`.
          if (c === undefined || (typeof c !== 'string' && c.more.has(owner))) continue;
          d = typeof c === 'string' ? c : c.value;
        }
        if (skip) {
          consider(m, k, d);
          continue;
        }
        // Not behind: applied as desired.
        if (b === undefined || !b.has(k)) continue;
        const a = b.get(k) ?? undefined;
        if (d === a) continue;
        if (a !== undefined) push(plan.deleteElements, m, k);
        push2(plan.addElements, m, k, d);
        plan.elementChanges++;
      }
    }
    // Elements of a set being flushed or recreated: every desired one is re-added.
    for (const m of [...plan.flush.map(([n]) => n), ...recreated]) {
      const dm = this.desired.get(m);
      plan.deleteElements.delete(m);
      const adds: string[] = [];
      for (const [k, c] of dm ?? []) adds.push(k, typeof c === 'string' ? c : c.value);
      if (adds.length > 0) plan.addElements.set(m, adds);
      else plan.addElements.delete(m);
    }
    return plan;
  }

  /** The plan was applied: the kernel now has the desired state for everything it touched. */
  commit(plan: Plan): void {
    for (const m of [...plan.flush.map(([n]) => n), ...plan.addObjects.map(([n]) => n)]) {
      this.unknownContent.delete(m);
      this.clearApplied(m);
    }
    for (const [name] of plan.deleteObjects) {
      this.appliedObjects.delete(name);
      this.clearApplied(name);
    }
    for (const [name, d] of [...plan.addObjects, ...plan.rewriteChains]) {
      this.appliedObjects.set(name, d);
      this.chainPrints.delete(name); // new handles and rules: learnt again at the next read-back
    }
    for (const name of plan.touchedObjects) {
      const d = this.desiredObjects.get(name)?.value;
      if (d && this.appliedObjects.has(name) && this.appliedObjects.get(name) === undefined && d.kind === 'set') this.appliedObjects.set(name, d);
    }
    for (const [m, dels] of plan.deleteElements) for (const k of dels) this.setApplied(m, k, undefined);
    for (const [m, adds] of plan.addElements) for (let i = 0; i < adds.length; i += 2) this.setApplied(m, adds[i]!, adds[i + 1]!);
  }

  /** The plan failed: keep its touches for the next attempt. */
  restore(plan: Plan): void {
    for (const [m, keys] of plan.touchedElements) for (const k of keys) this.touch(m, k);
    for (const n of plan.touchedObjects) this.touchedObjects.add(n);
    for (const o of plan.touchedOwners) this.touchedOwners.add(o);
  }

  /**
   * The periodic reconcile: take the kernel's actual content of our table as the applied
   * state and touch only what differs from the desired state, so the next plan repairs
   * exactly that (missing objects, elements and rules re-added, foreign ones removed, a
   * changed chain rewritten) in one element-level transaction, and leaves every correct
   * element, chain and rule alone (no flush, no new handles). Dynamic sets (affinity: the
   * kernel's own content) and sets whose elements could not be read are not diffed.
   */
  reconcile(k: KernelTable, dynamic: (name: string) => boolean): Drift {
    const drift: Drift = { missingObjects: [], foreignObjects: [], chains: [], elements: 0, unreadable: [...k.unknown] };
    const unreadable = new Set(k.unknown);
    for (const name of [...this.appliedObjects.keys()]) {
      if (k.objects.has(name)) continue;
      drift.missingObjects.push(name);
      this.appliedObjects.delete(name);
      this.clearApplied(name);
      this.unknownContent.delete(name);
      this.chainPrints.delete(name);
      this.touchedObjects.add(name);
      // Its desired elements go back with it.
      for (const key of this.desired.get(name)?.keys() ?? []) this.touch(name, key);
    }
    for (const [name, kind] of k.objects) {
      if (this.appliedObjects.has(name)) continue;
      const wanted = this.desiredObjects.has(name);
      // Unknown content; a foreign one needs its kind to be deleted.
      this.appliedObjects.set(name, wanted ? undefined : { kind, spec: '', ...(kind === 'set' ? { keyword: k.maps.has(name) ? 'map' : 'set' } : {}) });
      this.touchedObjects.add(name);
      if (!wanted) drift.foreignObjects.push(name);
    }
    for (const [name, kind] of k.objects) {
      const d = this.desiredObjects.get(name)?.value;
      if (!d) continue; // deleted by the plan
      if (kind === 'chain') {
        const a = this.appliedObjects.get(name);
        if (a === undefined || a.kind !== 'chain') continue; // rewritten by the plan anyway
        const prints = k.rules.get(name) ?? [];
        const print = prints.join('\n');
        const was = defString(a)!;
        const rec = this.chainPrints.get(name);
        if (prints.length !== (a.rules ?? []).length || (rec !== undefined && rec.def === was && rec.print !== print)) {
          drift.chains.push(name);
          this.chainPrints.delete(name);
          this.appliedObjects.set(name, undefined); // content unknown: the plan rewrites it
          this.touchedObjects.add(name);
        } else if (rec === undefined || rec.def !== was) this.chainPrints.set(name, { def: was, print });
        continue;
      }
      if (dynamic(name) || this.unknownContent.has(name)) continue;
      if (unreadable.has(name)) continue;
      const kEls = k.elements.get(name) ?? new Map<string, string>();
      const dm = this.desired.get(name);
      // The common case, checked in one pass: the kernel holds exactly what we applied (nothing
      // is behind) and want. Nothing is then built from the kernel's copy.
      if ((this.behind.get(name)?.size ?? 0) === 0 && sameElements(kEls, dm)) continue;
      for (const [key, v] of kEls) {
        if (this.appliedValue(name, key) !== v) drift.elements++;
        if (valueOf(dm?.get(key)) !== v) this.touch(name, key);
      }
      for (const key of this.appliedKeys(name)) if (!kEls.has(key)) drift.elements++;
      for (const key of dm?.keys() ?? []) if (!kEls.has(key)) this.touch(name, key);
      this.replaceApplied(name, kEls);
    }
    return drift;
  }

  /** Record adopted kernel state (before any plan). */
  adopt(objects: Map<string, 'set' | 'chain'>, elements: Map<string, Map<string, string>>, unknown: Iterable<string>): void {
    for (const [name] of objects) {
      this.appliedObjects.set(name, undefined);
      this.touchedObjects.add(name);
    }
    for (const [m, els] of elements) {
      this.replaceApplied(m, els);
      for (const k of els.keys()) this.touch(m, k);
    }
    for (const m of unknown) this.unknownContent.add(m);
  }

  /** What the kernel holds for m/k, as far as we know ('' for a set element, undefined for none). */
  appliedValue(m: string, k: string): string | undefined {
    const b = this.behind.get(m);
    if (b !== undefined && b.has(k)) return b.get(k) ?? undefined;
    return valueOf(this.desired.get(m)?.get(k));
  }

  private *appliedKeys(m: string): Generator<string> {
    const b = this.behind.get(m);
    for (const k of this.desired.get(m)?.keys() ?? []) if (!b?.has(k)) yield k;
    if (b) for (const [k, v] of b) if (v !== null) yield k;
  }

  /** The kernel now holds `v` (undefined: nothing) for m/k. */
  private setApplied(m: string, k: string, v: string | undefined): void {
    let b = this.behind.get(m);
    if (v === valueOf(this.desired.get(m)?.get(k))) b?.delete(k);
    else {
      if (!b) this.behind.set(m, (b = new Map()));
      b.set(k, v ?? null);
    }
  }

  /** The kernel holds none of m's elements (the set was flushed, created or deleted). */
  private clearApplied(m: string): void {
    const dm = this.desired.get(m);
    if (!dm || dm.size === 0) this.behind.delete(m);
    else {
      const b = new Map<string, string | null>();
      for (const k of dm.keys()) b.set(k, null);
      this.behind.set(m, b);
    }
  }

  /** The kernel holds exactly `kEls` in m (read back or adopted). */
  private replaceApplied(m: string, kEls: Map<string, string>): void {
    const dm = this.desired.get(m);
    if (!dm || dm.size === 0) {
      if (kEls.size === 0) this.behind.delete(m);
      else this.behind.set(m, kEls);
      return;
    }
    const b = new Map<string, string | null>();
    for (const [k, v] of kEls) if (valueOf(dm.get(k)) !== v) b.set(k, v);
    for (const k of dm.keys()) if (!kEls.has(k)) b.set(k, null);
    if (b.size === 0) this.behind.delete(m);
    else this.behind.set(m, b);
  }

  /**
   * The desired value of m/k is about to change from `was`: what the kernel holds there stays
   * what it was. `settle` after the change drops the entry when the two agree again.
   */
  private hold(m: string, k: string, was: string | undefined): void {
    let b = this.behind.get(m);
    if (b?.has(k)) return;
    if (!b) this.behind.set(m, (b = new Map()));
    b.set(k, was ?? null);
  }

  private settle(m: string, k: string, now: string | undefined): void {
    const b = this.behind.get(m);
    if (b !== undefined && b.get(k) === (now ?? null)) b.delete(k);
  }

  private touch(m: string, k: string): void {
    let s = this.touchedElements.get(m);
    if (!s) this.touchedElements.set(m, (s = new Set()));
    s.add(k);
  }

  /**
   * A contribution never holds a key twice (renderService dedupes), so a plain entry met
   * here belongs to another owner: it stays the primary (implicit), this owner joins `more`.
   */
  private claim(dm: Map<string, string | Shared>, m: string, k: string, owner: string, v: string): void {
    const c = dm.get(k);
    if (c === undefined) {
      this.hold(m, k, undefined);
      dm.set(k, v); // planned through the owner's contribution (touchedOwners)
      this.settle(m, k, v);
      return;
    }
    this.sharedMaps.add(m);
    if (typeof c === 'string') {
      dm.set(k, { value: c, more: new Map([[owner, v]]) });
      return;
    }
    c.more.set(owner, v);
  }

  private release(dm: Map<string, string | Shared>, m: string, k: string, owner: string): void {
    const c = dm.get(k);
    if (c === undefined) return;
    if (typeof c === 'string') {
      this.hold(m, k, c);
      dm.delete(k);
      this.touch(m, k);
      return;
    }
    if (c.more.delete(owner)) {
      if (c.more.size === 0) dm.set(k, c.value);
      return;
    }
    // The primary goes: the first other claimant takes over (and plans the key).
    const [o, v] = c.more.entries().next().value!;
    c.more.delete(o);
    if (c.value !== v) {
      this.hold(m, k, c.value);
      this.touch(m, k);
    }
    if (c.more.size === 0) dm.set(k, v);
    else c.value = v;
    this.settle(m, k, v);
  }

  private claimObject(name: string, owner: string, d: ObjectDef): void {
    const c = this.desiredObjects.get(name);
    if (!c) {
      this.desiredObjects.set(name, { value: d, owner });
      this.touchedObjects.add(name);
    } else if (c.owner === owner) {
      if (defString(c.value) !== defString(d)) this.touchedObjects.add(name);
      c.value = d;
    } else (c.more ??= new Map()).set(owner, d);
  }

  private releaseObject(name: string, owner: string): void {
    const c = this.desiredObjects.get(name);
    if (!c) return;
    if (c.owner === owner) {
      const next = c.more?.entries().next();
      if (next && !next.done) {
        const [o, v] = next.value;
        c.more!.delete(o);
        c.owner = o;
        c.value = v;
      } else this.desiredObjects.delete(name);
      this.touchedObjects.add(name);
    } else c.more?.delete(owner);
  }
}

/** The kernel's elements equal the desired ones (same keys, same values). */
function sameElements(kEls: Map<string, string>, dm: Map<string, string | Shared> | undefined): boolean {
  const n = kEls.size;
  if ((dm?.size ?? 0) !== n) return false;
  if (n === 0) return true;
  // Equal sizes and every kernel key present with the same value: no key of dm is missing.
  for (const [key, v] of kEls) if (valueOf(dm!.get(key)) !== v) return false;
  return true;
}

function sameContribution(a: Contribution, b: Contribution): boolean {
  const x = a.elements;
  const y = b.elements;
  if (x.length !== y.length || a.objects.length !== b.objects.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  for (let i = 0; i < a.objects.length; i++) {
    const [an, ad] = a.objects[i]!;
    const [bn, bd] = b.objects[i]!;
    if (an !== bn || defString(ad) !== defString(bd)) return false;
  }
  return true;
}

/** Where the new contribution repeats a string of the old one at the same place, hold the old object. */
function reuseStrings(old: string[], next: string[]): void {
  const n = Math.min(old.length, next.length);
  for (let i = 0; i < n; i++) if (next[i] === old[i]) next[i] = old[i]!;
}

function valueOf(c: string | Shared | undefined): string | undefined {
  return c === undefined || typeof c === 'string' ? c : c.value;
}

function push2(m: Map<string, string[]>, k: string, a: string, b: string): void {
  const x = m.get(k);
  if (x) x.push(a, b);
  else m.set(k, [a, b]);
}

function push<V>(m: Map<string, V[]>, k: string, v: V): void {
  const a = m.get(k);
  if (a) a.push(v);
  else m.set(k, [v]);
}
