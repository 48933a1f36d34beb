/**
 * One list+watch loop for one resource (client-go's Reflector, trimmed to what we need):
 *
 *   list (paged: limit/continue) → diff into the cache (deletes for keys that vanished)
 *   → watch from the list's resourceVersion with allowWatchBookmarks
 *   → on a clean end: watch again from the last resourceVersion seen (events and
 *     bookmarks both advance it), so a dropped stream loses and repeats nothing
 *   → on 410 Gone (HTTP status, or an ERROR event whose Status has code 410, or an
 *     expired continue token): relist from scratch
 *   → on any other error: back off (exponential, jittered) and retry; the cache keeps
 *     its last state and no events are delivered while the API server is away.
 *
 * Each item is compacted as it is read and the raw object dropped.
 */
import type { Clock, Logger } from '../common';
import { errorMessage, sleepOn, systemClock } from '../common';
import { ApiError, BODY_BYTES, type ApiTransport, type Query, type WatchEvent } from './api-client';
import type { ObjectCache, ProblemSet } from './cache';
import { compact, InvalidObjectError, rawKey } from './compact';
import type { ClusterKind } from './types';

export interface ResourceDef {
  kind: ClusterKind;
  /** Collection path, e.g. `/api/v1/services`. */
  path: string;
  fieldSelector?: string;
  labelSelector?: string;
  /** Overrides ReflectorTuning.pageSize for this resource. */
  pageSize?: number;
}

export interface ReflectorTuning {
  /** Items per list page (client-go uses 500). */
  pageSize: number;
  /**
   * Items per page for EndpointSlices, which hold up to 100 endpoints each: 500 full
   * slices are a ~15 MB page whose transient parse raised RSS by ~40 MB in bench/sources.
   */
  endpointSlicePageSize: number;
  /**
   * Pages are also bounded in bytes: after a page larger than this, the next one asks for
   * proportionally fewer items (never fewer than minPageSize, never more than the page size
   * above). A page is parsed whole, and its transient objects, not the count of items, are
   * what raise RSS: 100 full EndpointSlices (100 endpoints each) are a ~3 MB page, 100
   * slices of 10 endpoints ~0.3 MB. Judged on bytes, both layouts of bench/sources parse at
   * most ~1 MB at a time.
   */
  targetPageBytes: number;
  minPageSize: number;
  /** Backoff after a failure: initial delay, doubling to the maximum, jittered ×[0.5, 1.5). */
  backoffInitialMs: number;
  backoffMaxMs: number;
  /** Server-side watch timeout, chosen at random in [min, 2×min) like client-go. */
  watchTimeoutSeconds: number;
  /** A watch with no bytes for this long is re-opened (bookmarks, ~1/min from real servers, keep it alive). */
  idleTimeoutMs: number;
  /** Safety bound: pages per list. */
  maxPages: number;
}

export const DEFAULT_TUNING: ReflectorTuning = {
  pageSize: 500,
  endpointSlicePageSize: 100,
  targetPageBytes: 1 << 20,
  minPageSize: 10,
  backoffInitialMs: 800,
  backoffMaxMs: 30_000,
  watchTimeoutSeconds: 300,
  idleTimeoutMs: 5 * 60_000,
  maxPages: 100_000,
};

export interface ReflectorStats {
  kind: ClusterKind;
  resourceVersion: string;
  synced: boolean;
  lists: number;
  pages: number;
  watches: number;
  /** Relists caused by 410 Gone. */
  expired: number;
  bookmarks: number;
  events: number;
  errors: number;
  lastError: string | undefined;
}

export interface ReflectorDeps {
  transport: ApiTransport;
  cache: ObjectCache;
  problems: ProblemSet;
  logger: Logger;
  tuning: ReflectorTuning;
  clock?: Clock;
  random?: () => number;
  onSynced: () => void;
}

type WatchEnd = 'closed' | 'expired';

export class Reflector {
  private rv = '';
  private readonly stats: ReflectorStats;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly log: Logger;

  constructor(
    private readonly def: ResourceDef,
    private readonly deps: ReflectorDeps,
  ) {
    this.clock = deps.clock ?? systemClock;
    this.random = deps.random ?? Math.random;
    this.log = deps.logger.child({ kind: def.kind });
    this.stats = {
      kind: def.kind,
      resourceVersion: '',
      synced: false,
      lists: 0,
      pages: 0,
      watches: 0,
      expired: 0,
      bookmarks: 0,
      events: 0,
      errors: 0,
      lastError: undefined,
    };
  }

  snapshot(): ReflectorStats {
    return { ...this.stats, resourceVersion: this.rv };
  }

  async run(signal: AbortSignal): Promise<void> {
    let failures = 0;
    while (!signal.aborted) {
      try {
        if (this.rv === '') await this.listAll(signal);
        const started = this.clock.now();
        const eventsBefore = this.stats.events + this.stats.bookmarks;
        const end = await this.watchOnce(signal);
        if (end === 'expired') {
          this.stats.expired++;
          this.log.info({ resourceVersion: this.rv }, 'watch expired (410 Gone); relisting');
          this.rv = '';
          failures = 0;
          continue;
        }
        // A watch that ends at once with nothing in it would otherwise spin.
        const productive = this.stats.events + this.stats.bookmarks > eventsBefore || this.clock.now() - started >= 1000;
        failures = productive ? 0 : failures + 1;
        if (failures > 0) await this.sleep(this.backoff(failures), signal);
      } catch (err) {
        if (signal.aborted) break;
        if (err instanceof ApiError && err.statusCode === 410) {
          // Too old resourceVersion on watch, or an expired continue token on list.
          this.stats.expired++;
          this.log.info({ err: err.message }, '410 Gone; relisting');
          this.rv = '';
          // A second 410 in a row backs off, so a confused server cannot make us spin.
          failures++;
          if (failures > 1) await this.sleep(this.backoff(failures - 1), signal);
          continue;
        }
        failures++;
        this.stats.errors++;
        this.stats.lastError = errorMessage(err);
        const delay = this.backoff(failures);
        this.log.warn({ err: errorMessage(err), failures, retryInMs: delay }, 'list/watch failed; keeping last state');
        await this.sleep(delay, signal);
      }
    }
  }

  private backoff(failures: number): number {
    const { backoffInitialMs, backoffMaxMs } = this.deps.tuning;
    const base = Math.min(backoffMaxMs, backoffInitialMs * 2 ** Math.min(failures - 1, 30));
    return Math.round(base * (0.5 + this.random()));
  }

  private sleep(ms: number, signal: AbortSignal): Promise<void> {
    return sleepOn(this.clock, ms, signal);
  }

  private selectors(): Query {
    return { fieldSelector: this.def.fieldSelector, labelSelector: this.def.labelSelector };
  }

  private async listAll(signal: AbortSignal): Promise<void> {
    const { transport, cache, tuning } = this.deps;
    this.stats.lists++;
    const present = new Set<string>();
    let cont: string | undefined;
    let rv = '';
    const maxLimit = this.def.pageSize ?? tuning.pageSize;
    let limit = maxLimit;
    for (let page = 0; page < tuning.maxPages; page++) {
      const body = await transport.getJson(this.def.path, { ...this.selectors(), limit, continue: cont }, signal);
      this.stats.pages++;
      limit = nextPageLimit(limit, (body as { [BODY_BYTES]?: number })[BODY_BYTES], tuning, maxLimit);
      const items = Array.isArray(body.items) ? (body.items as unknown[]) : [];
      for (let i = 0; i < items.length; i++) {
        const key = this.apply(items[i], present);
        // Drop our reference to the raw item at once so the page can be collected early.
        items[i] = key;
      }
      const meta = (body.metadata ?? {}) as { resourceVersion?: unknown; continue?: unknown };
      rv = typeof meta.resourceVersion === 'string' ? meta.resourceVersion : '';
      cont = typeof meta.continue === 'string' && meta.continue !== '' ? meta.continue : undefined;
      if (cont === undefined) break;
      if (page === tuning.maxPages - 1) throw new ApiError(500, 'TooManyPages', `more than ${tuning.maxPages} pages`, this.def.path);
    }
    const gone = cache.deleteMissing(this.def.kind, present);
    this.deps.problems.clearWhere((_id, p) => p.kind === this.def.kind && p.key !== undefined && !present.has(p.key));
    this.rv = rv;
    this.log.debug({ resourceVersion: rv, items: present.size, deleted: gone }, 'listed');
    if (!this.stats.synced) {
      this.stats.synced = true;
      this.deps.onSynced();
    }
  }

  /** Compacts one raw object into the cache. Returns its key (or undefined if it has none). */
  private apply(raw: unknown, present?: Set<string>): string | undefined {
    const kind = this.def.kind;
    const key = rawKey(kind, raw);
    if (key === undefined) {
      this.deps.problems.set(`${kind}/?`, {
        kind,
        key: undefined,
        field: 'metadata.name',
        value: undefined,
        reason: 'object without a name',
      });
      this.log.warn({ field: 'metadata.name' }, 'skipping object without a name');
      return undefined;
    }
    present?.add(key);
    try {
      const obj = compact(kind, raw);
      this.deps.problems.clear(`${kind}/${key}`);
      this.deps.cache.upsert(obj);
    } catch (err) {
      if (!(err instanceof InvalidObjectError)) throw err;
      this.deps.problems.set(`${kind}/${key}`, {
        kind,
        key,
        field: err.objectField,
        value: err.value,
        reason: err.message,
      });
      this.log.warn({ key, field: err.objectField, value: err.value, err: err.message }, 'invalid object skipped; keeping last good version');
    }
    return key;
  }

  private async watchOnce(signal: AbortSignal): Promise<WatchEnd> {
    const { transport, tuning } = this.deps;
    this.stats.watches++;
    let end: WatchEnd = 'closed';
    const timeoutSeconds = Math.floor(tuning.watchTimeoutSeconds * (1 + this.random()));
    const onEvent = (ev: WatchEvent): boolean => {
      const obj = ev.object;
      switch (ev.type) {
        case 'ADDED':
        case 'MODIFIED':
          this.stats.events++;
          this.apply(obj);
          break;
        case 'DELETED': {
          this.stats.events++;
          const key = rawKey(this.def.kind, obj);
          if (key !== undefined) {
            this.deps.problems.clear(`${this.def.kind}/${key}`);
            this.deps.cache.remove(this.def.kind, key);
          }
          break;
        }
        case 'BOOKMARK':
          this.stats.bookmarks++;
          break;
        case 'ERROR': {
          const code = (obj as { code?: unknown }).code;
          if (code === 410) {
            end = 'expired';
            return false;
          }
          const message = (obj as { message?: unknown }).message;
          throw new ApiError(typeof code === 'number' ? code : 500, 'WatchError', String(message ?? 'watch error'), this.def.path);
        }
        default:
          this.log.warn({ type: ev.type }, 'unknown watch event type ignored');
          return true;
      }
      const meta = obj.metadata as { resourceVersion?: unknown } | undefined;
      if (meta && typeof meta.resourceVersion === 'string' && meta.resourceVersion !== '') this.rv = meta.resourceVersion;
      return true;
    };
    let thrown: unknown;
    const guarded = (ev: WatchEvent): boolean => {
      try {
        return onEvent(ev);
      } catch (err) {
        thrown = err;
        return false;
      }
    };
    await transport.watch(
      this.def.path,
      { ...this.selectors(), resourceVersion: this.rv, allowWatchBookmarks: true, timeoutSeconds },
      guarded,
      signal,
      tuning.idleTimeoutMs,
    );
    if (thrown !== undefined) throw thrown;
    return end;
  }
}

/**
 * The next page's `limit` after a page of `bytes` (ReflectorTuning.targetPageBytes): scaled
 * down after a large page, back up after a small one, within [minPageSize, maxLimit].
 * Unknown size (a transport that does not report it): unchanged.
 */
export function nextPageLimit(limit: number, bytes: number | undefined, tuning: Pick<ReflectorTuning, 'targetPageBytes' | 'minPageSize'>, maxLimit: number): number {
  if (bytes === undefined || !(bytes > 0)) return limit;
  const scaled = Math.floor((limit * tuning.targetPageBytes) / bytes);
  return Math.max(Math.min(tuning.minPageSize, maxLimit), Math.min(maxLimit, scaled));
}
