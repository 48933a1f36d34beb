/**
 * Running commands inside a network namespace: `ip netns exec NS argv...`, never a shell.
 *
 * Why hand-written and not a library (execa & co.): we need exactly three things that
 * child_process already gives us (argv without a shell, a hard timeout, a process group we
 * can kill), and test scaffolding should not pull a dependency for that.
 */
import { spawn, type ChildProcess } from 'node:child_process';

/** Where a command runs: a named netns (`/run/netns/NAME`), or `null` = this process's own netns. */
export type NsName = string | null;

export interface ExecOptions {
  /** Hard limit; the command (its whole process group) is killed with SIGKILL after it. Default 20 s. */
  timeoutMs?: number;
  /** Written to the command's stdin, then stdin is closed. */
  input?: string;
  /** Extra environment variables (merged over process.env). */
  env?: Record<string, string>;
}

export interface ExecResult {
  argv: string[];
  ns: NsName;
  stdout: string;
  stderr: string;
  /** null when killed by a signal (see `signal`). */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
}

export const DEFAULT_EXEC_TIMEOUT_MS = 20_000;

/** Thrown by execOk when a command does not exit 0. Carries the whole result. */
export class LabCommandError extends Error {
  readonly code = 'PW_LAB_COMMAND';
  constructor(readonly result: ExecResult) {
    super(
      `${formatCommand(result.ns, result.argv)} ` +
        (result.timedOut
          ? 'timed out'
          : result.exitCode === null
            ? `was killed by ${String(result.signal)}`
            : `exited with ${result.exitCode}`) +
        (result.stderr.trim() ? `: ${result.stderr.trim().slice(0, 2000)}` : '') +
        (!result.stderr.trim() && result.stdout.trim() ? ` (stdout: ${result.stdout.trim().slice(0, 1000)})` : ''),
    );
    this.name = 'LabCommandError';
  }
}

/** The argv actually executed: `ip netns exec NS ...argv` for a named netns, else argv itself. */
export function nsArgv(ns: NsName, argv: readonly string[]): string[] {
  if (argv.length === 0) throw new TypeError('exec: argv must not be empty');
  return ns === null ? [...argv] : ['ip', 'netns', 'exec', ns, ...argv];
}

export function formatCommand(ns: NsName, argv: readonly string[]): string {
  return `[${ns ?? 'self'}] ${argv.join(' ')}`;
}

/** Run argv inside `ns` and collect its output. Never throws for a non-zero exit; see execOk. */
export function exec(ns: NsName, argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const full = nsArgv(ns, argv);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS;
  return new Promise((resolve) => {
    const child = spawn(full[0]!, full.slice(1), {
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true, // own process group, so a timeout kills grandchildren too
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    let settled = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child, 'SIGKILL');
    }, timeoutMs);
    const finish = (exitCode: number | null, signal: NodeJS.Signals | null, spawnError?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({
        argv: [...argv],
        ns,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8') + (spawnError ? `spawn failed: ${spawnError.message}` : ''),
        exitCode: spawnError ? 127 : exitCode,
        signal,
        timedOut,
      });
    };
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => finish(null, null, e));
    child.on('close', (code, signal) => finish(code, signal));
    child.stdin!.on('error', () => undefined); // EPIPE when the command ignores stdin
    child.stdin!.end(opts.input ?? '');
  });
}

/** Like exec, but throws LabCommandError unless the command exits 0. Returns stdout. */
export async function execOk(ns: NsName, argv: readonly string[], opts: ExecOptions = {}): Promise<string> {
  const r = await exec(ns, argv, opts);
  if (r.exitCode !== 0 || r.timedOut) throw new LabCommandError(r);
  return r.stdout;
}

/** `ip -n NS args...` (or plain `ip args...` for ns=null); throws on failure, returns stdout. */
export function ip(ns: NsName, args: readonly string[], opts: ExecOptions = {}): Promise<string> {
  return execOk(null, ns === null ? ['ip', ...args] : ['ip', '-n', ns, ...args], opts);
}

export function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      /* already gone */
    }
  }
}
