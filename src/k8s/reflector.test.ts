import t from 'tap';
import type { Clock } from '../common';
import { silentLogger } from '../common';
import { ApiError, BODY_BYTES, type ApiTransport, type Query, type WatchEvent } from './api-client';
import { ObjectCache, ProblemSet } from './cache';
import { DEFAULT_TUNING, nextPageLimit, Reflector } from './reflector';

/** A clock that records each requested delay and fires it on the next macrotask. */
function recordingClock(): Clock & { delays: number[] } {
  const delays: number[] = [];
  return {
    delays,
    now: () => 0, // every watch looks instantaneous, i.e. unproductive unless it had events
    setTimeout(fn, ms) {
      delays.push(ms);
      const h = setImmediate(fn);
      return { cancel: () => clearImmediate(h) };
    },
  };
}

type Step = { list?: Record<string, unknown> | ApiError; watch?: WatchEvent[] | ApiError };

/** A transport that plays a script, then aborts the run. */
function scripted(steps: Step[], ac: AbortController): ApiTransport & { calls: { path: string; query: Query; watch: boolean }[] } {
  const calls: { path: string; query: Query; watch: boolean }[] = [];
  const next = (): Step => {
    const s = steps.shift();
    if (!s) {
      ac.abort();
      throw new ApiError(503, 'ScriptDone', 'end of script', '/');
    }
    return s;
  };
  return {
    calls,
    async getJson(path, query) {
      calls.push({ path, query, watch: false });
      const s = next();
      if (s.list instanceof ApiError) throw s.list;
      if (!s.list) throw new Error(`script expected a watch, got a list of ${path}`);
      return s.list;
    },
    async watch(path, query, onEvent) {
      calls.push({ path, query, watch: true });
      const s = next();
      if (s.watch instanceof ApiError) throw s.watch;
      if (!s.watch) throw new Error(`script expected a list, got a watch of ${path}`);
      for (const ev of s.watch) if (!onEvent(ev)) return;
    },
  };
}

const svc = (name: string, rv: string, clusterIP = '10.96.0.1') => ({
  metadata: { name, namespace: 'a', resourceVersion: rv },
  spec: { clusterIP, ports: [{ port: 80 }] },
});
const list = (rv: string, items: unknown[], cont?: string) => ({ metadata: { resourceVersion: rv, continue: cont }, items });

async function run(steps: Step[], pageSize = 500) {
  const ac = new AbortController();
  const transport = scripted(steps, ac);
  const cache = new ObjectCache(silentLogger);
  const problems = new ProblemSet();
  const events: string[] = [];
  cache.onEvent((e) => events.push(`${e.type} ${(e.type === 'delete' ? e.previous : e.current).meta.key}`));
  const clock = recordingClock();
  let synced = 0;
  const r = new Reflector(
    { kind: 'Service', path: '/api/v1/services' },
    { transport, cache, problems, logger: silentLogger, tuning: { ...DEFAULT_TUNING, pageSize }, clock, random: () => 0.5, onSynced: () => synced++ },
  );
  await r.run(ac.signal);
  return { transport, cache, problems, events, clock, synced, stats: r.snapshot() };
}

t.test('paged list, then watch from the list resourceVersion with bookmarks', async (t) => {
  const res = await run(
    [
      { list: list('10', [svc('x', '5')], 'tok') },
      { list: list('10', [svc('y', '6')]) },
      { watch: [{ type: 'ADDED', object: svc('z', '11') }, { type: 'BOOKMARK', object: { metadata: { resourceVersion: '15' } } }] },
    ],
    1,
  );
  const [p1, p2, w1, w2] = res.transport.calls;
  t.same([p1!.query.limit, p1!.query.continue], [1, undefined]);
  t.equal(p2!.query.continue, 'tok');
  t.match(w1!.query, { resourceVersion: '10', allowWatchBookmarks: true });
  t.equal(w2!.query.resourceVersion, '15', 'next watch starts at the bookmark');
  t.same(res.events, ['add a/x', 'add a/y', 'add a/z']);
  t.equal(res.synced, 1);
});

t.test('unproductive watches back off exponentially, capped', async (t) => {
  const steps: Step[] = [{ list: list('1', []) }];
  for (let i = 0; i < 8; i++) steps.push({ watch: [] });
  const res = await run(steps);
  // random()=0.5 → jitter factor 1.0: 800, 1600, ... capped at 30 s.
  t.same(res.clock.delays.slice(0, 8), [800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]);
});

t.test('410: relist at once the first time, back off on a second 410 in a row', async (t) => {
  const gone = new ApiError(410, 'Expired', 'too old', '/api/v1/services');
  const res = await run([
    { list: list('1', [svc('x', '1'), svc('y', '1')]) },
    { watch: gone },
    { list: gone },
    { list: list('9', [svc('x', '1')]) },
    { watch: [{ type: 'ERROR', object: { kind: 'Status', code: 410 } }] },
    { list: list('12', [svc('x', '1')]) },
  ]);
  t.same(res.clock.delays.slice(0, 1), [800], 'one backoff, for the second consecutive 410');
  t.same(res.events, ['add a/x', 'add a/y', 'delete a/y'], 'y vanished during the relist: delete');
  t.equal(res.stats.expired, 3);
  t.equal(res.stats.lists, 4);
});

t.test('non-410 ERROR event and HTTP errors back off and keep state', async (t) => {
  const res = await run([
    { list: list('1', [svc('x', '1')]) },
    { watch: [{ type: 'ERROR', object: { kind: 'Status', code: 500, message: 'etcd down' } }] },
    { watch: new ApiError(503, 'ServiceUnavailable', 'down', '/') },
    { watch: [{ type: 'DELETED', object: svc('x', '3') }] },
  ]);
  t.same(res.clock.delays.slice(0, 2), [800, 1600]);
  t.match(res.stats.lastError, /503|ScriptDone/);
  t.same(res.events, ['add a/x', 'delete a/x']);
  const watches = res.transport.calls.filter((c) => c.watch);
  t.same(watches.map((w) => w.query.resourceVersion), ['1', '1', '1', '3'], 'errors do not lose the resourceVersion');
});

t.test('invalid items: reported, skipped, last good kept across relist and watch', async (t) => {
  const res = await run([
    { list: list('1', [svc('x', '1'), svc('bad', '1', 'nope'), { metadata: {} }]) },
    { watch: [{ type: 'MODIFIED', object: svc('x', '2', '999.1.1.1') }] },
    { watch: new ApiError(410, 'Expired', 'gone', '/') },
    { list: list('5', [svc('x', '4', '999.1.1.1')]) },
  ]);
  t.same(res.events, ['add a/x'], 'no events for invalid versions, no delete on relist');
  t.equal(res.cache.get('Service', 'a/x')?.clusterIPs[0], '10.96.0.1');
  t.match(res.problems.list(), [
    { kind: 'Service', key: undefined, field: 'metadata.name' },
    { kind: 'Service', key: 'a/x', field: 'spec.clusterIP', value: '999.1.1.1' },
  ]);
  t.notOk(res.problems.list().some((p) => p.key === 'a/bad'), 'gone from the relist: problem cleared');
});

t.test('pages are bounded in bytes: after a large page the next asks for fewer items, after small ones for more again', async (t) => {
  const sized = (body: Record<string, unknown>, bytes: number): Record<string, unknown> => Object.defineProperty(body, BODY_BYTES, { value: bytes, enumerable: false });
  const MB = 1 << 20;
  const res = await run(
    [
      { list: sized(list('10', [svc('a', '1')], 't1'), 4 * MB) }, // 500 items were 4 MB: next 125
      { list: sized(list('10', [svc('b', '2')], 't2'), 2 * MB) }, // 125 were 2 MB: next 62
      { list: sized(list('10', [svc('c', '3')], 't3'), 100) }, // tiny: back to the page size
      { list: sized(list('10', [svc('d', '4')], 't4'), 1000 * MB) }, // huge: never below minPageSize
      { list: list('10', [svc('e', '5')]) },
    ],
    500,
  );
  t.same(res.transport.calls.filter((c) => !c.watch).map((c) => c.query.limit), [500, 125, 62, 500, 10]);
  t.equal(res.cache.list('Service').length, 5, 'every page applied');
  t.equal(nextPageLimit(100, undefined, DEFAULT_TUNING, 100), 100, 'a transport that reports no size: unchanged');
  t.equal(nextPageLimit(100, 3 * MB, DEFAULT_TUNING, 100), 33, '100 full EndpointSlices (~3 MB): 33 per page');
  t.equal(nextPageLimit(100, 0.3 * MB, DEFAULT_TUNING, 100), 100, '100 slices of 10 endpoints (~0.3 MB): unchanged');
});
