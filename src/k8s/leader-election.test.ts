import t from 'tap';
import { silentLogger } from '../common';
import { ApiError, type ApiRequest, type ApiTransport } from './api-client';
import { LeaderElector } from './leader-election';

/** One Lease in memory with resourceVersion checks, like the API server's registry. */
class LeaseStore implements ApiTransport {
  obj: Record<string, unknown> | undefined;
  rv = 0;
  conflictNext = false;
  async getJson(): Promise<Record<string, unknown>> {
    throw new Error('unused');
  }
  async watch(): Promise<void> {}
  async requestJson(r: ApiRequest): Promise<Record<string, unknown>> {
    if (r.method === 'GET') {
      if (!this.obj) throw new ApiError(404, 'NotFound', 'not found', r.path);
      return structuredClone(this.obj);
    }
    const body = structuredClone(r.body) as { metadata: Record<string, unknown> };
    if (r.method === 'POST') {
      if (this.obj) throw new ApiError(409, 'AlreadyExists', 'exists', r.path);
    } else if (r.method === 'PUT') {
      const cur = (this.obj?.metadata as { resourceVersion?: string } | undefined)?.resourceVersion;
      if (this.conflictNext || body.metadata.resourceVersion !== cur) {
        this.conflictNext = false;
        throw new ApiError(409, 'Conflict', 'modified', r.path);
      }
    }
    body.metadata.resourceVersion = String(++this.rv);
    this.obj = body;
    return structuredClone(body);
  }
  get spec(): { holderIdentity: string; leaseTransitions: number; acquireTime: string; renewTime: string } {
    return this.obj!.spec as never;
  }
}

function elector(store: LeaseStore, identity: string, clock: { now(): number; setTimeout(): { cancel(): void } }) {
  return new LeaderElector({ transport: store, namespace: 'kube-system', name: 'l', identity, leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000, logger: silentLogger, clock, onStartedLeading: async () => undefined });
}

t.test('acquire, renew, expiry judged by our own clock, transitions only on a change of holder, conflicts lose', async (t) => {
  let now = 1_000_000;
  const clock = { now: () => now, setTimeout: () => ({ cancel() {} }) };
  const store = new LeaseStore();
  const a = elector(store, 'a', clock);
  const b = elector(store, 'b', clock);
  const sig = new AbortController().signal;
  t.ok(await a.tryAcquireOrRenew(sig), 'a creates the Lease');
  t.equal(store.spec.holderIdentity, 'a');
  t.equal(store.spec.leaseTransitions, 0);
  const acquired = store.spec.acquireTime;
  t.notOk(await b.tryAcquireOrRenew(sig), 'b: held and fresh');
  now += 5_000;
  t.ok(await a.tryAcquireOrRenew(sig), 'a renews');
  t.equal(store.spec.acquireTime, acquired, 'a renew keeps acquireTime');
  t.equal(store.spec.leaseTransitions, 0, 'and leaseTransitions');
  t.notOk(await b.tryAcquireOrRenew(sig), 'b sees the renewed record (and notes when, by its own clock)');
  now += 14_000;
  t.notOk(await b.tryAcquireOrRenew(sig), 'b: 14 s since b saw the record change: not expired');
  now += 1_000;
  store.conflictNext = true;
  t.notOk(await b.tryAcquireOrRenew(sig), 'b: expired, but a concurrent write wins (409)');
  t.ok(await b.tryAcquireOrRenew(sig), 'b takes over the expired Lease');
  t.equal(store.spec.holderIdentity, 'b');
  t.equal(store.spec.leaseTransitions, 1, 'one transition');
  t.not(store.spec.acquireTime, acquired, 'new acquireTime');
  t.notOk(await a.tryAcquireOrRenew(sig), 'a cannot renew what b holds');
  t.equal(a.leader, 'b', 'a sees b as the leader');
});

t.test('timings must be leaseDuration > renewDeadline > retryPeriod', async (t) => {
  t.throws(() => new LeaderElector({ transport: new LeaseStore(), namespace: 'n', name: 'l', identity: 'a', leaseDurationMs: 5_000, renewDeadlineMs: 5_000, retryPeriodMs: 1_000, logger: silentLogger, onStartedLeading: async () => undefined }), /leaseDuration/);
});
