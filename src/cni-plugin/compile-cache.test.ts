/**
 * The in-process path's start-up: the compile cache works when its directory is writable and
 * is silently skipped when not, and an ADD loads none of the daemon's heavy modules.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import t from 'tap';
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

t.test('a writable cache directory gets the code cache', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pwc2-cc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const r = spawnSync(BIN, [], { input: '{}', env: { PATH: process.env.PATH, CNI_COMMAND: 'VERSION', PODWIRE_CNI_COMPILE_CACHE: dir }, encoding: 'utf8', timeout: 60_000 });
  t.equal(r.status, 0, r.stderr);
  const versions = readdirSync(dir);
  t.equal(versions.length, 1, `one per-Node-version folder: ${versions.join(', ')}`);
  t.ok(readdirSync(join(dir, versions[0]!)).length > 3, 'cache entries written');
});

t.test('an in-process ADD loads no pino, prom-client, @kubernetes/client-node, yaml, node:crypto or node:net', async (t) => {
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
    env: { PATH: process.env.PATH, PODWIRE_CNI_MAIN: '1', PODWIRE_CNI_COMPILE_CACHE: '/dev/null/x', CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: join(dir, 'missing'), CNI_IFNAME: 'eth0', CNI_PATH: '/x' },
    encoding: 'utf8',
    timeout: 60_000,
  });
  t.equal((JSON.parse(r.stdout) as { code: number }).code, 3, r.stdout);
  const line = r.stderr.split('\n').find((l) => l.startsWith('MODULES '));
  const mods = JSON.parse(line!.slice(8)) as string[];
  for (const bad of ['/pino/', '/prom-client/', '/@kubernetes/', '/yaml/', 'NativeModule crypto', 'NativeModule net', 'NativeModule child_process', 'netlink/dist/rt/ifla']) {
    t.notOk(mods.some((m) => m.includes(bad)), `not loaded: ${bad}`);
  }
  t.ok(mods.some((m) => m.includes('cni-plugin/plugin.js')), 'the plugin itself was loaded');
});
