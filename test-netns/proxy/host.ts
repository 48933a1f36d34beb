/**
 * A stand-alone proxy host for integration tests, run INSIDE a lab node namespace
 * (lab.spawn(node.ns, [node, host.js, ...])): the NftProxier with the real kernel of its own
 * namespace, its /healthz server and healthCheckNodePort servers (start()), fed the objects of
 * a JSON file. Prints `synced <stats>` after the first sync; SIGTERM: close and exit 0.
 *
 *   node host.js --objects <file.json> --node-name node-a [--healthz 127.0.0.1:10256]
 *                [--mode nftables|iptables] [--iptables-backend auto|legacy|nft]
 */
import { readFileSync } from 'node:fs';
import { Registry } from 'prom-client';
import { openKernel } from '../../src/kernel';
import { createLogger } from '../../src/common/log';
import { systemClock } from '../../src/common/clock';
import { buildProxySection, createProxier } from '../../src/proxy';
import { MemoryState, testConfig } from '../../src/proxy/testing';
import type { ClusterObject } from '../../src/k8s/types';
import { CliConntrack } from './helpers';

function arg(name: string, d: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : d;
}

async function main(): Promise<void> {
  const keep = setInterval(() => undefined, 1000);
  const kernel = await openKernel();
  kernel.conntrack = new CliConntrack(undefined);
  const config = testConfig({ nodeName: arg('node-name', 'node-a') });
  const state = new MemoryState();
  const logger = createLogger({ level: 'info' });
  const mode = arg('mode', 'nftables');
  const proxier = createProxier({
    config,
    section: buildProxySection({ healthzBindAddress: arg('healthz', '127.0.0.1:10256'), mode, iptablesBackend: arg('iptables-backend', 'auto') }, config),
    state,
    node: { patchAnnotations: async () => undefined, setCondition: async () => undefined, writesBack: false },
    kernel,
    logger,
    clock: systemClock,
    metrics: new Registry(),
  });
  const ac = new AbortController();
  await proxier.reconcileOnStart(ac.signal);
  await proxier.start(ac.signal);
  for (const o of JSON.parse(readFileSync(arg('objects', ''), 'utf8')) as ClusterObject[]) proxier.handleEvent(state.apply(o));
  await proxier.sync(ac.signal);
  process.stdout.write(`synced ${JSON.stringify(proxier.lastSync)}\n`);
  process.on('SIGTERM', () => {
    ac.abort();
    void proxier.close().then(() => {
      kernel.close();
      clearInterval(keep);
      process.exit(0);
    });
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`host failed: ${String(err)}\n`);
  process.exit(1);
});
