// flock(2) through the addon excludes other flock users of the same file (flock(1)
// here; the reference host-local IPAM plugin uses the same call).
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t, { type Test } from 'tap';
import { flock, unlock } from '../../src/kernel/native';

function tryFlockCli(file: string, shared = false): number | null {
  return spawnSync('flock', [shared ? '-sn' : '-n', file, 'true']).status;
}

function tempLockFile(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwn-flock-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'lock');
  fs.writeFileSync(file, '');
  return file;
}

t.test('an exclusive lock we hold makes `flock -n` fail; unlocking frees it', async (t) => {
  const file = tempLockFile(t);
  const fd = fs.openSync(file, 'r');
  t.teardown(() => fs.closeSync(fd));
  t.equal(tryFlockCli(file), 0, 'free before');
  t.equal(await flock(fd, { exclusive: true, wait: false }), true, 'acquired');
  t.equal(tryFlockCli(file), 1, 'flock -n fails while we hold it');
  t.equal(tryFlockCli(file, true), 1, 'a shared flock -n fails too');
  unlock(fd);
  t.equal(tryFlockCli(file), 0, 'free after unlock');
});

t.test('a shared lock admits other shared lockers but not exclusive ones', async (t) => {
  const file = tempLockFile(t);
  const fd = fs.openSync(file, 'r');
  t.teardown(() => fs.closeSync(fd));
  t.equal(await flock(fd, { exclusive: false, wait: true }), true);
  t.equal(tryFlockCli(file, true), 0);
  t.equal(tryFlockCli(file), 1);
  unlock(fd);
});

t.test('waiting for a lock held by another process, off the event loop', async (t) => {
  const file = tempLockFile(t);
  const fd = fs.openSync(file, 'r');
  t.teardown(() => fs.closeSync(fd));
  // The holder takes the lock, says so, and keeps it until its stdin closes.
  const holder = spawn('flock', [file, 'sh', '-c', 'echo locked; read _'], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => holder.kill());
  await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
  t.equal(await flock(fd, { exclusive: true, wait: false }), false, 'busy: a non-waiting attempt says false');
  t.equal(await flock(fd, { exclusive: true, wait: true, timeoutMs: 20 }), false, 'busy: a bounded wait gives up with false');
  let settled = false;
  const waiting = flock(fd, { exclusive: true, wait: true }).then((v) => {
    settled = true;
    return v;
  });
  // The event loop keeps running while we wait: a timer fires before the lock is ours.
  await new Promise((r) => setImmediate(r));
  t.equal(settled, false, 'still waiting while the other process holds it');
  holder.stdin.end();
  t.equal(await waiting, true, 'acquired once the holder exits');
  t.equal(tryFlockCli(file), 1, 'now we exclude flock(1)');
  unlock(fd);
});
