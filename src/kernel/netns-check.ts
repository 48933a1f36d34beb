/**
 * Is a path a *network* namespace handle? (CNI_NETNS, before its fd goes to the kernel:
 * a regular file, a directory or /dev/null there made RTM_NEWLINK fail with EINVAL, and a
 * uts namespace is no better.)
 *
 * With the native addon: open + ioctl(NS_GET_NSTYPE) + close, synchronously (microseconds).
 * Without it (or an addon built before nsType existed): stat against the nsfs device of
 * our own /proc/self/ns/net, plus the `type:[inode]` link text when the path is a
 * /proc/<pid>/ns/<type> link. That fallback cannot tell a bind-mounted uts namespace from a
 * network one; the ioctl can.
 */
import { readlinkSync, statSync, type Stats } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { loadAddon } from './native';
import { describeErrno } from './errno';

export type NetnsCheck = { ok: true } | { ok: false; missing: boolean; reason: string };

const CLONE_NEWNET = 0x40000000;
const NS_TYPES: Record<number, string> = {
  0x00020000: 'a mount namespace',
  0x02000000: 'a cgroup namespace',
  0x04000000: 'a uts namespace',
  0x08000000: 'an ipc namespace',
  0x10000000: 'a user namespace',
  0x20000000: 'a pid namespace',
  0x00000080: 'a time namespace',
};

type NsTypeFn = (path: string) => number;
let nsTypeFn: NsTypeFn | null | undefined;

function nativeNsType(): NsTypeFn | null {
  if (nsTypeFn !== undefined) return nsTypeFn;
  try {
    const f = (loadAddon() as unknown as { nsType?: NsTypeFn }).nsType;
    nsTypeFn = typeof f === 'function' ? f : null;
  } catch {
    nsTypeFn = null;
  }
  return nsTypeFn;
}

/** What a non-namespace path is, for the message ("a regular file", "a directory", ...). */
function describeFile(st: Stats | undefined): string {
  if (!st) return 'not a namespace';
  if (st.isFile()) return 'a regular file, not a network namespace';
  if (st.isDirectory()) return 'a directory, not a network namespace';
  if (st.isCharacterDevice()) return 'a character device, not a network namespace';
  if (st.isBlockDevice()) return 'a block device, not a network namespace';
  if (st.isFIFO()) return 'a FIFO, not a network namespace';
  if (st.isSocket()) return 'a socket, not a network namespace';
  return 'not a network namespace';
}

function statOrUndefined(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

export function checkNetnsPath(path: string): NetnsCheck {
  const native = nativeNsType();
  if (native) {
    const t = native(path);
    if (t === CLONE_NEWNET) return { ok: true };
    if (t < 0) {
      if (-t === osConstants.errno.ENOENT || -t === osConstants.errno.ENOTDIR) return { ok: false, missing: true, reason: 'does not exist' };
      return { ok: false, missing: false, reason: `cannot be opened: ${describeErrno(-t)}` };
    }
    if (t > 0) return { ok: false, missing: false, reason: `${NS_TYPES[t] ?? `a namespace of type 0x${t.toString(16)}`}, not a network namespace` };
    return { ok: false, missing: false, reason: describeFile(statOrUndefined(path)) };
  }
  return checkByStat(path);
}

let nsfsDev: number | undefined;
function checkByStat(path: string): NetnsCheck {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
    if (code === 'ENOENT' || code === 'ENOTDIR') return { ok: false, missing: true, reason: 'does not exist' };
    const n = (err as NodeJS.ErrnoException).errno;
    return { ok: false, missing: false, reason: `cannot be opened: ${n === undefined ? code : describeErrno(-Math.abs(n))}` };
  }
  nsfsDev ??= statSync('/proc/self/ns/net').dev;
  if (st.dev !== nsfsDev) return { ok: false, missing: false, reason: describeFile(st) };
  try {
    const m = /^(\w+):\[\d+\]$/.exec(readlinkSync(path));
    if (m && m[1] !== 'net') return { ok: false, missing: false, reason: `a ${m[1]} namespace, not a network namespace` };
  } catch {
    /* not a symlink (a bind mount such as /run/netns/<name>): an nsfs file, accepted */
  }
  return { ok: true };
}

/** Test hook: force the stat fallback (true) or the native check again (false). */
export function useStatFallbackForTests(on: boolean): void {
  nsTypeFn = on ? null : undefined;
}
