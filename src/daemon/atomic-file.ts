/**
 * Atomic file installs. flannel's DaemonSet installs its CNI binary and conflist with
 * plain copies (`cp -f` in init containers); we do the same two installs, atomically:
 * write a temp file in the SAME directory, fsync it, then rename it over the target. A reader (the container runtime scanning /etc/cni/net.d, kubelet
 * executing /opt/cni/bin/podwire) sees the old file or the new one, never a partial
 * one; rename also replaces a binary that is being executed (no ETXTBSY).
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { errnoCode } from '../common/errors';

export interface InstallResult {
  path: string;
  /** False when the target already had exactly this content (nothing written). */
  changed: boolean;
}

async function readIfExists(file: string): Promise<Buffer | undefined> {
  try {
    return await readFile(file);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

/** Write `content` to `target` atomically, unless it already has that content and mode. */
export async function writeFileAtomic(target: string, content: Buffer | string, mode = 0o644): Promise<InstallResult> {
  const data = typeof content === 'string' ? Buffer.from(content) : content;
  const existing = await readIfExists(target);
  if (existing && existing.equals(data)) {
    const st = await stat(target);
    if ((st.mode & 0o7777) === mode) return { path: target, changed: false };
    await chmod(target, mode);
    return { path: target, changed: true };
  }
  const dir = path.dirname(target);
  await mkdir(dir, { recursive: true, mode: 0o755 });
  // Dot-prefixed: the CNI runtime ignores files that do not end in .conf/.conflist/.json.
  const tmp = path.join(dir, `.${path.basename(target)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  const fh = await open(tmp, 'wx', mode);
  try {
    await fh.writeFile(data);
    await fh.chmod(mode);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(dir);
  return { path: target, changed: true };
}

/** Copy `source` to `target` atomically (same-directory temp + rename), skipping an identical target. */
export async function copyFileAtomic(source: string, target: string, mode = 0o755): Promise<InstallResult> {
  return writeFileAtomic(target, await readFile(source), mode);
}

/** Remove a file; a file that is already gone is fine. */
export async function removeFile(target: string): Promise<boolean> {
  try {
    await rm(target);
    return true;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw err;
  }
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export { readIfExists };

async function fsyncDir(dir: string): Promise<void> {
  try {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    // Some filesystems refuse fsync on a directory; the rename is still atomic.
  }
}
