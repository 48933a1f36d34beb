/**
 * Long-running processes (servers, daemons) inside a lab namespace. Each runs in its own
 * process group so that stop() also reaches whatever it forked. The Lab tracks every one it
 * started and stops them at cleanup; as a safety net the Lab also kills any process still
 * inside its namespaces (`ip netns pids`) before deleting them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { formatCommand, killGroup, nsArgv, type NsName } from './exec';

export interface SpawnOptions {
  env?: Record<string, string>;
  /** Keep at most this many bytes of stdout/stderr each (the tail). Default 1 MiB. */
  maxOutputBytes?: number;
}

export interface ExitInfo {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
}

export class BackgroundProcess {
  readonly child: ChildProcess;
  readonly description: string;
  /** Resolves once the process has exited (for any reason). Never rejects. */
  readonly exited: Promise<ExitInfo>;
  private out = '';
  private err = '';
  private exitInfo: ExitInfo | null = null;
  private readonly waiters = new Set<() => void>();

  constructor(readonly ns: NsName, readonly argv: readonly string[], opts: SpawnOptions = {}) {
    const full = nsArgv(ns, argv);
    const max = opts.maxOutputBytes ?? 1 << 20;
    this.description = formatCommand(ns, argv);
    this.child = spawn(full[0]!, full.slice(1), {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
    });
    const append = (which: 'out' | 'err', b: Buffer): void => {
      const s = this[which] + b.toString('utf8');
      this[which] = s.length > max ? s.slice(s.length - max) : s;
      for (const w of this.waiters) w();
    };
    this.child.stdout!.on('data', (b: Buffer) => append('out', b));
    this.child.stderr!.on('data', (b: Buffer) => append('err', b));
    this.exited = new Promise((resolve) => {
      const done = (info: ExitInfo): void => {
        if (this.exitInfo) return;
        this.exitInfo = info;
        for (const w of this.waiters) w();
        resolve(info);
      };
      this.child.on('error', (e) => {
        this.err += `spawn failed: ${e.message}\n`;
        done({ exitCode: 127, signal: null });
      });
      this.child.on('exit', (exitCode, signal) => done({ exitCode, signal }));
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }
  get stdout(): string {
    return this.out;
  }
  get stderr(): string {
    return this.err;
  }
  /** null while running. */
  get exit(): ExitInfo | null {
    return this.exitInfo;
  }

  /**
   * Wait until stdout or stderr matches `pattern` (e.g. a "listening" line). Rejects if the
   * process exits first or after timeoutMs (default 10 s) with the output so far.
   */
  waitForOutput(pattern: RegExp, timeoutMs = 10_000): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const m = this.out.match(pattern) ?? this.err.match(pattern);
        if (m) return settle(() => resolve(m));
        if (this.exitInfo)
          return settle(() =>
            reject(new Error(`${this.description} exited (${JSON.stringify(this.exitInfo)}) before printing ${pattern}; ${this.tail()}`)),
          );
      };
      const timer = setTimeout(
        () => settle(() => reject(new Error(`${this.description}: no ${pattern} within ${timeoutMs} ms; ${this.tail()}`))),
        timeoutMs,
      );
      const settle = (f: () => void): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        f();
      };
      this.waiters.add(check);
      check();
    });
  }

  /** SIGTERM the process group, then SIGKILL after graceMs (default 2 s). Idempotent. */
  async stop(graceMs = 2_000): Promise<ExitInfo> {
    if (this.exitInfo) return this.exitInfo;
    killGroup(this.child, 'SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        killGroup(this.child, 'SIGKILL');
        resolve();
      }, graceMs);
    });
    await Promise.race([this.exited, killed]);
    clearTimeout(timer);
    return this.exited;
  }

  /** Synchronous SIGKILL of the group, for exit/signal handlers. */
  killNow(): void {
    if (!this.exitInfo) killGroup(this.child, 'SIGKILL');
  }

  private tail(): string {
    return `stdout: ${JSON.stringify(this.out.slice(-500))} stderr: ${JSON.stringify(this.err.slice(-500))}`;
  }
}
