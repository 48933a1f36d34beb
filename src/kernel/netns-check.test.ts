import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { checkNetnsPath, useStatFallbackForTests } from './netns-check';

for (const mode of ['native', 'stat fallback'] as const) {
  t.test(`checkNetnsPath (${mode})`, async (t) => {
    useStatFallbackForTests(mode === 'stat fallback');
    t.teardown(() => useStatFallbackForTests(false));
    const dir = mkdtempSync(join(tmpdir(), 'pwc2-nscheck-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'file');
    writeFileSync(file, 'x');
    t.same(checkNetnsPath('/proc/self/ns/net'), { ok: true }, 'our own netns');
    t.same(checkNetnsPath(join(dir, 'missing')), { ok: false, missing: true, reason: 'does not exist' });
    t.same(checkNetnsPath(join(file, 'below-a-file')), { ok: false, missing: true, reason: 'does not exist' }, 'ENOTDIR is missing too');
    t.same(checkNetnsPath(file), { ok: false, missing: false, reason: 'a regular file, not a network namespace' });
    t.same(checkNetnsPath(dir), { ok: false, missing: false, reason: 'a directory, not a network namespace' });
    t.same(checkNetnsPath('/dev/null'), { ok: false, missing: false, reason: 'a character device, not a network namespace' });
    t.same(checkNetnsPath('/proc/self/ns/uts'), { ok: false, missing: false, reason: 'a uts namespace, not a network namespace' });
  });
}
