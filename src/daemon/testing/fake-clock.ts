import type { Clock } from '../../common/clock';

interface PendingTimer {
  id: number;
  at: number;
  fn: () => void;
}

/**
 * A manual clock: time moves only when a test calls `advance`. Timers fire in
 * due-time order (then creation order), so runner tests need no sleeps and make
 * no timed assertions.
 */
export class FakeClock implements Clock {
  private current: number;
  private nextId = 1;
  private timers: PendingTimer[] = [];

  constructor(start = 1_000_000) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimeout(fn: () => void, ms: number): { cancel(): void } {
    const timer: PendingTimer = { id: this.nextId++, at: this.current + Math.max(0, ms), fn };
    this.timers.push(timer);
    return {
      cancel: () => {
        this.timers = this.timers.filter((t) => t.id !== timer.id);
      },
    };
  }

  /** Due times of the pending timers, ascending. */
  pending(): number[] {
    return this.timers.map((t) => t.at).sort((a, b) => a - b);
  }

  /** Move time forward by `ms`, firing every timer that falls due, in order. */
  advance(ms: number): void {
    const target = this.current + ms;
    // Bounded: each iteration removes one timer; a timer that re-arms itself at
    // the same instant could loop, so cap the count.
    for (let i = 0; i < 100_000; i++) {
      const due = this.timers.filter((t) => t.at <= target).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.timers = this.timers.filter((t) => t.id !== due.id);
      this.current = Math.max(this.current, due.at);
      due.fn();
    }
    this.current = target;
  }
}

/** Let pending promise callbacks run (resolves after the current macrotask). */
export function flushPromises(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
