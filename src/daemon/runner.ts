/**
 * A bounded-frequency runner, after kube-proxy's BoundedFrequencyRunner
 * (pkg/proxy/runner/bounded_frequency_runner.go):
 *
 * - `run()` only requests work; a burst of requests collapses into one run.
 * - Two runs start at least `minIntervalMs` apart.
 * - After a failed run it retries, after `retryIntervalMs`, doubling per consecutive
 *   failure up to `maxRetryIntervalMs` (kube-proxy retries at a fixed interval; the
 *   backoff keeps a persistently failing iptables-restore from hammering the host).
 * - It runs at least once per `maxIntervalMs` even with no requests (periodic
 *   reconcile re-adds whatever went missing from the kernel).
 * - Runs never overlap. A request made during a run causes exactly one more run.
 *
 * Time comes from an injected Clock so tests drive it without sleeping.
 */
import { systemClock, type Clock } from '../common/clock';

export interface RunOutcome {
  ok: boolean;
  error: unknown;
  /** Clock time the run started. */
  startedAt: number;
  durationMs: number;
  consecutiveFailures: number;
}

export interface RunnerOptions {
  name: string;
  fn: (signal: AbortSignal) => Promise<void>;
  minIntervalMs: number;
  maxIntervalMs: number;
  retryIntervalMs: number;
  /** Cap for the doubling retry delay; defaults to maxIntervalMs. */
  maxRetryIntervalMs?: number;
  clock?: Clock;
  /** Called after every run, success or not (metrics, logs). */
  onRun?: (outcome: RunOutcome) => void;
}

export class BoundedFrequencyRunner {
  readonly name: string;
  private readonly clock: Clock;
  private readonly opts: RunnerOptions;
  private signal: AbortSignal | undefined;
  private started = false;
  private stopped = false;
  private pending = false;
  private inFlight: Promise<void> | undefined;
  private lastStart: number | undefined;
  private failures = 0;
  private timer: { at: number; handle: { cancel(): void } } | undefined;
  private runs = 0;

  constructor(options: RunnerOptions) {
    if (!(options.minIntervalMs >= 0)) throw new RangeError(`${options.name}: minIntervalMs must be >= 0`);
    if (!(options.maxIntervalMs >= options.minIntervalMs)) {
      throw new RangeError(`${options.name}: maxIntervalMs must be >= minIntervalMs`);
    }
    if (!(options.retryIntervalMs > 0)) throw new RangeError(`${options.name}: retryIntervalMs must be > 0`);
    this.name = options.name;
    this.opts = options;
    this.clock = options.clock ?? systemClock;
  }

  /** Begin: the first run is scheduled at once. Aborting `signal` stops the runner. */
  start(signal: AbortSignal): void {
    if (this.started) return;
    this.started = true;
    this.signal = signal;
    if (signal.aborted) {
      this.stop();
      return;
    }
    signal.addEventListener('abort', () => this.stop(), { once: true });
    this.pending = true;
    this.arm(this.clock.now());
  }

  /** Request a run. Cheap; call it from event handlers. */
  run(): void {
    if (this.stopped) return;
    this.pending = true;
    if (!this.started || this.inFlight) return;
    this.arm(this.earliestAllowed());
  }

  /** No more runs after this; an in-flight run finishes (see `idle`). */
  stop(): void {
    this.stopped = true;
    this.timer?.handle.cancel();
    this.timer = undefined;
  }

  /** Resolves when no run is in flight. */
  async idle(): Promise<void> {
    // Bounded: each loop waits for one run; after stop() no new run starts.
    for (let i = 0; i < 1000 && this.inFlight; i++) await this.inFlight;
  }

  get runCount(): number {
    return this.runs;
  }

  /** Clock time of the next scheduled run, if any (for tests and status). */
  get nextRunAt(): number | undefined {
    return this.timer?.at;
  }

  private earliestAllowed(): number {
    const now = this.clock.now();
    return this.lastStart === undefined ? now : Math.max(now, this.lastStart + this.opts.minIntervalMs);
  }

  /** Keep a single timer, at the earliest time anyone asked for. */
  private arm(at: number): void {
    if (this.stopped) return;
    if (this.timer && this.timer.at <= at) return;
    this.timer?.handle.cancel();
    const delay = Math.max(0, at - this.clock.now());
    this.timer = { at, handle: this.clock.setTimeout(() => this.fire(), delay) };
  }

  private fire(): void {
    this.timer = undefined;
    if (this.stopped || this.inFlight) return;
    this.inFlight = this.execute().finally(() => {
      this.inFlight = undefined;
      this.scheduleNext();
    });
  }

  private async execute(): Promise<void> {
    this.pending = false;
    const startedAt = this.clock.now();
    this.lastStart = startedAt;
    this.runs++;
    let ok = true;
    let error: unknown;
    try {
      await this.opts.fn(this.signal ?? new AbortController().signal);
    } catch (err) {
      ok = false;
      error = err;
    }
    this.failures = ok ? 0 : this.failures + 1;
    try {
      this.opts.onRun?.({
        ok,
        error,
        startedAt,
        durationMs: this.clock.now() - startedAt,
        consecutiveFailures: this.failures,
      });
    } catch {
      // An observer must never break the loop.
    }
  }

  private scheduleNext(): void {
    if (this.stopped || this.lastStart === undefined) return;
    const now = this.clock.now();
    let next = this.lastStart + this.opts.maxIntervalMs;
    if (this.failures > 0) {
      const cap = this.opts.maxRetryIntervalMs ?? this.opts.maxIntervalMs;
      const backoff = Math.min(this.opts.retryIntervalMs * 2 ** Math.min(this.failures - 1, 30), cap);
      next = Math.min(next, now + backoff);
    }
    if (this.pending) next = Math.min(next, now);
    next = Math.max(next, this.lastStart + this.opts.minIntervalMs);
    this.arm(next);
  }
}
