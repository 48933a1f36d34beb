/**
 * The cost of the nftables mode's periodic reconcile at N Services (default 10,000 × 10
 * endpoints): one read-back of our table (`listJson` through the kernel's nft runner,
 * libnftables in-process when it loads) + parse + diff against the desired state, measured
 * once per round in a lab namespace (prefix qrec-bench, never the root namespace). Prints
 * numbers; asserts only correctness (no drift found on a clean table, one element repaired).
 *
 *   node dist/bench/proxy/readback.js [--services 10000] [--rounds 3] [--out bench/results/proxy-readback.json]
 *
 * Rows: the cold sync (for scale), an event sync (one endpoint change: no read-back), the
 * periodic sync when nothing but the proxier committed (the generation check; the first one
 * after the cold sync lists, to learn the chains' prints), the periodic sync after another
 * program (nft(8)) committed (read-back; nothing applied), the listing alone, the
 * periodic sync after nft(8) deleted one element behind the proxier's back (the repair), and
 * a restart: a new proxier adopts the table and its first full sync changes no element.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { openKernel, netnsRef } from '../../src/kernel';
import { FakeClock } from '../../src/daemon/testing/fake-clock';
import { proxierHarness, slice, MemoryState } from '../../src/proxy/testing';
import type { ClusterObject } from '../../src/k8s/types';
import { READBACK_SHARE, type ReadBackStats } from '../../src/proxy/proxier';
import { netnsPath, withLab } from '../../test-netns/harness';
import { benchEndpoint, benchObjects, benchVip } from './kube-proxy-layout';
import { arg } from '../args';

const E = 10;
const N = Number(arg('services', '10000'));
const ROUNDS = Number(arg('rounds', '3'));
const OUT = arg('out', path.resolve(__dirname, '../../../bench/results/proxy-readback.json'));
const ms = (t0: number): number => performance.now() - t0;
/** CPU ms of this process (all its threads: libnftables runs on one of ours) since `c0`. */
const cpuMs = (c0: NodeJS.CpuUsage): number => {
  const d = process.cpuUsage(c0);
  return (d.user + d.system) / 1000;
};
const fmt = (x: number): string => x.toFixed(1);

const objects = (n: number): ClusterObject[] => benchObjects(n, E);

async function main(): Promise<void> {
  await withLab('qrec-bench', async (lab) => {
    const ns = await lab.addNetns('rb');
    const kernel = await openKernel(netnsRef(netnsPath(ns)));
    try {
      const clock = new FakeClock();
      const h = proxierHarness(kernel, clock, { state: new MemoryState() });
      const signal = new AbortController().signal;
      const period = h.proxier.section.syncPeriodMs;
      const readBack = (): ReadBackStats | undefined => h.proxier.lastSync?.readBack;
      await h.proxier.reconcileOnStart(signal); // as the daemon starts it: adoption (no table here)
      let t0 = performance.now();
      for (const o of objects(N)) h.apply(o);
      await h.proxier.sync(signal);
      const result = { when: new Date().toISOString(), services: N, endpointsPerService: E, backend: kernel.nft.backend, coldMs: ms(t0), rounds: [] as Record<string, number>[], repair: {} as Record<string, number>, restart: {} as Record<string, number> };
      console.log(`nft backend ${kernel.nft.backend}; ${N} Services x ${E} endpoints; ruleset elements ${h.proxier.ruleset.elementCount()}`);
      console.log(`cold sync                                  ${fmt(ms(t0))} ms (${h.proxier.lastSync?.transactions} transactions)`);
      // Another program's transaction (the nft(8) binary, not our runner): it grows the
      // generation beyond our own commits, so the next periodic sync must list.
      // (A new table each time: adding one that exists commits nothing.)
      const foreignCommit = async (r: number): Promise<void> => {
        const x = await lab.exec(ns, ['nft', 'add', 'table', 'inet', `qrec-other-${r}`]);
        if (x.exitCode !== 0) throw new Error(`nft add table: ${x.stderr}`);
      };
      for (let r = 1; r <= ROUNDS; r++) {
        const i = r * 7;
        h.apply(slice(`ns-${i % 50}/svc-${i}`, Array.from({ length: E }, (_, j) => benchEndpoint(i, j, E, r)), [{ name: 'http', port: 8080 }]));
        t0 = performance.now();
        await h.proxier.sync(signal);
        const ev = ms(t0);
        if (readBack() !== undefined) throw new Error('an event sync read the table back');
        // The periodic sync with only our own commits since the last listing: the generation check.
        clock.advance(period);
        t0 = performance.now();
        await h.proxier.sync(signal);
        const quiet = ms(t0);
        const q = readBack();
        if (!q || q.drift !== 0 || h.proxier.lastSync?.transactions !== 0) throw new Error(`clean table: expected no drift and no transaction, got ${JSON.stringify(h.proxier.lastSync)}`);
        // The same after another program committed: the full read-back.
        await foreignCommit(r);
        clock.advance(period);
        t0 = performance.now();
        const c0 = process.cpuUsage();
        await h.proxier.sync(signal);
        const periodic = ms(t0);
        const periodicCpu = cpuMs(c0);
        const rb = readBack();
        if (!rb || rb.unchanged || rb.drift !== 0 || h.proxier.lastSync?.transactions !== 0) throw new Error(`after a foreign commit: expected a listing, no drift and no transaction, got ${JSON.stringify(h.proxier.lastSync)}`);
        t0 = performance.now();
        await kernel.nft.listJson('table inet podwire');
        const listing = ms(t0);
        result.rounds.push({ eventSyncMs: ev, quietPeriodicSyncMs: quiet, quietListed: q.unchanged ? 0 : 1, periodicSyncMs: periodic, periodicCpuMs: periodicCpu, readBackMs: rb.ms, listingMs: listing });
        console.log(`round ${r}: event sync (no read-back)          ${fmt(ev)} ms`);
        console.log(`round ${r}: periodic sync, nothing foreign      ${fmt(quiet)} ms (${q.unchanged ? `generation check only, ${fmt(q.ms)} ms` : 'read back'})`);
        console.log(`round ${r}: periodic sync after a foreign commit ${fmt(periodic)} ms (CPU ${fmt(periodicCpu)} ms); read-back + parse + diff ${fmt(rb.ms)} ms (the listing alone ${fmt(listing)} ms); listings at most every ${fmt(Math.max(period, READBACK_SHARE * rb.ms) / 1000)} s`);
      }
      const del = await lab.exec(ns, ['nft', 'delete', 'element', 'inet', 'podwire', 'services4', `{ ${benchVip(1 + 5)} . tcp . 80 }`]);
      if (del.exitCode !== 0) throw new Error(`nft delete element: ${del.stderr}`);
      clock.advance(period);
      t0 = performance.now();
      await h.proxier.sync(signal);
      const s = h.proxier.lastSync!;
      if (s.readBack?.drift !== 1 || s.elementChanges !== 1) throw new Error(`one deleted element: expected drift 1 and one element change, got ${JSON.stringify(s)}`);
      result.repair = { syncMs: ms(t0), readBackMs: s.readBack.ms, transactions: s.transactions, elementChanges: s.elementChanges, scriptBytes: s.scriptBytes };
      const repairMs = ms(t0);
      // A restart (as after kill -9): a new proxier on the same cluster state adopts the table
      // the old one left, and its first sync (every Service rendered, diffed against the
      // adopted elements) changes no element.
      const restarted = proxierHarness(kernel, new FakeClock(), { state: h.state });
      t0 = performance.now();
      await restarted.proxier.reconcileOnStart(signal);
      const adoptMs = ms(t0);
      await restarted.proxier.sync(signal);
      const restartMs = ms(t0);
      const rs = restarted.proxier.lastSync!;
      if (rs.elementChanges !== 0) throw new Error(`restart: expected no element change, got ${JSON.stringify(rs)}`);
      result.restart = { adoptMs, firstSyncDoneMs: restartMs, transactions: rs.transactions, elementChanges: rs.elementChanges, scriptBytes: rs.scriptBytes };
      mkdirSync(path.dirname(OUT), { recursive: true });
      writeFileSync(OUT, JSON.stringify(result, null, 2) + '\n');
      console.log(`wrote ${OUT}`);
      console.log(`periodic sync repairing 1 deleted element  ${fmt(repairMs)} ms; read-back + parse + diff ${fmt(s.readBack.ms)} ms; ${s.transactions} transaction, ${s.elementChanges} element change, ${s.scriptBytes} script bytes`);
      console.log(`restart: adopt the table                   ${fmt(adoptMs)} ms; adoption + first sync ${fmt(restartMs)} ms; ${rs.transactions} transaction(s), ${rs.elementChanges} element changes, ${rs.scriptBytes} script bytes (the adopted chains rewritten in place)`);
    } finally {
      kernel.close();
    }
  });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
