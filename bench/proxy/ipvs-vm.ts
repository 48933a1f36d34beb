/**
 * IPVS vs nftables proxy mode, side by side in the same kernel: Debian's stock kernel under
 * qemu (the host kernel has no ip_vs). Under TCG absolute times mean little; the ratios count.
 *
 *   flock /tmp/podwire-bench.lock node dist/bench/proxy/ipvs-vm.js [--sizes 1000,10000] [--changes 5]
 *
 * On the host it boots the VM once (scripts/vm/vmrun.sh, working dir read-write so the JSON
 * reaches bench/results/proxy-ipvs-vm.json) and runs itself inside. Inside (PODWIRE_IN_VM=1), per
 * size N and per mode, in a fresh lab namespace (prefix qv-bench):
 * - cold sync: N Services × E endpoints handed to the proxier as events, wall time until its
 *   sync resolved (kernel programmed), then checked in the kernel (IPVS dump / nft map count);
 * - one endpoint change: an EndpointSlice update (one endpoint replaced) → sync resolved;
 *   median of --changes runs.
 * Target (issue #11): one endpoint change at 10,000 ≤ 2× nftables mode's time.
 * Any failed call fails the bench (exit 1).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Registry } from 'prom-client';
import { openKernel, netnsRef, type Kernel } from '../../src/kernel';
import { NetlinkIpvs } from '../../src/kernel/ipvs';
import { systemClock } from '../../src/common/clock';
import { silentLogger } from '../../src/common/log';
import { buildProxySection } from '../../src/proxy/config';
import { IpvsProxier } from '../../src/proxy/ipvs';
import { NftProxier } from '../../src/proxy/proxier';
import { MemoryState, slice, svc, testConfig } from '../../src/proxy/testing';
import type { ClusterObject } from '../../src/k8s/types';
import type { Component } from '../../src/daemon/component';
import { netnsPath, withLab, type Lab } from '../../test-netns/harness';
import { benchEndpoint, benchVip } from './kube-proxy-layout';

const ROOT = path.resolve(__dirname, '../../..');
function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}
const SIZES = arg('sizes', '1000,10000').split(',').map(Number);
const CHANGES = Number(arg('changes', '5'));
const E = Number(arg('endpoints', '2'));
const OUT = arg('out', path.join(ROOT, 'bench/results/proxy-ipvs-vm.json'));
const MODULES = ['ip_vs', 'ip_vs_rr', 'nf_conntrack', 'ip_set', 'ip_set_hash_ipport', 'ip_set_hash_ipportip', 'ip_set_bitmap_port', 'xt_set'];

function objects(n: number): ClusterObject[] {
  const out: ClusterObject[] = [];
  for (let i = 0; i < n; i++) {
    const key = `ns-${i % 50}/svc-${i}`;
    out.push(svc(key, benchVip(i + 1), { ports: [{ name: 'http', port: 80 }] }));
    out.push(slice(key, Array.from({ length: E }, (_, j) => benchEndpoint(i, j, E)), [{ name: 'http', port: 8080 }]));
  }
  return out;
}

const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

interface Row {
  mode: 'nftables' | 'ipvs';
  services: number;
  coldS: number;
  changeMs: number;
  changes: number[];
}

async function measure(lab: Lab, mode: Row['mode'], n: number): Promise<Row> {
  const ns = await lab.addNetns(`${mode === 'ipvs' ? 'i' : 'n'}${n}`);
  const kernel: Kernel = await openKernel(netnsRef(netnsPath(ns)));
  const config = testConfig({ proxyMode: mode });
  const state = new MemoryState();
  const ctx = { config, section: buildProxySection({ healthzBindAddress: '', mode }, config), state, node: { patchAnnotations: async () => undefined, setCondition: async () => undefined, writesBack: false }, kernel, logger: silentLogger, clock: systemClock, metrics: new Registry() };
  const p: Component = mode === 'ipvs' ? new IpvsProxier(ctx) : new NftProxier(ctx);
  const signal = new AbortController().signal;
  try {
    await p.reconcileOnStart?.(signal);
    const t0 = performance.now();
    for (const o of objects(n)) p.handleEvent(state.apply(o));
    await p.sync(signal);
    const coldS = (performance.now() - t0) / 1000;
    // checked in the kernel
    if (mode === 'ipvs') {
      const k = new NetlinkIpvs(netnsRef(netnsPath(ns)));
      const live = (await k.listServices()).length;
      k.close();
      if (live !== n) throw new Error(`ipvs cold sync at ${n}: ${live} virtual servers in the kernel, expected ${n}`);
    } else {
      const json = (await kernel.nft.listJson('map inet podwire services4')) as { nftables: { map?: { elem?: unknown[] } }[] };
      const live = json.nftables.find((x) => x.map)?.map?.elem?.length ?? 0;
      if (live !== n) throw new Error(`nft cold sync at ${n}: ${live} services4 elements, expected ${n}`);
    }
    const changes: number[] = [];
    for (let c = 1; c <= CHANGES; c++) {
      const i = (c * 7919) % n;
      const key = `ns-${i % 50}/svc-${i}`;
      const eps = Array.from({ length: E }, (_, j) => benchEndpoint(i, j, E, c));
      const t1 = performance.now();
      if (!p.handleEvent(state.apply(slice(key, eps, [{ name: 'http', port: 8080 }])))) throw new Error('the change was not recorded');
      await p.sync(signal);
      changes.push(performance.now() - t1);
    }
    return { mode, services: n, coldS, changeMs: median(changes), changes };
  } finally {
    await p.close?.();
    kernel.close();
  }
}

async function inGuest(): Promise<void> {
  const rows: Row[] = [];
  await withLab('qv-bench', async (lab) => {
    for (const n of SIZES) {
      for (const mode of ['nftables', 'ipvs'] as const) {
        const r = await measure(lab, mode, n);
        process.stderr.write(`[ipvs-vm] ${mode} ${n}: cold ${r.coldS.toFixed(2)} s, one endpoint change ${r.changeMs.toFixed(1)} ms (${r.changes.map((x) => x.toFixed(1)).join(', ')})\n`);
        rows.push(r);
      }
    }
  });
  const lines = ['| Services | nft cold s | ipvs cold s | cold ratio | nft change ms | ipvs change ms | change ratio | target ≤ 2× |', '|---:|---:|---:|---:|---:|---:|---:|---|'];
  const table: Record<string, unknown>[] = [];
  for (const n of SIZES) {
    const a = rows.find((r) => r.mode === 'nftables' && r.services === n)!;
    const b = rows.find((r) => r.mode === 'ipvs' && r.services === n)!;
    const cold = b.coldS / a.coldS;
    const change = b.changeMs / a.changeMs;
    lines.push(`| ${n} | ${a.coldS.toFixed(2)} | ${b.coldS.toFixed(2)} | ${cold.toFixed(2)}× | ${a.changeMs.toFixed(1)} | ${b.changeMs.toFixed(1)} | ${change.toFixed(2)}× | ${n === 10000 ? (change <= 2 ? 'met' : 'MISSED') : '-'} |`);
    table.push({ services: n, nftColdS: a.coldS, ipvsColdS: b.coldS, coldRatio: cold, nftChangeMs: a.changeMs, ipvsChangeMs: b.changeMs, changeRatio: change });
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  mkdirSync(path.dirname(OUT), { recursive: true });
  writeFileSync(OUT, `${JSON.stringify({ bench: 'proxy-ipvs-vm', endpointsPerService: E, changes: CHANGES, kernel: spawnSync('uname', ['-r'], { encoding: 'utf8' }).stdout.trim(), rows, table }, null, 2)}\n`);
  process.stdout.write(`wrote ${OUT}\n`);
}

function onHost(): void {
  const own = process.argv.slice(2).map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const node = path.join(ROOT, 'node_modules/.bin/node');
  const cmd = `PODWIRE_IN_VM=1 ${node} ${path.join(ROOT, 'dist/bench/proxy/ipvs-vm.js')} ${own}`;
  const r = spawnSync('bash', [path.join(ROOT, 'scripts/vm/vmrun.sh'), '-w', '-k', MODULES.join(','), '-C', ROOT, '-t', '1500', cmd], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

if (process.env.PODWIRE_IN_VM === '1') {
  inGuest().catch((err: unknown) => {
    process.stderr.write(`ipvs-vm bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
} else onHost();
