/**
 * The nftables mode's periodic reconcile: every syncPeriod the proxier reads its table back
 * (FakeNft answers `listJson` from its model, as libnftables does) and diffs the desired
 * state against what the kernel really holds, so a change made behind podwired's back is
 * repaired by one element-level transaction that leaves everything correct alone.
 */
import t from 'tap';
import { fakeKernel, type FakeKernel, type NftTracePacket, type NftTraceResult } from '../kernel/testing';
import { FakeClock } from '../daemon/testing/fake-clock';
import { proxierHarness, slice, svc, type ProxierHarness } from './testing';
import { Ruleset, driftSize, type KernelTable } from './ruleset';
import { parseTable } from './adopt';
import { KernelError } from '../common/errors';

const signal = new AbortController().signal;
const PERIOD = 1000;

async function cluster(): Promise<{ k: FakeKernel; h: ProxierHarness; clock: FakeClock; listings: () => number }> {
  const k = fakeKernel();
  k.nft.fromModel = true;
  let n = 0;
  const list = k.nft.listJson.bind(k.nft);
  k.nft.listJson = async (what: string) => {
    n++;
    return list(what);
  };
  // As the real runners do: the table read over netlink, its rule prints those of rulePrints.
  k.nft.readTable = async (table: string, skip: (name: string) => boolean) => {
    const r = parseTable(await k.nft.listJson(`table inet ${table}`), table, skip);
    r.rules = await k.nft.rulePrints('inet', table);
    return r;
  };
  const clock = new FakeClock();
  const h = proxierHarness(k, clock, { section: { syncPeriod: PERIOD } });
  h.apply(svc('ns/a', '10.96.0.10', { ports: [{ name: 'http', port: 80 }] }));
  h.apply(slice('ns/a', ['10.244.1.2', '10.244.1.3'], [{ name: 'http', port: 8080 }]));
  h.apply(svc('ns/b', '10.96.0.11', { ports: [{ name: 'http', port: 80 }] }));
  h.apply(slice('ns/b', ['10.244.1.4'], [{ name: 'http', port: 8080 }]));
  h.apply(svc('ns/c', '10.96.0.12', { ports: [{ name: 'http', port: 80 }] }));
  h.apply(slice('ns/c', ['10.244.1.5', '10.244.1.6'], [{ name: 'http', port: 8080 }]));
  await h.proxier.reconcileOnStart(signal);
  await h.proxier.sync(signal);
  return { k, h, clock, listings: () => n };
}

const tcp = (daddr: string, dport: number): NftTracePacket => ({ family: 4, saddr: '10.244.1.9', daddr, protocol: 'tcp', dport, hook: 'prerouting' });
const dests = (r: NftTraceResult): string[] => (r.alternatives ?? [r]).map((a) => (a.dnat ? `${a.dnat.addr}:${a.dnat.port}` : a.verdict)).sort();
const handles = (k: FakeKernel): string => [...k.nft.tables.get('inet podwire')!.chains.values()].map((c) => `${c.name}:${c.rules.map((r) => r.handle).join(',')}`).join(' ');
const allElements = (k: FakeKernel): string => [...k.nft.tables.get('inet podwire')!.sets.keys()].map((s) => `${s}=${(k.nft.elements('inet', 'podwire', s) ?? []).sort().join(',')}`).join('\n');

t.test('no drift: the periodic read-back applies nothing; event syncs do not list the table', async (t) => {
  const { k, h, clock, listings } = await cluster();
  const scripts = k.nft.scripts.length;
  const before = listings();
  h.apply(slice('ns/b', ['10.244.1.7'], [{ name: 'http', port: 8080 }]));
  await h.proxier.sync(signal);
  t.equal(listings(), before, 'an event sync before syncPeriod does not read the table back');
  t.equal(h.proxier.lastSync?.readBack, undefined);
  const after = k.nft.scripts.length;
  t.equal(after, scripts + 1, 'the event sync applied its change');
  const dumps = (): number => rulesDumps;
  let rulesDumps = 0;
  const rulePrints = k.nft.rulePrints.bind(k.nft);
  k.nft.rulePrints = async (family: string, table: string) => {
    rulesDumps++;
    return rulePrints(family, table);
  };
  clock.advance(PERIOD);
  await h.proxier.sync(signal);
  t.equal(listings(), before, 'only our own transactions: the periodic sync lists nothing');
  t.equal(dumps(), 1, 'it learns the prints of the chains we wrote from one rule dump');
  t.equal(h.proxier.lastSync?.readBack?.unchanged, true);
  t.equal(k.nft.scripts.length, after, 'and nothing is applied');
  clock.advance(PERIOD);
  await h.proxier.sync(signal);
  t.equal(listings(), before, 'the next periodic sync checks the generation only');
  t.equal(dumps(), 1, 'the prints are known: no rule dump either');
  await k.nft.applyForeign('add table inet other\n');
  clock.advance(PERIOD);
  await h.proxier.sync(signal);
  t.equal(listings(), before + 1, 'another program committed a transaction: the periodic sync lists the table once');
  t.equal(h.proxier.lastSync?.readBack?.unchanged, undefined);
  t.equal(h.proxier.lastSync?.readBack?.drift, 0, 'its transaction changed nothing of ours');
  t.equal(k.nft.scripts.length, after + 1, 'and nothing is applied');
  clock.advance(PERIOD);
  await h.proxier.sync(signal);
  t.equal(listings(), before + 1, 'listed once: the next period checks the generation only');
});

t.test('a chain of ours whose rule count is not what we applied, with no foreign commit: the table is listed and the chain rewritten', async (t) => {
  const { k, h, clock, listings } = await cluster();
  const before = listings();
  // Our own runner, so the generation shows nothing foreign: only the rule dump can tell.
  await k.nft.apply('add rule inet podwire lb4c-tcp-1 drop\n');
  clock.advance(PERIOD);
  await h.proxier.sync(signal);
  t.equal(listings(), before + 1, 'listed');
  t.same(h.proxier.lastSync?.readBack?.drift, 1, 'the chain is found changed');
  t.same(dests(k.nft.trace(tcp('10.96.0.11', 80))), ['10.244.1.4:8080'], 'and rewritten');
});

t.test('with no foreign commit the table is still read back once every READBACK_SAFETY_PERIODS syncPeriods', async (t) => {
  const { READBACK_SAFETY_PERIODS } = await import('./proxier');
  const { h, clock, listings } = await cluster();
  const before = listings();
  for (let i = 1; i < READBACK_SAFETY_PERIODS; i++) {
    clock.advance(PERIOD);
    await h.proxier.sync(signal);
  }
  t.equal(listings(), before, `${READBACK_SAFETY_PERIODS - 1} quiet periods: nothing read`);
  clock.advance(PERIOD);
  await h.proxier.sync(signal);
  t.equal(listings(), before + 1, 'then one read-back');
  t.equal(h.proxier.lastSync?.readBack?.drift, 0);
  clock.advance(PERIOD);
  await h.proxier.sync(signal);
  t.equal(listings(), before + 1, 'and quiet again');
});

t.test('when the generation cannot be read, every periodic sync lists the table', async (t) => {
  const { k, h, clock, listings } = await cluster();
  k.nft.generation = async () => Promise.reject(new Error('EPERM'));
  const before = listings();
  for (let i = 1; i <= 2; i++) {
    clock.advance(PERIOD);
    await h.proxier.sync(signal);
    t.equal(listings(), before + i);
  }
});

t.test('an element deleted, a stray element, a flushed chain, a foreign chain and set: repaired in one transaction, the rest untouched', async (t) => {
  const { k, h, clock } = await cluster();
  clock.advance(PERIOD);
  await h.proxier.sync(signal); // learns the chains' prints
  const good = allElements(k);
  const lb2 = [...k.nft.tables.get('inet podwire')!.chains.keys()].find((c) => /^lb4c-tcp-2$/.test(c))!;
  t.ok(lb2, 'the shared two-endpoint chain exists');
  t.same(dests(k.nft.trace(tcp('10.96.0.10', 80))), ['10.244.1.2:8080', '10.244.1.3:8080']);
  // Behind our back: ns/a's VIP element deleted, a stray VIP added, lb4c-tcp-2 flushed, a chain and a set added to our table.
  await k.nft.applyForeign(
    [
      'delete element inet podwire services4 { 10.96.0.10 . tcp . 80 }',
      'add element inet podwire services4 { 10.96.0.99 . tcp . 80 : drop }',
      `flush chain inet podwire ${lb2}`,
      'add chain inet podwire stray',
      'add set inet podwire strayset { type ipv4_addr ; }',
    ].join('\n') + '\n',
  );
  t.equal(dests(k.nft.trace(tcp('10.96.0.10', 80)))[0], 'accept', 'ns/a is broken: no DNAT');
  const untouched = handles(k).split(' ').filter((c) => !c.startsWith(`${lb2}:`) && !c.startsWith('stray:')).join(' ');
  const n = k.nft.scripts.length;
  h.apply(svc('ns/d', '10.96.0.13', { ports: [{ name: 'http', port: 80 }] })); // an event in the same sync
  clock.advance(PERIOD);
  await h.proxier.sync(signal);
  t.equal(k.nft.scripts.length, n + 1, 'one transaction');
  const script = k.nft.last!;
  t.match(script, /add element inet podwire services4 \{ 10\.96\.0\.10 \. tcp \. 80 : goto lb4c-tcp-2 \}/, 'the deleted element is re-added');
  t.match(script, /delete element inet podwire services4 \{ 10\.96\.0\.99 \. tcp \. 80 \}/, 'the stray element is removed');
  t.match(script, new RegExp(`flush chain inet podwire ${lb2}\\nadd rule inet podwire ${lb2} `), 'the flushed chain gets its rule back');
  t.match(script, /delete chain inet podwire stray/, 'the foreign chain is removed');
  t.match(script, /delete set inet podwire strayset/, 'the foreign set is removed');
  t.match(script, /10\.96\.0\.13/, 'the pending event is in the same transaction');
  t.notMatch(script, /flush (map|set)|add table|delete table|add map|add set/, 'no map or set flushed or rebuilt');
  t.equal((script.match(/^flush chain/gm) ?? []).length, 1, 'only the damaged chain is rewritten');
  t.ok((h.proxier.lastSync?.readBack?.drift ?? 0) >= 5, `drift counted (${h.proxier.lastSync?.readBack?.drift})`);
  t.same(dests(k.nft.trace(tcp('10.96.0.10', 80))), ['10.244.1.2:8080', '10.244.1.3:8080'], 'ns/a is served again');
  t.same(dests(k.nft.trace(tcp('10.96.0.12', 80))), ['10.244.1.5:8080', '10.244.1.6:8080'], 'ns/c (same chain) too');
  t.equal(handles(k).split(' ').filter((c) => !c.startsWith(`${lb2}:`)).join(' '), untouched, 'every other chain keeps its rules and handles');
  const now = allElements(k);
  t.equal(now.replace(/,?10\.96\.0\.13[^,\n]*/g, '').replace(/,?10\.96\.0\.13/g, ''), good.replace(/,?10\.96\.0\.13[^,\n]*/g, ''), 'every element is as before (besides the new Service)');
  const m = k.nft.scripts.length;
  clock.advance(PERIOD);
  await h.proxier.sync(signal);
  t.equal(k.nft.scripts.length, m, 'converged: the next periodic sync applies nothing');
  t.equal(h.proxier.lastSync?.readBack?.drift, 0);
});

t.test('a rule changed in place (same count) is noticed against the learnt print', async (t) => {
  const { k, h, clock } = await cluster();
  clock.advance(PERIOD);
  await h.proxier.sync(signal); // learns
  const c = k.nft.tables.get('inet podwire')!.chains.get('lb4c-tcp-1')!;
  const handle = c.rules[c.rules.length - 1]!.handle; // the DNAT rule
  await k.nft.applyForeign(`delete rule inet podwire lb4c-tcp-1 handle ${handle}\nadd rule inet podwire lb4c-tcp-1 drop\n`);
  t.same(dests(k.nft.trace(tcp('10.96.0.11', 80))), ['drop'], 'ns/b broken: its DNAT rule became a drop');
  clock.advance(PERIOD);
  await h.proxier.sync(signal);
  t.match(k.nft.last!, /flush chain inet podwire lb4c-tcp-1\n/);
  t.same(dests(k.nft.trace(tcp('10.96.0.11', 80))), ['10.244.1.4:8080'], 'ns/b served again');
});

t.test('the read-back also runs while events keep coming, and a gone table is rebuilt', async (t) => {
  const { k, h, clock, listings } = await cluster();
  const before = listings();
  await k.nft.applyForeign('add table inet other\n');
  for (let i = 0; i < 3; i++) {
    h.apply(slice('ns/b', [`10.244.1.${20 + i}`], [{ name: 'http', port: 8080 }]));
    clock.advance(PERIOD / 2);
    await h.proxier.sync(signal);
  }
  t.equal(listings(), before + 1, 'one read-back in 1.5 syncPeriods of event syncs');
  await k.nft.applyForeign('delete table inet podwire\n');
  clock.advance(PERIOD);
  await h.proxier.sync(signal);
  t.equal(h.proxier.lastSync?.readBack?.tableGone, true);
  t.match(k.nft.last!, /^add table inet podwire/);
  t.same(dests(k.nft.trace(tcp('10.96.0.10', 80))), ['10.244.1.2:8080', '10.244.1.3:8080'], 'served again');
});

t.test('a failed listing keeps the in-memory state; the next periodic sync tries again', async (t) => {
  const { k, h, clock, listings } = await cluster();
  const list = k.nft.listJson;
  k.nft.listJson = async () => Promise.reject(new Error('EPERM'));
  await k.nft.applyForeign('add table inet other\n');
  const n = k.nft.scripts.length;
  clock.advance(PERIOD);
  await h.proxier.sync(signal);
  t.equal(k.nft.scripts.length, n, 'nothing applied');
  t.equal(h.proxier.lastSync?.readBack?.drift, 0);
  k.nft.listJson = list;
  const before = listings();
  clock.advance(PERIOD);
  await h.proxier.sync(signal);
  t.equal(listings(), before + 1);
});

t.test('Ruleset.reconcile: a missing set comes back with its elements; dynamic and unreadable sets are left alone', async (t) => {
  const r = new Ruleset();
  r.set('a', {
    elements: ['m', 'k1', 'v1', 'm', 'k2', 'v2', 'aff', 'x', ''],
    objects: [
      ['m', { kind: 'set', keyword: 'map', spec: '{ type x : verdict ; }' }],
      ['aff', { kind: 'set', keyword: 'set', spec: '{ type y ; }' }],
      ['u', { kind: 'set', keyword: 'set', spec: '{ type z ; }' }],
      ['c', { kind: 'chain', spec: '', rules: ['r1', 'r2'] }],
    ],
  });
  r.commit(r.plan());
  const kernel = (over: Partial<KernelTable>): KernelTable => ({
    objects: new Map([['m', 'set'], ['aff', 'set'], ['u', 'set'], ['c', 'chain']]),
    elements: new Map([['m', new Map([['k1', 'v1'], ['k2', 'v2']])], ['aff', new Map()], ['u', new Map()]]),
    unknown: [],
    maps: new Set(['m']),
    rules: new Map([['c', ['p1', 'p2']]]),
    ...over,
  });
  const dynamic = (n: string): boolean => n === 'aff';
  t.equal(driftSize(r.reconcile(kernel({}), dynamic)), 0, 'in sync');
  t.equal(r.plan().elementChanges, 0);
  const d = r.reconcile(kernel({ objects: new Map([['aff', 'set'], ['u', 'set'], ['c', 'chain']]), elements: new Map([['u', new Map([['junk', '']])]]), unknown: ['u'] }), dynamic);
  t.same(d.missingObjects, ['m']);
  t.same(d.unreadable, ['u']);
  const p = r.plan();
  t.same(p.addObjects.map(([n]) => n), ['m'], 'the map is re-added');
  t.same(p.addElements.get('m'), ['k1', 'v1', 'k2', 'v2'], 'with its elements');
  t.equal(p.deleteElements.size, 0, 'the unreadable and the dynamic set are not touched');
  t.equal(p.flush.length, 0);
  r.commit(p);
  // A chain with a rule deleted: the count tells; with a rule changed: the learnt print tells.
  t.same(r.reconcile(kernel({ rules: new Map([['c', ['p1']]]) }), dynamic).chains, ['c']);
  const p2 = r.plan();
  t.same(p2.rewriteChains.map(([n]) => n), ['c']);
  r.commit(p2);
  t.same(r.reconcile(kernel({ rules: new Map([['c', ['q1', 'q2']]]) }), dynamic).chains, [], 'first read-back after a rewrite: learnt');
  t.same(r.reconcile(kernel({ rules: new Map([['c', ['q1', 'q3']]]) }), dynamic).chains, ['c'], 'then a changed print is drift');
});

t.test('Ruleset.reconcile: a set as applied and desired is in sync; a value changed, a key missing, a stray key or a pending change are each found', async (t) => {
  const r = new Ruleset();
  const objects: [string, { kind: 'set'; keyword: 'map'; spec: string }][] = [['m', { kind: 'set', keyword: 'map', spec: '{ type x : y ; }' }]];
  r.set('a', { elements: ['m', 'k1', 'v1', 'm', 'k2', 'v2'], objects });
  r.commit(r.plan());
  const table = (els: [string, string][]): KernelTable => ({ objects: new Map([['m', 'set']]), elements: new Map([['m', new Map(els)]]), unknown: [], maps: new Set(['m']), rules: new Map() });
  t.equal(driftSize(r.reconcile(table([['k1', 'v1'], ['k2', 'v2']]), () => false)), 0, 'in sync');
  t.same([...r.appliedOf('m')], [['k1', 'v1'], ['k2', 'v2']], 'the applied state is the desired one');
  t.equal(r.plan().elementChanges, 0);
  const cases: [string, [string, string][], string][] = [
    ['a value changed', [['k1', 'v1'], ['k2', 'other']], 'add element k2 v2'],
    ['a key missing', [['k1', 'v1']], 'add element k2 v2'],
    ['a stray key (same size)', [['k1', 'v1'], ['k9', 'v9']], 'add element k2 v2, delete k9'],
  ];
  for (const [what, els, expect] of cases) {
    t.equal(driftSize(r.reconcile(table(els), () => false)) > 0, true, `${what}: drift`);
    const p = r.plan();
    t.same(p.addElements.get('m'), ['k2', 'v2'], `${what}: ${expect}`);
    if (what.startsWith('a stray')) t.same(p.deleteElements.get('m'), ['k9'], `${what}: the stray key is deleted`);
    r.commit(p);
  }
  // The kernel as applied, but the desired state moved on (a change not planned yet): still planned.
  r.set('a', { elements: ['m', 'k1', 'v1', 'm', 'k2', 'v3'], objects });
  r.reconcile(table([['k1', 'v1'], ['k2', 'v2']]), () => false);
  t.same(r.plan().addElements.get('m'), ['k2', 'v3'], 'the pending change is planned');
});

t.test('a cold start in batches adds each shared chain rule once (the read-back found them doubled)', async (t) => {
  const k = fakeKernel();
  k.nft.fromModel = true;
  const clock = new FakeClock();
  const h = proxierHarness(k, clock, { section: { syncPeriod: PERIOD, coldChunk: 1 } });
  h.apply(svc('default/kubernetes', '10.96.0.1', { ports: [{ name: 'https', port: 443 }] }));
  h.apply(slice('default/kubernetes', ['198.18.0.1'], [{ name: 'https', port: 6443 }]));
  for (let i = 0; i < 4; i++) {
    h.apply(svc(`ns/s${i}`, `10.96.0.${20 + i}`, { ports: [{ name: 'http', port: 80 }] }));
    h.apply(slice(`ns/s${i}`, Array.from({ length: 1 + ((i + 1) % 2) }, (_, j) => `10.244.1.${10 * i + j + 2}`), [{ name: 'http', port: 8080 }]));
  }
  await h.proxier.sync(signal);
  t.ok((h.proxier.lastSync?.transactions ?? 0) > 2, `batches (${h.proxier.lastSync?.transactions} transactions)`);
  t.equal(k.nft.rules('inet', 'podwire', 'lb4c-tcp-1')?.length, 2, 'lb4c-tcp-1: its 2 rules, once');
  t.equal(k.nft.rules('inet', 'podwire', 'lb4c-tcp-2')?.length, 2, 'lb4c-tcp-2 too');
  clock.advance(PERIOD);
  await h.proxier.sync(signal);
  t.equal(h.proxier.lastSync?.readBack?.drift, 0, 'the first read-back finds the table as planned');
});

t.test('source ranges are rendered as nft prints them back (else every read-back would find them changed)', async (t) => {
  const { nftRange } = await import('./nft-render');
  t.same(['198.18.9.9/32', '198.18.7.5/24', '10.0.0.1', 'FD00:0:0::1/128', 'fd00::5/64', 'junk'].map(nftRange), ['198.18.9.9', '198.18.7.0/24', '10.0.0.1', 'fd00::1', 'fd00::/64', 'junk']);
});

t.test('a slow read-back spaces the next ones (at most 1/READBACK_SHARE of the time); a fast one keeps syncPeriod (while another program keeps committing)', async (t) => {
  const { READBACK_SHARE } = await import('./proxier');
  const { k, h, clock, listings } = await cluster();
  const list = k.nft.listJson;
  k.nft.listJson = async (what: string) => {
    clock.advance(500); // a listing that takes 500 ms (a huge table)
    return list(what);
  };
  await k.nft.applyForeign('add table inet other\n');
  clock.advance(PERIOD);
  await h.proxier.sync(signal);
  t.equal(h.proxier.lastSync?.readBack?.nextInMs, READBACK_SHARE * 500, 'next read-back in 20 × 500 ms');
  const n = listings();
  await k.nft.applyForeign('add table inet other\n');
  clock.advance(PERIOD);
  await h.proxier.sync(signal);
  t.equal(listings(), n, 'not after one syncPeriod');
  await k.nft.applyForeign('add table inet other\n');
  clock.advance(READBACK_SHARE * 500);
  await h.proxier.sync(signal);
  t.equal(listings(), n + 1, 'but after 20 × its time');
  k.nft.listJson = list;
  await k.nft.applyForeign('add table inet other\n');
  clock.advance(READBACK_SHARE * 500);
  await h.proxier.sync(signal);
  t.equal(h.proxier.lastSync?.readBack?.nextInMs, PERIOD, 'a fast read-back: back to syncPeriod');
});

t.test('a re-render that gives an owner the same contribution plans nothing for it; a changed one is planned', async (t) => {
  const r = new Ruleset();
  const c = (ep: string): { elements: string[]; objects: [] } => ({ elements: ['endpoints4-tcp', '10.96.0.10 . tcp . 80 . 0', `${ep} . 8080`, 'cluster-ips4', '10.96.0.10', ''], objects: [] });
  r.set('ns/a', c('10.244.1.2'));
  const p1 = r.plan();
  t.equal(p1.elementChanges, 2);
  r.commit(p1);
  r.set('ns/a', c('10.244.1.2'));
  const p2 = r.plan();
  t.equal(p2.touchedOwners.size, 0, 'the same contribution again touches nothing');
  t.equal(p2.elementChanges, 0);
  r.set('ns/a', c('10.244.1.3'));
  const p3 = r.plan();
  t.same([...p3.touchedOwners], ['ns/a']);
  t.same(p3.addElements.get('endpoints4-tcp'), ['10.96.0.10 . tcp . 80 . 0', '10.244.1.3 . 8080']);
  t.equal(p3.elementChanges, 1);
});

t.test('after adopting the kernel content the first full commit keeps the same applied elements', async (t) => {
  const r = new Ruleset();
  r.adopt(new Map([['endpoints4-tcp', 'set']]), new Map([['endpoints4-tcp', new Map([['10.96.0.10 . tcp . 80 . 0', '10.244.1.2 . 8080'], ['10.96.0.99 . tcp . 80 . 0', '10.244.9.9 . 8080']])]]), []);
  r.set('#base', { elements: [], objects: [['endpoints4-tcp', { kind: 'set', keyword: 'map', spec: '{ type ipv4_addr . inet_proto . inet_service . integer : ipv4_addr . inet_service ; }' }]] });
  r.set('ns/a', { elements: ['endpoints4-tcp', '10.96.0.10 . tcp . 80 . 0', '10.244.1.2 . 8080'], objects: [] });
  const p = r.plan();
  t.same(p.deleteElements.get('endpoints4-tcp'), ['10.96.0.99 . tcp . 80 . 0'], 'the foreign element goes');
  t.equal(p.addElements.get('endpoints4-tcp'), undefined, 'the adopted equal element is not re-added');
  r.commit(p);
  t.same([...r.appliedOf('endpoints4-tcp')], [['10.96.0.10 . tcp . 80 . 0', '10.244.1.2 . 8080']]);
});

t.test('a runner that reads the table over netlink is read that way; when that fails the listing is used, and the print source switch rewrites nothing', async (t) => {
  const { k, h, clock, listings } = await cluster();
  let reads = 0;
  let fail = false;
  const list = k.nft.listJson.bind(k.nft);
  // Like nft-table.ts: the same content, rules printed differently from the listing's JSON.
  k.nft.readTable = async (table: string, skip: (name: string) => boolean) => {
    reads++;
    if (fail) throw new KernelError('nftables dump', 'EIO (input/output error)', { errno: 5 });
    const r = parseTable(await list(`table inet ${table}`), table, skip);
    for (const [c, p] of r.rules) r.rules.set(c, p.map((x) => `netlink:${x}`));
    return r;
  };
  const scripts = k.nft.scripts.length;
  const periodic = async (): Promise<void> => {
    await k.nft.applyForeign(`add table inet other${reads}\n`);
    clock.advance(PERIOD);
    await h.proxier.sync(signal);
  };
  const listed = listings();
  await periodic();
  t.equal(reads, 1, 'read over netlink');
  t.equal(listings(), listed + 1, '(the fake reads through its listing)');
  t.equal(h.proxier.lastSync?.readBack?.drift, 0);
  fail = true;
  await periodic();
  t.equal(reads, 2);
  t.equal(listings(), listed + 2, 'the netlink read failed: listed instead');
  t.equal(h.proxier.lastSync?.readBack?.drift, 0, 'rules printed another way are learnt again, not taken for a change');
  fail = false;
  await periodic();
  t.equal(h.proxier.lastSync?.readBack?.drift, 0, 'and back');
  t.same(k.nft.scripts.slice(scripts).filter((x) => x.includes('podwire')), [], 'nothing of ours was rewritten');
  // Still noticed after a switch: a rule changed in place.
  await periodic();
  const c = k.nft.tables.get('inet podwire')!.chains.get('lb4c-tcp-1')!;
  await k.nft.applyForeign(`delete rule inet podwire lb4c-tcp-1 handle ${c.rules[c.rules.length - 1]!.handle}\nadd rule inet podwire lb4c-tcp-1 drop\n`);
  await periodic();
  t.match(k.nft.last!, /flush chain inet podwire lb4c-tcp-1\n/, 'a rule changed in place is repaired');
});

t.test('a restart keeps the endpoint slots the kernel holds: the first sync after adoption changes no element', async (t) => {
  const { k, h } = await cluster();
  // ns/a: [.2, .3] → [.2, .7, .3]: .3 keeps slot 1 (the new endpoint takes slot 2 — not the sorted order).
  h.apply(slice('ns/a', ['10.244.1.2', '10.244.1.3', '10.244.1.7'], [{ name: 'http', port: 8080 }]));
  await h.proxier.sync(signal);
  h.apply(slice('ns/a', ['10.244.1.3', '10.244.1.7'], [{ name: 'http', port: 8080 }]));
  await h.proxier.sync(signal);
  const slots = (): string[] => (k.nft.elements('inet', 'podwire', 'endpoints4-tcp') ?? []).filter((e) => e.startsWith('10.96.0.10 ')).sort();
  const before = slots();
  t.same(before, ['10.96.0.10 . tcp . 80 . 0 : 10.244.1.7 . 8080', '10.96.0.10 . tcp . 80 . 1 : 10.244.1.3 . 8080'], 'the kernel holds a non-sorted slot order');
  const restarted = proxierHarness(k, new FakeClock(), { state: h.state, section: { syncPeriod: PERIOD } });
  await restarted.proxier.reconcileOnStart(signal);
  await restarted.proxier.sync(signal);
  t.equal(restarted.proxier.lastSync?.elementChanges, 0, 'no element rewritten');
  t.same(slots(), before, 'every endpoint in the slot it had');
  // And the slots carry on from there: one more endpoint goes to a new slot, the others stay.
  restarted.apply(slice('ns/a', ['10.244.1.3', '10.244.1.7', '10.244.1.8'], [{ name: 'http', port: 8080 }]));
  await restarted.proxier.sync(signal);
  t.same(slots(), [...before, '10.96.0.10 . tcp . 80 . 2 : 10.244.1.8 . 8080']);
});
