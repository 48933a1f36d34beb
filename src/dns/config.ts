/**
 * The `dns` configuration section, and parsing of upstream lists, resolv.conf and the
 * `kube-dns` ConfigMap (kube-dns's `stubDomains` / `upstreamNameservers`).
 */
import { isIP } from 'node:net';
import { InvalidInputError } from '../common/errors';
import { defineSection, type SectionOption } from '../daemon/config-section';
import type { DaemonConfig } from '../daemon/config';
import type { ForwardPolicy, UpstreamAddr } from './forward';
import type { PodRecordsMode } from './zone';

export interface DnsSection {
  /** TTL of cluster answers, seconds. */
  ttl: number;
  /** Extra cluster zones besides `clusterDomain`. */
  zones: string[];
  podRecords: PodRecordsMode;
  /** Upstreams (`ADDR` or `ADDR:PORT`); empty means the ones in `resolvConf`. */
  upstreams: UpstreamAddr[];
  resolvConf: string;
  /** Stub domains from our own config, added to the ConfigMap's: `domain/ADDR[:PORT]` entries. */
  stubDomains: Map<string, UpstreamAddr[]>;
  policy: ForwardPolicy;
  maxFails: number;
  healthCheckMs: number;
  readTimeoutMs: number;
  maxConcurrent: number;
  cacheSize: number;
  /** Largest TTL the cache honours, seconds. */
  cacheMaxTtl: number;
  /** How long an expired positive answer may be served when upstreams fail, ms (0: never). */
  serveStaleMs: number;
  staleAnswerTimeoutMs: number;
  prefetch: number;
  udpSize: number;
  tcpIdleMs: number;
  /** How long a stopping server waits for a successor before closing, ms. */
  drainMs: number;
  /** Interface to put non-wildcard listen addresses on ('' = leave addresses alone). */
  bindInterface: string;
  log: boolean;
  /** The ConfigMap to read stub domains and upstreams from (`namespace/name`). */
  configMap: string;
  /** The kube-dns Service (`namespace/name`) whose ClusterIPs are served and NOTRACK-steered here ('' = none). */
  kubeDnsService: string;
  /** The search-path shortcut (autopath.ts). */
  autopath: boolean;
  /** Serving threads (UDP and TCP) per listen address (1: the main thread only); workers.ts. */
  workers: number;
  /** UDP through the native recvmmsg/sendmmsg socket (udp-native.ts) instead of dgram. */
  nativeUdp: boolean;
  /** Abstract unix name of the socket keeper that holds our sockets across a crash ('' = none); keeper.ts. */
  keeper: string;
}

const opt = (key: string, kind: SectionOption['kind'], def: unknown, help: string): SectionOption => ({
  key,
  flag: `dns-${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`,
  env: `PODWIRE_DNS_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`,
  kind,
  default: def,
  help,
});

export const DNS_OPTIONS: readonly SectionOption[] = [
  opt('ttl', 'int', 5, 'TTL of cluster-zone answers, seconds'),
  opt('zones', 'list', [], 'extra cluster zones besides --cluster-domain'),
  opt('podRecords', 'string', 'insecure', 'pod A records a-b-c-d.ns.pod.zone: insecure | verified | disabled'),
  opt('upstreams', 'list', [], 'upstream servers ADDR[:PORT] (default: the nameservers of --dns-resolv-conf)'),
  opt('resolvConf', 'string', '/etc/resolv.conf', 'resolv.conf to take default upstreams from'),
  opt('stubDomains', 'list', [], 'stub domains DOMAIN/ADDR[:PORT] (repeatable), added to the kube-dns ConfigMap'),
  opt('policy', 'string', 'random', 'upstream selection: random | round_robin | sequential'),
  opt('maxFails', 'int', 2, 'failures before an upstream is marked down (0: never)'),
  opt('healthCheck', 'duration', 500, 'health check interval of failing upstreams'),
  opt('readTimeout', 'duration', 2000, 'upstream read timeout'),
  opt('maxConcurrent', 'int', 1000, 'concurrent upstream queries before REFUSED'),
  opt('cacheSize', 'int', 10000, 'entries in the forward cache'),
  opt('cacheMaxTtl', 'int', 3600, 'largest TTL the cache honours, seconds'),
  opt('serveStale', 'duration', 3_600_000, 'serve expired answers this long when upstreams fail (0: never)'),
  opt('staleAnswerTimeout', 'duration', 1800, 'answer stale after this long without an upstream answer (RFC 8767)'),
  opt('prefetch', 'int', 2, 'hits before an entry is refreshed ahead of expiry (0: off)'),
  opt('udpSize', 'int', 1232, 'EDNS0 UDP payload size we advertise and send at most'),
  opt('tcpIdle', 'duration', 10_000, 'TCP client idle timeout'),
  opt('drainTimeout', 'duration', 5000, 'on stop, keep serving until a successor serves, at most this long'),
  opt('bindInterface', 'string', 'lo', 'interface that gets the listen addresses ("" to manage none)'),
  opt('log', 'bool', false, 'log every query (CoreDNS log plugin)'),
  opt('configMap', 'string', 'kube-system/kube-dns', 'ConfigMap with stubDomains and upstreamNameservers'),
  opt('kubeDnsService', 'string', 'kube-system/kube-dns', 'Service whose ClusterIPs this server also binds, with NOTRACK for port 53 ("" = none)'),
  opt('autopath', 'bool', false, "answer a pod's first search-path query with the final answer (CoreDNS autopath; this node's pods only)"),
  opt('workers', 'int', 1, 'UDP and TCP serving threads sharing each listen address with SO_REUSEPORT (1: the main thread only; needs dns.nativeUdp)'),
  opt('nativeUdp', 'bool', true, 'serve UDP through the native batched socket (recvmmsg/sendmmsg); false: Node dgram'),
  opt('keeper', 'string', 'podwire-dns-keeper', 'socket keeper (abstract unix name) that holds the DNS sockets across a podwired crash, started if absent ("" = none; needs dns.nativeUdp)'),
];

const DOMAIN = /^(?=.{1,253}$)([a-z0-9_]([-a-z0-9_]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([-a-z0-9_]{0,61}[a-z0-9_])?$/;

export function parseDomain(field: string, v: string): string {
  const d = v.trim().toLowerCase().replace(/\.$/, '');
  if (!DOMAIN.test(d)) throw new InvalidInputError(field, v, 'must be a DNS domain like acme.local');
  return d;
}

/** `1.2.3.4`, `1.2.3.4:53`, `fd00::1`, `[fd00::1]:53`. */
export function parseUpstream(field: string, v: string): UpstreamAddr {
  const s = v.trim();
  if (isIP(s)) return { host: s, port: 53 };
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(s) ?? /^([^:[\]]+):(\d+)$/.exec(s);
  if (!m || isIP(m[1]!) === 0) throw new InvalidInputError(field, v, 'expected an IP address, ADDR:PORT or [ADDR]:PORT');
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new InvalidInputError(field, v, 'port must be 1..65535');
  return { host: m[1]!, port };
}

/** The `nameserver` lines of a resolv.conf. */
export function parseResolvConf(text: string): UpstreamAddr[] {
  const out: UpstreamAddr[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (!m) continue;
    const host = m[1]!.replace(/%.*$/, '');
    if (isIP(host)) out.push({ host, port: 53 });
  }
  return out;
}

/** The domains of a resolv.conf's last `search` (or `domain`) line. */
export function parseResolvSearch(text: string): string[] {
  let out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*(search|domain)\s+(.+)$/.exec(line);
    if (m) out = m[2]!.trim().split(/\s+/).map((d) => d.toLowerCase().replace(/\.$/, '')).filter((d) => d !== '');
  }
  return out;
}

export interface KubeDnsConfig {
  stubDomains: Map<string, UpstreamAddr[]>;
  upstreamNameservers: UpstreamAddr[] | undefined;
}

/** The kube-dns ConfigMap's data. Throws InvalidInputError naming the key and the value. */
export function parseKubeDnsConfigMap(data: Readonly<Record<string, string>>): KubeDnsConfig {
  const stubDomains = new Map<string, UpstreamAddr[]>();
  let upstreamNameservers: UpstreamAddr[] | undefined;
  const json = (key: string): unknown => {
    try {
      return JSON.parse(data[key]!);
    } catch (err) {
      throw new InvalidInputError(key, data[key], 'is not valid JSON', err);
    }
  };
  if (data.stubDomains !== undefined && data.stubDomains.trim() !== '') {
    const v = json('stubDomains');
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new InvalidInputError('stubDomains', data.stubDomains, 'must be a JSON object {"domain": ["ip", ...]}');
    for (const [domain, servers] of Object.entries(v as Record<string, unknown>)) {
      const d = parseDomain(`stubDomains[${JSON.stringify(domain)}]`, domain);
      if (!Array.isArray(servers) || servers.length === 0 || !servers.every((s) => typeof s === 'string')) {
        throw new InvalidInputError(`stubDomains[${JSON.stringify(domain)}]`, servers, 'must be a non-empty list of IP addresses');
      }
      stubDomains.set(d, servers.map((s, i) => parseUpstream(`stubDomains[${JSON.stringify(domain)}][${i}]`, s as string)));
    }
  }
  if (data.upstreamNameservers !== undefined && data.upstreamNameservers.trim() !== '') {
    const v = json('upstreamNameservers');
    if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) throw new InvalidInputError('upstreamNameservers', data.upstreamNameservers, 'must be a JSON list of IP addresses');
    if (v.length > 3) throw new InvalidInputError('upstreamNameservers', data.upstreamNameservers, 'at most 3 upstream nameservers (kube-dns limit)');
    upstreamNameservers = v.map((s, i) => parseUpstream(`upstreamNameservers[${i}]`, s as string));
  }
  return { stubDomains, upstreamNameservers };
}

function positiveInt(field: string, v: unknown, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new InvalidInputError(field, v, `must be an integer ${min}..${max}`);
  return v;
}

function oneOf<T extends string>(field: string, v: unknown, allowed: readonly T[]): T {
  if (!allowed.includes(v as T)) throw new InvalidInputError(field, v, `must be one of ${allowed.join(', ')}`);
  return v as T;
}

/** Build the section from option values (by key); missing keys take their defaults. */
export function buildDnsSection(values: Readonly<Record<string, unknown>>): DnsSection {
  const v = (k: string): unknown => (values[k] !== undefined ? values[k] : DNS_OPTIONS.find((o) => o.key === k)!.default);
  const list = (k: string): string[] => (v(k) as string[]).filter((s) => s !== '');
  const stubDomains = new Map<string, UpstreamAddr[]>();
  for (const entry of list('stubDomains')) {
    const slash = entry.indexOf('/');
    if (slash < 0) throw new InvalidInputError('dns.stubDomains', entry, 'expected DOMAIN/ADDR[:PORT]');
    const d = parseDomain('dns.stubDomains', entry.slice(0, slash));
    const u = parseUpstream('dns.stubDomains', entry.slice(slash + 1));
    stubDomains.set(d, [...(stubDomains.get(d) ?? []), u]);
  }
  const resolvConf = String(v('resolvConf'));
  if (!resolvConf.startsWith('/')) throw new InvalidInputError('dns.resolvConf', resolvConf, 'must be an absolute path');
  const cm = String(v('configMap'));
  if (!/^[a-z0-9-]+\/[a-z0-9.-]+$/.test(cm)) throw new InvalidInputError('dns.configMap', cm, 'expected NAMESPACE/NAME');
  const kubeDns = String(v('kubeDnsService'));
  if (kubeDns !== '' && !/^[a-z0-9-]+\/[a-z0-9.-]+$/.test(kubeDns)) throw new InvalidInputError('dns.kubeDnsService', kubeDns, 'expected NAMESPACE/NAME or ""');
  return {
    ttl: positiveInt('dns.ttl', v('ttl'), 0, 86400),
    zones: list('zones').map((z) => parseDomain('dns.zones', z)),
    podRecords: oneOf('dns.podRecords', v('podRecords'), ['insecure', 'verified', 'disabled'] as const),
    upstreams: list('upstreams').map((u) => parseUpstream('dns.upstreams', u)),
    resolvConf,
    stubDomains,
    policy: oneOf('dns.policy', v('policy'), ['random', 'round_robin', 'sequential'] as const),
    maxFails: positiveInt('dns.maxFails', v('maxFails'), 0, 1000),
    healthCheckMs: positiveInt('dns.healthCheck', v('healthCheck'), 0),
    readTimeoutMs: positiveInt('dns.readTimeout', v('readTimeout'), 10, 60_000),
    maxConcurrent: positiveInt('dns.maxConcurrent', v('maxConcurrent'), 1),
    cacheSize: positiveInt('dns.cacheSize', v('cacheSize'), 0),
    cacheMaxTtl: positiveInt('dns.cacheMaxTtl', v('cacheMaxTtl'), 0),
    serveStaleMs: positiveInt('dns.serveStale', v('serveStale'), 0),
    staleAnswerTimeoutMs: positiveInt('dns.staleAnswerTimeout', v('staleAnswerTimeout'), 1),
    prefetch: positiveInt('dns.prefetch', v('prefetch'), 0),
    udpSize: positiveInt('dns.udpSize', v('udpSize'), 512, 65535),
    tcpIdleMs: positiveInt('dns.tcpIdle', v('tcpIdle'), 100),
    drainMs: positiveInt('dns.drainTimeout', v('drainTimeout'), 0),
    bindInterface: String(v('bindInterface')),
    log: Boolean(v('log')),
    configMap: cm,
    nativeUdp: Boolean(v('nativeUdp')),
    keeper: keeperName(String(v('keeper'))),
    workers: positiveInt('dns.workers', v('workers'), 1, 16),
    kubeDnsService: kubeDns,
    autopath: Boolean(v('autopath')),
  };
}

function keeperName(name: string): string {
  if (name.length > 107 || /[\0/\s]/.test(name)) throw new InvalidInputError('dns.keeper', name, 'must be an abstract socket name of 1..107 characters without /, NUL or spaces ("" for none)');
  return name;
}

export const dnsSection = defineSection<DnsSection>({
  name: 'dns',
  options: DNS_OPTIONS,
  build: (values, _config: DaemonConfig) => buildDnsSection(values),
});
