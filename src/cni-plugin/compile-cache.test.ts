/**
 * The in-process path's start-up: the code caches work when their directory is writable and
 * are silently skipped when not, and an ADD loads none of the daemon's heavy modules, from
 * the bundle (dist/cni, when fresh) and from the separate modules alike.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import t from 'tap';
import { freshBundle } from './bundle';
import { enableCniCompileCache } from './compile-cache';

const ROOT = resolve(__dirname, '..', '..', '..');
const BIN = join(ROOT, 'bin', 'podwire-cni');
const MAIN = join(ROOT, 'dist', 'src', 'cni-plugin', 'main.js');

t.test('an unwritable cache directory is no error', async (t) => {
  t.equal(enableCniCompileCache('/dev/null/not-a-dir'), undefined, 'no cache, no throw');
  const r = spawnSync(BIN, [], { input: '{"cniVersion":"1.0.0"}', env: { PATH: process.env.PATH, CNI_COMMAND: 'VERSION', PODWIRE_CNI_COMPILE_CACHE: '/dev/null/not-a-dir' }, encoding: 'utf8', timeout: 60_000 });
  t.equal(r.status, 0, r.stderr);
  t.same(JSON.parse(r.stdout), { cniVersion: '1.0.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
});

t.test('a writable cache directory gets the code cache: the bundle\'s per command, or Node\'s per module', async (t) => {
  t.ok(freshBundle(), 'the build made a fresh bundle (npm run build:ts)');
  const dir = mkdtempSync(join(tmpdir(), 'pwc2-cc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const version = (env: Record<string, string>): void => {
    const r = spawnSync(BIN, [], { input: '{}', env: { PATH: process.env.PATH, CNI_COMMAND: 'VERSION', PODWIRE_CNI_COMPILE_CACHE: dir, ...env }, encoding: 'utf8', timeout: 60_000 });
    t.equal(r.status, 0, r.stderr);
  };
  version({});
  t.same(readdirSync(dir).filter((f) => f.endsWith('.v8cache')).map((f) => f.replace(/^podwire-cni-.*-(\w+)\.v8cache$/, '$1')), ['VERSION'], 'the bundle wrote its cache for VERSION');
  version({ PODWIRE_CNI_BUNDLE: '0' });
  const versions = readdirSync(dir).filter((f) => !f.endsWith('.v8cache'));
  t.equal(versions.length, 1, `one per-Node-version folder: ${versions.join(', ')}`);
  t.ok(readdirSync(join(dir, versions[0]!)).length > 3, 'cache entries written');
});

for (const [how, env] of [['the bundle', {}], ['the separate modules', { PODWIRE_CNI_BUNDLE: '0' }]] as const) {
  t.test(`an in-process ADD from ${how} loads no pino, prom-client, @kubernetes/client-node, yaml, conntrack, nftables, IPVS or streams`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'pwc2-mods-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const probe = join(dir, 'probe.js');
    // On exit: every JS file and every built-in module the process loaded.
    writeFileSync(probe, "process.on('exit', () => require('fs').writeSync(2, 'MODULES ' + JSON.stringify([...Object.keys(require.cache), ...process.moduleLoadList]) + '\\n'));\n");
    const conf = JSON.stringify({ cniVersion: '1.0.0', name: 'n', type: 'podwire', ipam: { type: 'host-local', ranges: [[{ subnet: '10.244.1.0/24' }]], dataDir: dir } });
    // A netns that does not exist: the ADD gets past config parsing and the netns check (code 3).
    // Through env -u: tap's process-on-spawn hook puts its own --import into NODE_OPTIONS.
    const r = spawnSync('/usr/bin/env', ['-u', 'NODE_OPTIONS', process.execPath, '-r', probe, MAIN], {
      input: conf,
      env: { PATH: process.env.PATH, PODWIRE_CNI_MAIN: '1', PODWIRE_CNI_COMPILE_CACHE: '/dev/null/x', CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: join(dir, 'missing'), CNI_IFNAME: 'eth0', CNI_PATH: '/x', ...env },
      encoding: 'utf8',
      timeout: 60_000,
    });
    t.equal((JSON.parse(r.stdout) as { code: number }).code, 3, r.stdout);
    const line = r.stderr.split('\n').find((l) => l.startsWith('MODULES '));
    const mods = JSON.parse(line!.slice(8)) as string[];
    const bad = ['/pino/', '/prom-client/', '/@kubernetes/', '/yaml/', 'NativeModule crypto', 'NativeModule net', 'NativeModule child_process', 'NativeModule v8', 'NativeModule stream', 'netlink/dist/rt/ifla'];
    bad.push('kernel/conntrack.js', 'kernel/nft.js', 'kernel/ipvs', 'kernel/index.js', 'podwire_nftables.node');
    for (const b of bad) t.notOk(mods.some((m) => m.includes(b)), `not loaded: ${b}`);
    if (how === 'the bundle') t.notOk(mods.some((m) => m.includes('cni-plugin/plugin.js')), 'the plugin ran from the bundle, not from its module');
    else t.ok(mods.some((m) => m.includes('cni-plugin/plugin.js')), 'the plugin itself was loaded');
    t.ok(mods.some((m) => m.includes('podwire_native.node')), 'the addon was loaded (the netns check uses it)');
  });
}
