import { getSystemErrorMap } from 'node:util';
import { constants } from 'node:os';

const byNumber = getSystemErrorMap();

/** Positive errno for a value the kernel or a transport gave us (netlink reports negatives). */
export const absErrno = (e: number): number => Math.abs(e);

/** `ENODEV (no such device)` for errno 19. */
export function describeErrno(errno: number): string {
  if (errno === 0) return 'ok';
  const entry = byNumber.get(-absErrno(errno));
  return entry ? `${entry[0]} (${entry[1]})` : `errno ${absErrno(errno)}`;
}

export const E = {
  EPERM: constants.errno.EPERM,
  ENOENT: constants.errno.ENOENT,
  ESRCH: constants.errno.ESRCH,
  EEXIST: constants.errno.EEXIST,
  ENODEV: constants.errno.ENODEV,
  EINVAL: constants.errno.EINVAL,
  EADDRNOTAVAIL: constants.errno.EADDRNOTAVAIL,
  EOPNOTSUPP: constants.errno.EOPNOTSUPP,
  ENETUNREACH: constants.errno.ENETUNREACH,
  ENOBUFS: constants.errno.ENOBUFS,
  EBADF: constants.errno.EBADF,
} as const;
