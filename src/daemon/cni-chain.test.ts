import { chmodSync, copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { CniChainResolver, highestCommonVersion, probeSupportedVersions } from './cni-chain';

function binDir(t: { teardown(fn: () => void): void }, plugins: string[]): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'pwd-chain-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const p of plugins) {
    writeFileSync(path.join(dir, p), '#!/bin/sh\n');
    chmodSync(path.join(dir, p), 0o755);
  }
  return dir;
}

t.test('highestCommonVersion', async (t) => {
  t.equal(highestCommonVersion(['0.4.0', '1.0.0', '1.1.0'], []), '1.1.0');
  t.equal(highestCommonVersion(['0.4.0', '1.0.0', '1.1.0'], [['0.3.1', '0.4.0', '1.0.0']]), '1.0.0');
  t.equal(highestCommonVersion(['1.0.0', '1.1.0'], [['0.2.0']]), undefined);
});

t.test('no portmap installed: left out, list at our latest version', async (t) => {
  const probes: string[] = [];
  const chain = await new CniChainResolver(async (b) => (probes.push(b), ['1.1.0'])).resolve(binDir(t, []));
  t.same(chain.plugins, []);
  t.equal(chain.cniVersion, '1.1.0');
  t.match(chain.omitted, [{ plugin: 'portmap', reason: /is not installed/ }]);
  t.same(probes, [], 'nothing to probe');
});

t.test('portmap that stops at 1.0.0 pulls the list down to 1.0.0', async (t) => {
  const chain = await new CniChainResolver(async () => ['0.3.1', '0.4.0', '1.0.0']).resolve(binDir(t, ['portmap']));
  t.same(chain.plugins, ['portmap']);
  t.equal(chain.cniVersion, '1.0.0');
  t.same(chain.omitted, []);
});

t.test('portmap that supports 1.1.0 keeps the list at 1.1.0; answers are cached by mtime', async (t) => {
  let calls = 0;
  const resolver = new CniChainResolver(async () => (calls++, ['1.0.0', '1.1.0']));
  const dir = binDir(t, ['portmap']);
  t.equal((await resolver.resolve(dir)).cniVersion, '1.1.0');
  await resolver.resolve(dir);
  t.equal(calls, 1, 'probed once');
});

t.test('a portmap that does not answer VERSION is left out with the reason', async (t) => {
  const chain = await new CniChainResolver(async () => {
    throw new Error('portmap VERSION failed: exit 1');
  }).resolve(binDir(t, ['portmap']));
  t.same(chain.plugins, []);
  t.match(chain.omitted, [{ plugin: 'portmap', reason: /VERSION failed/ }]);
});

t.test('the real reference portmap is probed over the CNI protocol', { skip: existsSync('/usr/lib/cni/portmap') ? false : 'no /usr/lib/cni/portmap' }, async (t) => {
  const versions = await probeSupportedVersions('/usr/lib/cni/portmap');
  t.ok(versions.includes('1.0.0'), `supportedVersions: ${versions.join(', ')}`);
  const dir = binDir(t, []);
  copyFileSync('/usr/lib/cni/portmap', path.join(dir, 'portmap'));
  chmodSync(path.join(dir, 'portmap'), 0o755);
  const chain = await new CniChainResolver().resolve(dir);
  t.same(chain.plugins, ['portmap']);
  t.equal(chain.cniVersion, highestCommonVersion(['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'], [versions]), 'the highest version both support');
});
