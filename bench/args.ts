/**
 * The benches' command-line flags, `--name value` (each bench lists its own in its header).
 * Flags a bench does not read are ignored, so a parent bench can pass its own through.
 */

/** The word after `--name` (an empty one too), or undefined when the flag is not given. */
function flagValue(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** The value after `--name` (an empty one too: `--ipt-sizes ''` runs no size), else `fallback`. */
export function arg(name: string, fallback: string): string {
  return flagValue(name) ?? fallback;
}

/** The value after `--name`; throws when it is not given. */
export function requiredArg(name: string): string {
  const v = flagValue(name);
  if (v === undefined) throw new Error(`missing --${name}`);
  return v;
}

/** A non-negative integer after `--name`, else `fallback`; throws for anything else. */
export function intArg(name: string, fallback: number): number {
  if (!process.argv.includes(`--${name}`)) return fallback;
  const raw = flagValue(name);
  const v = Number(raw);
  if (!Number.isInteger(v) || v < 0) throw new Error(`--${name} expects a non-negative integer, got ${JSON.stringify(raw)}`);
  return v;
}
