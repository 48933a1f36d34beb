/**
 * The Kubernetes source's NodeWriter against the fixture API server (real HTTP on
 * 127.0.0.1, the same client stack and credentials as list/watch). No root needed.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { silentLogger, systemClock } from '../../src/common';
import { KubeNodeWriter, NodeWriteError, nodeWriterOf, type KubernetesSource } from '../../src/k8s';
import * as o from '../fixtures/apiserver/objects';
import { FakeApiServer, type KObject } from '../fixtures/apiserver/server';
import { startSource, waitFor } from './helpers';

interface Harness {
  api: FakeApiServer;
  src: KubernetesSource;
  writer: KubeNodeWriter;
  kubeconfig: string;
  dir: string;
  clock: { now(): number; setTimeout: typeof systemClock.setTimeout; at: number };
}

async function setup(t: Test, nodeName = 'node-a'): Promise<Harness> {
  const api = new FakeApiServer();
  await api.start();
  const dir = mkdtempSync(join(tmpdir(), 'pwk-nodewriter-'));
  const kubeconfig = join(dir, 'kubeconfig');
  api.writeKubeconfig(kubeconfig);
  const kubeletNode = o.node('node-a', '198.18.0.2', '10.244.0.0/24');
  (kubeletNode.status as { conditions: unknown[] }).conditions = [
    { type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'kubelet is posting ready status', lastHeartbeatTime: '2026-01-01T00:00:00Z', lastTransitionTime: '2026-01-01T00:00:00Z' },
  ];
  api.put('nodes', kubeletNode);
  const clock = { at: Date.parse('2026-12-01T10:00:00Z'), now(): number { return this.at; }, setTimeout: systemClock.setTimeout };
  const { src } = await startSource(t, api, dir, {
    kubeconfigPath: kubeconfig,
    nodeName,
    logger: silentLogger,
    kinds: ['Node'],
    clock,
    tuning: { backoffInitialMs: 20, backoffMaxMs: 200 },
    nodeWriteRetry: { initialMs: 10, maxMs: 50 },
  });
  await src.waitForSync(AbortSignal.timeout(15_000));
  const writer = nodeWriterOf(src) as KubeNodeWriter;
  return { api, src, writer, kubeconfig, dir, clock };
}

const conditionsOf = (n: KObject | undefined) => ((n?.status as { conditions?: Record<string, string>[] } | undefined)?.conditions ?? []);
const annotationsOf = (n: KObject | undefined): Record<string, string> => (n?.metadata.annotations ?? {}) as Record<string, string>;
const patches = (api: FakeApiServer) => api.requests.filter((r) => r.method === 'PATCH');

t.test('nodeWriterOf(kubernetes source) writes back; annotations as a merge patch, read back by a second source through its watch', async (t) => {
  const h = await setup(t);
  t.ok(h.writer instanceof KubeNodeWriter);
  t.equal(h.writer.writesBack, true);
  t.equal(nodeWriterOf(h.src), h.writer, 'one writer per source');

  // A second, independent source (another node's daemon) watching the Nodes.
  const { src: reader, events } = await startSource(t, h.api, mkdtempSync(join(tmpdir(), 'pwk-nodewriter-r-')), {
    kubeconfigPath: h.kubeconfig,
    nodeName: 'node-b',
    logger: silentLogger,
    kinds: ['Node'],
  });
  await reader.waitForSync(AbortSignal.timeout(15_000));
  await waitFor(t, 'reader watch open', () => h.api.watcherCount === 2);
  events.length = 0;
  const rvBefore = Number(h.api.resourceVersion);

  await h.writer.patchAnnotations({ 'podwire.io/vtep-mac': '0a:58:0a:f4:00:01', 'podwire.io/backend': 'vxlan' });
  const p = patches(h.api);
  t.equal(p.length, 1);
  t.match(p[0], { path: '/api/v1/nodes/node-a', contentType: 'application/merge-patch+json', status: 200, body: { metadata: { annotations: { 'podwire.io/vtep-mac': '0a:58:0a:f4:00:01' } } } });
  t.equal(Number(h.api.get('nodes', 'node-a')!.metadata.resourceVersion), rvBefore + 1, 'resourceVersion bumped once');
  await waitFor(t, 'the reader sees the annotation', () => reader.get('Node', 'node-a')?.meta.annotations['podwire.io/vtep-mac'] === '0a:58:0a:f4:00:01');
  t.same(events, ['update Node node-a'], 'delivered as one MODIFIED → update');
  t.equal(reader.get('Node', 'node-a')?.meta.annotations['podwire.io/backend'], 'vxlan');
  t.same(conditionsOf(h.api.get('nodes', 'node-a')).map((c) => c.type), ['Ready'], 'status untouched by a main-resource patch');

  // null removes one; the other stays.
  await h.writer.patchAnnotations({ 'podwire.io/backend': null });
  await waitFor(t, 'the removal reaches the reader', () => reader.get('Node', 'node-a')?.meta.annotations['podwire.io/backend'] === undefined);
  t.equal(reader.get('Node', 'node-a')?.meta.annotations['podwire.io/vtep-mac'], '0a:58:0a:f4:00:01');
  t.equal(h.src.get('Node', 'node-a')?.meta.annotations['podwire.io/vtep-mac'], '0a:58:0a:f4:00:01', 'and the writer’s own source');

  // The same values again: the server writes nothing, no event.
  const rv = h.api.get('nodes', 'node-a')!.metadata.resourceVersion;
  await h.writer.patchAnnotations({ 'podwire.io/vtep-mac': '0a:58:0a:f4:00:01' });
  t.equal(h.api.get('nodes', 'node-a')!.metadata.resourceVersion, rv, 'no-op patch: no new resourceVersion');
  t.ok(h.api.requests.every((r) => r.path.startsWith('/api/v1/nodes') && (r.method === 'GET' || r.path.startsWith('/api/v1/nodes/node-a'))), 'only its own Node is ever written');
});

t.test('conditions: strategic merge patch on nodes/status, merged by type; transition time only moves when status changes', async (t) => {
  const h = await setup(t);
  await h.writer.setCondition({ type: 'PodwireOverlayReady', status: 'False', reason: 'Starting', message: 'overlay starting' });
  let p = patches(h.api);
  t.match(p.at(-1), { path: '/api/v1/nodes/node-a/status', contentType: 'application/strategic-merge-patch+json', status: 200 });
  let conds = conditionsOf(h.api.get('nodes', 'node-a'));
  t.same(conds.map((c) => c.type), ['Ready', 'PodwireOverlayReady'], "the kubelet's Ready condition is kept (merge by type)");
  const first = conds[1]!;
  t.match(first, { status: 'False', reason: 'Starting', message: 'overlay starting', lastHeartbeatTime: '2026-12-01T10:00:00Z', lastTransitionTime: '2026-12-01T10:00:00Z' });

  // Same status, later: heartbeat moves, transition time does not.
  h.clock.at += 60_000;
  await h.writer.setCondition({ type: 'PodwireOverlayReady', status: 'False', reason: 'Starting', message: 'still starting' });
  conds = conditionsOf(h.api.get('nodes', 'node-a'));
  t.match(conds[1], { status: 'False', message: 'still starting', lastHeartbeatTime: '2026-12-01T10:01:00Z', lastTransitionTime: '2026-12-01T10:00:00Z' });
  t.equal(conds.length, 2, 'no duplicate condition');

  // Status changes: both move.
  h.clock.at += 60_000;
  await h.writer.setCondition({ type: 'PodwireOverlayReady', status: 'True', reason: 'Ready', message: 'routes programmed' });
  conds = conditionsOf(h.api.get('nodes', 'node-a'));
  t.match(conds[1], { status: 'True', lastHeartbeatTime: '2026-12-01T10:02:00Z', lastTransitionTime: '2026-12-01T10:02:00Z' });
  t.match(conds[0], { type: 'Ready', lastTransitionTime: '2026-01-01T00:00:00Z' }, 'other conditions untouched');
  p = patches(h.api);
  t.ok(p.every((r) => r.path === '/api/v1/nodes/node-a/status'), 'every condition write went to the status subresource');
  t.equal(h.writer.stats.reads, 1, 'the Node was read once; later writes use the PATCH answers');
  t.equal((h.api.get('nodes', 'node-a')!.spec as { podCIDR: string }).podCIDR, '10.244.0.0/24', 'spec untouched');
});

t.test('409 Conflict: the Node changed under us; re-read and retry, transition time from the fresh copy', async (t) => {
  const h = await setup(t);
  await h.writer.setCondition({ type: 'PodwireOverlayReady', status: 'True', reason: 'Ready', message: 'ok' });
  const ltt = conditionsOf(h.api.get('nodes', 'node-a'))[1]!.lastTransitionTime;
  // Someone else (the kubelet) writes the Node: our cached resourceVersion is now stale.
  const cur = h.api.get('nodes', 'node-a')!;
  h.api.put('nodes', { ...cur, metadata: { ...cur.metadata, labels: { ...cur.metadata.labels, touched: 'yes' } } });
  h.clock.at += 30_000;
  await h.writer.setCondition({ type: 'PodwireOverlayReady', status: 'True', reason: 'Ready', message: 'still ok' });
  const statuses = patches(h.api).map((r) => r.status);
  t.same(statuses, [200, 409, 200], 'a 409, then success');
  t.equal(h.writer.stats.conflicts, 1);
  t.equal(h.writer.stats.reads, 2, 're-read after the conflict');
  const c = conditionsOf(h.api.get('nodes', 'node-a'))[1]!;
  t.match(c, { message: 'still ok', lastTransitionTime: ltt }, 'status unchanged: transition time kept');
  t.equal(h.api.get('nodes', 'node-a')!.metadata.labels?.touched, 'yes', "the other writer's change survives");

  // An injected 409 on the annotation patch: retried after a re-read.
  h.api.injectFault({ method: 'PATCH', path: '/api/v1/nodes/node-a', status: 409, reason: 'Conflict', message: 'Operation cannot be fulfilled', times: 1 });
  await h.writer.patchAnnotations({ 'podwire.io/public-ip': '198.18.0.2' });
  t.equal(annotationsOf(h.api.get('nodes', 'node-a'))['podwire.io/public-ip'], '198.18.0.2');
  t.equal(h.writer.stats.conflicts, 2);
});

t.test('403 from RBAC: given up at once, the error names node, field and HTTP status', async (t) => {
  const h = await setup(t);
  h.api.deny.add('patch nodes/status');
  const before = patches(h.api).length;
  const err = await h.writer.setCondition({ type: 'PodwireOverlayReady', status: 'True', reason: 'Ready', message: 'ok' }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof NodeWriteError, 'a NodeWriteError');
  const e = err as NodeWriteError;
  t.equal(e.code, 'PW_K8S_NODE_WRITE');
  t.equal(e.statusCode, 403);
  t.equal(e.field, 'status.conditions[PodwireOverlayReady]');
  t.equal(e.nodeName, 'node-a');
  t.match(e.message, /^cannot write status\.conditions\[PodwireOverlayReady\] of Node node-a: HTTP 403 Forbidden: nodes "node-a" is forbidden: User "system:serviceaccount:kube-system:podwire" cannot patch resource "nodes\/status"/);
  t.equal(patches(h.api).length - before, 1, 'not retried');
  // The writer still works for what is allowed.
  await h.writer.patchAnnotations({ 'podwire.io/backend': 'vxlan' });
  t.equal(annotationsOf(h.api.get('nodes', 'node-a'))['podwire.io/backend'], 'vxlan');
});

t.test('transient failures are retried: 503 twice, 429 with Retry-After; 422 and 404 are not', async (t) => {
  const h = await setup(t);
  h.api.injectFault({ method: 'PATCH', status: 503, reason: 'ServiceUnavailable', times: 2 });
  await h.writer.patchAnnotations({ a: '1' });
  t.equal(h.writer.stats.retries, 2, 'two retries, then success');
  t.equal(annotationsOf(h.api.get('nodes', 'node-a')).a, '1');
  h.api.injectFault({ method: 'PATCH', status: 429, reason: 'TooManyRequests', times: 1, retryAfterSeconds: 0 });
  await h.writer.patchAnnotations({ a: '2' });
  t.equal(h.writer.stats.retries, 3);
  h.api.injectFault({ method: 'PATCH', status: 422, reason: 'Invalid', message: 'Node "node-a" is invalid: metadata.annotations: Invalid value', times: 1 });
  await t.rejects(h.writer.patchAnnotations({ a: '3' }), { code: 'PW_K8S_NODE_WRITE', statusCode: 422, message: /of Node node-a: HTTP 422 Invalid/ });
  t.equal(h.writer.stats.retries, 3, '422 not retried');
  // Every attempt failing: gives up with the count.
  h.api.injectFault({ method: 'PATCH', status: 500, reason: 'InternalError', times: 100 });
  await t.rejects(h.writer.patchAnnotations({ a: '4' }), { statusCode: 500, message: /HTTP 500 InternalError.*after 8 attempts/ });
});

t.test('a missing Node is a 404, reported with its name', async (t) => {
  const h = await setup(t, 'node-z');
  await t.rejects(h.writer.setCondition({ type: 'PodwireOverlayReady', status: 'True', reason: 'Ready', message: 'ok' }), {
    statusCode: 404,
    message: /Node node-z: HTTP 404 NotFound: nodes "node-z" not found/,
  });
  await t.rejects(h.writer.patchAnnotations({ a: '1' }), { statusCode: 404, message: /HTTP 404/ });
});

t.test('fixture: 415 for other content types, 404 for a missing Node, GET of one object, main resource ignores status', async (t) => {
  const api = new FakeApiServer();
  await api.start();
  t.teardown(() => api.stop());
  api.put('nodes', o.node('node-a', '198.18.0.2', '10.244.0.0/24'));
  const req = (method: string, path: string, body?: unknown, contentType?: string) =>
    fetch(`${api.url}${path}`, {
      method,
      headers: { Authorization: `Bearer ${api.token}`, ...(contentType ? { 'Content-Type': contentType } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    }).then(async (r) => ({ status: r.status, body: (await r.json()) as Record<string, unknown> }));
  const r415 = await req('PATCH', '/api/v1/nodes/node-a', { metadata: { labels: { x: 'y' } } }, 'text/plain');
  t.match(r415, { status: 415, body: { kind: 'Status', reason: 'UnsupportedMediaType', code: 415 } });
  t.match(await req('PATCH', '/api/v1/nodes/missing', {}, 'application/merge-patch+json'), { status: 404, body: { reason: 'NotFound', message: 'nodes "missing" not found' } });
  t.match(await req('GET', '/api/v1/nodes/node-a'), { status: 200, body: { kind: 'Node', metadata: { name: 'node-a' } } });
  t.match(await req('GET', '/api/v1/nodes/missing'), { status: 404 });
  const rv = Number(api.resourceVersion);
  const r = await req('PATCH', '/api/v1/nodes/node-a', { metadata: { labels: { x: 'y' } }, status: { conditions: [] } }, 'application/merge-patch+json');
  t.equal(r.status, 200);
  t.match(r.body, { kind: 'Node', apiVersion: 'v1', metadata: { labels: { x: 'y' }, resourceVersion: String(rv + 1) } }, 'the full updated object');
  t.equal(((r.body.status as { conditions: unknown[] }).conditions).length, 1, 'status kept by the main resource');
  const s = await req('PATCH', '/api/v1/nodes/node-a/status', { spec: { unschedulable: true }, status: { conditions: [{ type: 'X', status: 'True' }] } }, 'application/strategic-merge-patch+json');
  t.same(((s.body.status as { conditions: { type: string }[] }).conditions).map((c) => c.type), ['Ready', 'X'], 'merged by type');
  t.equal((s.body.spec as { unschedulable?: boolean }).unschedulable, undefined, 'spec kept by the status subresource');
  t.match(await req('PATCH', '/api/v1/nodes/node-a/status', { metadata: { resourceVersion: '1' } }, 'application/strategic-merge-patch+json'), { status: 409, body: { reason: 'Conflict' } });
});
