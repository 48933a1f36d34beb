/**
 * sysctls of one netns. /proc/sys/net resolves against the netns of the thread that
 * opens it, so reads/writes go through the native addon's netns thread; if the addon
 * is not built (PW_NATIVE_MISSING) they fall back to
 * `nsenter --net=PATH cat|tee /proc/sys/...` (kernel/netns.ts).
 */
import { InvalidInputError, PodwireError } from '../common/errors';
import { readSysctl, writeSysctl } from './native';
import { runInNetns } from './netns';
import type { NetnsRef, SysctlKernel } from './types';

const SEGMENT = /^[A-Za-z0-9_.-]+$/;

/**
 * `net.ipv4.ip_forward` -> `net/ipv4/ip_forward`. Keys whose segments contain dots
 * (an interface `pw.vxlan`) are written with slashes: `net/ipv4/conf/pw.vxlan/forwarding`.
 * Nothing can escape /proc/sys: no '..', no empty segment, no absolute path.
 */
export function sysctlPath(key: string): string {
  if (typeof key !== 'string' || key.length === 0 || key.length > 256) {
    throw new InvalidInputError('sysctl.key', key, 'expected a key like net.ipv4.ip_forward');
  }
  const segments = key.includes('/') ? key.split('/') : key.split('.');
  for (const s of segments) {
    if (!SEGMENT.test(s) || s === '.' || s === '..' || (!key.includes('/') && s.includes('.'))) {
      throw new InvalidInputError('sysctl.key', key, 'segments are [A-Za-z0-9_.-], never empty, "." or ".."');
    }
  }
  if (segments.some((s) => s.includes('..'))) throw new InvalidInputError('sysctl.key', key, 'must not contain ".."');
  return `/proc/sys/${segments.join('/')}`;
}

function nativeMissing(err: unknown): boolean {
  return err instanceof PodwireError && err.code === 'PW_NATIVE_MISSING';
}

export class NetnsSysctl implements SysctlKernel {
  constructor(readonly netns: NetnsRef | undefined) {}

  async read(key: string): Promise<string> {
    const path = sysctlPath(key);
    try {
      return (await readSysctl(this.netns, key)).trim();
    } catch (err) {
      if (!nativeMissing(err)) throw err;
    }
    const { stdout } = await runInNetns(this.netns, ['cat', path]);
    return stdout.trim();
  }

  async write(key: string, value: string): Promise<void> {
    const path = sysctlPath(key);
    if (typeof value !== 'string' || /[\n\0]/.test(value.trimEnd())) {
      throw new InvalidInputError(`sysctl.${key}`, value, 'value must be a single-line string');
    }
    try {
      await writeSysctl(this.netns, key, value);
      return;
    } catch (err) {
      if (!nativeMissing(err)) throw err;
    }
    await runInNetns(this.netns, ['tee', path], { input: value });
  }
}
