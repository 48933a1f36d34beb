/**
 * DNS over TCP connections (RFC 1035 4.2.2, RFC 7766): 2-byte length-prefixed messages,
 * pipelined (every complete message of a connection is answered, each answer written as a
 * whole frame as soon as it is ready, so answers may come back in another order), an idle
 * timeout. Shared by the main thread's server (server.ts) and the worker threads
 * (workers.ts), so both serve TCP with the same limits:
 *   - a connection without traffic for `idleMs` is closed;
 *   - a length below a DNS header (12 bytes) closes the connection (garbage, not DNS);
 *   - an answer larger than 65,535 bytes (cannot be framed) is not sent;
 *   - the listen backlog is 511 (TCP_BACKLOG).
 */
import net from 'node:net';
import { HEADER_LEN } from './wire';

export const TCP_BACKLOG = 511;

/** The answer to one message: a reply, null (nothing to send), or a promise of either. */
export type TcpAnswer = (msg: Buffer, client: string) => Buffer | null | Promise<Buffer | null>;

/** `reply` with its 2-byte length prefix, or undefined when it is too large for one frame. */
export function tcpFrame(reply: Buffer): Buffer | undefined {
  if (reply.length > 0xffff) return undefined;
  const frame = Buffer.allocUnsafe(2 + reply.length);
  frame.writeUInt16BE(reply.length, 0);
  reply.copy(frame, 2);
  return frame;
}

export class DnsTcpConnections {
  private readonly conns = new Set<net.Socket>();
  /** Answers still being computed (forwarded, or handed to the main thread). */
  private pendingAnswers = 0;

  constructor(
    private readonly idleMs: number,
    private readonly answer: TcpAnswer,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** A server whose connections this serves (not listening yet). */
  createServer(): net.Server {
    return net.createServer({ noDelay: true }, (c) => this.serve(c));
  }

  get pending(): number {
    return this.pendingAnswers;
  }

  get size(): number {
    return this.conns.size;
  }

  serve(c: net.Socket): void {
    this.conns.add(c);
    let buf: Buffer = Buffer.alloc(0);
    c.setTimeout(this.idleMs, () => c.destroy());
    c.on('error', () => undefined);
    c.on('close', () => this.conns.delete(c));
    const write = (reply: Buffer | null): void => {
      if (!reply || c.destroyed) return;
      const frame = tcpFrame(reply);
      if (frame) c.write(frame);
    };
    c.on('data', (d: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (len < HEADER_LEN) {
          c.destroy();
          return;
        }
        if (buf.length < 2 + len) break;
        const msg = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        let r: Buffer | null | Promise<Buffer | null>;
        try {
          r = this.answer(msg, c.remoteAddress ?? '');
        } catch (err) {
          this.onError(err);
          continue;
        }
        if (r === null || Buffer.isBuffer(r)) write(r);
        else {
          // Pipelining: this answer is written when it completes, the next messages are read meanwhile.
          this.pendingAnswers++;
          r.then(write, (err: unknown) => this.onError(err)).finally(() => this.pendingAnswers--);
        }
      }
    });
  }

  /** Wait until no answer is pending, at most `ms`. */
  async settle(ms: number): Promise<void> {
    const end = Date.now() + ms;
    while (this.pendingAnswers > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  }

  destroyAll(): void {
    for (const c of this.conns) c.destroy();
  }
}

/**
 * Listen on `a` with SO_REUSEPORT (the main thread, its workers and a successor podwired share
 * the address), or on an fd opened elsewhere (the socket keeper's). Rejects on a bind error.
 */
export function listenTcp(server: net.Server, a: { host: string; port: number } | { fd: number }): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen('fd' in a ? { fd: a.fd, backlog: TCP_BACKLOG } : { host: a.host, port: a.port, reusePort: true, backlog: TCP_BACKLOG }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
