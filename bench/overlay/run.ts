/**
 * Overlay programming benchmark: one sync of the real overlay component (vxlan) programming
 * N remote nodes (neighbour + FDB + onlink route each) into a fresh lab namespace, against
 * `ip -batch` (neighbours, routes) + `bridge -batch` (FDB) applying the same 3N entries into
 * another fresh namespace, in the same run, alternating, several rounds (median reported).
 *
 *   node dist/bench/overlay/run.js [--sizes 1000,5000,10000] [--rounds 3] [--out bench/results/overlay.json]
 *
 * Also: at the largest size, one node's IP changes; the next sync must touch only that
 * node's entries (reported), and the time from the state source's event to that sync's end.
 * Pod CIDRs are /30s in 10.244.0.0/16 (room for 16k nodes); node IPs in 198.18.0.0/15.
 * Every entry count is checked with iproute2 after each step; any failed call fails the bench.
 * Also in the same rounds: the kernel floor (bench/overlay/floor.ts), the same entries applied
 * straight through the kernel handle, each kind timed apart: what no user space can go below.
 * Needs root; everything happens in namespaces of a harness lab (removed at exit).
 */
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { systemClock } from '../../src/common/clock';
import { silentLogger } from '../../src/common/log';
import { loadConfig } from '../../src/daemon/config';
import { FakeSource, nodeObject } from '../../src/daemon/testing/fake-source';
import { clusterStateOf, RecordingNodeWriter } from '../../src/k8s';
import type { NodeObject } from '../../src/k8s/types';
import { netnsRef, openKernel } from '../../src/kernel';
import { defaultOverlaySection, OverlayComponent, routeMetric, vtepMacFor } from '../../src/overlay';
import { Cidr, IpAddress } from '../../src/common/ip';
import { exec, execOk, ip, netnsPath, withLab, type Lab } from '../../test-netns/harness';
import { floorRound, type FloorResult } from './floor';
import { arg } from '../args';

const TARGET_RATIO = 1.5;
const TARGET_10K_S = 0.2;

function peerIp(i: number): string {
  // 198.18.0.2 .. : skip .0/.255 host parts for readability.
  const v = (198 << 24) + (18 << 16) + 2 + i;
  return [(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.');
}

function podCidr(i: number): string {
  // node i (1-based) gets 10.244.0.0 + 4*i /30; our own node is i = 0.
  const v = (10 << 24) + (244 << 16) + 4 * i;
  return `${[(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.')}/30`;
}

function nodes(n: number): NodeObject[] {
  const out: NodeObject[] = [];
  for (let i = 1; i <= n; i++) out.push(nodeObject(`node-${i}`, [podCidr(i)], peerIp(i)));
  return out;
}

async function node(lab: Lab, role: string): Promise<string> {
  const ns = await lab.addNetns(role);
  await ip(ns, ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1']);
  await ip(ns, ['addr', 'add', '198.18.0.1/15', 'dev', 'eth0']);
  await ip(ns, ['link', 'set', 'eth0', 'up']);
  await ip(ns, ['link', 'set', 'eth1', 'up']);
  return ns;
}

async function count(ns: string): Promise<{ route: number; neigh: number; fdb: number }> {
  const lines = (s: string, re: RegExp) => s.split('\n').filter((l) => re.test(l)).length;
  return {
    route: lines(await execOk(ns, ['ip', '-4', 'route', 'show', 'proto', '77']), /onlink/),
    neigh: lines(await execOk(ns, ['ip', '-4', 'neigh', 'show', 'dev', 'pw.1']), /PERMANENT/),
    fdb: lines(await execOk(ns, ['bridge', 'fdb', 'show', 'dev', 'pw.1']), /dst 198\.1[89]\./),
  };
}

function check(what: string, got: { route: number; neigh: number; fdb: number }, n: number): void {
  if (got.route !== n || got.neigh !== n || got.fdb !== n) throw new Error(`${what}: expected ${n} of each, kernel has ${JSON.stringify(got)}`);
}

interface Env {
  dir: string;
}

async function podwireRound(lab: Lab, env: Env, n: number, round: number, list: NodeObject[], oneChange: boolean): Promise<{ seconds: number; change?: { touched: number; seconds: number; eventToKernelS: number } }> {
  const ns = await node(lab, `pw-${n}-${round}`);
  const config = loadConfig({
    argv: ['--node-name', 'node-0', '--cluster-cidr', '10.244.0.0/16', '--control-socket', path.join(env.dir, `pw-${n}-${round}`, 'podwire.sock'), '--backend', 'vxlan'],
    env: {},
    readFile: () => {
      throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    },
  }).config;
  const source = new FakeSource();
  source.apply(nodeObject('node-0', [podCidr(0)], '198.18.0.1'));
  source.markSynced();
  const kernel = await openKernel(netnsRef(netnsPath(ns)));
  try {
    const comp = new OverlayComponent({ config, section: defaultOverlaySection(config), state: clusterStateOf(source), node: new RecordingNodeWriter(), kernel, logger: silentLogger, clock: systemClock, metrics: new Registry() });
    const ac = new AbortController();
    // Untimed: a first sync with no peers brings up the device, the egress table and ip_forward
    // (the ip -batch side gets its device untimed too). Then every node arrives; one sync programs them.
    await comp.sync(ac.signal);
    for (const x of list) source.apply(x);
    const t0 = performance.now();
    await comp.sync(ac.signal);
    const seconds = (performance.now() - t0) / 1000;
    if (process.env.PWO_BENCH_PHASES) console.error(n, JSON.stringify((comp.status().lastSync as { phasesMs: unknown }).phasesMs));
    check(`podwire sync of ${n}`, await count(ns), n);
    let change: { touched: number; seconds: number; eventToKernelS: number } | undefined;
    if (oneChange) {
      const i = Math.floor(n / 2);
      const moved = nodeObject(`node-${i}`, [podCidr(i)], peerIp(n + 100));
      let eventAt = 0;
      let syncStart = 0;
      const unsub = source.onEvent(() => {
        eventAt = performance.now();
      });
      source.apply(moved);
      unsub();
      syncStart = performance.now();
      await comp.sync(ac.signal);
      const end = performance.now();
      const last = comp.status().lastSync as { added: number; removed: number; phasesMs: unknown };
      if (process.env.PWO_BENCH_PHASES) console.error('change', JSON.stringify(last.phasesMs));
      change = { touched: last.added + last.removed, seconds: (end - syncStart) / 1000, eventToKernelS: (end - eventAt) / 1000 };
      const fdb = await execOk(ns, ['bridge', 'fdb', 'show', 'dev', 'pw.1']);
      if (!fdb.includes(`${vtepMacFor(IpAddress.parse(peerIp(n + 100)))} dst ${peerIp(n + 100)}`)) throw new Error('the changed node is not programmed');
      check('after one change', await count(ns), n);
    }
    return { seconds, change };
  } finally {
    kernel.close();
    await exec(null, ['ip', 'netns', 'del', ns]);
  }
}

async function ipBatchRound(lab: Lab, env: Env, n: number, round: number): Promise<number> {
  const ns = await node(lab, `ip-${n}-${round}`);
  try {
    await ip(ns, ['link', 'add', 'pw.1', 'type', 'vxlan', 'id', '1', 'dstport', '8472', 'nolearning', 'local', '198.18.0.1', 'dev', 'eth0']);
    await ip(ns, ['addr', 'add', '10.244.0.0/32', 'dev', 'pw.1']);
    await ip(ns, ['link', 'set', 'pw.1', 'up']);
    const neigh: string[] = [];
    const fdb: string[] = [];
    const routes: string[] = [];
    for (let i = 1; i <= n; i++) {
      const cidr = podCidr(i);
      const vtep = cidr.split('/')[0]!;
      const mac = vtepMacFor(IpAddress.parse(peerIp(i)));
      neigh.push(`neigh replace ${vtep} lladdr ${mac} dev pw.1 nud permanent`);
      fdb.push(`fdb replace ${mac} dev pw.1 dst ${peerIp(i)} self permanent`);
      // The same entries podwire programs, metric included (see routeMetric).
      routes.push(`route replace ${cidr} via ${vtep} dev pw.1 onlink proto 77 metric ${routeMetric(Cidr.parse(cidr))}`);
    }
    const dir = path.join(env.dir, `ip-${n}-${round}`);
    mkdirSync(dir, { recursive: true });
    const files = { neigh: path.join(dir, 'neigh'), fdb: path.join(dir, 'fdb'), routes: path.join(dir, 'routes') };
    writeFileSync(files.neigh, neigh.join('\n') + '\n');
    writeFileSync(files.fdb, fdb.join('\n') + '\n');
    writeFileSync(files.routes, routes.join('\n') + '\n');
    const t0 = performance.now();
    await execOk(null, ['ip', '-n', ns, '-batch', files.neigh], { timeoutMs: 120_000 });
    await execOk(null, ['bridge', '-n', ns, '-batch', files.fdb], { timeoutMs: 120_000 });
    await execOk(null, ['ip', '-n', ns, '-batch', files.routes], { timeoutMs: 120_000 });
    const seconds = (performance.now() - t0) / 1000;
    check(`ip -batch of ${n}`, await count(ns), n);
    return seconds;
  } finally {
    await exec(null, ['ip', 'netns', 'del', ns]);
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const sizes = arg('sizes', '1000,5000,10000').split(',').map(Number);
  const rounds = Number(arg('rounds', '3'));
  const out = arg('out', path.join('bench', 'results', 'overlay.json'));
  if (sizes.some((s) => !Number.isInteger(s) || s < 1 || s > 16000) || !(rounds >= 1 && rounds <= 10)) throw new RangeError('--sizes 1..16000 each, --rounds 1..10');
  const dir = mkdtempSync(path.join(tmpdir(), 'pwo-bench-'));
  const env: Env = { dir };
  const rows: Record<string, unknown>[] = [];
  let failed = false;
  try {
    await withLab('pwo-bench', async (lab) => {
      for (const n of sizes) {
        const list = nodes(n);
        const pw: number[] = [];
        const ipb: number[] = [];
        const floor: FloorResult[] = [];
        let change: Awaited<ReturnType<typeof podwireRound>>['change'];
        for (let r = 0; r < rounds; r++) {
          // Alternate which goes first.
          if (r % 2 === 0) {
            const p = await podwireRound(lab, env, n, r, list, n === Math.max(...sizes) && r === 0);
            pw.push(p.seconds);
            change ??= p.change;
            ipb.push(await ipBatchRound(lab, env, n, r));
          } else {
            ipb.push(await ipBatchRound(lab, env, n, r));
            pw.push((await podwireRound(lab, env, n, r, list, false)).seconds);
          }
          floor.push(await floorRound(lab, n, r));
        }
        const entries = 3 * n;
        const row = {
          nodes: n,
          entries,
          podwireS: median(pw),
          ipBatchS: median(ipb),
          podwireRate: Math.round(entries / median(pw)),
          ipBatchRate: Math.round(entries / median(ipb)),
          ratio: Math.round((median(ipb) / median(pw)) * 100) / 100,
          floorS: median(floor.map((f) => f.totalS)),
          floorUsPerEntry: median(floor.map((f) => f.usPerEntry)),
          floorByKindS: { neigh: median(floor.map((f) => f.neighS)), fdb: median(floor.map((f) => f.fdbS)), route: median(floor.map((f) => f.routeS)) },
          samples: { podwire: pw, ipBatch: ipb, floor: floor.map((f) => f.totalS) },
          ...(change ? { oneChange: change } : {}),
        };
        rows.push(row);
      }
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const pad = (s: string, w: number) => s.padStart(w);
  const lines = [
    `overlay bench: one sync of N remote nodes (neigh + FDB + onlink route each) vs ip -batch + bridge -batch, median of ${rounds} rounds`,
    `${pad('nodes', 7)} ${pad('entries', 8)} ${pad('podwire s', 10)} ${pad('ip-batch s', 11)} ${pad('podwire/s', 10)} ${pad('ip-batch/s', 11)} ${pad('ratio', 6)} ${pad('floor s', 8)} ${pad('us/entry', 9)} ${pad('neigh/fdb/route s', 18)}`,
  ];
  for (const r of rows as { nodes: number; entries: number; podwireS: number; ipBatchS: number; podwireRate: number; ipBatchRate: number; ratio: number; floorS: number; floorUsPerEntry: number; floorByKindS: { neigh: number; fdb: number; route: number } }[]) {
    const k = r.floorByKindS;
    lines.push(`${pad(String(r.nodes), 7)} ${pad(String(r.entries), 8)} ${pad(r.podwireS.toFixed(3), 10)} ${pad(r.ipBatchS.toFixed(3), 11)} ${pad(String(r.podwireRate), 10)} ${pad(String(r.ipBatchRate), 11)} ${pad(r.ratio.toFixed(2), 6)} ${pad(r.floorS.toFixed(3), 8)} ${pad(r.floorUsPerEntry.toFixed(1), 9)} ${pad(`${k.neigh.toFixed(2)}/${k.fdb.toFixed(2)}/${k.route.toFixed(2)}`, 18)}`);
    if (r.ratio < TARGET_RATIO) lines.push(`  MISSED target: ratio ${r.ratio} < ${TARGET_RATIO}`);
    if (r.nodes === 10000 && r.podwireS > TARGET_10K_S) lines.push(`  MISSED target: 10,000 nodes in ${r.podwireS.toFixed(3)} s > ${TARGET_10K_S} s`);
  }
  const big = rows.find((r) => (r as { oneChange?: unknown }).oneChange) as { nodes: number; oneChange: { touched: number; seconds: number; eventToKernelS: number } } | undefined;
  if (big) lines.push(`one node's IP changed at ${big.nodes}: ${big.oneChange.touched} entries touched (neigh + FDB delete + FDB add), sync ${big.oneChange.seconds.toFixed(3)} s, event -> last entry ${big.oneChange.eventToKernelS.toFixed(3)} s`);
  console.log(lines.join('\n'));
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify({ bench: 'overlay', at: new Date().toISOString(), rounds, targets: { ratio: TARGET_RATIO, tenThousandS: TARGET_10K_S }, rows }, null, 2) + '\n');
  console.log(`wrote ${out}`);
  if (failed) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
