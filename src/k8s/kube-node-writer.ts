/**
 * The NodeWriter of the Kubernetes source: writes to this node's own Node object and to
 * nothing else, over the source's own transport (same server, same credentials).
 *
 *  - annotations: JSON merge patch (`application/merge-patch+json`) on
 *    `/api/v1/nodes/<name>`: `{"metadata":{"annotations":{k: v | null}}}`;
 *  - conditions: strategic merge patch (`application/strategic-merge-patch+json`) on
 *    `/api/v1/nodes/<name>/status`; `status.conditions` merges by `type`, so only our
 *    condition changes. `lastHeartbeatTime` is set on every write; `lastTransitionTime`
 *    is carried over from the Node's current condition unless `status` changed. The patch
 *    carries `metadata.resourceVersion` (optimistic concurrency): if anyone changed the
 *    Node since we read it, the server answers 409 and we re-read and try again, so a
 *    transition time is never computed from a stale condition.
 *
 * Failures: 5xx, 429 (honouring Retry-After) and connection errors are retried with
 * jittered exponential backoff; 409 re-reads the Node and retries; any other 4xx (403
 * forbidden by RBAC, 404, 415, 422 invalid) gives up at once with a NodeWriteError that
 * names the node, the field and the HTTP status. Writes are serialised (one at a time),
 * so two of our own writes never conflict with each other.
 */
import type { Clock, Logger } from '../common';
import { errorMessage, PodwireError, sleepOn, systemClock } from '../common';
import { ApiError, type ApiRequest, type ApiTransport } from './api-client';
import type { NodeConditionInput, NodeWriter } from './types';

export interface NodeWriteRetry {
  /** Attempts per request for transient failures (5xx, 429, connection errors). */
  attempts: number;
  initialMs: number;
  maxMs: number;
  /** Re-read and retry this many times on 409 Conflict. */
  conflicts: number;
}

export const DEFAULT_NODE_WRITE_RETRY: NodeWriteRetry = { attempts: 8, initialMs: 200, maxMs: 10_000, conflicts: 8 };

export interface KubeNodeWriterOptions {
  nodeName: string;
  /** Resolves to the source's transport once the source has started. */
  transport: () => Promise<ApiTransport>;
  logger: Logger;
  clock?: Clock;
  random?: () => number;
  retry?: Partial<NodeWriteRetry>;
}

/** A write the API server refused, or that kept failing: names node, field and HTTP status. */
export class NodeWriteError extends PodwireError {
  readonly nodeName: string;
  readonly statusCode: number | undefined;
  constructor(nodeName: string, field: string, cause: unknown, attempts: number) {
    const status = cause instanceof ApiError ? `HTTP ${cause.statusCode}${cause.reason ? ` ${cause.reason}` : ''}: ${cause.serverMessage}` : errorMessage(cause);
    const tries = attempts > 1 ? ` (after ${attempts} attempts)` : '';
    super('PW_K8S_NODE_WRITE', `cannot write ${field} of Node ${nodeName}: ${status}${tries}`, { field, value: nodeName, cause });
    this.nodeName = nodeName;
    this.statusCode = cause instanceof ApiError ? cause.statusCode : undefined;
  }
}

interface RawCondition {
  type: string;
  status: string;
  lastTransitionTime?: string;
}

interface KnownNode {
  resourceVersion: string;
  conditions: Map<string, RawCondition>;
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const CONDITION_STATUS = new Set(['True', 'False', 'Unknown']);

/** RFC 3339 with second precision, as the API server stores metav1.Time. */
export function apiTime(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/** Waits for `p`, or rejects when `signal` aborts first (a write before the source started). */
function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return p;
  if (signal.aborted) return Promise.reject(signal.reason ?? new Error('aborted'));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason ?? new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

function transient(err: unknown): boolean {
  if (err instanceof ApiError) return err.statusCode >= 500 || err.statusCode === 429;
  return err instanceof PodwireError ? err.code === 'PW_K8S_CONNECT' : true;
}

export class KubeNodeWriter implements NodeWriter {
  readonly writesBack = true;
  readonly nodeName: string;
  private readonly nodePath: string;
  private readonly retry: NodeWriteRetry;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly log: Logger;
  private known: KnownNode | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  /** Requests sent, for tests and status. */
  readonly stats = { patches: 0, reads: 0, retries: 0, conflicts: 0, failures: 0 };

  constructor(private readonly options: KubeNodeWriterOptions) {
    const name = options.nodeName;
    if (typeof name !== 'string' || name.length > 253 || !DNS_SUBDOMAIN.test(name)) {
      throw new PodwireError('PW_INVALID_INPUT', `invalid nodeName=${JSON.stringify(name)}: not a valid Node name`, { field: 'nodeName', value: name });
    }
    this.nodeName = name;
    this.nodePath = `/api/v1/nodes/${encodeURIComponent(name)}`;
    this.retry = { ...DEFAULT_NODE_WRITE_RETRY, ...options.retry };
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
    this.log = options.logger.child({ component: 'node-writer', node: name });
  }

  patchAnnotations(annotations: Readonly<Record<string, string | null>>, signal?: AbortSignal): Promise<void> {
    const patch: Record<string, string | null> = {};
    for (const [k, v] of Object.entries(annotations)) {
      if (k === '' || k.length > 316) return Promise.reject(new PodwireError('PW_INVALID_INPUT', `invalid annotation key ${JSON.stringify(k)}`, { field: 'metadata.annotations', value: k }));
      if (v !== null && typeof v !== 'string') return Promise.reject(new PodwireError('PW_INVALID_INPUT', `invalid annotation ${k}: value must be a string or null`, { field: `metadata.annotations[${k}]`, value: v }));
      patch[k] = v;
    }
    if (Object.keys(patch).length === 0) return Promise.resolve();
    const field = `metadata.annotations[${Object.keys(patch).join(',')}]`;
    return this.serial(async () => {
      await this.withConflicts(field, signal, async () => {
        const body = await this.send(field, { method: 'PATCH', path: this.nodePath, contentType: 'application/merge-patch+json', body: { metadata: { annotations: patch } } }, signal);
        this.remember(body);
      });
    });
  }

  setCondition(condition: NodeConditionInput, signal?: AbortSignal): Promise<void> {
    const c = condition;
    if (typeof c.type !== 'string' || c.type === '') return Promise.reject(new PodwireError('PW_INVALID_INPUT', 'condition type is required', { field: 'status.conditions[].type', value: c.type }));
    if (!CONDITION_STATUS.has(c.status)) return Promise.reject(new PodwireError('PW_INVALID_INPUT', `condition ${c.type}: status must be True, False or Unknown`, { field: `status.conditions[${c.type}].status`, value: c.status }));
    const field = `status.conditions[${c.type}]`;
    return this.serial(async () => {
      await this.withConflicts(field, signal, async () => {
        const known = this.known ?? (await this.read(field, signal));
        const now = apiTime(this.clock.now());
        const prev = known.conditions.get(c.type);
        const lastTransitionTime = prev !== undefined && prev.status === c.status && prev.lastTransitionTime ? prev.lastTransitionTime : now;
        const patch = {
          metadata: { resourceVersion: known.resourceVersion },
          status: { conditions: [{ type: c.type, status: c.status, reason: c.reason, message: c.message, lastHeartbeatTime: now, lastTransitionTime }] },
        };
        const body = await this.send(field, { method: 'PATCH', path: `${this.nodePath}/status`, contentType: 'application/strategic-merge-patch+json', body: patch }, signal);
        this.remember(body);
      });
    });
  }

  /** One write at a time; a failed write does not block the next. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn);
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** 409 Conflict: forget what we knew about the Node, re-read it, and run `fn` again. */
  private async withConflicts(field: string, signal: AbortSignal | undefined, fn: () => Promise<void>): Promise<void> {
    for (let conflicts = 0; ; conflicts++) {
      try {
        await fn();
        return;
      } catch (err) {
        if (!(err instanceof NodeWriteError) || err.statusCode !== 409) throw err;
        this.stats.conflicts++;
        this.known = undefined;
        if (conflicts >= this.retry.conflicts) throw err;
        this.log.debug({ field }, '409 Conflict; re-reading the Node');
        await this.read(field, signal);
      }
    }
  }

  private async read(field: string, signal: AbortSignal | undefined): Promise<KnownNode> {
    this.stats.reads++;
    const body = await this.send(field, { method: 'GET', path: this.nodePath }, signal);
    return this.remember(body);
  }

  /** Keeps the Node's resourceVersion and conditions from an answer (GET or PATCH: both return the object). */
  private remember(body: Record<string, unknown>): KnownNode {
    const meta = (body.metadata ?? {}) as { resourceVersion?: unknown };
    const status = (body.status ?? {}) as { conditions?: unknown };
    const conditions = new Map<string, RawCondition>();
    if (Array.isArray(status.conditions)) {
      for (const c of status.conditions as RawCondition[]) if (c && typeof c.type === 'string') conditions.set(c.type, { type: c.type, status: String(c.status), lastTransitionTime: typeof c.lastTransitionTime === 'string' ? c.lastTransitionTime : undefined });
    }
    this.known = { resourceVersion: typeof meta.resourceVersion === 'string' ? meta.resourceVersion : '', conditions };
    return this.known;
  }

  /** One request with retries for transient failures; everything else becomes a NodeWriteError. */
  private async send(field: string, request: ApiRequest, signal: AbortSignal | undefined): Promise<Record<string, unknown>> {
    const transport = await abortable(this.options.transport(), signal);
    if (transport.requestJson === undefined) throw new NodeWriteError(this.nodeName, field, new Error('the transport cannot write'), 1);
    const sig = signal ?? new AbortController().signal;
    for (let attempt = 1; ; attempt++) {
      if (sig.aborted) throw new NodeWriteError(this.nodeName, field, sig.reason ?? new Error('aborted'), attempt - 1);
      try {
        if (request.method === 'PATCH') this.stats.patches++;
        return await transport.requestJson(request, sig);
      } catch (err) {
        if (sig.aborted) throw new NodeWriteError(this.nodeName, field, err, attempt);
        if (!transient(err) || attempt >= this.retry.attempts) {
          this.stats.failures++;
          const e = new NodeWriteError(this.nodeName, field, err, attempt);
          if (!(err instanceof ApiError && err.statusCode === 409)) this.log.warn({ field, err: e.message }, 'node write failed');
          throw e;
        }
        this.stats.retries++;
        const base = Math.min(this.retry.maxMs, this.retry.initialMs * 2 ** (attempt - 1));
        let delay = Math.round(base * (0.5 + this.random()));
        if (err instanceof ApiError && err.retryAfterSeconds !== undefined) delay = Math.min(this.retry.maxMs, Math.max(delay, err.retryAfterSeconds * 1000));
        this.log.debug({ field, attempt, retryInMs: delay, err: errorMessage(err) }, 'node write failed; retrying');
        await this.sleep(delay, sig);
      }
    }
  }

  private sleep(ms: number, signal: AbortSignal): Promise<void> {
    return sleepOn(this.clock, ms, signal);
  }
}
