/**
 * The size limit of a CNI request, the same on both paths: the fast path (podwired's
 * handler) and the in-process path (runCni itself) refuse a network config over
 * MAX_STDIN_BYTES with code 108, a permanent error (a runtime retries code 11 forever).
 */
import { CniError, CniErrorCode } from './errors';
import { LATEST_VERSION, isSupportedVersion } from './version';

/** Largest network config (stdin) either path accepts: 4 MiB. */
export const MAX_STDIN_BYTES = 4 << 20;
/** How much of a too-large stdin is searched for its cniVersion (for the error JSON's version). */
export const SNIFF_BYTES = 64 << 10;

/**
 * The request's cniVersion from the first SNIFF_BYTES of stdin without parsing the whole
 * (too large) document: the first `"cniVersion": "x.y.z"`, if it is a supported version.
 */
export function sniffVersion(stdinHead: Buffer): string {
  const m = /"cniVersion"\s*:\s*"([0-9.]{1,16})"/.exec(stdinHead.toString('latin1', 0, Math.min(stdinHead.length, SNIFF_BYTES)));
  return m && isSupportedVersion(m[1]) ? m[1] : LATEST_VERSION;
}

export function requestTooLarge(stdinBytes: number): CniError {
  return new CniError(
    CniErrorCode.RequestTooLarge,
    `network config on stdin is ${stdinBytes} bytes, over the limit of ${MAX_STDIN_BYTES} bytes (4 MiB)`,
    'permanent: retrying the same config cannot succeed',
  );
}
