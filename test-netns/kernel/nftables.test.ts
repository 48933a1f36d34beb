// nftables through in-process libnftables (and the `nft -f -` fallback) inside a netns.
import { labTest, execOk, exec } from '../harness';
import { CommandError } from '../../src/common/errors';
import { LibNftables, NetnsNft, netnsRef, openKernel, openNftRunner } from '../../src/kernel';
import type { NftRunner } from '../../src/kernel';
import { FakeNft, KUBE_PROXY_STYLE_RULESET } from '../../src/kernel/testing';
type Test = Parameters<Parameters<typeof labTest>[2]>[0];

const TABLE = [
  'table ip pwkn {',
  '  map svc {',
  '    type ipv4_addr . inet_proto . inet_service : verdict',
  '  }',
  '  chain svc-a {',
  '    meta l4proto udp dnat to 10.244.1.5:5353',
  '  }',
  '  chain svc-b {',
  '    meta l4proto tcp dnat to 10.244.1.6:8080',
  '  }',
  '  chain out {',
  '    type nat hook output priority -100; policy accept;',
  '    ip daddr . meta l4proto . th dport vmap @svc',
  '  }',
  '}',
  'add element ip pwkn svc { 10.96.0.10 . udp . 53 : goto svc-a }',
  '',
].join('\n');

async function elements(r: NftRunner): Promise<string> {
  const text = await r.list('map ip pwkn svc');
  return /elements = \{([^}]*)\}/s.exec(text)?.[1]?.replace(/\s+/g, ' ').trim() ?? '';
}

async function exercise(t: Test, r: NftRunner, ns: string): Promise<void> {
  const g0 = await r.generation();
  await r.apply(TABLE);
  const g1 = await r.generation();
  t.equal(g1.generation, (g0.generation + 1) >>> 0, 'one committed transaction: the generation grew by one');
  t.equal(g1.ownCommits, g0.ownCommits + 1, 'and the runner counted it as its own');
  await r.list('table ip pwkn');
  t.same(await r.generation(), g1, 'a listing commits nothing');
  await execOk(ns, ['nft', 'add', 'table', 'inet', 'pwkn-other']);
  const g2 = await r.generation();
  t.equal(g2.generation, (g1.generation + 1) >>> 0, "another program's transaction grows the generation");
  t.equal(g2.ownCommits, g1.ownCommits, 'but not the own count');
  await execOk(ns, ['nft', 'delete', 'table', 'inet', 'pwkn-other']);
  // Rule prints from the kernel's own bytes: the content counts, the handle does not.
  const p0 = await r.rulePrints('ip', 'pwkn');
  t.same([...p0.keys()].sort(), ['out', 'svc-a', 'svc-b'], 'one entry per chain with rules');
  t.equal(p0.get('svc-a')!.length, 1);
  const redo = async (dnat: string): Promise<void> => {
    await execOk(ns, ['nft', 'flush', 'chain', 'ip', 'pwkn', 'svc-a']);
    await execOk(ns, ['nft', 'add', 'rule', 'ip', 'pwkn', 'svc-a', 'meta', 'l4proto', 'udp', 'dnat', 'to', dnat]);
  };
  await redo('10.244.1.7:5353');
  t.not((await r.rulePrints('ip', 'pwkn')).get('svc-a')![0], p0.get('svc-a')![0], 'a rule changed in place prints differently');
  await redo('10.244.1.5:5353');
  t.same(await r.rulePrints('ip', 'pwkn'), p0, 'the same rule again (a new handle) prints the same');
  await execOk(ns, ['nft', 'add', 'rule', 'ip', 'pwkn', 'svc-b', 'counter', 'packets', '7', 'bytes', '700']);
  t.match((await r.rulePrints('ip', 'pwkn')).get('svc-b')![1]!, /^counter\|/, "a counter's packet and byte counts are not part of its print");
  await execOk(ns, ['nft', 'delete', 'table', 'ip', 'pwkn']);
  t.same(await r.rulePrints('ip', 'pwkn'), new Map(), 'no table: no rules');
  await r.apply(TABLE);
  t.equal(await elements(r), '10.96.0.10 . udp . 53 : goto svc-a');
  await r.apply('add element ip pwkn svc { 10.96.0.11 . tcp . 80 : goto svc-b }\ndelete element ip pwkn svc { 10.96.0.10 . udp . 53 }\n');
  t.equal(await elements(r), '10.96.0.11 . tcp . 80 : goto svc-b', 'elements updated in one transaction');
  // A failing script leaves the previous state and names the line.
  const gb = await r.generation();
  const bad = ['add element ip pwkn svc { 10.96.0.12 . tcp . 443 : goto svc-a }', 'add chain ip pwkn svc-c', 'add rule ip pwkn svc-c jump nosuchchain', ''].join('\n');
  const err = await r.apply(bad).catch((e: unknown) => e);
  t.type(err, CommandError);
  t.match((err as CommandError).stderr, /\/dev\/stdin:3:/, 'location in nft -f form');
  t.match((err as CommandError).stderr, /script line 3: add rule ip pwkn svc-c jump nosuchchain/, 'names the line');
  t.equal(await elements(r), '10.96.0.11 . tcp . 80 : goto svc-b', 'failed transaction changed nothing');
  t.same(await r.generation(), gb, 'and committed nothing: neither counter moved');
  t.notMatch(await r.list('table ip pwkn'), /svc-c/);
  const syntax = await r.apply('add element ip pwkn svc { 10.96.0.13 . tcp . 1 : goto svc-a }\nadd rule ip pwkn out bogus words\n').catch((e: unknown) => e);
  t.match((syntax as CommandError).stderr, /script line 2: add rule ip pwkn out bogus words/);
  const json = (await r.listJson('table ip pwkn')) as { nftables: Record<string, { name?: string }>[] };
  t.ok(json.nftables.some((o) => o.map?.name === 'svc'), 'JSON lists the map');
  t.ok(json.nftables.some((o) => o.chain?.name === 'out'));
  t.notOk(json.nftables.some((o) => o.table?.name === 'other'), 'only our table is listed');
  await t.rejects(r.list('ruleset'), { name: 'InvalidInputError' }, 'no ruleset listing');
  await t.rejects(r.listJson('sets'), { name: 'InvalidInputError' }, 'no listing of every set');
  t.match(await r.list('tables'), /^table ip pwkn$/m, 'table names are listable');
  const headers = await r.list('chains');
  t.match(headers, /chain out \{\n\s*type nat hook output priority (-100|dstnat); policy accept;\n\s*\}/, 'chain headers are listable');
  t.notMatch(headers, /vmap|dnat to|elements/, 'without rules or set elements');
  await t.rejects(r.apply('flush ruleset\n'), { name: 'InvalidInputError', message: /flush ruleset/ });
  await t.rejects(r.apply('add table ip x\ninclude "/etc/passwd"\n'), { name: 'InvalidInputError', message: /line 2/ });
  const nftSays = await execOk(ns, ['nft', 'list', 'map', 'ip', 'pwkn', 'svc']);
  t.match(nftSays, /10\.96\.0\.11 \. tcp \. 80 : goto svc-b/, 'nft(8) sees the same state');
  await r.apply('delete table ip pwkn\n');
}

labTest('libnftables: verdict map, element updates, atomic failure naming the line, own table only', { prefix: 'pwkn-nft', requires: ['nftables'] }, async (t, lab) => {
  const ns = await lab.addNetns('a');
  // Someone else's table with a set: never listed, never touched.
  await execOk(ns, ['nft', '-f', '-'], { input: 'table inet other {\n  set s { type ipv4_addr; elements = { 1.2.3.4 } }\n  chain c { type filter hook input priority 0; }\n}\n' });
  const before = await execOk(ns, ['nft', 'list', 'table', 'inet', 'other']);
  const k = await openKernel(netnsRef(ns));
  t.teardown(() => k.close());
  t.equal(k.nft.backend, 'libnftables', 'auto picks libnftables when the addon loads');
  t.type(k.nft, LibNftables);
  await exercise(t, k.nft, ns);
  t.equal(await execOk(ns, ['nft', 'list', 'table', 'inet', 'other']), before, 'the other table is untouched');
  const root = await exec(null, ['nft', 'list', 'tables']);
  t.notMatch(root.stdout, /pwkn/, 'root netns untouched');
});

labTest('nft -f fallback behaves the same; informal speed comparison', { prefix: 'pwkn-nft', requires: ['nftables'] }, async (t, lab) => {
  const ns = await lab.addNetns('a');
  const fallback = openNftRunner(netnsRef(ns), 'nft');
  t.type(fallback, NetnsNft);
  t.equal(fallback.backend, 'nft');
  await exercise(t, fallback, ns);
  // Informal: 30 one-element transactions each way (no timed assertion).
  const lib = new LibNftables(netnsRef(ns));
  await lib.apply(TABLE);
  const time = async (r: NftRunner, base: number): Promise<number> => {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 30; i++) await r.apply(`add element ip pwkn svc { 10.96.${base}.${i} . tcp . 80 : goto svc-b }\n`);
    return Number(process.hrtime.bigint() - t0) / 1e6 / 30;
  };
  const libMs = await time(lib, 1);
  const nftMs = await time(fallback, 2);
  t.comment(`one-element transaction: libnftables ${libMs.toFixed(2)} ms, nft -f - ${nftMs.toFixed(2)} ms`);
  t.match(await lib.list('map ip pwkn svc'), /10\.96\.2\.29 \. tcp \. 80/);
  // Concurrent applies (queued, one libnftables call at a time) all land.
  await Promise.all(Array.from({ length: 16 }, (_, i) => lib.apply(`add element ip pwkn svc { 10.96.3.${i} . udp . 53 : goto svc-a }\n`)));
  const text = await lib.list('map ip pwkn svc');
  t.equal((text.match(/10\.96\.3\.\d+ \. udp \. 53/g) ?? []).length, 16, 'all 16 concurrent applies applied');
});

labTest('the fake nft tracer agrees with the kernel on a kube-proxy-style ruleset', { prefix: 'pwkn-nft', requires: ['nftables', 'conntrack'] }, async (t, lab) => {
  const ns = await lab.addNetns('a');
  for (const ip of ['10.180.0.1/32', '10.180.0.2/32', '10.180.0.9/32']) await execOk(ns, ['ip', 'addr', 'add', ip, 'dev', 'lo']);
  await execOk(ns, ['ip', 'route', 'add', 'local', '172.30.0.0/16', 'dev', 'lo']);
  const k = await openKernel(netnsRef(ns));
  t.teardown(() => k.close());
  await k.nft.apply(KUBE_PROXY_STYLE_RULESET); // real nft accepts what the fake models
  const fake = new FakeNft();
  await fake.apply(KUBE_PROXY_STYLE_RULESET);
  const traced = fake.trace({ family: 4, saddr: '10.180.0.9', daddr: '172.30.0.41', protocol: 'tcp', dport: 80, hook: 'output' });
  const possible = (traced.alternatives ?? [traced]).map((a) => a.dnat?.addr).sort();
  t.same(possible, ['10.180.0.1', '10.180.0.2']);
  // 12 connections through the kernel's numgen: every endpoint it picks is one the tracer named.
  const script = `
const net = require('node:net');
const servers = ['10.180.0.1', '10.180.0.2'].map((ip) => net.createServer((c) => c.end('x')).listen(80, ip));
const once = () => new Promise((r, j) => { const c = net.connect({ host: '172.30.0.41', port: 80, localAddress: '10.180.0.9' }); c.on('data', () => {}); c.on('error', j); c.on('close', r); });
setTimeout(async () => { for (let i = 0; i < 12; i++) await once(); servers.forEach((s) => s.close()); }, 100);
`;
  await execOk(ns, [process.execPath, '-e', script]);
  const seen = [...new Set((await k.conntrack.list({ dst: '172.30.0.41', protocol: 'tcp' })).map((e) => e.replySrc))].sort();
  t.ok(seen.length >= 1 && seen.every((ip) => possible.includes(ip)), `kernel picked ${seen.join(', ')}`);
});
