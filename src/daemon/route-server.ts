/**
 * A tiny HTTP route registry on node:http, used for the control socket (CNI fast
 * path, status) and the TCP health and metrics servers. Hand-written rather than
 * express/fastify: it needs exact-path routes, a raw Buffer body and nothing else,
 * and the CNI fast path is latency-sensitive, so nothing runs that it does not need.
 *
 * Mounting a handler is one line: `server.route('POST', '/v1/cni', handler)`.
 */
import { createConnection } from 'node:net';
import { chmod, mkdir, rename, stat, unlink } from 'node:fs/promises';
import http, { type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { AlreadyExistsError, PodwireError, errnoCode, errorMessage } from '../common/errors';
import type { Logger } from '../common/log';
import { parseHostPort } from './config';

export interface ControlRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  /** The raw request body (at most `maxBodyBytes`). */
  body: Buffer;
}

export interface ControlResponse {
  status: number;
  headers?: Record<string, string>;
  body?: Buffer | string;
}

/** `signal` aborts when the client goes away or the server shuts down. */
export type ControlHandler = (req: ControlRequest, signal: AbortSignal) => Promise<ControlResponse> | ControlResponse;

/** A plain node:http handler, for modules that frame their own responses (the CNI fast path). */
export type RawHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

export type Listen = { socketPath: string; mode?: number } | { hostPort: string };

export function json(status: number, value: unknown): ControlResponse {
  return { status, headers: { 'content-type': 'application/json' }, body: JSON.stringify(value) + '\n' };
}

export function text(status: number, body: string, contentType = 'text/plain; charset=utf-8'): ControlResponse {
  return { status, headers: { 'content-type': contentType }, body };
}

export class RouteServer {
  private readonly routes = new Map<string, Map<string, ControlHandler>>();
  private readonly rawRoutes = new Map<string, RawHandler>();
  private server: http.Server | undefined;
  private socketPath: string | undefined;
  /** The inode of the socket file we bound: a successor's socket at the same path is not ours to remove. */
  private socketIno: number | undefined;
  private readonly closing = new AbortController();

  constructor(
    readonly name: string,
    private readonly logger: Logger,
    private readonly maxBodyBytes = 1 << 20,
  ) {}

  route(method: string, routePath: string, handler: ControlHandler): this {
    const m = method.toUpperCase();
    let byMethod = this.routes.get(routePath);
    if (!byMethod) this.routes.set(routePath, (byMethod = new Map()));
    if (byMethod.has(m) || this.rawRoutes.has(routePath)) throw new AlreadyExistsError('route', `${m} ${routePath}`);
    byMethod.set(m, handler);
    return this;
  }

  /**
   * Mount a raw node:http handler on a path, all methods (it checks its own):
   * `control.routeRaw('/v1/cni', createCniFastPathHandler(deps))`.
   */
  routeRaw(routePath: string, handler: RawHandler): this {
    if (this.rawRoutes.has(routePath) || this.routes.has(routePath)) throw new AlreadyExistsError('route', routePath);
    this.rawRoutes.set(routePath, handler);
    return this;
  }

  /** Removes a raw route (later requests get 404); true if it was mounted. */
  unrouteRaw(routePath: string, handler?: RawHandler): boolean {
    if (handler !== undefined && this.rawRoutes.get(routePath) !== handler) return false;
    return this.rawRoutes.delete(routePath);
  }

  /** The bound address: socket path, or `host:port` with the real port (for port 0). */
  get address(): string | undefined {
    if (this.socketPath) return this.socketPath;
    const a = this.server?.address() as AddressInfo | null | undefined;
    if (!a) return undefined;
    return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  }

  async listen(where: Listen): Promise<void> {
    const server = http.createServer((req, res) => void this.dispatch(req, res));
    server.keepAliveTimeout = 5000;
    this.server = server;
    if ('socketPath' in where) {
      const predecessor = await prepareSocketPath(where.socketPath);
      if (predecessor) {
        // A rolling upgrade with maxSurge: the predecessor still serves the path. Bind beside it
        // and rename over it (atomic): new connections reach us, the predecessor finishes the
        // requests it already accepted on its (now unlinked) socket.
        const fresh = `${where.socketPath}.${process.pid}.new`;
        await unlink(fresh).catch(() => undefined);
        await listenOn(server, { path: fresh });
        await chmod(fresh, where.mode ?? 0o660);
        await rename(fresh, where.socketPath);
        this.logger.info({ server: this.name, path: where.socketPath }, 'took the socket over from a running predecessor');
      } else {
        await listenOn(server, { path: where.socketPath });
        await chmod(where.socketPath, where.mode ?? 0o660);
      }
      this.socketPath = where.socketPath;
      this.socketIno = (await stat(where.socketPath)).ino;
    } else {
      const { host, port } = parseHostPort(`${this.name}.listen`, where.hostPort);
      // SO_REUSEPORT: a successor (rolling upgrade with maxSurge) binds while we still serve.
      await listenOn(server, { host, port, reusePort: true });
    }
    this.logger.info({ server: this.name, address: this.address }, 'listening');
  }

  async close(): Promise<void> {
    this.closing.abort();
    const server = this.server;
    this.server = undefined;
    const socketPath = this.socketPath;
    this.socketPath = undefined;
    // After a takeover the path is the successor's socket. libuv unlinks the path a unix
    // server was bound to when it closes, so move the successor's socket aside for the two
    // syscalls of our close and put it back at once.
    const st = socketPath ? await stat(socketPath).catch(() => undefined) : undefined;
    const takenOver = socketPath !== undefined && st !== undefined && st.ino !== this.socketIno;
    const aside = `${socketPath}.${process.pid}.aside`;
    if (takenOver) await rename(socketPath, aside).catch(() => undefined);
    if (server) {
      // Requests already accepted finish (bounded); idle keep-alive connections go now.
      const closed = new Promise<void>((resolve) => {
        const force = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
        server.close(() => {
          clearTimeout(force);
          resolve();
        });
        server.closeIdleConnections();
      });
      if (takenOver) await rename(aside, socketPath).catch(() => undefined);
      await closed;
    } else if (takenOver) {
      await rename(aside, socketPath).catch(() => undefined);
    }
    if (socketPath && !takenOver) await unlink(socketPath).catch(() => undefined);
  }

  private async dispatch(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://podwire');
    const raw = this.rawRoutes.get(url.pathname);
    if (raw) {
      try {
        raw(req, res);
      } catch (err) {
        this.logger.error({ server: this.name, path: url.pathname, err }, 'handler failed');
        send(res, json(500, { error: { code: 'PW_INTERNAL', message: errorMessage(err) } }));
      }
      return;
    }
    const byMethod = this.routes.get(url.pathname);
    const handler = byMethod?.get(req.method ?? 'GET') ?? (req.method === 'HEAD' ? byMethod?.get('GET') : undefined);
    if (!handler) {
      req.resume();
      if (byMethod) send(res, json(405, { error: { code: 'PW_METHOD', message: `${req.method} not allowed on ${url.pathname}` } }), { Allow: [...byMethod.keys()].join(', ') });
      else send(res, json(404, { error: { code: 'PW_NOT_FOUND', message: `no route ${url.pathname}` } }));
      return;
    }
    const abort = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) abort.abort();
    };
    res.on('close', onClose);
    const onServerClose = () => abort.abort();
    this.closing.signal.addEventListener('abort', onServerClose, { once: true });
    try {
      const body = await readBody(req, this.maxBodyBytes);
      const out = await handler({ method: req.method ?? 'GET', path: url.pathname, query: url.searchParams, headers: req.headers, body }, abort.signal);
      send(res, out);
    } catch (err) {
      if (err instanceof BodyTooLarge) {
        send(res, json(413, { error: { code: 'PW_TOO_LARGE', message: err.message } }));
        return;
      }
      this.logger.error({ server: this.name, path: url.pathname, err }, 'handler failed');
      const body = err instanceof PodwireError ? err.toJSON() : { code: 'PW_INTERNAL', message: errorMessage(err) };
      send(res, json(500, { error: body }));
    } finally {
      this.closing.signal.removeEventListener('abort', onServerClose);
    }
  }
}

class BodyTooLarge extends Error {}

async function readBody(req: http.IncomingMessage, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const b = chunk as Buffer;
    size += b.length;
    if (size > max) throw new BodyTooLarge(`request body over ${max} bytes`);
    chunks.push(b);
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}

function send(res: http.ServerResponse, out: ControlResponse, extra: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const body = out.body === undefined ? '' : out.body;
  res.writeHead(out.status, { ...out.headers, ...extra, 'content-length': String(Buffer.byteLength(body)) });
  res.end(body);
}

function listenOn(server: http.Server, options: { path: string } | { host: string; port: number; reusePort?: boolean }): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(options, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** How long close() lets requests already accepted finish before it cuts their connections. */
const CLOSE_GRACE_MS = 5000;

/**
 * Make the socket's folder and clear a stale socket left by a crashed daemon. True when a
 * socket still answers: a predecessor is serving (a rolling upgrade), and the caller takes
 * the path over.
 */
async function prepareSocketPath(socketPath: string): Promise<boolean> {
  await mkdir(path.dirname(socketPath), { recursive: true, mode: 0o755 });
  const alive = await new Promise<boolean>((resolve) => {
    const c = createConnection({ path: socketPath });
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (alive) return true;
  try {
    await unlink(socketPath);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
  return false;
}

/** GET/POST over a unix socket or TCP; used by the CLI and the tests. */
export function request(
  target: { socketPath: string } | { hostPort: string },
  method: string,
  reqPath: string,
  body?: Buffer | string,
  timeoutMs = 10_000,
): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const base: http.RequestOptions =
      'socketPath' in target
        ? { socketPath: target.socketPath }
        : (() => {
            const { host, port } = parseHostPort('address', target.hostPort);
            return { host, port };
          })();
    const req = http.request({ ...base, method, path: reqPath, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${reqPath}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}
