import { Packet } from 'dns2';
import t from 'tap';
import { FakeClock, flushPromises } from '../daemon/testing/fake-clock';
import { DnsCache } from './cache';
import type { Next, Reply } from './handler';
import { DnsStats } from './metrics';
import { ask } from './testing';
import { encodeResponse, type Query, RCODE, rdata, TYPE } from './wire';

type P = { header: { rcode: number; id: number }; answers: { ttl: number; address?: string }[]; questions: { name: string }[] };
const parse = (b: Buffer | null): P => Packet.parse(b!) as unknown as P;

function reply(q: Query, rcode: number, ip: string | undefined, ttl: number, soa?: { ttl: number; min: number }): Buffer {
  const answers = ip ? [{ name: null, type: TYPE.A, ttl, data: rdata.a(ip) }] : [];
  const auth = soa ? [{ name: 'example.org', type: TYPE.SOA, ttl: soa.ttl, data: rdata.soa('ns.example.org', 'h.example.org', 1, 1, 1, 1, soa.min) }] : [];
  const msg = encodeResponse(q.msg.subarray(12, 12 + q.nameLen), q.qtype, rcode, answers, auth, [], false);
  msg.writeUInt16BE(q.id, 0);
  return msg;
}

function setup(o: Partial<ConstructorParameters<typeof DnsCache>[0]> = {}) {
  const clock = new FakeClock();
  const stats = new DnsStats();
  const cache = new DnsCache({ capacity: 100, maxTtl: 3600, staleMs: 3_600_000, staleAnswerTimeoutMs: 1800, prefetch: 0, ourSize: 1232, clock, stats, bypass: () => false, ...o });
  let calls = 0;
  let behaviour: (q: Query) => Reply | Promise<Reply> = () => null;
  const next: Next = (q) => {
    calls++;
    return behaviour(q);
  };
  const handler: Next = (q) => cache.serve(q, next);
  return {
    clock,
    stats,
    cache,
    handler,
    calls: () => calls,
    upstream: (f: (q: Query) => Reply | Promise<Reply>) => (behaviour = f),
  };
}

t.test('positive entries: served until the TTL ends, TTLs count down, question case kept', async (t) => {
  const s = setup();
  s.upstream((q) => reply(q, RCODE.NOERROR, '192.0.2.1', 60));
  let r = parse(await ask(s.handler, 'www.example.org', TYPE.A));
  t.equal(r.answers[0]!.ttl, 60);
  s.clock.advance(10_000);
  r = parse(await ask(s.handler, 'WWW.example.ORG', TYPE.A, { id: 99 }));
  t.equal(s.calls(), 1, 'hit');
  t.equal(r.header.id, 99);
  t.equal(r.questions[0]!.name, 'WWW.example.ORG');
  t.equal(r.answers[0]!.ttl, 50);
  t.equal(s.stats.cacheHitsSuccess, 1);
  s.clock.advance(51_000);
  await ask(s.handler, 'www.example.org', TYPE.A);
  t.equal(s.calls(), 2, 'expired: asked upstream again');
});

t.test('negative entries live min(SOA TTL, MINIMUM) and are never served stale', async (t) => {
  const s = setup();
  s.upstream((q) => reply(q, RCODE.NXDOMAIN, undefined, 0, { ttl: 30, min: 10 }));
  await ask(s.handler, 'nx.example.org', TYPE.A);
  s.clock.advance(9000);
  await ask(s.handler, 'nx.example.org', TYPE.A);
  t.equal(s.calls(), 1, 'cached for 10 s');
  t.equal(s.stats.cacheHitsDenial, 1);
  s.clock.advance(2000);
  s.upstream((q) => reply(q, RCODE.SERVFAIL, undefined, 0));
  const r = parse(await ask(s.handler, 'nx.example.org', TYPE.A));
  t.equal(s.calls(), 2);
  t.equal(r.header.rcode, RCODE.SERVFAIL, 'an expired NXDOMAIN is not served, not even stale');
  s.upstream((q) => reply(q, RCODE.NOERROR, '192.0.2.7', 60));
  t.equal(parse(await ask(s.handler, 'nx.example.org', TYPE.A)).answers[0]!.address, '192.0.2.7', 'the name now exists');
});

t.test('SERVFAIL is never cached and never replaces a good answer', async (t) => {
  const s = setup();
  s.upstream((q) => reply(q, RCODE.SERVFAIL, undefined, 0));
  await ask(s.handler, 'a.example.org', TYPE.A);
  await ask(s.handler, 'a.example.org', TYPE.A);
  t.equal(s.calls(), 2);
  t.equal(s.cache.size, 0);
  s.upstream((q) => reply(q, RCODE.NOERROR, '192.0.2.2', 5));
  await ask(s.handler, 'a.example.org', TYPE.A);
  s.clock.advance(6000);
  s.upstream((q) => reply(q, RCODE.SERVFAIL, undefined, 0));
  const r = parse(await ask(s.handler, 'a.example.org', TYPE.A));
  t.equal(r.header.rcode, RCODE.NOERROR, 'stale good answer instead of SERVFAIL');
  s.upstream((q) => reply(q, RCODE.NOERROR, '192.0.2.3', 5));
  t.equal(parse(await ask(s.handler, 'a.example.org', TYPE.A)).answers[0]!.address, '192.0.2.3', 'fresh again once the upstream answers');
});

t.test('serve-stale (RFC 8767): upstream first; stale with TTL 30 only on failure or after the client timer', async (t) => {
  const s = setup();
  s.upstream((q) => reply(q, RCODE.NOERROR, '192.0.2.1', 5));
  await ask(s.handler, 'svc.example.org', TYPE.A);
  s.clock.advance(6000);
  // Upstream answers with new data: it must win over the stale entry.
  s.upstream((q) => reply(q, RCODE.NOERROR, '192.0.2.9', 5));
  let r = parse(await ask(s.handler, 'svc.example.org', TYPE.A));
  t.equal(r.answers[0]!.address, '192.0.2.9', 'upstream first, not stale first (coredns #5296)');
  s.clock.advance(6000);
  s.upstream(() => null); // fails
  r = parse(await ask(s.handler, 'svc.example.org', TYPE.A));
  t.equal(r.answers[0]!.address, '192.0.2.9');
  t.equal(r.answers[0]!.ttl, 30, 'stale TTL');
  t.equal(s.stats.servedStale, 1);
  // Slow upstream: stale after the client response timer, and the late answer refreshes the entry.
  let release: (r: Reply) => void = () => undefined;
  s.upstream((q) => new Promise<Reply>((res) => (release = () => res(reply(q, RCODE.NOERROR, '192.0.2.10', 5)))));
  const pending = ask(s.handler, 'svc.example.org', TYPE.A);
  await flushPromises();
  s.clock.advance(1800);
  r = parse(await pending);
  t.equal(r.answers[0]!.address, '192.0.2.9', 'stale after 1.8 s');
  release(null);
  await flushPromises();
  t.equal(parse(await ask(s.handler, 'svc.example.org', TYPE.A)).answers[0]!.address, '192.0.2.10', 'refreshed by the late answer');
  s.clock.advance(3_700_000);
  s.upstream((q) => reply(q, RCODE.SERVFAIL, undefined, 0));
  t.equal(parse(await ask(s.handler, 'svc.example.org', TYPE.A)).header.rcode, RCODE.SERVFAIL, 'past the stale window: nothing');
});

t.test('capacity evicts the oldest entry; prefetch refreshes popular entries early', async (t) => {
  const s = setup({ capacity: 2, prefetch: 2 });
  s.upstream((q) => reply(q, RCODE.NOERROR, '192.0.2.1', 100));
  await ask(s.handler, 'a.example.org', TYPE.A);
  await ask(s.handler, 'b.example.org', TYPE.A);
  await ask(s.handler, 'c.example.org', TYPE.A);
  t.equal(s.cache.size, 2);
  await ask(s.handler, 'a.example.org', TYPE.A);
  t.equal(s.calls(), 4, 'a was evicted');
  await ask(s.handler, 'a.example.org', TYPE.A);
  s.clock.advance(95_000);
  await ask(s.handler, 'a.example.org', TYPE.A); // 2nd hit, < 10% left: prefetch
  await flushPromises();
  t.equal(s.calls(), 5, 'prefetched');
  s.clock.advance(10_000);
  await ask(s.handler, 'a.example.org', TYPE.A);
  t.equal(s.calls(), 5, 'the prefetched entry is fresh');
});

t.test('identical concurrent misses share one upstream query', async (t) => {
  const s = setup();
  s.upstream((q) => new Promise<Reply>((res) => setImmediate(() => res(reply(q, RCODE.NOERROR, '192.0.2.1', 60)))));
  const [a, b] = await Promise.all([ask(s.handler, 'x.example.org', TYPE.A, { id: 1 }), ask(s.handler, 'x.example.org', TYPE.A, { id: 2 })]);
  t.equal(s.calls(), 1);
  t.equal(parse(a).header.id, 1);
  t.equal(parse(b).header.id, 2);
});
