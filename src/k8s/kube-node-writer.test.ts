/** KubeNodeWriter against a scripted transport: retries, conflicts, give-ups, own node only. */
import t from 'tap';
import type { Clock } from '../common';
import { PodwireError, silentLogger } from '../common';
import { ApiError, type ApiRequest, type ApiTransport } from './api-client';
import { apiTime, KubeNodeWriter, NodeWriteError } from './kube-node-writer';

type Answer = Record<string, unknown> | Error;

function scripted(answers: Answer[]): ApiTransport & { calls: ApiRequest[] } {
  const calls: ApiRequest[] = [];
  return {
    calls,
    getJson: () => Promise.reject(new Error('not used')),
    watch: () => Promise.reject(new Error('not used')),
    async requestJson(req) {
      calls.push(req);
      const a = answers.shift();
      if (a === undefined) throw new Error(`unscripted ${req.method} ${req.path}`);
      if (a instanceof Error) throw a;
      return a;
    },
  };
}

/** Fires every delay on the next macrotask and records it. */
function fastClock(now = Date.parse('2026-12-01T10:00:00.750Z')): Clock & { delays: number[]; at: number } {
  const c = {
    delays: [] as number[],
    at: now,
    now: () => c.at,
    setTimeout(fn: () => void, ms: number) {
      c.delays.push(ms);
      const h = setImmediate(fn);
      return { cancel: () => clearImmediate(h) };
    },
  };
  return c;
}

const nodeBody = (rv: string, conditions: unknown[] = []) => ({ kind: 'Node', metadata: { name: 'node-a', resourceVersion: rv }, status: { conditions } });
const writer = (transport: ApiTransport, clock = fastClock()) =>
  new KubeNodeWriter({ nodeName: 'node-a', transport: async () => transport, logger: silentLogger, clock, random: () => 0.5, retry: { attempts: 4, initialMs: 100, maxMs: 1000 } });

t.test('apiTime: second precision, as metav1.Time', async (t) => {
  t.equal(apiTime(Date.parse('2026-12-01T10:00:00.750Z')), '2026-12-01T10:00:00Z');
});

t.test('annotations: one merge patch on the Node; transient errors retried with backoff and Retry-After', async (t) => {
  const busy = new ApiError(429, 'TooManyRequests', 'slow down', '/api/v1/nodes/node-a');
  busy.retryAfterSeconds = 0.5;
  const tr = scripted([new ApiError(503, 'ServiceUnavailable', 'etcd', '/'), new PodwireError('PW_K8S_CONNECT', 'cannot reach'), busy, nodeBody('5')]);
  const clock = fastClock();
  const w = writer(tr, clock);
  await w.patchAnnotations({ 'podwire.io/backend': 'vxlan', gone: null });
  t.equal(tr.calls.length, 4);
  t.same(tr.calls[0], { method: 'PATCH', path: '/api/v1/nodes/node-a', contentType: 'application/merge-patch+json', body: { metadata: { annotations: { 'podwire.io/backend': 'vxlan', gone: null } } } });
  t.same(clock.delays, [100, 200, 500], 'exponential (jitter 1.0 here), Retry-After respected');
  t.equal(w.stats.retries, 3);
  await w.patchAnnotations({});
  t.equal(tr.calls.length, 4, 'nothing to write: no request');
});

t.test('conditions: read once, strategic merge patch with resourceVersion; transition time kept while status is unchanged', async (t) => {
  const kubelet = { type: 'Ready', status: 'True', lastTransitionTime: '2026-01-01T00:00:00Z' };
  const mine = (status: string, ltt: string) => ({ type: 'PodwireOverlayReady', status, lastTransitionTime: ltt });
  const tr = scripted([
    nodeBody('7', [kubelet]),
    nodeBody('8', [kubelet, mine('False', '2026-12-01T10:00:00Z')]),
    nodeBody('9', [kubelet, mine('False', '2026-12-01T10:00:00Z')]),
    nodeBody('10', [kubelet, mine('True', '2026-12-01T10:02:00Z')]),
  ]);
  const clock = fastClock();
  const w = writer(tr, clock);
  await w.setCondition({ type: 'PodwireOverlayReady', status: 'False', reason: 'Starting', message: 'm1' });
  t.same(tr.calls[0], { method: 'GET', path: '/api/v1/nodes/node-a' });
  t.match(tr.calls[1], {
    method: 'PATCH',
    path: '/api/v1/nodes/node-a/status',
    contentType: 'application/strategic-merge-patch+json',
    body: { metadata: { resourceVersion: '7' }, status: { conditions: [{ type: 'PodwireOverlayReady', status: 'False', reason: 'Starting', message: 'm1', lastHeartbeatTime: '2026-12-01T10:00:00Z', lastTransitionTime: '2026-12-01T10:00:00Z' }] } },
  });
  clock.at += 60_000;
  await w.setCondition({ type: 'PodwireOverlayReady', status: 'False', reason: 'Starting', message: 'm2' });
  t.match(tr.calls[2], { body: { metadata: { resourceVersion: '8' }, status: { conditions: [{ lastHeartbeatTime: '2026-12-01T10:01:00Z', lastTransitionTime: '2026-12-01T10:00:00Z' }] } } });
  clock.at += 60_000;
  await w.setCondition({ type: 'PodwireOverlayReady', status: 'True', reason: 'Ready', message: 'm3' });
  t.match(tr.calls[3], { body: { metadata: { resourceVersion: '9' }, status: { conditions: [{ status: 'True', lastTransitionTime: '2026-12-01T10:02:00Z' }] } } });
  t.equal(w.stats.reads, 1, 'later writes use the PATCH answers');
});

t.test('409: re-read, recompute from the fresh Node, retry; bounded', async (t) => {
  const conflict = () => new ApiError(409, 'Conflict', 'the object has been modified', '/api/v1/nodes/node-a/status');
  const fresh = nodeBody('12', [{ type: 'PodwireOverlayReady', status: 'True', lastTransitionTime: '2026-11-30T00:00:00Z' }]);
  const tr = scripted([nodeBody('10'), conflict(), fresh, nodeBody('13')]);
  const w = writer(tr);
  await w.setCondition({ type: 'PodwireOverlayReady', status: 'True', reason: 'Ready', message: 'ok' });
  t.same(tr.calls.map((c) => c.method), ['GET', 'PATCH', 'GET', 'PATCH']);
  t.match(tr.calls[3], { body: { metadata: { resourceVersion: '12' }, status: { conditions: [{ lastTransitionTime: '2026-11-30T00:00:00Z' }] } } }, 'transition time from the fresh copy');
  t.equal(w.stats.conflicts, 1);

  const always = scripted([nodeBody('1'), ...Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? conflict() : nodeBody(String(i))))]);
  const w2 = new KubeNodeWriter({ nodeName: 'node-a', transport: async () => always, logger: silentLogger, clock: fastClock(), retry: { conflicts: 3 } });
  await t.rejects(w2.setCondition({ type: 'X', status: 'True', reason: 'r', message: 'm' }), { code: 'PW_K8S_NODE_WRITE', statusCode: 409, message: /of Node node-a: HTTP 409 Conflict/ });
});

t.test('403/422/404 give up at once with node, field and status; a failed write does not block the next', async (t) => {
  const forbidden = new ApiError(403, 'Forbidden', 'nodes "node-a" is forbidden: User "x" cannot patch resource "nodes/status"', '/api/v1/nodes/node-a/status');
  const tr = scripted([nodeBody('1'), forbidden, nodeBody('2')]);
  const w = writer(tr);
  const err = await w.setCondition({ type: 'PodwireOverlayReady', status: 'True', reason: 'r', message: 'm' }).catch((e: unknown) => e);
  t.ok(err instanceof NodeWriteError);
  t.match(err, { code: 'PW_K8S_NODE_WRITE', field: 'status.conditions[PodwireOverlayReady]', value: 'node-a', statusCode: 403, nodeName: 'node-a' });
  t.equal((err as Error).message, 'cannot write status.conditions[PodwireOverlayReady] of Node node-a: HTTP 403 Forbidden: nodes "node-a" is forbidden: User "x" cannot patch resource "nodes/status"');
  t.equal(tr.calls.length, 2, 'not retried');
  await w.patchAnnotations({ a: 'b' });
  t.equal(tr.calls.length, 3);
  const tr2 = scripted([new ApiError(422, 'Invalid', 'metadata.annotations: Invalid value', '/')]);
  await t.rejects(writer(tr2).patchAnnotations({ a: 'b' }), { statusCode: 422, field: 'metadata.annotations[a]', message: /HTTP 422/ });
});

t.test('own node only, input checked; writes before start wait; abort ends them', async (t) => {
  t.throws(() => new KubeNodeWriter({ nodeName: 'Bad/Name', transport: async () => scripted([]), logger: silentLogger }), { code: 'PW_INVALID_INPUT' });
  const w = writer(scripted([]));
  await t.rejects(w.setCondition({ type: 'X', status: 'Maybe' as 'True', reason: '', message: '' }), { code: 'PW_INVALID_INPUT' });
  await t.rejects(w.patchAnnotations({ '': 'x' }), { code: 'PW_INVALID_INPUT' });
  let ready!: (tr: ApiTransport) => void;
  const pending = new Promise<ApiTransport>((r) => (ready = r));
  const tr = scripted([nodeBody('3')]);
  const late = new KubeNodeWriter({ nodeName: 'node-a', transport: () => pending, logger: silentLogger });
  const p = late.patchAnnotations({ a: 'b' });
  ready(tr);
  await p;
  t.equal(tr.calls.length, 1, 'sent once the transport exists');
  const never = new KubeNodeWriter({ nodeName: 'node-a', transport: () => new Promise<ApiTransport>(() => undefined), logger: silentLogger });
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(new Error('aborted by the test')), 20); // ref'd, unlike AbortSignal.timeout
  await t.rejects(never.patchAnnotations({ a: 'b' }, ac.signal), /aborted by the test/);
  clearTimeout(timer);
  t.ok(tr.calls.every((c) => c.path.startsWith('/api/v1/nodes/node-a')), 'only its own Node');
});
