/**
 * The two ways to run code in a lab with the root-namespace guard around it:
 *   labTest(name, { prefix }, async (t, lab) => ...)   for tap test files
 *   withLab(prefix, async (lab) => ...)                for plain scripts (demo, benches)
 * Both: confirm this process is in the initial network namespace (rootNetnsCheck; otherwise fail
 * without running the body — the guard could not vouch for the root namespace), snapshot the
 * watched namespace, create a Lab, run, ALWAYS clean the lab up, snapshot again, and fail on any
 * difference.
 */
import { missingFeatures, type KernelFeature } from './features';
import { formatDiff, Guard, notInRootNetnsMessage, RootNamespaceChangedError, rootNetnsCheck, type GuardTarget } from './guard';
import { Lab, listNetns } from './lab';

export interface LabTestOptions {
  /** Your namespace prefix, e.g. `pwc` or `pwc-add`. */
  prefix: string;
  /** Skip (with the probe's reason) unless the kernel has all of these. */
  requires?: KernelFeature[];
  /** Run the root-namespace guard (default true). */
  guard?: boolean;
  /** Namespace the guard watches (default null = this process's = root). Only the guard's own tests change it. */
  guardTarget?: GuardTarget;
  /** tap timeout for this test in ms (default: tap's). A value over the file timeout (package.json
   * tap.timeout, 120 s) also extends the file's timeout while this test runs. */
  timeout?: number;
  /** Skip unconditionally with this reason. */
  skip?: string;
}

export type LabTestFn = (t: tap.Test, lab: Lab) => Promise<void> | void;

/** Why integration tests cannot run here at all (null = they can). */
export function cannotRunReason(): string | null {
  if (process.platform !== 'linux') return 'needs Linux network namespaces';
  if (process.getuid?.() !== 0) return 'needs root (network namespaces); run as root';
  return null;
}

/** A tap subtest with its own Lab and the root-namespace guard around it. */
export function labTest(name: string, opts: LabTestOptions, fn: LabTestFn): Promise<unknown> {
  // tap is loaded lazily: importing it starts a TAP stream, which plain scripts (withLab) must not get.
  const t = require('tap') as typeof import('tap');
  return t.test(name, opts.timeout ? { timeout: opts.timeout } : {}, async (tt) => {
    const extended = opts.timeout ? extendFileTimeout(t, opts.timeout) : false;
    const skip = opts.skip ?? cannotRunReason() ?? (opts.requires ? await missingFeatures(opts.requires) : null);
    if (skip) {
      tt.plan(0, skip); // tap prints '# SKIP <reason>' and counts it as skipped
      return;
    }
    if (opts.guard !== false) {
      // The guard watches "this process's namespace" as the root one: only true in init_net.
      const where = rootNetnsCheck();
      if (where.inRoot !== true) {
        tt.fail('runner is in the initial network namespace', { error: notInRootNetnsMessage(where) });
        return; // the body does not run: nothing could vouch for the root namespace afterwards
      }
    }
    const guard = opts.guard === false ? null : await Guard.start(opts.guardTarget ?? null);
    const lab = await Lab.create(opts.prefix);
    tt.teardown(() => lab.cleanupSync()); // backstop, e.g. after a tap timeout; no-op if already clean
    try {
      await fn(tt, lab);
    } finally {
      if (extended) restoreFileTimeout(t);
      try {
        await lab.cleanup();
      } catch (e) {
        tt.fail(`lab cleanup: ${String(e)}`);
      }
      const left = listNetns(lab.id);
      if (left.length) tt.fail(`namespaces left behind: ${left.join(' ')}`);
      if (guard) {
        const diffs = await guard.diff();
        if (diffs.length) tt.fail('root namespace unchanged', { changes: formatDiff(diffs, guard.target) });
        else tt.pass('root namespace unchanged');
      }
    }
  });
}

/**
 * tap's runner kills a whole test file after its file timeout (package.json `tap.timeout`, passed
 * as TAP_TIMEOUT), whatever a subtest's own timeout says. A longer labTest timeout therefore also
 * extends the file's: from now, the larger of the file default and this test's timeout + 30 s.
 */
function extendFileTimeout(root: { setTimeout(n: number): unknown }, testTimeoutMs: number): boolean {
  const wanted = testTimeoutMs + 30_000;
  if (process.env.TAP_TIMEOUT === undefined || wanted <= fileDefaultTimeoutMs()) return false;
  root.setTimeout(wanted);
  return true;
}

/** After such a test: the following tests get the file default again, counted from now. */
function restoreFileTimeout(root: { setTimeout(n: number): unknown }): void {
  root.setTimeout(fileDefaultTimeoutMs());
}

function fileDefaultTimeoutMs(): number {
  const s = Number(process.env.TAP_TIMEOUT);
  return Number.isFinite(s) && s > 0 ? s * 1000 : 30_000;
}

export interface WithLabOptions {
  guard?: boolean;
  guardTarget?: GuardTarget;
}

/**
 * Plain-function form: guard + lab + always-cleanup. Throws fn's error, or
 * RootNamespaceChangedError if the watched namespace changed.
 */
export async function withLab<T>(prefix: string, fn: (lab: Lab) => Promise<T>, opts: WithLabOptions = {}): Promise<T> {
  const reason = cannotRunReason();
  if (reason) throw new Error(`lab: ${reason}`);
  if (opts.guard !== false) {
    const where = rootNetnsCheck();
    if (where.inRoot !== true) throw new Error(`lab: ${notInRootNetnsMessage(where)}`);
  }
  const guard = opts.guard === false ? null : await Guard.start(opts.guardTarget ?? null);
  const lab = await Lab.create(prefix);
  let result: T;
  try {
    result = await fn(lab);
  } catch (e) {
    await lab.cleanup().catch((c: unknown) => process.stderr.write(`lab cleanup: ${String(c)}\n`));
    const d = guard ? await guard.diff() : [];
    if (d.length) process.stderr.write(`${formatDiff(d, guard!.target)}\n`);
    throw e;
  }
  await lab.cleanup();
  if (guard) {
    const d = await guard.diff();
    if (d.length) throw new RootNamespaceChangedError(d, guard.target);
  }
  return result;
}
