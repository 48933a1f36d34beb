/**
 * Forwarding, the way CoreDNS's `forward` plugin does it: several upstreams, a random,
 * round-robin or sequential policy, an upstream marked down after `maxFails` failures
 * and brought back by health checks (`. IN NS`), a read timeout, a retry over TCP when
 * the UDP answer is truncated, a cap on concurrent queries and reused TCP connections.
 */
import dgram from 'node:dgram';
import net, { isIPv6 } from 'node:net';
import { PodwireError } from '../common/errors';
import type { Logger } from '../common/log';
import type { Handler, Reply } from './handler';
import type { DnsStats, UpstreamCounters } from './metrics';
import { bareResponse, buildQuery, HEADER_LEN, isSubdomainKey, labelStarts, nameKey, type Query, RCODE, TYPE } from './wire';

export interface UpstreamAddr {
  host: string;
  port: number;
}

export type ForwardPolicy = 'random' | 'round_robin' | 'sequential';

export interface ForwardOptions {
  policy: ForwardPolicy;
  maxFails: number;
  readTimeoutMs: number;
  healthCheckMs: number;
  maxConcurrent: number;
  stats: DnsStats;
  logger: Logger;
}

/** Every upstream failed or timed out. */
export class UpstreamError extends PodwireError {
  constructor(message: string, cause?: unknown) {
    super('PW_DNS_UPSTREAM', message, { cause });
  }
}

/** More concurrent upstream queries than `maxConcurrent`. */
export class ConcurrencyLimitError extends PodwireError {
  constructor(limit: number) {
    super('PW_DNS_LIMIT', `more than ${limit} concurrent upstream queries`, { field: 'dns.maxConcurrent', value: limit });
  }
}

export function formatUpstream(u: UpstreamAddr): string {
  return isIPv6(u.host) ? `[${u.host}]:${u.port}` : `${u.host}:${u.port}`;
}

interface Pending {
  resolve(b: Buffer): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
  /** Lower-cased question bytes we expect back. */
  question: Buffer;
}

const TCP_IDLE_MS = 10_000;

class Upstream {
  fails = 0;
  private udp: dgram.Socket | undefined;
  private readonly udpPending = new Map<number, Pending>();
  private tcp: net.Socket | undefined;
  private tcpBuf: Buffer = Buffer.alloc(0);
  private readonly tcpPending = new Map<number, Pending>();
  private tcpIdle: NodeJS.Timeout | undefined;
  readonly counters: UpstreamCounters;
  checking = false;
  closed = false;

  constructor(
    readonly addr: UpstreamAddr,
    stats: DnsStats,
  ) {
    this.counters = stats.upstream(formatUpstream(addr));
  }

  down(maxFails: number): boolean {
    return maxFails > 0 && this.fails >= maxFails;
  }

  private socket(): dgram.Socket {
    if (this.udp) return this.udp;
    const s = dgram.createSocket(isIPv6(this.addr.host) ? 'udp6' : 'udp4');
    s.on('message', (msg) => this.deliver(this.udpPending, msg));
    s.on('error', () => undefined);
    this.udp = s;
    return s;
  }

  private deliver(pending: Map<number, Pending>, msg: Buffer): void {
    if (msg.length < HEADER_LEN || !(msg[2]! & 0x80)) return;
    const id = msg.readUInt16BE(0);
    const p = pending.get(id);
    if (!p) return;
    // The question must be the one we asked (case-insensitively: upstreams may 0x20-encode).
    const q = p.question;
    if (msg.length < HEADER_LEN + q.length) return;
    for (let i = 0; i < q.length; i++) {
      const c = msg[HEADER_LEN + i]!;
      if ((c >= 0x41 && c <= 0x5a ? c | 0x20 : c) !== q[i]) return;
    }
    pending.delete(id);
    clearTimeout(p.timer);
    p.resolve(msg);
  }

  private register(pending: Map<number, Pending>, msg: Buffer, timeoutMs: number): { id: number; promise: Promise<Buffer> } {
    let id = (Math.random() * 0x10000) | 0;
    for (let i = 0; pending.has(id) && i < 100; i++) id = (Math.random() * 0x10000) | 0;
    const qEnd = questionEnd(msg);
    const question = Buffer.from(msg.subarray(HEADER_LEN, qEnd));
    for (let i = 0; i < question.length; i++) {
      const c = question[i]!;
      if (c >= 0x41 && c <= 0x5a) question[i] = c | 0x20;
    }
    const promise = new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new UpstreamError(`${formatUpstream(this.addr)}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      pending.set(id, { resolve, reject, timer, question });
    });
    return { id, promise };
  }

  exchangeUdp(msg: Buffer, timeoutMs: number): Promise<Buffer> {
    if (this.closed) return Promise.reject(new UpstreamError('forwarder closed'));
    const { id, promise } = this.register(this.udpPending, msg, timeoutMs);
    const out = Buffer.from(msg);
    out.writeUInt16BE(id, 0);
    this.socket().send(out, this.addr.port, this.addr.host, (err) => {
      const p = this.udpPending.get(id);
      if (err && p) {
        this.udpPending.delete(id);
        clearTimeout(p.timer);
        p.reject(new UpstreamError(`${formatUpstream(this.addr)}: ${err.message}`, err));
      }
    });
    return promise;
  }

  exchangeTcp(msg: Buffer, timeoutMs: number): Promise<Buffer> {
    if (this.closed) return Promise.reject(new UpstreamError('forwarder closed'));
    const { id, promise } = this.register(this.tcpPending, msg, timeoutMs);
    const frame = Buffer.allocUnsafe(msg.length + 2);
    frame.writeUInt16BE(msg.length, 0);
    msg.copy(frame, 2);
    frame.writeUInt16BE(id, 2);
    this.tcpConn().write(frame);
    return promise;
  }

  /** One reused, pipelined connection; closed after TCP_IDLE_MS without queries. */
  private tcpConn(): net.Socket {
    if (this.tcpIdle) clearTimeout(this.tcpIdle);
    this.tcpIdle = setTimeout(() => this.tcp?.end(), TCP_IDLE_MS);
    this.tcpIdle.unref();
    if (this.tcp && !this.tcp.destroyed) return this.tcp;
    const s = net.connect({ host: this.addr.host, port: this.addr.port });
    s.setNoDelay(true);
    this.tcpBuf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      this.tcpBuf = this.tcpBuf.length ? Buffer.concat([this.tcpBuf, d]) : d;
      while (this.tcpBuf.length >= 2) {
        const len = this.tcpBuf.readUInt16BE(0);
        if (this.tcpBuf.length < 2 + len) break;
        const m = this.tcpBuf.subarray(2, 2 + len);
        this.tcpBuf = this.tcpBuf.subarray(2 + len);
        this.deliver(this.tcpPending, Buffer.from(m));
      }
    });
    const fail = (err?: Error): void => {
      if (this.tcp === s) this.tcp = undefined;
      for (const [id, p] of this.tcpPending) {
        this.tcpPending.delete(id);
        clearTimeout(p.timer);
        p.reject(new UpstreamError(`${formatUpstream(this.addr)} (tcp): ${err?.message ?? 'connection closed'}`, err));
      }
    };
    s.on('error', fail);
    s.on('close', () => fail());
    this.tcp = s;
    return s;
  }

  close(): void {
    this.closed = true;
    for (const m of [this.udpPending, this.tcpPending]) {
      for (const p of m.values()) {
        clearTimeout(p.timer);
        p.reject(new UpstreamError('forwarder closed'));
      }
      m.clear();
    }
    if (this.tcpIdle) clearTimeout(this.tcpIdle);
    this.tcp?.destroy();
    this.udp?.close();
    this.udp = undefined;
  }
}

function questionEnd(msg: Buffer): number {
  let p = HEADER_LEN;
  while (p < msg.length && msg[p] !== 0) p += 1 + msg[p]!;
  return Math.min(msg.length, p + 5);
}

export class Forwarder {
  private readonly ups: Upstream[];
  private rr = 0;
  private inflight = 0;
  private readonly timer: NodeJS.Timeout | undefined;

  constructor(
    upstreams: readonly UpstreamAddr[],
    private readonly opts: ForwardOptions,
  ) {
    this.ups = upstreams.map((u) => new Upstream(u, opts.stats));
    if (opts.healthCheckMs > 0 && this.ups.length > 0) {
      this.timer = setInterval(() => this.healthCheck(), opts.healthCheckMs);
      this.timer.unref();
    }
  }

  get upstreams(): UpstreamAddr[] {
    return this.ups.map((u) => u.addr);
  }

  /** JSON status: each upstream and whether it is down. */
  status(): { to: string; fails: number; down: boolean }[] {
    return this.ups.map((u) => ({ to: formatUpstream(u.addr), fails: u.fails, down: u.down(this.opts.maxFails) }));
  }

  private order(): Upstream[] {
    const healthy = this.ups.filter((u) => !u.down(this.opts.maxFails));
    const list = healthy.length > 0 ? healthy : [...this.ups];
    if (this.opts.policy === 'round_robin') {
      const start = this.rr++ % list.length;
      return [...list.slice(start), ...list.slice(0, start)];
    }
    if (this.opts.policy === 'random' || healthy.length === 0) {
      for (let i = list.length - 1; i > 0; i--) {
        const j = (Math.random() * (i + 1)) | 0;
        [list[i], list[j]] = [list[j]!, list[i]!];
      }
    }
    return list;
  }

  /**
   * Send `msg` (a query; its ID is replaced on the wire and restored in the answer) to the
   * upstreams in policy order until one answers. TCP clients are forwarded over TCP; a
   * truncated UDP answer is retried over TCP on the same upstream.
   */
  async query(msg: Buffer, overTcp = false): Promise<Buffer> {
    if (this.ups.length === 0) throw new UpstreamError('no upstream servers configured');
    if (this.inflight >= this.opts.maxConcurrent) throw new ConcurrencyLimitError(this.opts.maxConcurrent);
    this.inflight++;
    const id = msg.readUInt16BE(0);
    const deadline = Date.now() + 5000;
    let last: unknown;
    try {
      for (const u of this.order()) {
        if (Date.now() > deadline) break;
        try {
          u.counters.requests++;
          let r = overTcp ? await u.exchangeTcp(msg, this.opts.readTimeoutMs) : await u.exchangeUdp(msg, this.opts.readTimeoutMs);
          if (r[2]! & 0x02) r = await u.exchangeTcp(msg, this.opts.readTimeoutMs);
          u.fails = 0;
          r.writeUInt16BE(id, 0);
          return r;
        } catch (err) {
          u.fails++;
          last = err;
        }
      }
    } finally {
      this.inflight--;
    }
    throw last instanceof Error ? last : new UpstreamError('every upstream failed');
  }

  private healthCheck(): void {
    for (const u of this.ups) {
      if (u.fails === 0 || u.checking || u.closed) continue;
      u.checking = true;
      const probe = buildQuery('.', TYPE.NS, 0, { rd: false });
      u.exchangeUdp(probe, Math.min(1000, this.opts.readTimeoutMs)).then(
        () => {
          u.fails = 0;
          u.checking = false;
        },
        () => {
          u.counters.healthcheckFailures++;
          u.checking = false;
        },
      );
    }
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    for (const u of this.ups) u.close();
  }
}

/** The answer to `q` from a forwarder, with the client's ID and question case; SERVFAIL/REFUSED on failure. */
export async function forwardQuery(fwd: Forwarder, q: Query, ourSize: number, log: Logger): Promise<Reply> {
  try {
    const r = await fwd.query(q.msg, q.transport === 'tcp');
    if (r.length >= q.questionEnd && r.readUInt16BE(4) === 1) q.msg.copy(r, HEADER_LEN, HEADER_LEN, HEADER_LEN + q.nameLen);
    return r;
  } catch (err) {
    if (err instanceof ConcurrencyLimitError) return bareResponse(q, RCODE.REFUSED, { ednsSize: ourSize });
    log.debug({ err }, 'forwarding failed');
    return bareResponse(q, RCODE.SERVFAIL, { ednsSize: ourSize });
  }
}

/** `forward`: everything that reaches it goes to the default upstreams. */
export class ForwardHandler implements Handler {
  readonly name = 'forward';
  constructor(
    public forwarder: Forwarder,
    private readonly ourSize: number,
    private readonly log: Logger,
  ) {}
  serve(q: Query): Promise<Reply> {
    return forwardQuery(this.forwarder, q, this.ourSize, this.log);
  }
}

/** `stub`: names under a stub domain go to that domain's servers (longest match wins). */
export class StubHandler implements Handler {
  readonly name = 'stub';
  private domains = new Map<string, { domain: string; fwd: Forwarder }>();
  constructor(
    private readonly opts: ForwardOptions,
    private readonly ourSize: number,
  ) {}

  /** Replace the stub domains; forwarders of unchanged domains are kept. */
  set(stubs: ReadonlyMap<string, readonly UpstreamAddr[]>): void {
    const next = new Map<string, { domain: string; fwd: Forwarder }>();
    for (const [domain, ups] of stubs) {
      const key = nameKey(domain);
      const old = this.domains.get(key);
      const same = old && old.fwd.upstreams.map(formatUpstream).join() === ups.map(formatUpstream).join();
      next.set(key, same ? old : { domain, fwd: new Forwarder(ups, this.opts) });
    }
    for (const [key, old] of this.domains) if (next.get(key) !== old) old.fwd.close();
    this.domains = next;
  }

  list(): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const { domain, fwd } of this.domains.values()) out[domain] = fwd.upstreams.map(formatUpstream);
    return out;
  }

  serve(q: Query, next: (q: Query) => Reply | Promise<Reply>): Reply | Promise<Reply> {
    if (this.domains.size === 0) return next(q);
    for (const start of labelStarts(q.key)) {
      const hit = this.domains.get(q.key.slice(start));
      if (hit && isSubdomainKey(q.key, q.key.slice(start))) return forwardQuery(hit.fwd, q, this.ourSize, this.opts.logger);
    }
    return next(q);
  }

  close(): void {
    for (const { fwd } of this.domains.values()) fwd.close();
    this.domains.clear();
  }
}
