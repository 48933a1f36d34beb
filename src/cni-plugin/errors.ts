/**
 * CNI error JSON (spec 1.1 "Error" section) and the mapping from Podwire's error
 * classes to the spec's well-known codes. Codes 0-99 are the spec's; 100+ are ours.
 * There is deliberately no catch-all 999: every failure maps to a named code.
 */
import {
  AlreadyExistsError,
  CommandError,
  CorruptFileError,
  ExhaustedError,
  InvalidInputError,
  KernelError,
  NotFoundError,
  PodwireError,
  TryAgainError,
  errorMessage,
} from '../common/errors';

export const CniErrorCode = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  ContainerUnknown: 3,
  InvalidEnv: 4,
  IoFailure: 5,
  DecodeFailure: 6,
  InvalidNetworkConfig: 7,
  TryAgainLater: 11,
  PluginNotAvailable: 50,
  PluginNotAvailableLimitedConnectivity: 51,
  // Plugin-specific (100+), stable across releases.
  KernelFailure: 100,
  PoolExhausted: 101,
  AlreadyExists: 102,
  AddressUnavailable: 103,
  CommandFailure: 104,
  CheckFailed: 105,
  DelegateFailure: 106,
  Internal: 107,
  /** The request (network config on stdin) is over the size limit (limits.ts); permanent, unlike 11. */
  RequestTooLarge: 108,
} as const;
export type CniErrorCodeValue = (typeof CniErrorCode)[keyof typeof CniErrorCode];

export interface CniErrorJson {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

/** A failure that already knows its CNI code. */
export class CniError extends PodwireError {
  readonly cniCode: number;
  readonly details: string | undefined;
  constructor(cniCode: number, msg: string, details?: string, cause?: unknown) {
    super(`PW_CNI_${cniCode}`, msg, { cause });
    this.cniCode = cniCode;
    this.details = details;
  }
}

export function cniError(code: number, msg: string, details?: string): CniError {
  return new CniError(code, msg, details);
}

/** Map any thrown value to a CNI code + message. */
export function toCniErrorJson(err: unknown, cniVersion: string): CniErrorJson {
  const out = (code: number, msg: string, details?: string): CniErrorJson =>
    details === undefined ? { cniVersion, code, msg } : { cniVersion, code, msg, details };
  if (err instanceof CniError) return out(err.cniCode, err.message, err.details);
  if (err instanceof InvalidInputError) return out(CniErrorCode.InvalidNetworkConfig, err.message);
  if (err instanceof ExhaustedError) return out(CniErrorCode.PoolExhausted, err.message);
  if (err instanceof AlreadyExistsError) return out(CniErrorCode.AlreadyExists, err.message);
  if (err instanceof TryAgainError) return out(CniErrorCode.TryAgainLater, err.message);
  if (err instanceof CorruptFileError) return out(CniErrorCode.IoFailure, err.message);
  if (err instanceof NotFoundError) return out(CniErrorCode.ContainerUnknown, err.message);
  if (err instanceof CommandError) return out(CniErrorCode.CommandFailure, err.message);
  if (err instanceof KernelError) return out(CniErrorCode.KernelFailure, err.message);
  if (err instanceof PodwireError) return out(CniErrorCode.Internal, err.message, err.code);
  const code = typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : '';
  if (/^E[A-Z]+$/.test(code)) return out(CniErrorCode.IoFailure, errorMessage(err), code);
  return out(CniErrorCode.Internal, errorMessage(err));
}
