/**
 * Leader election over a `coordination.k8s.io/v1` Lease, with client-go's leaderelection
 * semantics (its LeaseLock and LeaderElector), so it behaves like kube-controller-manager's:
 *
 *  - acquire: GET the Lease; 404 → create it (POST) holding it. Held by someone else and
 *    not expired → wait. Expired, or ours → update it (PUT with its resourceVersion: a
 *    concurrent writer gets 409 Conflict and loses this round).
 *  - "expired" is judged like client-go: by when *we* last saw the record change (our own
 *    clock), plus leaseDurationSeconds, never by comparing the holder's clock with ours.
 *  - renew every retryPeriod; when no renew succeeded for renewDeadline, leadership is lost
 *    (the leader's signal aborts), and the elector goes back to acquiring.
 *  - acquireTime and leaseTransitions change only on a change of holder.
 *  - stopping (signal) does not release the Lease, like a crash: a successor waits out the
 *    lease duration. That is the safe default for a controller that must never run twice.
 *
 * The Lease may carry annotations owned by the leader's work (`annotations` option): the
 * allocator persists what must survive a leader change there, written with every renew.
 */
import type { Clock, Logger } from '../common';
import { errorMessage, sleepOn, systemClock } from '../common';
import { ApiError, type ApiTransport } from './api-client';

export interface LeaderElectionOptions {
  transport: ApiTransport;
  namespace: string;
  name: string;
  /** This candidate's identity (holderIdentity), e.g. the node name. */
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  logger: Logger;
  clock?: Clock;
  random?: () => number;
  /**
   * Runs while we lead; `signal` aborts when leadership is lost or the elector stops. When it
   * returns (or throws) before that, leadership is kept until the elector stops.
   */
  onStartedLeading(signal: AbortSignal, lease: LeaseRecord): Promise<void>;
  onStoppedLeading?(): void;
  onNewLeader?(identity: string): void;
  /**
   * Annotations to write on the Lease with each acquire/renew (our own keys only). Gets the
   * Lease's current annotations first, so a new leader can take over its predecessor's.
   */
  annotations?(current: Readonly<Record<string, string>>): Record<string, string>;
}

export interface LeaseRecord {
  holderIdentity: string;
  leaseDurationSeconds: number;
  acquireTime: string;
  renewTime: string;
  leaseTransitions: number;
  annotations: Record<string, string>;
  resourceVersion: string;
}

interface RawLease {
  metadata?: { resourceVersion?: string; annotations?: Record<string, string> };
  spec?: { holderIdentity?: string; leaseDurationSeconds?: number; acquireTime?: string; renewTime?: string; leaseTransitions?: number };
}

/** RFC 3339 with microseconds, as client-go writes MicroTime. */
function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

function parseLease(raw: RawLease): LeaseRecord {
  const s = raw.spec ?? {};
  return {
    holderIdentity: s.holderIdentity ?? '',
    leaseDurationSeconds: s.leaseDurationSeconds ?? 0,
    acquireTime: s.acquireTime ?? '',
    renewTime: s.renewTime ?? '',
    leaseTransitions: s.leaseTransitions ?? 0,
    annotations: { ...(raw.metadata?.annotations ?? {}) },
    resourceVersion: raw.metadata?.resourceVersion ?? '',
  };
}

export class LeaderElector {
  private readonly clock: Clock;
  private readonly leaseMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryMs: number;
  private observed: { key: string; at: number } | undefined;
  private leading = false;
  private lastLeader = '';

  constructor(private readonly o: LeaderElectionOptions) {
    this.clock = o.clock ?? systemClock;
    this.leaseMs = o.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = o.renewDeadlineMs ?? 10_000;
    this.retryMs = o.retryPeriodMs ?? 2_000;
    if (!(this.leaseMs > this.renewDeadlineMs && this.renewDeadlineMs > this.retryMs && this.retryMs > 0)) {
      throw new RangeError(`leader election needs leaseDuration (${this.leaseMs}) > renewDeadline (${this.renewDeadlineMs}) > retryPeriod (${this.retryMs}) > 0`);
    }
  }

  get isLeader(): boolean {
    return this.leading;
  }

  get leader(): string {
    return this.lastLeader;
  }

  private get path(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(this.o.namespace)}/leases`;
  }

  private jitter(ms: number): number {
    return ms * (1 + 0.2 * (this.o.random ?? Math.random)());
  }

  /** Runs until `signal` aborts: acquire, lead, lose, acquire again. */
  async run(signal: AbortSignal): Promise<void> {
    const log = this.o.logger;
    while (!signal.aborted) {
      let record: LeaseRecord | undefined;
      while (!signal.aborted) {
        record = await this.tryAcquireOrRenew(signal);
        if (record) break;
        await sleepOn(this.clock, this.jitter(this.retryMs), signal);
      }
      if (signal.aborted || !record) return;
      this.leading = true;
      log.info({ lease: `${this.o.namespace}/${this.o.name}`, identity: this.o.identity, transitions: record.leaseTransitions }, 'became leader');
      const lead = new AbortController();
      const stop = (): void => lead.abort();
      signal.addEventListener('abort', stop, { once: true });
      const work = this.o.onStartedLeading(lead.signal, record).catch((err: unknown) => log.error({ err: errorMessage(err) }, 'leader work failed'));
      // Renew loop: lose leadership when no renew succeeded within renewDeadline.
      let lastRenew = this.clock.now();
      while (!signal.aborted) {
        await sleepOn(this.clock, this.retryMs, signal);
        if (signal.aborted) break;
        const ok = await this.tryAcquireOrRenew(signal);
        if (ok) lastRenew = this.clock.now();
        else if (this.lastLeader !== '' && this.lastLeader !== this.o.identity) {
          log.warn({ lease: `${this.o.namespace}/${this.o.name}`, identity: this.o.identity, holder: this.lastLeader }, 'lost leadership (the Lease has another holder)');
          break;
        } else if (this.clock.now() - lastRenew >= this.renewDeadlineMs) {
          log.warn({ lease: `${this.o.namespace}/${this.o.name}`, identity: this.o.identity }, 'lost leadership (no renew within the renew deadline)');
          break;
        }
      }
      this.leading = false;
      lead.abort();
      signal.removeEventListener('abort', stop);
      await work;
      this.o.onStoppedLeading?.();
    }
  }

  /** One attempt; the record we hold afterwards, or undefined. Never throws. */
  async tryAcquireOrRenew(signal: AbortSignal): Promise<LeaseRecord | undefined> {
    const now = this.clock.now();
    const t = this.o.transport;
    if (!t.requestJson) throw new TypeError('leader election needs a transport that can write (requestJson)');
    const spec = (acquireTime: string, transitions: number) => ({
      holderIdentity: this.o.identity,
      leaseDurationSeconds: Math.ceil(this.leaseMs / 1000),
      acquireTime,
      renewTime: microTime(now),
      leaseTransitions: transitions,
    });
    let current: LeaseRecord;
    try {
      current = parseLease((await t.requestJson({ method: 'GET', path: `${this.path}/${encodeURIComponent(this.o.name)}` }, signal)) as RawLease);
    } catch (err) {
      if (err instanceof ApiError && err.statusCode === 404) {
        try {
          const body = { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: this.o.name, namespace: this.o.namespace, annotations: this.o.annotations?.({}) ?? {} }, spec: spec(microTime(now), 0) };
          const created = parseLease((await t.requestJson({ method: 'POST', path: this.path, body }, signal)) as RawLease);
          this.observe(created, now);
          return created;
        } catch (e) {
          this.o.logger.debug({ err: errorMessage(e) }, 'creating the lease failed (another candidate won?)');
          return undefined;
        }
      }
      this.o.logger.warn({ err: errorMessage(err) }, 'reading the lease failed');
      return undefined;
    }
    this.observe(current, now);
    const ours = current.holderIdentity === this.o.identity;
    const expired = current.holderIdentity === '' || this.observed!.at + current.leaseDurationSeconds * 1000 <= now;
    if (!ours && !expired) return undefined;
    const body = {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: this.o.name, namespace: this.o.namespace, resourceVersion: current.resourceVersion, annotations: { ...current.annotations, ...(this.o.annotations?.(current.annotations) ?? {}) } },
      spec: ours ? spec(current.acquireTime, current.leaseTransitions) : spec(microTime(now), current.leaseTransitions + 1),
    };
    try {
      const updated = parseLease((await t.requestJson({ method: 'PUT', path: `${this.path}/${encodeURIComponent(this.o.name)}`, body }, signal)) as RawLease);
      this.observe(updated, now);
      return updated;
    } catch (err) {
      this.o.logger.debug({ err: errorMessage(err) }, 'updating the lease failed');
      return undefined;
    }
  }

  private observe(r: LeaseRecord, now: number): void {
    const key = `${r.holderIdentity}|${r.renewTime}|${r.leaseTransitions}`;
    if (!this.observed || this.observed.key !== key) this.observed = { key, at: now };
    if (r.holderIdentity !== this.lastLeader) {
      this.lastLeader = r.holderIdentity;
      if (r.holderIdentity) this.o.onNewLeader?.(r.holderIdentity);
    }
  }
}
