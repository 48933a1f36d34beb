/**
 * The DNS bench data set (the shape of ../shared/anchors/dns/gen-data.mjs, same seeded PRNG):
 * N Services `svc-i.ns-(i % 50).svc.cluster.local` with a named port `http`, as
 *   - an RFC 1035 zone file for Knot and NSD (A + SRV + SOA/NS + dns-version),
 *   - manifests for Podwire (Namespaces + Services),
 *   - dnsperf input: 70% A hits, 10% SRV hits, 20% NXDOMAIN (ndots:5 search-path misses).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface BenchData {
  /** The forwarded-and-cached mix: an external zone for the upstream Knot, and its queries. */
  fwdZoneFile: string;
  fwdQueries: string;
  dir: string;
  zoneFile: string;
  manifests: string;
  queries: string;
  services: number;
}

function mulberry32(seed: number): () => number {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function generate(dir: string, services = 5000, namespaces = 50, queries = 200_000, ttl = 5): BenchData {
  const zone = 'cluster.local';
  const rnd = mulberry32(20240601);
  const pick = (n: number): number => Math.floor(rnd() * n);
  mkdirSync(join(dir, 'manifests'), { recursive: true });
  const svcs: { name: string; ns: string; short: string; ip: string; srv: string }[] = [];
  for (let i = 0; i < services; i++) {
    const ns = `ns-${i % namespaces}`;
    const n = i + 16;
    svcs.push({ name: `svc-${i}.${ns}.svc.${zone}`, short: `svc-${i}`, ns, ip: `10.96.${(n >> 8) & 255}.${n & 255}`, srv: `_http._tcp.svc-${i}.${ns}.svc.${zone}` });
  }
  const z = [`$ORIGIN ${zone}.`, `$TTL ${ttl}`, `@ IN SOA ns.dns.${zone}. hostmaster.${zone}. 1 7200 1800 86400 ${ttl}`, `@ IN NS ns.dns.${zone}.`, 'ns.dns IN A 10.96.0.10', 'dns-version IN TXT "1.1.0"'];
  for (const s of svcs) z.push(`${s.name}. IN A ${s.ip}`, `${s.srv}. IN SRV 0 100 80 ${s.name}.`);
  const zoneFile = join(dir, `${zone}.zone`);
  writeFileSync(zoneFile, `${z.join('\n')}\n`);
  const docs: string[] = [];
  for (let i = 0; i < namespaces; i++) docs.push(JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: `ns-${i}`, uid: `ns-${i}` } }));
  for (const s of svcs) {
    docs.push(JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { namespace: s.ns, name: s.short, uid: `u-${s.short}` }, spec: { clusterIP: s.ip, ports: [{ name: 'http', port: 80, protocol: 'TCP' }] } }));
  }
  // YAML is a superset of JSON: one document per line-pair keeps parsing fast.
  writeFileSync(join(dir, 'manifests', 'services.yaml'), `${docs.join('\n---\n')}\n`);
  const external = ['api.github.com', 'registry-1.docker.io', 's3.amazonaws.com', 'www.google.com', 'login.microsoftonline.com', 'sts.amazonaws.com', 'pypi.org', 'example.com'];
  const lines: string[] = [];
  for (let q = 0; q < queries; q++) {
    const r = rnd();
    if (r < 0.7) lines.push(`${svcs[pick(services)]!.name} A`);
    else if (r < 0.8) lines.push(`${svcs[pick(services)]!.srv} SRV`);
    else {
      const me = `ns-${pick(namespaces)}`;
      const k = pick(4);
      if (k === 0) {
        const s = svcs[pick(services)]!;
        lines.push(`${s.short}.${s.ns}.${me}.svc.${zone} A`);
      } else {
        const ext = external[pick(external.length)]!;
        lines.push(`${ext}.${k === 1 ? `${me}.svc.${zone}` : k === 2 ? `svc.${zone}` : zone} A`);
      }
    }
  }
  const queriesFile = join(dir, 'queries.txt');
  writeFileSync(queriesFile, `${lines.join('\n')}\n`);
  // Forwarded and cached: 2,000 names of an external zone served by an upstream Knot (TTL 300,
  // so every entry stays fresh for a run), asked 80% A, 10% AAAA (NODATA), 10% NXDOMAIN.
  const fz = ['$ORIGIN example.test.', '$TTL 300', '@ IN SOA ns.example.test. hostmaster.example.test. 1 7200 1800 86400 300', '@ IN NS ns.example.test.', 'ns IN A 192.0.2.53'];
  for (let i = 0; i < 2000; i++) fz.push(`host-${i} IN A 192.0.${2 + (i >> 8)}.${i & 255}`);
  const fwdZoneFile = join(dir, 'example.test.zone');
  writeFileSync(fwdZoneFile, `${fz.join('\n')}\n`);
  const fl: string[] = [];
  for (let q = 0; q < queries; q++) {
    const r = rnd();
    if (r < 0.8) fl.push(`host-${pick(2000)}.example.test A`);
    else if (r < 0.9) fl.push(`host-${pick(2000)}.example.test AAAA`);
    else fl.push(`missing-${pick(2000)}.example.test A`);
  }
  const fwdQueries = join(dir, 'fwd-queries.txt');
  writeFileSync(fwdQueries, `${fl.join('\n')}\n`);
  return { fwdZoneFile, fwdQueries, dir, zoneFile, manifests: join(dir, 'manifests'), queries: queriesFile, services };
}
