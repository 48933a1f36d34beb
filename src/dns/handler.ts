/**
 * The handler chain (CoreDNS's plugin chain): each handler answers, or passes the query
 * to `next`. The order is one declared list, CHAIN_ORDER, as in CoreDNS's plugin.cfg.
 * A handler returns the response bytes (ID and question already the client's), `null`
 * to drop, or a Promise of either; synchronous answers stay synchronous (the cluster
 * zone's hot path never creates a Promise).
 */
import type { Logger } from '../common/log';
import type { DnsStats } from './metrics';
import { bareResponse, keyToName, type Query, RCODE, rcodeOf } from './wire';

export type Reply = Buffer | null;
export type Next = (q: Query) => Reply | Promise<Reply>;

export interface Handler {
  readonly name: string;
  serve(q: Query, next: Next): Reply | Promise<Reply>;
}

/** The order of the chain, first to last. */
// autopath sits before the cache: its answer depends on the asking pod, so it must never be
// cached under the query name; its forwarded candidates do go through the cache.
export const CHAIN_ORDER = ['log', 'metrics', 'autopath', 'cache', 'kubernetes', 'stub', 'forward'] as const;
export type HandlerName = (typeof CHAIN_ORDER)[number];

/** Compose handlers in CHAIN_ORDER; a query that reaches the end gets REFUSED. */
export function buildChain(handlers: Partial<Record<HandlerName, Handler>>): Next {
  let next: Next = (q) => bareResponse(q, RCODE.REFUSED, { ednsSize: 1232 });
  for (const name of [...CHAIN_ORDER].reverse()) {
    const h = handlers[name];
    if (!h) continue;
    const after = next;
    next = (q) => h.serve(q, after);
  }
  return next;
}

function isPromise(x: Reply | Promise<Reply>): x is Promise<Reply> {
  return x !== null && typeof (x as Promise<Reply>).then === 'function';
}

/** `log`: one line per query at info (CoreDNS's log plugin); off unless enabled. */
export function logHandler(logger: Logger): Handler {
  return {
    name: 'log',
    serve(q, next) {
      const t0 = performance.now();
      const r = next(q);
      const done = (reply: Reply): Reply => {
        logger.info({ client: q.client, proto: q.transport, qtype: q.qtype, name: keyToName(q.key), rcode: reply ? rcodeOf(reply) : 'dropped', ms: +(performance.now() - t0).toFixed(3) }, 'query');
        return reply;
      };
      return isPromise(r) ? r.then(done) : done(r);
    },
  };
}

/** `metrics`: counts requests, responses by rcode and durations into preallocated arrays. */
export function metricsHandler(stats: DnsStats): Handler {
  return {
    name: 'metrics',
    serve(q, next) {
      stats.request(q);
      const r = next(q);
      if (isPromise(r)) {
        const t0 = performance.now();
        return r.then((reply) => {
          stats.response(reply, q, performance.now() - t0);
          return reply;
        });
      }
      // A synchronous answer is a precomputed template copied without I/O: counted in the
      // first duration bucket (<= 0.25 ms) without reading the clock twice per query.
      stats.response(r, q, 0);
      return r;
    },
  };
}

export { isPromise };
