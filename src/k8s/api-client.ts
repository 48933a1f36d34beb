/**
 * The HTTP layer under the Kubernetes source: one JSON GET (for paged lists) and one
 * streaming watch, authenticated by @kubernetes/client-node's KubeConfig.
 *
 * Why not the library's informer (makeInformer/ListWatch, dist/cache.js)? It
 *  - keeps every full object in its own cache (we must compact immediately);
 *  - does no paging: the list function is one unpaged call;
 *  - never sends allowWatchBookmarks (bookmarks only work if the server sends them);
 *  - stops for good on any error other than 410 (the caller must restart it), and its
 *    Watch ignores lines it cannot parse and has no idle timeout (its
 *    AbortSignal.timeout is overwritten before use), so a half-dead connection hangs.
 * So we keep the library for what it does well (kubeconfig, in-cluster config, TLS,
 * exec/OIDC/token-file auth via applyToHTTPSOptions) and run list/watch ourselves over
 * node:http(s). By default the library runs in a short-lived helper process
 * (kubeconfig-helper.ts): importing it costs ~65 MB RSS for good, which would blow the
 * 150 MB budget at 10k Services; standalone nodes on the manifest source never load it.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';
import { errnoCode, errorMessage, PodwireError } from '../common';

/** A non-2xx answer from the API server, with the Status it sent if any. */
export class ApiError extends PodwireError {
  readonly statusCode: number;
  readonly reason: string | undefined;
  /** The server's own message (the Status `message`). */
  readonly serverMessage: string;
  /** From a `Retry-After` header (429, 503), in seconds. */
  retryAfterSeconds: number | undefined;
  constructor(statusCode: number, reason: string | undefined, message: string, path: string) {
    super('PW_K8S_API', `${path}: HTTP ${statusCode}${reason ? ` ${reason}` : ''}: ${message}`, {
      field: 'path',
      value: path,
    });
    this.statusCode = statusCode;
    this.reason = reason;
    this.serverMessage = message;
  }
}

/** A request with a body (PATCH), for the node writer. */
export interface ApiRequest {
  method: 'GET' | 'PATCH' | 'POST' | 'PUT';
  path: string;
  query?: Query;
  /** JSON body and its content type (e.g. `application/merge-patch+json`). */
  body?: unknown;
  contentType?: string;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
export interface WatchEvent {
  type: WatchEventType;
  object: Record<string, unknown>;
}

export type Query = Record<string, string | number | boolean | undefined>;

/**
 * Set by getJson on the object it returns: the size of the response body in bytes, so a
 * paging caller can size its next page (reflector.ts). A symbol: never part of the JSON.
 */
export const BODY_BYTES: unique symbol = Symbol('podwire.bodyBytes');

export interface ApiTransport {
  /** GET a JSON document. Rejects with ApiError on a non-2xx status. */
  getJson(path: string, query: Query, signal: AbortSignal): Promise<Record<string, unknown>>;
  /**
   * Opens a watch and calls `onEvent` for each line. `onEvent` returns false to end
   * the watch. Resolves when the stream ends (server closed it or onEvent said stop);
   * rejects on connect/HTTP/parse errors. After `idleTimeoutMs` without bytes it ends
   * the stream as if the server had closed it.
   */
  watch(
    path: string,
    query: Query,
    onEvent: (event: WatchEvent) => boolean,
    signal: AbortSignal,
    idleTimeoutMs: number,
  ): Promise<void>;
  /**
   * Any JSON request (the node writer's GET and PATCH of its own Node), with the same
   * server and credentials. Rejects with ApiError on a non-2xx status, PodwireError
   * PW_K8S_CONNECT when no answer came. Optional: a read-only transport has none.
   */
  requestJson?(request: ApiRequest, signal: AbortSignal): Promise<Record<string, unknown>>;
}

export interface KubeConfigSource {
  kubeconfigPath?: string;
  inCluster?: boolean;
}

/** What a request needs, as computed by KubeConfig (see kubeconfig-helper.ts). */
export interface ConnectionInfo {
  server: string;
  proxyUrl?: string;
  headers: Record<string, string>;
  auth?: string;
  /** TLS material, base64. */
  ca?: string;
  cert?: string;
  key?: string;
  pfx?: string;
  passphrase?: string;
  rejectUnauthorized?: boolean;
  servername?: string;
}

interface RequestTarget {
  server: string;
  agent: http.Agent | undefined;
  headers: http.OutgoingHttpHeaders;
  auth: string | undefined;
}

/** Where requests get their server, agent and credentials. */
export interface CredentialProvider {
  target(): Promise<RequestTarget>;
  /** The server said 401: credentials may have rotated; resolve them again. */
  invalidate(): void;
  close(): void;
}

/** Loads KubeConfig in this process (costs ~65 MB RSS; see kubeconfig-helper.ts). */
export async function loadKubeConfig(source: KubeConfigSource): Promise<KubeConfig> {
  const k8s = await import('@kubernetes/client-node');
  const kc = new k8s.KubeConfig();
  if (source.inCluster) kc.loadFromCluster();
  else if (source.kubeconfigPath !== undefined) kc.loadFromFile(source.kubeconfigPath);
  else kc.loadFromDefault();
  if (!kc.getCurrentCluster()) {
    throw new PodwireError('PW_K8S_CONFIG', 'kubeconfig has no current cluster', {
      field: 'kubeconfig',
      value: source.kubeconfigPath ?? (source.inCluster ? 'in-cluster' : 'default'),
    });
  }
  return kc;
}

function toHeaders(given: https.RequestOptions['headers']): http.OutgoingHttpHeaders {
  const headers: http.OutgoingHttpHeaders = { Accept: 'application/json' };
  if (Array.isArray(given)) {
    for (let i = 0; i + 1 < given.length; i += 2) headers[String(given[i])] = String(given[i + 1]);
  } else {
    for (const [k, v] of Object.entries(given ?? {})) if (v !== undefined) headers[k] = v;
  }
  return headers;
}

/**
 * In-process: asks the library's KubeConfig on every request (fresh tokens from token
 * files and exec plugins, proxy agents). Used when a proxy is configured, and in tests.
 */
export class InProcessCredentials implements CredentialProvider {
  private readonly server: string;
  constructor(private readonly kc: KubeConfig) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new PodwireError('PW_K8S_CONFIG', 'kubeconfig has no current cluster');
    this.server = cluster.server;
  }
  async target(): Promise<RequestTarget> {
    const opts: https.RequestOptions = {};
    await this.kc.applyToHTTPSOptions(opts);
    return { server: this.server, agent: opts.agent as http.Agent | undefined, headers: toHeaders(opts.headers), auth: opts.auth ?? undefined };
  }
  invalidate(): void {}
  close(): void {}
}

export interface HelperCredentialsOptions extends KubeConfigSource {
  /** Re-resolve credentials at least this often (rotating service-account tokens). */
  refreshMs?: number;
  /** For tests: path of the compiled helper. */
  helperPath?: string;
  timeoutMs?: number;
}

/** Runs kubeconfig-helper.js and parses its output. */
export async function resolveConnection(options: HelperCredentialsOptions): Promise<ConnectionInfo> {
  const { execFile } = await import('node:child_process');
  const path = await import('node:path');
  const helper = options.helperPath ?? path.join(__dirname, 'kubeconfig-helper.js');
  const spec = JSON.stringify({ kubeconfigPath: options.kubeconfigPath, inCluster: options.inCluster });
  const source = options.kubeconfigPath ?? (options.inCluster ? 'in-cluster' : 'default');
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [helper, spec],
      { timeout: options.timeoutMs ?? 60_000, maxBuffer: 4 * 1024 * 1024, env: process.env },
      (err, stdout, stderr) => {
        if (err) {
          reject(new PodwireError('PW_K8S_CONFIG', `cannot load kubeconfig (${source}): ${String(stderr).trim() || err.message}`, { field: 'kubeconfig', value: source, cause: err }));
          return;
        }
        try {
          const info = JSON.parse(String(stdout)) as ConnectionInfo;
          if (typeof info.server !== 'string' || info.server === '') throw new Error('no server');
          resolve(info);
        } catch (e) {
          reject(new PodwireError('PW_K8S_CONFIG', `kubeconfig helper gave bad output: ${String(e)}`, { field: 'kubeconfig', value: source }));
        }
      },
    );
  });
}

/**
 * Credentials resolved by the helper process, cached with one keep-alive agent until
 * they are older than `refreshMs` or the server answers 401.
 */
export class HelperCredentials implements CredentialProvider {
  private current: { target: RequestTarget; at: number } | undefined;
  private inflight: Promise<RequestTarget> | undefined;

  constructor(
    private readonly options: HelperCredentialsOptions,
    first?: ConnectionInfo,
  ) {
    if (first) this.current = { target: HelperCredentials.build(first), at: Date.now() };
  }

  static build(info: ConnectionInfo): RequestTarget {
    const tls = info.server.startsWith('https:');
    const buf = (v: string | undefined): Buffer | undefined => (v === undefined ? undefined : Buffer.from(v, 'base64'));
    const agent = tls
      ? new https.Agent({
          keepAlive: true,
          ca: buf(info.ca),
          cert: buf(info.cert),
          key: buf(info.key),
          pfx: buf(info.pfx),
          passphrase: info.passphrase,
          rejectUnauthorized: info.rejectUnauthorized,
          servername: info.servername,
        })
      : new http.Agent({ keepAlive: true });
    return { server: info.server, agent, headers: toHeaders(info.headers), auth: info.auth };
  }

  async target(): Promise<RequestTarget> {
    const refreshMs = this.options.refreshMs ?? 5 * 60_000;
    if (this.current && Date.now() - this.current.at < refreshMs) return this.current.target;
    this.inflight ??= resolveConnection(this.options)
      .then(
        (info) => {
          this.current?.target.agent?.destroy();
          const target = HelperCredentials.build(info);
          this.current = { target, at: Date.now() };
          return target;
        },
        (err: unknown) => {
          // Keep using the credentials we have (they may still be valid) and try the
          // helper again in 30 s rather than on every request.
          if (!this.current) throw err;
          this.current.at = Date.now() - refreshMs + 30_000;
          return this.current.target;
        },
      )
      .finally(() => {
        this.inflight = undefined;
      });
    return this.inflight;
  }

  invalidate(): void {
    if (this.current) this.current.at = 0;
  }

  close(): void {
    this.current?.target.agent?.destroy();
  }
}

/**
 * Picks the credential provider: the helper process by default; in-process when the
 * kubeconfig uses a proxy (proxy agents cannot be rebuilt from plain options) or when
 * asked to.
 */
export async function createCredentials(
  source: KubeConfigSource & { mode?: 'helper' | 'in-process'; refreshMs?: number },
): Promise<CredentialProvider> {
  if (source.mode === 'in-process') return new InProcessCredentials(await loadKubeConfig(source));
  const info = await resolveConnection(source);
  if (info.proxyUrl) return new InProcessCredentials(await loadKubeConfig(source));
  return new HelperCredentials(source, info);
}

function buildUrl(server: string, path: string, query: Query): URL {
  const url = new URL(server.replace(/\/+$/, '') + path);
  for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, String(v));
  return url;
}

function statusFromBody(text: string): { reason?: string; message?: string; code?: number } {
  try {
    const s = JSON.parse(text) as { reason?: unknown; message?: unknown; code?: unknown };
    return {
      reason: typeof s.reason === 'string' ? s.reason : undefined,
      message: typeof s.message === 'string' ? s.message : undefined,
      code: typeof s.code === 'number' ? s.code : undefined,
    };
  } catch {
    return { message: text.slice(0, 500) };
  }
}

/** TLS verification failures that mean "the configured CA does not match the server". */
const UNTRUSTED_SERVER_CODES = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'CERT_SIGNATURE_FAILURE',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/**
 * A request that failed before any response, named by the server it was for, with a hint for
 * the TLS cases whose raw OpenSSL text says little. A trust failure also drops the cached
 * credentials, so a corrected CA is read again on the next retry rather than at the next refresh.
 */
export function connectError(err: unknown, server: string, credentials: CredentialProvider): PodwireError {
  if (err instanceof PodwireError) return err;
  const code = errnoCode(err);
  let hint = '';
  if (code !== undefined && UNTRUSTED_SERVER_CODES.has(code)) {
    hint = ' (the server certificate is not trusted by the configured certificate authority: kubeconfig certificate-authority, or the service account ca.crt)';
    credentials.invalidate();
  } else if (code === 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED') {
    hint = ' (the server requires a client certificate, and none is configured)';
  }
  const text = errorMessage(err).trim().split('\n')[0];
  return new PodwireError('PW_K8S_CONNECT', `cannot reach the API server ${server}: ${code === undefined ? '' : `${code}: `}${text}${hint}`, {
    field: 'server',
    value: server,
    cause: err,
  });
}

/** Transport over node:http(s) with credentials from a CredentialProvider. */
export class HttpTransport implements ApiTransport {
  constructor(private readonly credentials: CredentialProvider) {}

  private async open(
    path: string,
    query: Query,
    signal: AbortSignal,
    method = 'GET',
    contentType?: string,
  ): Promise<{ req: http.ClientRequest; fail: (err: unknown) => PodwireError }> {
    const t = await this.credentials.target();
    const url = buildUrl(t.server, path, query);
    const mod = url.protocol === 'https:' ? https : http;
    const headers = contentType === undefined ? t.headers : { ...t.headers, 'Content-Type': contentType };
    const req = mod.request(url, { method, agent: t.agent, headers, auth: t.auth, signal });
    req.on('response', (res) => {
      if (res.statusCode === 401) this.credentials.invalidate();
    });
    return { req, fail: (err) => connectError(err, url.origin, this.credentials) };
  }

  close(): void {
    this.credentials.close();
  }

  async getJson(path: string, query: Query, signal: AbortSignal): Promise<Record<string, unknown>> {
    return this.requestJson({ method: 'GET', path, query }, signal);
  }

  async requestJson(request: ApiRequest, signal: AbortSignal): Promise<Record<string, unknown>> {
    const { path } = request;
    const body = request.body === undefined ? undefined : JSON.stringify(request.body);
    const { req, fail } = await this.open(path, request.query ?? {}, signal, request.method, body === undefined ? undefined : (request.contentType ?? 'application/json'));
    return new Promise((resolve, reject) => {
      req.on('error', (err) => reject(fail(err)));
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const bytes = chunks.reduce((n, c) => n + c.length, 0);
          const text = Buffer.concat(chunks, bytes).toString('utf8');
          chunks.length = 0;
          const code = res.statusCode ?? 0;
          if (code < 200 || code >= 300) {
            const s = statusFromBody(text);
            const err = new ApiError(code, s.reason, s.message ?? res.statusMessage ?? '', path);
            const after = Number(res.headers['retry-after']);
            if (Number.isFinite(after) && after >= 0) err.retryAfterSeconds = after;
            reject(err);
            return;
          }
          try {
            const body = JSON.parse(text) as unknown;
            if (typeof body !== 'object' || body === null) throw new Error('not a JSON object');
            Object.defineProperty(body, BODY_BYTES, { value: bytes, enumerable: false });
            resolve(body as Record<string, unknown>);
          } catch (err) {
            reject(new ApiError(code, 'BadBody', `cannot parse response: ${String(err)}`, path));
          }
        });
      });
      req.end(body);
    });
  }

  async watch(
    path: string,
    query: Query,
    onEvent: (event: WatchEvent) => boolean,
    signal: AbortSignal,
    idleTimeoutMs: number,
  ): Promise<void> {
    const local = new AbortController();
    const onOuterAbort = (): void => local.abort(signal.reason);
    signal.addEventListener('abort', onOuterAbort, { once: true });
    try {
      const { req, fail } = await this.open(path, { ...query, watch: 'true' }, local.signal);
      await new Promise<void>((resolve, reject) => {
        let settled = false;
        const finish = (err?: unknown): void => {
          if (settled) return;
          settled = true;
          if (err === undefined) resolve();
          else reject(err);
          req.destroy();
        };
        // No bytes for this long (not even a bookmark): the connection may be dead
        // without a FIN/RST. End it like a server-side timeout; the caller re-watches
        // from its resourceVersion, which is cheap if it was merely quiet.
        req.setTimeout(idleTimeoutMs, () => finish());
        req.on('error', (err) => finish(local.signal.aborted && settled ? undefined : fail(err)));
        req.on('response', (res) => {
          const code = res.statusCode ?? 0;
          if (code !== 200) {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => {
              const s = statusFromBody(Buffer.concat(chunks).toString('utf8'));
              finish(new ApiError(code, s.reason, s.message ?? res.statusMessage ?? '', path));
            });
            res.on('error', finish);
            return;
          }
          let pending = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            if (settled) return;
            pending += chunk;
            let nl: number;
            while ((nl = pending.indexOf('\n')) >= 0) {
              const line = pending.slice(0, nl).trim();
              pending = pending.slice(nl + 1);
              if (line === '') continue;
              let ev: WatchEvent;
              try {
                ev = JSON.parse(line) as WatchEvent;
              } catch {
                // Unlike the library's Watch we do not skip it: a lost event would go
                // unnoticed, so reconnect from the last resourceVersion instead.
                finish(new ApiError(200, 'BadWatchLine', `cannot parse watch line ${line.slice(0, 200)}`, path));
                return;
              }
              if (typeof ev !== 'object' || ev === null || typeof ev.type !== 'string' || typeof ev.object !== 'object') {
                finish(new ApiError(200, 'BadWatchLine', `unexpected watch line ${line.slice(0, 200)}`, path));
                return;
              }
              if (!onEvent(ev)) {
                finish();
                return;
              }
            }
          });
          // A stream cut mid-line is an error (events may be lost); a clean end is not.
          res.on('end', () => finish(pending.trim() === '' ? undefined : new ApiError(200, 'Truncated', 'watch stream ended mid-line', path)));
          res.on('aborted', () => finish(new ApiError(200, 'Aborted', 'watch connection aborted', path)));
          res.on('error', finish);
          res.on('close', () => finish(res.complete ? undefined : new ApiError(200, 'Closed', 'watch connection closed', path)));
        });
        req.end();
      });
    } finally {
      signal.removeEventListener('abort', onOuterAbort);
    }
  }
}
