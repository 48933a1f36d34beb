/**
 * The Ruleset's applied state is kept as where it differs from the desired state. These
 * runs drive it with seeded random owners, failed and applied plans and a kernel changed
 * behind its back, against a model kernel that applies each plan as nft would (a delete of
 * a missing element or an add of a present one fails), and check after every step that
 * what the Ruleset believes applied is what the model kernel holds.
 */
import t from 'tap';
import { Ruleset, type KernelTable, type ObjectDef, type Plan } from './ruleset';

const MAPS = ['m1', 'm2'];
const MAP_DEF: ObjectDef = { kind: 'set', keyword: 'map', spec: '{ type x : y ; }' };

/** A small deterministic generator (mulberry32), so a failure names its seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

class ModelKernel {
  readonly maps = new Map<string, Map<string, string>>();

  apply(p: Plan): void {
    for (const [name, d] of p.deleteObjects) if (d.kind === 'set') this.maps.delete(name);
    for (const [name, d] of p.addObjects) if (d.kind === 'set') this.maps.set(name, new Map());
    for (const [name] of p.flush) this.maps.get(name)?.clear();
    for (const [m, keys] of p.deleteElements) {
      const km = this.maps.get(m)!;
      for (const k of keys) {
        if (!km.has(k)) throw new Error(`delete element ${m} ${k}: not there`);
        km.delete(k);
      }
    }
    for (const [m, adds] of p.addElements) {
      const km = this.maps.get(m)!;
      for (let i = 0; i < adds.length; i += 2) {
        if (km.has(adds[i]!)) throw new Error(`add element ${m} ${adds[i]}: already there`);
        km.set(adds[i]!, adds[i + 1]!);
      }
    }
  }

  table(): KernelTable {
    const objects = new Map<string, 'set' | 'chain'>();
    for (const m of this.maps.keys()) objects.set(m, 'set');
    const elements = new Map<string, Map<string, string>>();
    for (const [m, km] of this.maps) elements.set(m, new Map(km));
    return { objects, elements, unknown: [], maps: new Set(this.maps.keys()), rules: new Map() };
  }
}

function contribution(next: () => number): { elements: string[]; objects: [string, ObjectDef][] } {
  const elements: string[] = [];
  for (const m of MAPS) {
    const keys = new Set<string>();
    const n = Math.floor(next() * 4);
    for (let i = 0; i < n; i++) keys.add(`k${Math.floor(next() * 8)}`);
    for (const k of keys) elements.push(m, k, `v${Math.floor(next() * 3)}`);
  }
  return { elements, objects: [] };
}

for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
  t.test(`Ruleset applied state against a model kernel (seed ${seed})`, async (t) => {
    const next = rng(seed);
    const r = new Ruleset();
    const kernel = new ModelKernel();
    r.set('#base', { elements: [], objects: MAPS.map((m) => [m, MAP_DEF]) });
    let failures = 0;
    let repairs = 0;
    const check = (what: string): void => {
      for (const m of MAPS) t.same([...r.appliedOf(m)].sort(), [...(kernel.maps.get(m) ?? [])].sort(), `${what}: ${m} as the kernel holds it`);
      let total = 0;
      for (const km of kernel.maps.values()) total += km.size;
      t.equal(r.elementCount(), total, `${what}: element count`);
    };
    for (let step = 0; step < 60; step++) {
      const owner = `o${Math.floor(next() * 5)}`;
      r.set(owner, next() < 0.2 ? undefined : contribution(next));
      const roll = next();
      if (roll < 0.3) continue; // more changes before the next sync
      const plan = r.plan();
      if (roll < 0.4) {
        r.restore(plan); // the transaction failed: the kernel is unchanged
        failures++;
        check(`step ${step}, after a failed plan`);
        continue;
      }
      kernel.apply(plan);
      r.commit(plan);
      check(`step ${step}, after a commit`);
      if (next() < 0.25) {
        // Someone changes our table: a value, a stray key, a missing key.
        const km = kernel.maps.get(MAPS[Math.floor(next() * MAPS.length)]!)!;
        const k = `k${Math.floor(next() * 8)}`;
        if (km.has(k) && next() < 0.5) km.delete(k);
        else km.set(k, 'foreign');
        r.reconcile(kernel.table(), () => false);
        check(`step ${step}, after a read-back`);
        const repair = r.plan();
        kernel.apply(repair);
        r.commit(repair);
        repairs++;
        check(`step ${step}, after the repair`);
      }
    }
    const last = r.plan();
    kernel.apply(last);
    r.commit(last);
    check('at the end');
    t.equal(r.plan().elementChanges, 0, 'nothing left to plan');
    t.equal(r.reconcile(kernel.table(), () => false).elements, 0, 'a read-back finds no drift');
    t.ok(failures + repairs > 0, 'the run covered failed plans or repairs');
  });
}

t.test('Ruleset: a table gone (resetApplied) plans every desired element again', async (t) => {
  const r = new Ruleset();
  r.set('#base', { elements: [], objects: [['m1', MAP_DEF]] });
  r.set('a', { elements: ['m1', 'k1', 'v1', 'm1', 'k2', 'v2'], objects: [] });
  r.commit(r.plan());
  t.equal(r.elementCount(), 2);
  r.resetApplied();
  t.equal(r.elementCount(), 0, 'nothing applied');
  const p = r.plan();
  t.same(p.addObjects.map(([n]) => n), ['m1']);
  t.same(p.addElements.get('m1'), ['k1', 'v1', 'k2', 'v2']);
  r.commit(p);
  t.same([...r.appliedOf('m1')], [['k1', 'v1'], ['k2', 'v2']]);
  t.equal(r.plan().elementChanges, 0);
});
