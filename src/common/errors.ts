/**
 * One base error class with a stable machine-readable `code` (undici/pino style).
 * Subclasses name the failure; `field` and `value` name the offending input so an
 * operator can fix it without reading code.
 */
export interface ErrorDetails {
  /** Dotted path of the offending input field, e.g. `ipam.ranges[0][0].subnet`. */
  field?: string;
  /** The offending value, as given. */
  value?: unknown;
  cause?: unknown;
}

export class PodwireError extends Error {
  readonly code: string;
  readonly field: string | undefined;
  readonly value: unknown;

  constructor(code: string, message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.name;
    this.code = code;
    this.field = details.field;
    this.value = details.value;
  }

  toJSON(): Record<string, unknown> {
    const out: Record<string, unknown> = { name: this.name, code: this.code, message: this.message };
    if (this.field !== undefined) out.field = this.field;
    if (this.value !== undefined) out.value = this.value;
    return out;
  }
}

/** Input that fails validation: config keys, CIDRs, Service specs, CNI config fields. */
export class InvalidInputError extends PodwireError {
  constructor(field: string, value: unknown, reason: string, cause?: unknown) {
    super('PW_INVALID_INPUT', `invalid ${field}=${describe(value)}: ${reason}`, { field, value, cause });
  }
}

/** A file on disk whose content cannot be used (corrupt IPAM file, bad manifest). */
export class CorruptFileError extends PodwireError {
  readonly path: string;
  constructor(path: string, reason: string, cause?: unknown) {
    super('PW_CORRUPT_FILE', `${path}: ${reason}`, { field: 'path', value: path, cause });
    this.path = path;
  }
}

/** A named thing that must exist does not (netns path, link, reservation). */
export class NotFoundError extends PodwireError {
  constructor(what: string, name: string, cause?: unknown) {
    super('PW_NOT_FOUND', `${what} ${describe(name)} does not exist`, { field: what, value: name, cause });
  }
}

/** A named thing that must not exist does (duplicate link, interface already in the pod). */
export class AlreadyExistsError extends PodwireError {
  constructor(what: string, name: string, cause?: unknown) {
    super('PW_ALREADY_EXISTS', `${what} ${describe(name)} already exists`, { field: what, value: name, cause });
  }
}

/** A pool with nothing left to hand out. */
export class ExhaustedError extends PodwireError {
  constructor(what: string, name: string) {
    super('PW_EXHAUSTED', `${what} ${describe(name)} is exhausted`, { field: what, value: name });
  }
}

/** The kernel refused an operation (netlink errno, iptables-restore exit status). */
export class KernelError extends PodwireError {
  readonly errno: number | undefined;
  constructor(operation: string, message: string, details: ErrorDetails & { errno?: number } = {}) {
    super('PW_KERNEL', `${operation}: ${message}`, details);
    this.errno = details.errno;
  }
}

/** An external command failed (iptables-restore, nft, ip). */
export class CommandError extends PodwireError {
  readonly exitCode: number | null;
  readonly stderr: string;
  constructor(command: string, exitCode: number | null, stderr: string) {
    super('PW_COMMAND', `${command} exited with ${exitCode ?? 'a signal'}: ${stderr.trim().slice(0, 2000)}`, {
      field: 'command',
      value: command,
    });
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

/** Work that cannot happen now but may later (lock held, daemon not synced). */
export class TryAgainError extends PodwireError {
  constructor(message: string, details: ErrorDetails = {}) {
    super('PW_TRY_AGAIN', message, details);
  }
}

export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  try {
    const s = JSON.stringify(value);
    return s === undefined ? String(value) : s.length > 200 ? `${s.slice(0, 200)}…` : s;
  } catch {
    return String(value);
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** errno of a Node system error, if it has one (`ENOENT`, `EEXIST`, ...). */
export function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}
