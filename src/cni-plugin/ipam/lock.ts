/**
 * The IPAM lock: an exclusive flock(2) on `<dataDir>/<network>/lock`, the same file and
 * lock type the reference host-local takes, so both plugins exclude each other.
 *
 * Inside one process, waiters first queue on an in-memory mutex per path, so a busy
 * daemon never parks several thread-pool threads in a blocking flock.
 */
// node:child_process is required where used: it loads net, dgram and the stream machinery,
// milliseconds of every in-process CNI plugin start that never spawns anything.
import { openSync, closeSync } from 'node:fs';
import { TryAgainError } from '../../common/errors';
import { flock as nativeFlock, loadAddon } from '../../kernel/native';

export type Release = () => void;

export interface FileLocker {
  lock(path: string): Promise<Release>;
}

/** flock(2) on an fd: resolves true when held (see src/kernel/native.ts). */
export type NativeFlock = (fd: number, options: { exclusive: boolean; wait: boolean; timeoutMs?: number }) => Promise<boolean>;

/** How long ADD/DEL/GC wait for a busy store before answering "try again later" (code 11). */
export const LOCK_TIMEOUT_MS = 60_000;

class Mutex {
  private tail: Promise<void> = Promise.resolve();
  async acquire(): Promise<Release> {
    let release!: Release;
    const next = new Promise<void>((resolve) => (release = resolve));
    const prev = this.tail;
    this.tail = prev.then(() => next);
    await prev;
    return release;
  }
}

export class FlockLocker implements FileLocker {
  private readonly mutexes = new Map<string, Mutex>();
  constructor(private readonly flock: NativeFlock | undefined = loadNativeFlock()) {}

  async lock(path: string): Promise<Release> {
    let m = this.mutexes.get(path);
    if (!m) this.mutexes.set(path, (m = new Mutex()));
    const releaseMutex = await m.acquire();
    try {
      const releaseFile = this.flock ? await this.nativeLock(path, this.flock) : await spawnFlock(path);
      let done = false;
      return () => {
        if (done) return;
        done = true;
        releaseFile();
        releaseMutex();
      };
    } catch (err) {
      releaseMutex();
      throw err;
    }
  }

  private async nativeLock(path: string, flock: NativeFlock): Promise<Release> {
    const fd = openSync(path, 'a'); // O_CREAT|O_WRONLY|O_APPEND: never truncates host-local's file
    let held = false;
    try {
      // Uncontended case first: no thread-pool round trip.
      held = (await flock(fd, { exclusive: true, wait: false })) || (await flock(fd, { exclusive: true, wait: true, timeoutMs: LOCK_TIMEOUT_MS }));
    } catch (err) {
      closeSync(fd);
      throw new TryAgainError(`cannot lock ${path}`, { cause: err });
    }
    if (!held) {
      closeSync(fd);
      throw new TryAgainError(`IPAM store ${path} is locked by another process for more than ${LOCK_TIMEOUT_MS} ms`);
    }
    // Closing the descriptor drops the flock.
    return () => closeSync(fd);
  }
}

/** The native addon's flock when the addon is built; undefined otherwise (then flock(1) is used). */
function loadNativeFlock(): NativeFlock | undefined {
  try {
    loadAddon();
    return nativeFlock;
  } catch {
    return undefined;
  }
}

/**
 * Fallback when the native addon is not built: a `flock(1)` child holds the
 * lock until we close its stdin. Costs one process spawn per lock.
 */
function spawnFlock(path: string): Promise<Release> {
  return new Promise((resolve, reject) => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const child = (require('node:child_process') as typeof import('node:child_process')).spawn('flock', ['-x', path, '-c', 'echo L; read _'], { stdio: ['pipe', 'pipe', 'inherit'] });
    let settled = false;
    child.once('error', (err) => {
      if (!settled) {
        settled = true;
        reject(new TryAgainError(`cannot lock ${path}`, { cause: err }));
      }
    });
    child.once('exit', (code) => {
      if (!settled) {
        settled = true;
        reject(new TryAgainError(`cannot lock ${path}: flock exited with ${code}`));
      }
    });
    child.stdout.once('data', () => {
      settled = true;
      resolve(() => {
        child.stdin.end();
      });
    });
  });
}
