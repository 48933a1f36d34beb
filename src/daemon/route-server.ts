/**
 * A tiny HTTP route registry on node:http, used for the control socket (CNI fast
 * path, status) and the TCP health and metrics servers. Hand-written rather than
 * express/fastify: it needs exact-path routes, a raw Buffer body and nothing else,
 * and the CNI fast path is latency-sensitive, so nothing runs that it does not need.
 *
 * Mounting a handler is one line: `server.route('POST', '/v1/cni', handler)`.
 */
import { createConnection } from 'node:net';
import { chmod, mkdir, unlink } from 'node:fs/promises';
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
      await prepareSocketPath(where.socketPath);
      await listenOn(server, { path: where.socketPath });
      this.socketPath = where.socketPath;
      await chmod(where.socketPath, where.mode ?? 0o660);
    } else {
      const { host, port } = parseHostPort(`${this.name}.listen`, where.hostPort);
      await listenOn(server, { host, port });
    }
    this.logger.info({ server: this.name, address: this.address }, 'listening');
  }

  async close(): Promise<void> {
    this.closing.abort();
    const server = this.server;
    this.server = undefined;
    if (server) {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    }
    if (this.socketPath) {
      await unlink(this.socketPath).catch(() => undefined);
      this.socketPath = undefined;
    }
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

function listenOn(server: http.Server, options: { path: string } | { host: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(options, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/**
 * Make the socket's folder and clear a stale socket left by a crashed daemon. A
 * socket that still answers means another podwired is running: refuse to steal it.
 */
async function prepareSocketPath(socketPath: string): Promise<void> {
  await mkdir(path.dirname(socketPath), { recursive: true, mode: 0o755 });
  const alive = await new Promise<boolean>((resolve) => {
    const c = createConnection({ path: socketPath });
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (alive) throw new AlreadyExistsError('control socket (another podwired is serving it)', socketPath);
  try {
    await unlink(socketPath);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
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
