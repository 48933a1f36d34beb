/** CNI spec versions this plugin speaks, and how they compare. */
import { CniErrorCode, CniError } from './errors';

export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
export const LATEST_VERSION: CniVersion = '1.1.0';

export function isSupportedVersion(v: unknown): v is CniVersion {
  return typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** Semver-ish compare of `a.b.c` strings; unparsable parts count as 0. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map((p) => Number.parseInt(p, 10) || 0);
  const pb = b.split('.').map((p) => Number.parseInt(p, 10) || 0);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

export function requireVersion(v: unknown, field = 'cniVersion'): CniVersion {
  if (!isSupportedVersion(v)) return fail(field, v);
  return v;
}

function fail(field: string, v: unknown): never {
  throw new CniError(
    CniErrorCode.IncompatibleVersion,
    `incompatible CNI version: ${field}=${JSON.stringify(v)}`,
    `supported versions: ${SUPPORTED_VERSIONS.join(', ')}`,
  );
}

/** The minimum config version that allows each verb. */
export function minimumVersionFor(command: string): string {
  switch (command) {
    case 'CHECK':
      return '0.4.0';
    case 'GC':
    case 'STATUS':
      return '1.1.0';
    default:
      return '0.3.0';
  }
}
