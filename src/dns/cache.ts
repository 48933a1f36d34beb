/**
 * One cache for forwarded answers (never for the cluster zone: those answers are
 * already precomputed and must follow the live state).
 *
 * - Positive entries live for the answer's smallest TTL (capped at maxTtl), negative
 *   ones (NXDOMAIN, NODATA) for min(SOA TTL, SOA MINIMUM) (RFC 2308); an NXDOMAIN is
 *   never served after that, not even stale.
 * - SERVFAIL, REFUSED, truncated answers are never cached, so a failure never replaces
 *   (or hides) a good answer.
 * - Serve-stale per RFC 8767: the upstream is always asked first once an entry expired;
 *   a stale positive answer (TTL 30) is used only when the upstream fails, or has not
 *   answered within `staleAnswerTimeoutMs` (the client response timer); resolution
 *   goes on and refreshes the entry.
 * - Capacity: the oldest entry is evicted first. Prefetch: an entry asked for at least
 *   `prefetch` times is refreshed in the background when less than 10% of its TTL is left.
 * - Identical concurrent misses share one upstream query.
 */
import type { Clock } from '../common/clock';
import { type Handler, isPromise, type Next, type Reply } from './handler';
import type { DnsStats } from './metrics';
import { HEADER_LEN, OPT_LEN, type Query, RCODE, rcodeOf, scanMessage, writeOpt } from './wire';

export interface CacheOptions {
  capacity: number;
  /** Largest TTL honoured, seconds. */
  maxTtl: number;
  /** How long past expiry a positive entry may be served stale, ms (0: never). */
  staleMs: number;
  /** RFC 8767 client response timer, ms. */
  staleAnswerTimeoutMs: number;
  /** Hits before an entry is prefetched (0: off). */
  prefetch: number;
  ourSize: number;
  clock: Clock;
  stats: DnsStats;
  /** Names never cached (the cluster zone). */
  bypass(q: Query): boolean;
}

interface Entry {
  /** The response without OPT; its ID and question case are patched per hit. */
  tpl: Buffer;
  ttlOffsets: number[];
  ttls: number[];
  storedAt: number;
  expiresAt: number;
  ttl: number;
  positive: boolean;
  negative: boolean;
  hits: number;
  prefetching: boolean;
}

const STALE_TTL = 30;

export class DnsCache implements Handler {
  readonly name = 'cache';
  private readonly entries = new Map<string, Entry>();
  private readonly inflight = new Map<string, Promise<Reply>>();

  constructor(private readonly opts: CacheOptions) {}

  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    this.entries.clear();
  }

  private keyOf(q: Query): string {
    return `${q.qtype}/${q.qclass}/${q.dnssecOk}/${q.key}`;
  }

  serve(q: Query, next: Next): Reply | Promise<Reply> {
    if (this.opts.bypass(q)) return next(q);
    const key = this.keyOf(q);
    const e = this.entries.get(key);
    const now = this.opts.clock.now();
    if (e && now < e.expiresAt) {
      if (e.negative) this.opts.stats.cacheHitsDenial++;
      else this.opts.stats.cacheHitsSuccess++;
      e.hits++;
      if (this.opts.prefetch > 0 && e.hits >= this.opts.prefetch && !e.prefetching && e.expiresAt - now < e.ttl * 100) {
        e.prefetching = true;
        void Promise.resolve(this.fetch(key, q, next)).finally(() => (e.prefetching = false));
      }
      return this.answer(e, q, now, false);
    }
    this.opts.stats.cacheMisses++;
    const stale = e && e.positive && now < e.expiresAt + this.opts.staleMs ? e : undefined;
    if (e && !stale) this.entries.delete(key);
    const fresh = this.fetch(key, q, next);
    if (!stale) return isPromise(fresh) ? fresh.then((r) => this.adapt(r, q)) : this.adapt(fresh, q);
    // Upstream first; stale only on failure or when it is too slow.
    return new Promise<Reply>((resolve) => {
      let done = false;
      const timer = this.opts.clock.setTimeout(() => {
        if (done) return;
        done = true;
        this.opts.stats.servedStale++;
        resolve(this.answer(stale, q, this.opts.clock.now(), true));
      }, this.opts.staleAnswerTimeoutMs);
      void Promise.resolve(fresh).then((r) => {
        if (done) return;
        done = true;
        timer.cancel();
        const rc = r ? rcodeOf(r) : RCODE.SERVFAIL;
        if (r === null || rc === RCODE.SERVFAIL || rc === RCODE.REFUSED) {
          this.opts.stats.servedStale++;
          resolve(this.answer(stale, q, this.opts.clock.now(), true));
        } else resolve(this.adapt(r, q));
      });
    });
  }

  /** Ask `next` once per key at a time; store what is cacheable. */
  private fetch(key: string, q: Query, next: Next): Reply | Promise<Reply> {
    const running = this.inflight.get(key);
    if (running) return running;
    const r = next(q);
    if (!isPromise(r)) {
      this.store(key, r);
      return r;
    }
    const p = r.then(
      (reply) => {
        this.inflight.delete(key);
        this.store(key, reply);
        return reply;
      },
      () => {
        this.inflight.delete(key);
        return null;
      },
    );
    this.inflight.set(key, p);
    return p;
  }

  private store(key: string, reply: Reply): void {
    if (!reply) return;
    const s = scanMessage(reply);
    if (!s || s.tc) return;
    const positive = s.rcode === RCODE.NOERROR && s.ancount > 0;
    const negative = s.rcode === RCODE.NXDOMAIN || (s.rcode === RCODE.NOERROR && s.ancount === 0);
    if (!positive && !negative) return; // SERVFAIL, REFUSED, FORMERR, NOTIMP: never cached
    const ttl = Math.min(this.opts.maxTtl, positive ? s.minAnswerTtl : (s.negativeTtl ?? 0));
    if (!(ttl > 0)) return;
    let tpl: Buffer;
    if (s.opt) {
      if (!s.optLast) return;
      tpl = Buffer.from(reply.subarray(0, s.opt[0]));
      tpl.writeUInt16BE(tpl.readUInt16BE(10) - 1, 10);
    } else tpl = Buffer.from(reply);
    const ttls = s.ttlOffsets.map((o) => tpl.readUInt32BE(o));
    const now = this.opts.clock.now();
    if (!this.entries.has(key) && this.entries.size >= this.opts.capacity) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.delete(key);
    this.entries.set(key, { tpl, ttlOffsets: s.ttlOffsets, ttls, storedAt: now, expiresAt: now + ttl * 1000, ttl, positive, negative, hits: 0, prefetching: false });
    this.opts.stats.cacheSize = this.entries.size;
  }

  /** An entry as a response to `q`: ID, RD, question case, decremented TTLs (30 when stale), our OPT. */
  private answer(e: Entry, q: Query, now: number, stale: boolean): Buffer {
    const edns = q.ednsSize > 0;
    const out = Buffer.allocUnsafe(e.tpl.length + (edns ? OPT_LEN : 0));
    e.tpl.copy(out);
    out.writeUInt16BE(q.id, 0);
    out[2] = (out[2]! & 0xfe) | q.rd;
    if (out.length >= HEADER_LEN + q.nameLen) q.msg.copy(out, HEADER_LEN, HEADER_LEN, HEADER_LEN + q.nameLen);
    const age = Math.floor((now - e.storedAt) / 1000);
    for (let i = 0; i < e.ttlOffsets.length; i++) out.writeUInt32BE(stale ? STALE_TTL : Math.max(0, e.ttls[i]! - age), e.ttlOffsets[i]!);
    if (edns) {
      writeOpt(out, e.tpl.length, this.opts.ourSize, 0, q.dnssecOk);
      out.writeUInt16BE(out.readUInt16BE(10) + 1, 10);
    }
    return out;
  }

  /** A shared upstream reply, made this client's: its ID and question case. */
  private adapt(r: Reply, q: Query): Reply {
    if (!r || r.length < HEADER_LEN) return r;
    if (r.readUInt16BE(0) === q.id && r.length >= HEADER_LEN + q.nameLen && r.compare(q.msg, HEADER_LEN, HEADER_LEN + q.nameLen, HEADER_LEN, HEADER_LEN + q.nameLen) === 0) return r;
    const out = Buffer.from(r);
    out.writeUInt16BE(q.id, 0);
    if (out.length >= HEADER_LEN + q.nameLen) q.msg.copy(out, HEADER_LEN, HEADER_LEN, HEADER_LEN + q.nameLen);
    return out;
  }
}
