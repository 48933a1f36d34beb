import t from 'tap';
import { silentLogger } from '../common';
import { ObjectCache, SyncLatch } from './cache';
import { compact } from './compact';
import type { ClusterEvent, ServiceObject } from './types';

const svc = (name: string, port: number, rv: string) =>
  compact('Service', { metadata: { name, namespace: 'a', resourceVersion: rv }, spec: { clusterIP: '10.96.0.5', ports: [{ port }] } });

function describe(e: ClusterEvent): string {
  const obj = e.type === 'delete' ? e.previous : e.current;
  return `${e.type} ${e.kind} ${obj.meta.key}`;
}

t.test('events: add, update, delete in order; none for identical content', async (t) => {
  const cache = new ObjectCache(silentLogger);
  const events: ClusterEvent[] = [];
  cache.onEvent((e) => events.push(e));
  t.equal(cache.upsert(svc('x', 80, '1')), true);
  t.equal(cache.upsert(svc('x', 80, '2')), false, 'new resourceVersion, same content: no event');
  t.equal(cache.get('Service', 'a/x')?.meta.resourceVersion, '2', 'cache still holds the newest version');
  t.equal(cache.upsert(svc('x', 81, '3')), true);
  t.equal(cache.upsert(svc('y', 80, '4')), true);
  t.equal(cache.remove('Service', 'a/x'), true);
  t.equal(cache.remove('Service', 'a/x'), false, 'second delete: nothing');
  t.same(events.map(describe), ['add Service a/x', 'update Service a/x', 'add Service a/y', 'delete Service a/x']);
  const upd = events[1]!;
  t.equal(upd.type, 'update');
  if (upd.type === 'update') {
    t.equal((upd.previous as ServiceObject).ports[0]!.port, 80, 'previous is the old object');
    t.equal((upd.current as ServiceObject).ports[0]!.port, 81);
  }
  const del = events[3]!;
  t.equal(del.type === 'delete' && (del.previous as ServiceObject).ports[0]!.port, 81, 'delete carries the last version');
});

t.test('deleteMissing delivers deletes for vanished keys only', async (t) => {
  const cache = new ObjectCache(silentLogger);
  for (const n of ['a', 'b', 'c']) cache.upsert(svc(n, 80, '1'));
  const events: string[] = [];
  cache.onEvent((e) => events.push(describe(e)));
  t.equal(cache.deleteMissing('Service', new Set(['a/a', 'a/c'])), 1);
  t.same(events, ['delete Service a/b']);
  t.same(cache.list('Service').map((s) => s.meta.key).sort(), ['a/a', 'a/c']);
});

t.test('a throwing handler does not stop other handlers', async (t) => {
  const cache = new ObjectCache(silentLogger);
  let seen = 0;
  cache.onEvent(() => {
    throw new Error('boom');
  });
  const off = cache.onEvent(() => seen++);
  cache.upsert(svc('x', 80, '1'));
  off();
  cache.upsert(svc('x', 81, '2'));
  t.equal(seen, 1, 'second handler saw the first event, then unsubscribed');
});

t.test('SyncLatch resolves waiters and honours abort', async (t) => {
  const latch = new SyncLatch();
  const ac = new AbortController();
  const aborted = latch.wait(ac.signal);
  ac.abort(new Error('stop'));
  await t.rejects(aborted, /stop/);
  const waiting = latch.wait();
  latch.set();
  await waiting;
  t.ok(latch.isSet);
  await latch.wait();
});
