/**
 * The benches' command-line flags, `--name value` (each bench lists its own in its header).
 * Flags a bench does not read are ignored, so a parent bench can pass its own through.
 */

/** The value after `--name` (an empty one too: `--ipt-sizes ''` runs no size), else `fallback`. */
export function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : undefined;
  return v !== undefined ? v : fallback;
}

/** The value after `--name`; throws when it is not given. */
export function requiredArg(name: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : undefined;
  if (v === undefined) throw new Error(`missing --${name}`);
  return v;
}

/** A non-negative integer after `--name`, else `fallback`; throws for anything else. */
export function intArg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 0) throw new Error(`--${name} expects a non-negative integer, got ${JSON.stringify(process.argv[i + 1])}`);
  return v;
}
