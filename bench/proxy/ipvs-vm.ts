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
 * --trace: also prints, per one endpoint change, where it spent its time (every call into the
 * kernel handles, the proxier's hooks, GC), to find what grows with N.
 * Any failed call fails the bench (exit 1).
 */
import { spawnSync } from 'node:child_process';
import { PerformanceObserver } from 'node:perf_hooks';
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
import { arg } from '../args';

const ROOT = path.resolve(__dirname, '../../..');
const SIZES = arg('sizes', '1000,10000').split(',').map(Number);
const CHANGES = Number(arg('changes', '5'));
const E = Number(arg('endpoints', '2'));
const TRACE = process.argv.includes('--trace');
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

/** Per-phase wall time (ms) and call counts of the traced methods, reset per change. */
class Trace {
  ms = new Map<string, number>();
  calls = new Map<string, number>();
  on = false;
  add(name: string, ms: number): void {
    if (!this.on) return;
    this.ms.set(name, (this.ms.get(name) ?? 0) + ms);
    this.calls.set(name, (this.calls.get(name) ?? 0) + 1);
  }
  reset(): void {
    this.ms.clear();
    this.calls.clear();
  }
  text(): string {
    return [...this.ms].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v.toFixed(1)}ms×${this.calls.get(k)}`).join(', ');
  }
}

/** Wraps every method of `obj` (own and inherited) with a timer named `label.method`. */
function traceMethods(obj: object, label: string, t: Trace, only?: readonly string[]): void {
  const names = new Set<string>();
  for (let o: object | null = obj; o && o !== Object.prototype; o = Object.getPrototypeOf(o) as object | null) for (const n of Object.getOwnPropertyNames(o)) names.add(n);
  const rec = obj as Record<string, unknown>;
  for (const n of names) {
    if (n === 'constructor' || (only && !only.includes(n))) continue;
    const f = rec[n];
    if (typeof f !== 'function') continue;
    rec[n] = function (this: unknown, ...a: unknown[]): unknown {
      const t0 = performance.now();
      const r: unknown = (f as (...x: unknown[]) => unknown).apply(this, a);
      if (r instanceof Promise) return r.finally(() => t.add(`${label}.${n}`, performance.now() - t0));
      t.add(`${label}.${n}`, performance.now() - t0);
      return r;
    };
  }
}

async function measure(lab: Lab, mode: Row['mode'], n: number): Promise<Row> {
  const ns = await lab.addNetns(`${mode === 'ipvs' ? 'i' : 'n'}${n}`);
  const kernel: Kernel = await openKernel(netnsRef(netnsPath(ns)));
  const config = testConfig({ proxyMode: mode });
  const state = new MemoryState();
  const ctx = { config, section: buildProxySection({ healthzBindAddress: '', mode }, config), state, node: { patchAnnotations: async () => undefined, setCondition: async () => undefined, writesBack: false }, kernel, logger: silentLogger, clock: systemClock, metrics: new Registry() };
  const p: Component = mode === 'ipvs' ? new IpvsProxier(ctx) : new NftProxier(ctx);
  const signal = new AbortController().signal;
  const trace = new Trace();
  const gc = new PerformanceObserver((l) => {
    for (const e of l.getEntries()) trace.add('gc', e.duration);
  });
  if (TRACE) {
    gc.observe({ entryTypes: ['gc'] });
    const k = kernel as unknown as Record<string, object>;
    for (const n of ['net', 'sysctl', 'nft', 'conntrack']) traceMethods(k[n]!, `kernel.${n}`, trace);
    const ipt = kernel.iptables.bind(kernel);
    kernel.iptables = (f) => {
      const r = ipt(f);
      if (!(r as unknown as { traced?: boolean }).traced) traceMethods(r, `iptables${f}`, trace);
      (r as unknown as { traced?: boolean }).traced = true;
      return r;
    };
    if (p instanceof IpvsProxier) {
      traceMethods(p.ipvs, 'ipvs', trace);
      traceMethods(p.ipset, 'ipset', trace);
    }
    traceMethods(p, 'proxier', trace, ['sync', 'prepare', 'apply', 'renderService', 'recordMetrics', 'checkDraining', 'diffVS', 'flushConntrack', 'update', 'collect', 'hcPorts', 'setup', 'adopt', 'refreshNodeAddresses', 'bindVips', 'updateGauges']);
  }
  try {
    await p.reconcileOnStart?.(signal);
    await p.start?.(signal); // as the daemon does: in ipvs mode the 1 s drain timer runs beside the syncs
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
      trace.reset();
      trace.on = TRACE;
      const t1 = performance.now();
      if (!p.handleEvent(state.apply(slice(key, eps, [{ name: 'http', port: 8080 }])))) throw new Error('the change was not recorded');
      await p.sync(signal);
      changes.push(performance.now() - t1);
      await new Promise((r) => setImmediate(r)); // the GC observer's entries
      trace.on = false;
      if (TRACE) process.stderr.write(`[ipvs-vm] trace ${mode} ${n} change ${c}: ${changes.at(-1)!.toFixed(1)} ms: ${trace.text()}\n`);
    }
    return { mode, services: n, coldS, changeMs: median(changes), changes };
  } finally {
    gc.disconnect();
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
