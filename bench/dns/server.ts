/**
 * The DNS component alone, for the bench: the cluster state is built in memory (what the
 * daemon's shared informer cache hands every component), not parsed from YAML.
 *
 *   node --expose-gc server.js '{"services":5000,"namespaces":50,"listen":"127.0.0.1:15353"}'
 *
 * It prints `DNS BASE <rss bytes>` (Node, the config loader and the cluster state, before
 * the DNS code is loaded) and `DNS READY <names>`: the bench reports the process RSS and the
 * DNS part (RSS minus that base: the DNS code, the zone, the cache, the sockets), because in
 * podwired the cluster state and Node itself are shared by every component.
 */
import { Registry } from 'prom-client';
import { systemClock } from '../../src/common/clock';
import { silentLogger } from '../../src/common/log';
import type { ComponentContext } from '../../src/daemon/component';
import { loadConfig } from '../../src/daemon/config';
import { FakeController } from '../../src/dns/controller';
import type { DnsSection } from '../../src/dns/config';
import { service } from '../../src/dns/testing';
import type { ClusterState } from '../../src/k8s/types';
import type { Kernel } from '../../src/kernel';

const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined);
const args = JSON.parse(process.argv[2] ?? '{}') as { services: number; namespaces: number; listen: string; nativeUdp?: boolean; upstreams?: string[]; workers?: number };
const fc = new FakeController();
for (let i = 0; i < args.namespaces; i++) fc.ns.add(`ns-${i}`);
for (let i = 0; i < args.services; i++) {
  const n = i + 16;
  const ns = `ns-${i % args.namespaces}`;
  fc.svc.set(`${ns}/svc-${i}`, service(ns, `svc-${i}`, { clusterIPs: [`10.96.${(n >> 8) & 255}.${n & 255}`], ports: [{ name: 'http', port: 80 }] }));
}
// `sections: []`: the daemon-wide options only (the default would load every component's module).
const config = loadConfig({ argv: ['--node-name', 'bench', '--dns-listen', args.listen], env: {}, readFile: () => { throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' }); }, sections: [] }).config;
gc();
process.stdout.write(`DNS BASE ${process.memoryUsage().rss}\n`);

// The DNS code from here on.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const dnsModule = require('../../src/dns') as typeof import('../../src/dns');
const ctx: ComponentContext<DnsSection> = {
  config,
  section: dnsModule.buildDnsSection({ upstreams: args.upstreams ?? [], resolvConf: '/nonexistent', bindInterface: '', drainTimeout: 0, nativeUdp: args.nativeUdp ?? true, workers: args.workers ?? 1 }),
  state: {} as ClusterState,
  node: { patchAnnotations: async () => undefined, setCondition: async () => undefined, writesBack: false },
  kernel: undefined as unknown as Kernel,
  logger: silentLogger,
  clock: systemClock,
  metrics: new Registry(),
};
const dns = new dnsModule.DnsComponent(ctx, { controller: fc });
const ac = new AbortController();
void (async () => {
  await dns.sync(ac.signal);
  await dns.start(ac.signal);
  gc();
  process.stdout.write(`DNS READY ${dns.zone.stats().names}\n`);
})();
process.on('SIGTERM', () => {
  ac.abort();
  void dns.close().then(() => process.exit(0));
});
process.on('SIGUSR2', () => process.stdout.write(`DNS MEMORY ${JSON.stringify({ ...process.memoryUsage(), zone: dns.zone.stats() })}\n`));
