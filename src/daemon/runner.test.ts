import t from 'tap';
import { BoundedFrequencyRunner, type RunOutcome } from './runner';
import { FakeClock, flushPromises } from './testing/fake-clock';

interface Harness {
  clock: FakeClock;
  runner: BoundedFrequencyRunner;
  starts: number[];
  outcomes: RunOutcome[];
  controller: AbortController;
  /** Make the next N runs fail. */
  failNext(n: number): void;
  /** Make the next run block until the returned function is called. */
  blockNext(): () => void;
  /** Advance the clock and let the runs it triggers complete. */
  step(ms: number): Promise<void>;
}

function harness(opts: { min: number; max: number; retry: number; maxRetry?: number }): Harness {
  const clock = new FakeClock();
  const starts: number[] = [];
  const outcomes: RunOutcome[] = [];
  let failures = 0;
  let blocker: Promise<void> | undefined;
  const controller = new AbortController();
  const runner = new BoundedFrequencyRunner({
    name: 'test',
    clock,
    minIntervalMs: opts.min,
    maxIntervalMs: opts.max,
    retryIntervalMs: opts.retry,
    ...(opts.maxRetry === undefined ? {} : { maxRetryIntervalMs: opts.maxRetry }),
    fn: async () => {
      starts.push(clock.now());
      const b = blocker;
      blocker = undefined;
      if (b) await b;
      if (failures > 0) {
        failures--;
        throw new Error('boom');
      }
    },
    onRun: (o) => outcomes.push(o),
  });
  return {
    clock,
    runner,
    starts,
    outcomes,
    controller,
    failNext: (n) => {
      failures = n;
    },
    blockNext: () => {
      let release!: () => void;
      blocker = new Promise<void>((r) => (release = r));
      return release;
    },
    step: async (ms) => {
      await flushPromises();
      clock.advance(ms);
      await flushPromises();
    },
  };
}

t.test('first run happens at start, then once per max interval', async (t) => {
  const h = harness({ min: 1000, max: 30_000, retry: 500 });
  const t0 = h.clock.now();
  h.runner.start(h.controller.signal);
  await h.step(0);
  t.same(h.starts, [t0]);
  await h.step(29_999);
  t.equal(h.starts.length, 1, 'nothing before max interval');
  await h.step(1);
  t.same(h.starts, [t0, t0 + 30_000], 'periodic run at max interval');
  h.controller.abort();
});

t.test('a burst of requests collapses into one run after the min interval', async (t) => {
  const h = harness({ min: 1000, max: 30_000, retry: 500 });
  const t0 = h.clock.now();
  h.runner.start(h.controller.signal);
  await h.step(0);
  await h.step(100);
  for (let i = 0; i < 50; i++) h.runner.run();
  t.equal(h.runner.nextRunAt, t0 + 1000, 'scheduled at last start + min interval');
  await h.step(899);
  t.equal(h.starts.length, 1, 'min interval respected');
  await h.step(1);
  t.same(h.starts, [t0, t0 + 1000], 'exactly one run for the burst');
  await h.step(5000);
  t.equal(h.starts.length, 2, 'no extra runs from the burst');
  h.controller.abort();
});

t.test('a request long after the last run runs at once', async (t) => {
  const h = harness({ min: 1000, max: 30_000, retry: 500 });
  h.runner.start(h.controller.signal);
  await h.step(0);
  await h.step(5000);
  h.runner.run();
  await h.step(0);
  t.equal(h.starts.length, 2);
  t.equal(h.starts[1], h.clock.now());
  h.controller.abort();
});

t.test('a request during a run causes exactly one follow-up run', async (t) => {
  const h = harness({ min: 1000, max: 30_000, retry: 500 });
  const release = h.blockNext();
  const t0 = h.clock.now();
  h.runner.start(h.controller.signal);
  await h.step(0);
  t.equal(h.starts.length, 1, 'first run in flight');
  h.runner.run();
  h.runner.run();
  await h.step(2000);
  t.equal(h.starts.length, 1, 'runs never overlap');
  release();
  await h.step(0);
  t.same(h.starts, [t0, t0 + 2000], 'follow-up as soon as the min interval allows');
  await h.step(10_000);
  t.equal(h.starts.length, 2);
  h.controller.abort();
});

t.test('a failed run is retried with a doubling backoff, capped; success resets it', async (t) => {
  const h = harness({ min: 100, max: 60_000, retry: 1000, maxRetry: 4000 });
  h.failNext(4);
  const t0 = h.clock.now();
  h.runner.start(h.controller.signal);
  await h.step(0);
  await h.step(1000);
  await h.step(2000);
  await h.step(4000);
  await h.step(4000);
  t.same(h.starts, [t0, t0 + 1000, t0 + 3000, t0 + 7000, t0 + 11_000], 'retries at 1s, 2s, 4s, 4s (capped)');
  t.same(
    h.outcomes.map((o) => [o.ok, o.consecutiveFailures]),
    [
      [false, 1],
      [false, 2],
      [false, 3],
      [false, 4],
      [true, 0],
    ],
  );
  await h.step(59_999);
  t.equal(h.starts.length, 5, 'after success, back to the max interval');
  await h.step(1);
  t.equal(h.starts.length, 6);
  h.controller.abort();
});

t.test('retry never breaks the min interval', async (t) => {
  const h = harness({ min: 5000, max: 60_000, retry: 100 });
  h.failNext(1);
  const t0 = h.clock.now();
  h.runner.start(h.controller.signal);
  await h.step(0);
  await h.step(4999);
  t.equal(h.starts.length, 1);
  await h.step(1);
  t.same(h.starts, [t0, t0 + 5000]);
  h.controller.abort();
});

t.test('abort stops the runner; idle waits for the in-flight run', async (t) => {
  const h = harness({ min: 1000, max: 30_000, retry: 500 });
  const release = h.blockNext();
  h.runner.start(h.controller.signal);
  await h.step(0);
  h.runner.run();
  h.controller.abort();
  let idle = false;
  const done = h.runner.idle().then(() => (idle = true));
  await flushPromises();
  t.equal(idle, false, 'still in flight');
  release();
  await done;
  t.equal(idle, true);
  await h.step(100_000);
  t.equal(h.starts.length, 1, 'no run after abort');
  t.same(h.clock.pending(), [], 'no timers left behind');
  h.runner.run();
  t.same(h.clock.pending(), []);
});

t.test('invalid intervals are rejected', async (t) => {
  t.throws(
    () => new BoundedFrequencyRunner({ name: 'x', fn: async () => {}, minIntervalMs: 10, maxIntervalMs: 5, retryIntervalMs: 1 }),
    /maxIntervalMs/,
  );
  t.throws(
    () => new BoundedFrequencyRunner({ name: 'x', fn: async () => {}, minIntervalMs: 1, maxIntervalMs: 5, retryIntervalMs: 0 }),
    /retryIntervalMs/,
  );
});
