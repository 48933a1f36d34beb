/**
 * UDP and TCP servers on every listen address, bound with SO_REUSEPORT so a successor
 * podwired can bind the same ports while this one drains (a restart that drops nothing).
 *
 * - UDP: the client's EDNS0 size is honoured up to our own (default 1232); larger
 *   answers go out with TC set and only the question, and the client retries over TCP.
 * - TCP: length-prefixed messages, pipelined (answers are written as they complete,
 *   RFC 7766), an idle timeout (tcp.ts, shared with the worker threads).
 * - Malformed packets get FORMERR (or are dropped when not even a header); AXFR/IXFR
 *   get REFUSED; an EDNS version above 0 gets BADVERS. Nothing a client sends can throw
 *   out of the packet handler.
 * - `pid.podwire.invalid. TXT` answers this process's pid; a stopping server uses it to
 *   see when a successor is serving on the same address, then closes.
 */
import dgram from 'node:dgram';
import net, { isIPv6 } from 'node:net';
import type { Logger } from '../common/log';
import type { Next, Reply } from './handler';
import type { DnsStats } from './metrics';
import { loadAddon } from '../kernel/native';
import { type SocketKeeper, socketKey } from './keeper';
import { DnsTcpConnections, listenTcp, TCP_BACKLOG } from './tcp';
import { NativeUdpSocket } from './udp-native';
import { WORKER_KEY, whoAnswer } from './workers';
import { bareResponse, buildQuery, encodeName, encodeResponse, errorResponse, fitUdp, isQuery, nameKey, parseQuery, type Query, RCODE, rdata, TYPE } from './wire';

export interface ListenAddr {
  host: string;
  port: number;
}

export interface DnsServerOptions {
  listen: readonly ListenAddr[];
  handle: Next;
  /** Our EDNS0 UDP payload size (and the most we send over UDP). */
  udpSize: number;
  tcpIdleMs: number;
  logger: Logger;
  stats: DnsStats;
  /** Serve UDP through the batched native socket (udp-native.ts); dgram when false or when the addon is missing. */
  nativeUdp?: boolean;
  /**
   * True when the chain answers `q` without keeping `q.msg` past the call (the cluster
   * zone). Other queries get their own copy of the packet before the chain sees them,
   * because the native socket reuses its receive buffer for the next batch.
   */
  answersInline?: (q: Query) => boolean;
  /** Hand our listening sockets to this keeper, so they outlive a crash of this process (keeper.ts). */
  keeper?: SocketKeeper;
  /** Sockets a crashed predecessor left with the keeper, by key: served instead of binding anew. */
  adopted?: Map<string, number>;
}

const PID_NAME = 'pid.podwire.invalid';

function formatAddr(a: ListenAddr): string {
  return isIPv6(a.host) ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
const PID_KEY = nameKey(PID_NAME);

export class DnsServer {
  private udp: (dgram.Socket | NativeUdpSocket)[] = [];
  private tcp: net.Server[] = [];
  /** The fd of each TCP listener we opened natively (for the keeper). */
  private readonly tcpFds = new Map<net.Server, number>();
  /** Our TCP connections (tcp.ts: framing, pipelining, the idle timeout and limits the workers share). */
  private readonly tcpConns: DnsTcpConnections;
  private pending = 0;
  private closing = false;
  private readonly pidTpl: Buffer;

  constructor(private readonly opts: DnsServerOptions) {
    this.tcpConns = new DnsTcpConnections(opts.tcpIdleMs, (msg, client) => this.dispatch(msg, 'tcp', client), (err) => this.opts.logger.error({ err }, 'DNS handler failed'));
    this.pidTpl = encodeResponse(encodeName(PID_NAME), TYPE.TXT, RCODE.NOERROR, [{ name: null, type: TYPE.TXT, ttl: 0, data: rdata.txt(String(process.pid)) }], [], [], false);
  }

  async start(): Promise<void> {
    try {
      for (const a of this.opts.listen) {
        const { udp, tcp } = await this.openAddr(a);
        this.udp.push(udp);
        this.tcp.push(tcp);
      }
    } catch (err) {
      await this.close(0);
      throw err;
    } finally {
      // Kept sockets for addresses we no longer serve: closed here, and dropped by the keeper below.
      for (const fd of this.opts.adopted?.values() ?? []) loadAddon().closeFd(fd);
      this.opts.adopted?.clear();
    }
    this.keep();
  }

  /** A new keeper connection (the old keeper went away): it gets our sockets at once. */
  useKeeper(keeper: SocketKeeper): void {
    this.opts.keeper = keeper;
    this.keep();
  }

  /** Tell the keeper which sockets to hold: every listening socket we serve now. */
  private keep(): void {
    const keeper = this.opts.keeper;
    if (!keeper || this.closing) return;
    const fds: number[] = [];
    for (const u of [...this.udp, ...[...this.extra.values()].map((x) => x.udp)]) if (u instanceof NativeUdpSocket && u.socketFd !== undefined) fds.push(u.socketFd);
    for (const t of [...this.tcp, ...[...this.extra.values()].map((x) => x.tcp)]) {
      const fd = this.tcpFds.get(t);
      if (fd !== undefined) fds.push(fd);
    }
    keeper.hold(fds);
  }

  private adopt(key: string): number | undefined {
    const fd = this.opts.adopted?.get(key);
    if (fd !== undefined) this.opts.adopted!.delete(key);
    return fd;
  }

  private async openAddr(a: ListenAddr): Promise<{ udp: dgram.Socket | NativeUdpSocket; tcp: net.Server }> {
    const keptUdp = this.adopt(socketKey('udp', a.host, a.port));
    if (keptUdp !== undefined && !this.opts.nativeUdp) loadAddon().closeFd(keptUdp); // dgram cannot adopt an fd
    const udp = (this.opts.nativeUdp ? this.openNative(a, keptUdp) : undefined) ?? (await this.openDgram(a));
    const tcp = this.tcpConns.createServer();
    tcp.on('error', (err) => this.opts.logger.warn({ err }, 'DNS TCP server error'));
    try {
      // With a keeper the listener is opened natively, so its fd is ours to hand over.
      let tcpFd = this.adopt(socketKey('tcp', a.host, a.port));
      if (tcpFd === undefined && this.opts.keeper) tcpFd = loadAddon().tcpListenOpen(a.host, a.port, isIPv6(a.host), TCP_BACKLOG);
      if (tcpFd !== undefined) this.tcpFds.set(tcp, tcpFd);
      await listenTcp(tcp, tcpFd !== undefined ? { fd: tcpFd } : a);
    } catch (err) {
      udp.close();
      throw err;
    }
    return { udp, tcp };
  }

  /** Addresses served besides `listen` (the kube-dns Service IPs, which change with the cluster). */
  private readonly extra = new Map<string, { udp: dgram.Socket | NativeUdpSocket; tcp: net.Server }>();

  /** Serve exactly these extra addresses: bind the new ones, close the ones gone. */
  async setExtra(addrs: readonly ListenAddr[]): Promise<void> {
    if (this.closing) return;
    const want = new Map(addrs.map((a) => [formatAddr(a), a]));
    let changed = false;
    const gone: { udp: dgram.Socket | NativeUdpSocket; tcp: net.Server }[] = [];
    for (const [k, socks] of this.extra) {
      if (want.has(k)) continue;
      this.extra.delete(k);
      gone.push(socks);
    }
    for (const [k, a] of want) {
      if (this.extra.has(k) || this.opts.listen.some((l) => formatAddr(l) === k)) continue;
      this.extra.set(k, await this.openAddr(a));
      changed = true;
    }
    // The keeper lets go of a socket before we close it: a kept socket nobody reads black-holes queries.
    if (changed || gone.length > 0) this.keep();
    for (const socks of gone) {
      this.tcpFds.delete(socks.tcp);
      socks.tcp.close();
      socks.udp.close();
    }
  }

  private async openDgram(a: ListenAddr): Promise<dgram.Socket> {
    const s = dgram.createSocket({ type: isIPv6(a.host) ? 'udp6' : 'udp4', reuseAddr: true, reusePort: true, recvBufferSize: 4 << 20 });
    s.on('message', (msg, rinfo) => this.onUdp(s, msg, rinfo));
    s.on('error', (err) => this.opts.logger.warn({ err }, 'DNS UDP socket error'));
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind({ address: a.host, port: a.port }, () => {
        s.off('error', reject);
        resolve();
      });
    });
    return s;
  }

  /** The batched native socket, or undefined (logged) when the addon is unavailable. A bind error throws. */
  private openNative(a: ListenAddr, adopt?: number): NativeUdpSocket | undefined {
    let sock: NativeUdpSocket | undefined;
    try {
      sock = new NativeUdpSocket(
        a.host,
        a.port,
        isIPv6(a.host),
        Math.min(4096, Math.max(512, this.opts.udpSize)),
        (msg, client, addr) => this.onNative(sock!, msg, client, addr),
        (err) => this.opts.logger.error({ err }, 'DNS handler failed'),
        adopt,
      );
    } catch (err) {
      if ((err as { code?: string }).code === 'PW_NATIVE_MISSING') {
        this.opts.logger.warn({ err }, 'native addon missing: DNS UDP served through dgram');
        return undefined;
      }
      throw err;
    }
    return sock;
  }

  /** A query a worker thread handed over (workers.ts): answered by the chain, sent from our socket on the same address. */
  handOff(to: ListenAddr, msg: Buffer, client: string, addr: Buffer): void {
    const k = formatAddr(to);
    const i = this.opts.listen.findIndex((l) => formatAddr(l) === k);
    const sock = i >= 0 ? this.udp[i] : this.extra.get(k)?.udp;
    if (!(sock instanceof NativeUdpSocket) || this.closedUdp) return;
    try {
      const r = this.onNative(sock, msg, client, addr);
      if (r) sock.sendTo(r, addr);
    } catch (err) {
      this.opts.logger.error({ err }, 'DNS handler failed');
    }
  }

  private onNative(sock: NativeUdpSocket, msg: Buffer, client: string, addr: Buffer): Buffer | null {
    const r = this.dispatch(msg, 'udp', client, true);
    if (r === null) return null;
    const q = this.lastQuery;
    if (Buffer.isBuffer(r)) return this.forUdp(r, q);
    const to = Buffer.from(addr); // `addr` is a view of the batch's address array
    this.pending++;
    r.then(
      (reply) => {
        if (reply && !this.closedUdp) sock.sendTo(this.forUdp(reply, q), to);
      },
      (err: unknown) => this.opts.logger.error({ err }, 'DNS handler failed'),
    ).finally(() => this.pending--);
    return null;
  }

  get addresses(): string[] {
    return [...this.opts.listen.map(formatAddr), ...this.extra.keys()];
  }

  private onUdp(s: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    // The hot path: no closure per packet, no send callback (a callback costs a nextTick per send).
    const r = this.dispatch(msg, 'udp', rinfo.address);
    if (r === null) return;
    const q = this.lastQuery;
    if (Buffer.isBuffer(r)) {
      s.send(this.forUdp(r, q), rinfo.port, rinfo.address);
      return;
    }
    const port = rinfo.port;
    const address = rinfo.address;
    this.pending++;
    r.then(
      (reply) => {
        if (reply && !this.closedUdp) s.send(this.forUdp(reply, q), port, address);
      },
      (err: unknown) => this.opts.logger.error({ err }, 'DNS handler failed'),
    ).finally(() => this.pending--);
  }

  /** The query dispatch() parsed last (undefined when it could not parse one). */
  private lastQuery: Query | undefined;
  private closedUdp = false;

  private forUdp(reply: Buffer, q: Query | undefined): Buffer {
    const limit = q && q.ednsSize > 0 ? Math.min(q.ednsSize, this.opts.udpSize) : 512;
    return reply.length <= limit || !q ? reply : fitUdp(q, reply, limit, this.opts.udpSize);
  }

  /** An answer for a TCP message a worker thread received and could not answer itself (workers.ts). */
  answerTcp(msg: Buffer, client: string): Reply | Promise<Reply> {
    return this.dispatch(msg, 'tcp', client);
  }

  /** Parse and answer one message: the reply, null (drop), or a Promise of either. Never throws. */
  private dispatch(msg: Buffer, transport: 'udp' | 'tcp', client: string, view = false): Reply | Promise<Reply> {
    this.lastQuery = undefined;
    let q: Query;
    try {
      const parsed = parseQuery(msg, transport, client);
      if (!isQuery(parsed)) return parsed.drop ? null : errorResponse(msg, parsed.rcode, parsed.questionEnd);
      q = parsed;
    } catch (err) {
      this.opts.logger.debug({ err }, 'unparseable DNS packet dropped');
      return null;
    }
    this.lastQuery = q;
    if (q.qtype === TYPE.AXFR || q.qtype === TYPE.IXFR) return bareResponse(q, RCODE.REFUSED, { ednsSize: this.opts.udpSize });
    if (q.ednsVersion > 0) return bareResponse(q, 16 /* BADVERS */, { ednsSize: this.opts.udpSize });
    if (q.key === PID_KEY) return this.pidAnswer(q);
    if (q.key === WORKER_KEY) return whoAnswer(q, 'main');
    // A view into a reused receive buffer: only the cluster zone answers from it directly.
    if (view && !this.opts.answersInline?.(q)) q.msg = Buffer.from(msg);
    try {
      const r = this.opts.handle(q);
      if (r === null || Buffer.isBuffer(r)) return r;
      if (q.msg === msg && view) q.msg = Buffer.from(msg); // an ExternalName resolved outside: kept past the call
      return r.catch((err: unknown) => {
        this.opts.logger.error({ err }, 'DNS handler failed');
        return bareResponse(q, RCODE.SERVFAIL, { ednsSize: this.opts.udpSize });
      });
    } catch (err) {
      this.opts.logger.error({ err }, 'DNS handler failed');
      return bareResponse(q, RCODE.SERVFAIL, { ednsSize: this.opts.udpSize });
    }
  }

  private pidAnswer(q: Query): Buffer {
    const out = Buffer.from(this.pidTpl);
    out.writeUInt16BE(q.id, 0);
    out[2]! |= q.rd;
    return out;
  }

  /**
   * True once some other process answers on our first UDP address (a successor bound with
   * SO_REUSEPORT). Probes from several source ports, since the kernel spreads by 4-tuple.
   */
  private successorServing(): Promise<boolean> {
    const a = this.opts.listen[0];
    return a ? DnsServer.otherServing(a) : Promise.resolve(false);
  }

  /** True when another process (a predecessor or successor podwired) answers on `a`. */
  static async otherServing(a: ListenAddr): Promise<boolean> {
    const host = a.host === '0.0.0.0' ? '127.0.0.1' : a.host === '::' ? '::1' : a.host;
    const pids = await Promise.all(Array.from({ length: 8 }, () => DnsServer.probePid(host, a.port)));
    return pids.some((p) => p !== undefined && p !== process.pid);
  }

  private static probePid(host: string, port: number): Promise<number | undefined> {
    return new Promise((resolve) => {
      const s = dgram.createSocket(isIPv6(host) ? 'udp6' : 'udp4');
      const done = (v: number | undefined): void => {
        clearTimeout(timer);
        try {
          s.close();
        } catch {
          /* closed */
        }
        resolve(v);
      };
      const timer = setTimeout(() => done(undefined), 200);
      s.on('error', () => done(undefined));
      s.on('message', (m) => {
        // The TXT rdata is the last bytes: <length><digits>.
        const txt = /(\d+)$/.exec(m.toString('latin1', Math.max(0, m.length - 12)));
        done(txt ? Number(txt[1]) : undefined);
      });
      s.send(buildQuery(PID_NAME, TYPE.TXT, (Math.random() * 0xffff) | 0), port, host, (err) => err && done(undefined));
    });
  }

  /**
   * Stop serving: wait (at most `drainMs`) until a successor answers on our address, keep
   * answering meanwhile, then close the sockets and finish the queries already accepted.
   */
  async close(drainMs: number): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const until = Date.now() + drainMs;
    while (drainMs > 0 && this.udp.length > 0 && Date.now() < until) {
      if (await this.successorServing()) {
        this.opts.logger.info('a successor is serving DNS on our address; closing');
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const x of this.extra.values()) {
      this.tcp.push(x.tcp);
      this.udp.push(x.udp);
    }
    this.extra.clear();
    // A graceful stop: the keeper must not hold sockets that nobody will read (a successor's are its own).
    this.opts.keeper?.release();
    for (const t of this.tcp) t.close();
    // Forwarded queries still waiting for an upstream: answer them before the UDP socket goes.
    const settle = Date.now() + 1000;
    while (this.pending + this.tcpConns.pending > 0 && Date.now() < settle) await new Promise((r) => setTimeout(r, 10));
    this.closedUdp = true;
    for (const s of this.udp) {
      try {
        s.close();
      } catch {
        /* already closed */
      }
    }
    const end = Date.now() + Math.max(1000, drainMs);
    while (this.pending + this.tcpConns.pending > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    this.tcpConns.destroyAll();
    this.udp = [];
    this.tcp = [];
    this.tcpFds.clear();
  }
}
