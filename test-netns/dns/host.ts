/**
 * A small podwired stand-in for DNS tests: the DNS component on a manifest folder, run
 * inside a lab node namespace (`lab.spawn(node.ns, [node, host.js, JSON])`). It wires the
 * component the way the daemon does (events → handleEvent → sync, start, close on SIGTERM),
 * with its own short sync debounce, and prints `DNS SERVING` and `DNS SYNCED <n>`.
 *
 * Argument: JSON { manifests, listen: string[], clusterDomain?, section: {...dns options} }.
 */
import { Registry } from 'prom-client';
import { systemClock } from '../../src/common/clock';
import { createLogger } from '../../src/common/log';
import type { ComponentContext } from '../../src/daemon/component';
import { loadConfig } from '../../src/daemon/config';
import { buildDnsSection, DnsComponent, type DnsSection } from '../../src/dns';
import type { Kernel } from '../../src/kernel';
// Only the manifest source (not the k8s index, which loads the API client): a lean process for the bench.
import { clusterStateOf } from '../../src/k8s/cluster-state';
import { createManifestSource } from '../../src/k8s/manifest-source';
import { RecordingNodeWriter } from '../../src/k8s/node-writer';

interface HostArgs {
  manifests: string;
  listen: string[];
  clusterDomain?: string;
  section?: Record<string, unknown>;
  logLevel?: string;
  /** Manifest rescan period (default 1000 ms for tests; 0 = watch only). */
  rescanMs?: number;
  /** Run the component's cleanup (what `podwired --cleanup` does for dns), print `DNS CLEANED`, exit. */
  cleanup?: boolean;
}

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2] ?? '{}') as HostArgs;
  const logger = createLogger({ level: args.logLevel ?? 'info' });
  const argv = ['--node-name', 'n1', ...args.listen.flatMap((l) => ['--dns-listen', l])];
  if (args.clusterDomain) argv.push('--cluster-domain', args.clusterDomain);
  const config = loadConfig({ argv, env: {}, readFile: () => { throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' }); } }).config;
  const source = createManifestSource({ dir: args.manifests, logger, debounceMs: 20, rescanIntervalMs: args.rescanMs ?? 1000 });
  let kernel: Kernel | undefined;
  const section = buildDnsSection(args.section ?? {});
  const registry = new Registry();
  if (section.bindInterface) {
    try {
      kernel = await (await import('../../src/kernel')).openKernel();
    } catch (err) {
      logger.warn({ err }, 'no kernel handle; listen addresses must exist already');
    }
  }
  const ctx: ComponentContext<DnsSection> = {
    config,
    section,
    state: clusterStateOf(source),
    node: new RecordingNodeWriter(),
    kernel: kernel as Kernel,
    logger: logger.child({ component: 'dns' }),
    clock: systemClock,
    metrics: registry,
  };
  const dns = new DnsComponent(ctx);
  if (args.cleanup) {
    await dns.cleanup();
    process.stdout.write('DNS CLEANED\n');
    kernel?.close();
    process.exit(0);
  }
  const ac = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let running = Promise.resolve();
  const schedule = (): void => {
    if (timer || !source.hasSynced()) return;
    timer = setTimeout(() => {
      timer = undefined;
      running = running.then(() => dns.sync(ac.signal)).then(
        (r) => {
          process.stdout.write(`DNS SYNCED ${r.objects ?? 0}\n`);
        },
        (err: unknown) => logger.error({ err }, 'sync failed'),
      );
    }, 20);
  };
  source.onEvent((e) => {
    if (dns.handleEvent(e)) schedule();
  });
  await dns.start(ac.signal);
  process.stdout.write(`DNS SERVING ${process.pid}\n`);
  let stopping = false;
  process.on('SIGTERM', () => {
    if (stopping) return;
    stopping = true;
    ac.abort();
    void dns.close().then(() => {
      process.stdout.write('DNS CLOSED\n');
      kernel?.close();
      process.exit(0);
    });
  });
  await source.start(ac.signal);
  await source.waitForSync(ac.signal);
  schedule();
  setInterval(schedule, 1000).unref();
  process.on('SIGUSR2', () => {
    void registry.metrics().then((metrics) => process.stdout.write(`DNS STATUS ${JSON.stringify({ ...dns.status(), memory: process.memoryUsage(), metrics })}\n`));
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`host failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
