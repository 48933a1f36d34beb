/**
 * The iptables-mode part of the proxy bench (bench/proxy/run.ts), in the same run:
 * - Podwire's iptables mode, cold sync of N Services × 10 endpoints (+ default/kubernetes)
 *   with the iptables-legacy backend (and, at the --ipt-nft-sizes only, iptables-nft, whose
 *   1.8.9 restore is quadratic in chain count), checked in the kernel through iptables-save;
 *   then one endpoint change: event → sync resolved (one `iptables-restore --noflush` of the
 *   changed chains);
 * - the anchor: kube-proxy's iptables layout (/work/shared/anchors/proxy/gen-rules.mjs
 *   `ipt-full`) applied with iptables-legacy-restore in a fresh namespace, and kube-proxy's
 *   partial sync of one endpoint change (`ipt-update-kp`: one Service's chains plus every
 *   top-level chain) with `iptables-legacy-restore --noflush`.
 * Every call is bounded (--ipt-bound-s); a bound hit is reported as ">bound".
 */
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { Registry } from 'prom-client';
import { openKernel, netnsRef, runInNetns, NetnsIptables } from '../../src/kernel';
import { silentLogger } from '../../src/common/log';
import { systemClock } from '../../src/common/clock';
import { buildProxySection, IptablesProxier } from '../../src/proxy';
import { MemoryState, slice, testConfig } from '../../src/proxy/testing';
import type { ClusterObject } from '../../src/k8s/types';
import { type Lab, netnsPath } from '../../test-netns/harness';
import { benchEndpoint, benchObjects } from './kube-proxy-layout';

const E = 10;
const GEN = '/work/shared/anchors/proxy/gen-rules.mjs';

export interface IptRow {
  n: number;
  backend: 'legacy' | 'nft';
  podwireColdS: number | undefined;
  podwireBoundHit: boolean;
  chains: number;
  /** The cold sync's own split: render (model + rules + diff) and restore wall ms. */
  coldRenderMs?: number;
  coldApplyMs?: number;
  changeP50Ms?: number;
  changeMaxMs?: number;
  changedChainsPerChange?: number;
  anchorColdS?: number;
  anchorBoundHit?: boolean;
  anchorChangeP50Ms?: number;
  ratioCold?: number;
  ratioChange?: number;
}

const objects = (n: number): ClusterObject[] => benchObjects(n, E);

const ms = (t0: number): number => performance.now() - t0;
const pct = (a: number[], p: number): number => [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(p * a.length))]!;

function withBound<T>(p: Promise<T>, s: number): Promise<T | 'bound'> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<'bound'>((r) => (timer = setTimeout(() => r('bound'), s * 1000)))]).finally(() => clearTimeout(timer));
}

async function podwire(lab: Lab, n: number, backend: 'legacy' | 'nft', changes: number, boundS: number, row: IptRow): Promise<void> {
  const ns = await lab.addNetns(`ip${backend[0]}${n}`);
  const ref = netnsRef(netnsPath(ns));
  const kernel = await openKernel(ref);
  try {
    const config = testConfig();
    const state = new MemoryState();
    const runners = new Map([4, 6].map((f) => [f, new NetnsIptables(f as 4 | 6, ref, backend)] as const));
    const p = new IptablesProxier(
      { config, section: buildProxySection({ healthzBindAddress: '', mode: 'iptables' }, config), state, node: { patchAnnotations: async () => undefined, setCondition: async () => undefined, writesBack: false }, kernel, logger: silentLogger, clock: systemClock, metrics: new Registry() },
      { runner: (f) => runners.get(f)!, backend },
    );
    const signal = new AbortController().signal;
    await p.reconcileOnStart(signal);
    const t0 = performance.now();
    for (const o of objects(n)) p.handleEvent(state.apply(o));
    const r = await withBound(p.sync(signal), boundS);
    if (r === 'bound') {
      row.podwireColdS = boundS;
      row.podwireBoundHit = true;
      // The restore keeps running in its process; the namespace goes with the lab.
      return;
    }
    row.podwireColdS = ms(t0) / 1000;
    row.coldRenderMs = p.lastSync!.renderMs;
    row.coldApplyMs = p.lastSync!.applyMs;
    const saved = await runners.get(4)!.save('nat');
    const live = (saved.match(/^-A PODWIRE-SERVICES .*-j PW-SVC-/gm) ?? []).length;
    if (live !== n + 1) throw new Error(`iptables cold sync at ${n} (${backend}): ${live} Services live, expected ${n + 1}`);
    row.chains = (saved.match(/^:PW-/gm) ?? []).length;
    const times: number[] = [];
    let changed = 0;
    for (let c = 1; c <= changes; c++) {
      const i = (c * 7919) % n;
      const key = `ns-${i % 50}/svc-${i}`;
      const t1 = performance.now();
      if (!p.handleEvent(state.apply(slice(key, Array.from({ length: E }, (_, j) => benchEndpoint(i, j, E, c)), [{ name: 'http', port: 8080 }])))) throw new Error('the change was not recorded');
      await p.sync(signal);
      times.push(ms(t1));
      changed += p.lastSync!.changedChains;
      if (p.lastSync!.restores !== 1) throw new Error(`one endpoint change took ${p.lastSync!.restores} restores`);
    }
    row.changeP50Ms = pct(times, 0.5);
    row.changeMaxMs = Math.max(...times);
    row.changedChainsPerChange = changed / changes;
    await p.close();
  } finally {
    kernel.close();
  }
}

async function anchor(lab: Lab, n: number, changes: number, boundS: number, row: IptRow): Promise<void> {
  const ns = await lab.addNetns(`ika${n}`);
  const ref = netnsRef(netnsPath(ns));
  const full = execFileSync(process.execPath, [GEN, 'ipt-full', String(n), String(E)], { maxBuffer: 1 << 30 }).toString();
  const upd = execFileSync(process.execPath, [GEN, 'ipt-update-kp', String(n), String(E)], { maxBuffer: 1 << 30 }).toString();
  const t0 = performance.now();
  try {
    await runInNetns(ref, ['iptables-legacy-restore', '-w', '--noflush'], { input: full, timeoutMs: boundS * 1000 });
    row.anchorColdS = ms(t0) / 1000;
  } catch (err) {
    if (ms(t0) / 1000 >= boundS * 0.98) {
      row.anchorColdS = boundS;
      row.anchorBoundHit = true;
      return;
    }
    throw err;
  }
  const times: number[] = [];
  for (let c = 0; c < Math.min(changes, 5); c++) {
    const t1 = performance.now();
    await runInNetns(ref, ['iptables-legacy-restore', '-w', '--noflush'], { input: upd, timeoutMs: boundS * 1000 });
    times.push(ms(t1));
  }
  row.anchorChangeP50Ms = pct(times, 0.5);
}

export async function iptablesBench(lab: Lab, opts: { sizes: number[]; nftSizes: number[]; changes: number; boundS: number }): Promise<IptRow[]> {
  if (!existsSync(GEN)) throw new Error(`${GEN} (the kube-proxy iptables layout generator) is missing`);
  const rows: IptRow[] = [];
  for (const n of opts.sizes) {
    const row: IptRow = { n, backend: 'legacy', podwireColdS: undefined, podwireBoundHit: false, chains: 0 };
    process.stderr.write(`iptables size ${n}: podwire (legacy)\n`);
    await podwire(lab, n, 'legacy', opts.changes, opts.boundS, row);
    process.stderr.write(`iptables size ${n}: kube-proxy layout, iptables-legacy-restore\n`);
    await anchor(lab, n, opts.changes, opts.boundS, row);
    if (row.anchorColdS !== undefined && row.podwireColdS) row.ratioCold = row.anchorColdS / row.podwireColdS;
    if (row.anchorChangeP50Ms !== undefined && row.changeP50Ms) row.ratioChange = row.anchorChangeP50Ms / row.changeP50Ms;
    rows.push(row);
    process.stderr.write(`${JSON.stringify(row)}\n`);
  }
  for (const n of opts.nftSizes) {
    const row: IptRow = { n, backend: 'nft', podwireColdS: undefined, podwireBoundHit: false, chains: 0 };
    process.stderr.write(`iptables size ${n}: podwire (iptables-nft)\n`);
    await podwire(lab, n, 'nft', Math.min(opts.changes, 5), opts.boundS, row);
    rows.push(row);
    process.stderr.write(`${JSON.stringify(row)}\n`);
  }
  return rows;
}

export function iptablesTable(rows: IptRow[]): string[] {
  const f = (x: number | undefined, d = 2): string => (x === undefined ? '-' : x.toFixed(d));
  return [
    '| Services×10 | backend | podwire iptables cold s | PW- chains | 1 endpoint change p50 / max ms (chains rewritten) | kube-proxy layout iptables-legacy-restore cold s | kube-proxy partial sync p50 ms | ratio cold / change |',
    '|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.n} | ${r.backend} | ${r.podwireBoundHit ? `>${r.podwireColdS} (bound)` : f(r.podwireColdS)} | ${r.chains || '-'} | ${f(r.changeP50Ms, 1)} / ${f(r.changeMaxMs, 1)} (${f(r.changedChainsPerChange, 1)}) | ${r.anchorBoundHit ? `>${r.anchorColdS} (bound)` : f(r.anchorColdS)} | ${f(r.anchorChangeP50Ms, 1)} | ${f(r.ratioCold, 1)}× / ${f(r.ratioChange, 1)}× |`),
  ];
}
