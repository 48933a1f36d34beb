/**
 * DNS metrics under CoreDNS's names, so existing dashboards work. The hot path only
 * increments numbers in preallocated typed arrays; the Prometheus text is produced at
 * scrape time by metric objects registered on the daemon's registry.
 */
import type { Registry } from 'prom-client';
import { RCODE_NAMES, rcodeOf, type Query, TYPE } from './wire';

/** CoreDNS's request duration buckets: ExponentialBuckets(0.00025, 2, 16). */
const BUCKETS = Array.from({ length: 16 }, (_, i) => 0.00025 * 2 ** i);
const TYPE_NAMES: Record<number, string> = { 1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 15: 'MX', 16: 'TXT', 28: 'AAAA', 33: 'SRV', 255: 'ANY', 251: 'IXFR', 252: 'AXFR' };
const TYPE_SLOTS = [1, 2, 5, 6, 12, 15, 16, 28, 33, 255, 251, 252];
const SLOT_OF = new Int8Array(256).fill(-1);
TYPE_SLOTS.forEach((t, i) => (SLOT_OF[t] = i));
const OTHER = TYPE_SLOTS.length;

export interface UpstreamCounters {
  to: string;
  requests: number;
  healthcheckFailures: number;
}

/** The per-query counters of a DnsStats, as plain data (a worker thread's, sent to the main thread). */
export interface StatsCounts {
  requests: number[];
  responses: number[];
  buckets: number[];
  durationSum: number;
  durationCount: number;
  dropped: number;
}

export class DnsStats {
  /** [proto(0 udp, 1 tcp) * (OTHER+1) + typeSlot] */
  readonly requests = new Float64Array(2 * (OTHER + 1));
  readonly responses = new Float64Array(RCODE_NAMES.length + 1);
  readonly buckets = new Float64Array(BUCKETS.length);
  durationSum = 0;
  durationCount = 0;
  cacheHitsSuccess = 0;
  cacheHitsDenial = 0;
  cacheMisses = 0;
  cacheSize = 0;
  servedStale = 0;
  dropped = 0;
  readonly upstreams = new Map<string, UpstreamCounters>();

  request(q: Query): void {
    const slot = q.qtype < 256 ? SLOT_OF[q.qtype]! : -1;
    this.requests[(q.transport === 'tcp' ? OTHER + 1 : 0) + (slot < 0 ? OTHER : slot)]!++;
  }

  response(reply: Buffer | null, _q: Query, ms: number): void {
    if (reply === null) {
      this.dropped++;
      return;
    }
    this.responses[rcodeOf(reply)]!++;
    const s = ms / 1000;
    this.durationSum += s;
    this.durationCount++;
    for (let i = 0; i < BUCKETS.length; i++) {
      if (s <= BUCKETS[i]!) {
        this.buckets[i]!++;
        break;
      }
    }
  }

  counts(): StatsCounts {
    return { requests: [...this.requests], responses: [...this.responses], buckets: [...this.buckets], durationSum: this.durationSum, durationCount: this.durationCount, dropped: this.dropped };
  }

  /** Add a worker's counts. */
  merge(c: StatsCounts): void {
    c.requests.forEach((v, i) => (this.requests[i]! += v));
    c.responses.forEach((v, i) => (this.responses[i]! += v));
    c.buckets.forEach((v, i) => (this.buckets[i]! += v));
    this.durationSum += c.durationSum;
    this.durationCount += c.durationCount;
    this.dropped += c.dropped;
  }

  upstream(to: string): UpstreamCounters {
    let c = this.upstreams.get(to);
    if (!c) this.upstreams.set(to, (c = { to, requests: 0, healthcheckFailures: 0 }));
    return c;
  }

  get totalRequests(): number {
    let n = 0;
    for (const v of this.requests) n += v;
    return n;
  }

  get errors(): number {
    return this.responses[2]! + this.dropped;
  }
}

type Value = { value: number; labels: Record<string, string | number>; metricName?: string };

/** Register the CoreDNS-named metrics on `registry` (once per registry). */
export function registerDnsMetrics(registry: Registry, stats: DnsStats, server: string): void {
  const metric = (name: string, help: string, type: 'counter' | 'histogram' | 'gauge', values: () => Value[]): void => {
    if (registry.getSingleMetric(name)) registry.removeSingleMetric(name);
    const m = {
      name,
      help,
      type,
      aggregator: 'sum',
      get: async () => ({ name, help, type, aggregator: 'sum', values: values() }),
      reset: () => undefined,
    };
    registry.registerMetric(m as unknown as Parameters<Registry['registerMetric']>[0]);
  };
  const zone = '.';
  metric('coredns_dns_requests_total', 'Counter of DNS requests made per zone, protocol and family.', 'counter', () => {
    const out: Value[] = [];
    for (let proto = 0; proto < 2; proto++) {
      for (let slot = 0; slot <= OTHER; slot++) {
        const v = stats.requests[proto * (OTHER + 1) + slot]!;
        if (v === 0) continue;
        out.push({ value: v, labels: { server, zone, view: '', proto: proto ? 'tcp' : 'udp', family: '1', type: slot === OTHER ? 'other' : TYPE_NAMES[TYPE_SLOTS[slot]!]! } });
      }
    }
    return out;
  });
  metric('coredns_dns_responses_total', 'Counter of response status codes.', 'counter', () => {
    const out: Value[] = [];
    stats.responses.forEach((v, rc) => {
      if (v > 0) out.push({ value: v, labels: { server, zone, view: '', rcode: RCODE_NAMES[rc] ?? String(rc), plugin: '' } });
    });
    return out;
  });
  metric('coredns_dns_request_duration_seconds', 'Histogram of the time (in seconds) each request took per zone.', 'histogram', () => {
    const out: Value[] = [];
    let cum = 0;
    const labels = { server, zone, view: '', type: 'all' };
    BUCKETS.forEach((b, i) => {
      cum += stats.buckets[i]!;
      out.push({ metricName: 'coredns_dns_request_duration_seconds_bucket', value: cum, labels: { ...labels, le: b } });
    });
    out.push({ metricName: 'coredns_dns_request_duration_seconds_bucket', value: stats.durationCount, labels: { ...labels, le: '+Inf' } });
    out.push({ metricName: 'coredns_dns_request_duration_seconds_sum', value: stats.durationSum, labels });
    out.push({ metricName: 'coredns_dns_request_duration_seconds_count', value: stats.durationCount, labels });
    return out;
  });
  metric('coredns_cache_hits_total', 'The count of cache hits.', 'counter', () => [
    { value: stats.cacheHitsSuccess, labels: { server, type: 'success', zones: zone, view: '' } },
    { value: stats.cacheHitsDenial, labels: { server, type: 'denial', zones: zone, view: '' } },
  ]);
  metric('coredns_cache_misses_total', 'The count of cache misses.', 'counter', () => [{ value: stats.cacheMisses, labels: { server, zones: zone, view: '' } }]);
  metric('coredns_cache_entries', 'The number of elements in the cache.', 'gauge', () => [{ value: stats.cacheSize, labels: { server, type: 'all', zones: zone, view: '' } }]);
  metric('coredns_cache_served_stale_total', 'The number of requests served from stale cache entries.', 'counter', () => [{ value: stats.servedStale, labels: { server, zones: zone, view: '' } }]);
  metric('coredns_forward_requests_total', 'Counter of requests made per upstream.', 'counter', () => [...stats.upstreams.values()].map((u) => ({ value: u.requests, labels: { to: u.to } })));
  metric('coredns_forward_healthcheck_failures_total', 'Counter of the number of failed healthchecks.', 'counter', () => [...stats.upstreams.values()].map((u) => ({ value: u.healthcheckFailures, labels: { to: u.to } })));
}

export { TYPE };
