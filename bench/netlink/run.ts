/**
 * Netlink programming-rate benchmark against its anchor (shared/anchors/cni/route-fdb-bench.sh).
 *
 *   node dist/bench/netlink/run.js [--n 10000] [--rounds 3] [--out bench/results/netlink.json]
 *
 * In one run and one scratch namespace (pwn-bench: rt0 veth 198.18.0.1/15, vxlan0 VNI 1
 * dstport 8472 nolearning), adds and deletes n routes, n VXLAN FDB entries and n
 * permanent neighbours three ways:
 *   native       the addon's batched transport (src/kernel/netlink/native-transport.ts)
 *                with the fast encoders, default settings: NLM_F_ACK on every message
 *                (timed: encoding + batch);
 *   native-dgack the same with ackEach: false (one ACK per datagram; failures are still
 *                answered per message, so the per-message result is the same);
 *   ip-batch     `ip -batch` / `bridge -batch` (timed: the whole process, as the anchor does);
 *   npm-netlink  the npm `netlink` package, one awaited request at a time, in a child
 *                running inside the namespace (timed: the request loop only).
 * After every step the kernel's object count is checked with iproute2 (outside the timed
 * region); a step that did not program every object aborts the bench instead of
 * reporting a rate. Methods alternate in a rotating order for several rounds and the
 * median is reported, since this machine is noisy. The namespace is deleted at exit,
 * also on failure and SIGINT/SIGTERM.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FdbEncoder, Ipv4NeighEncoder, Ipv4RouteEncoder, MessageSlab } from '../../src/kernel/netlink/fast-encode';
import { type NativeNetlinkTransport, openNetlinkTransport } from '../../src/kernel/netlink/native-transport';
import { KINDS, type Kind, type ObjectSet, ipText, macText, objectSet } from './objects';
import { arg } from '../args';

const NS = 'pwn-bench';
const METHODS = ['native', 'native-dgack', 'ip-batch', 'npm-netlink'] as const;
type Method = (typeof METHODS)[number];
type Op = 'add' | 'del';
const TARGET_RATIO = 1.5;

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 << 20, stdio: ['ignore', 'pipe', 'pipe'] });
}

let workDir: string | undefined;
function cleanup(): void {
  spawnSync('ip', ['netns', 'del', NS], { stdio: 'ignore' });
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
  workDir = undefined;
}

function rootSnapshot(): string {
  return ['link', 'route', 'addr'].map((what) => run('ip', ['-o', what, 'show'])).join('\n');
}

function setupNamespace(): { rt0: number; vxlan0: number } {
  cleanup();
  run('ip', ['netns', 'add', NS]);
  const ipn = (...args: string[]): string => run('ip', ['-n', NS, ...args]);
  ipn('link', 'set', 'lo', 'up');
  ipn('link', 'add', 'rt0', 'type', 'veth', 'peer', 'name', 'rt1');
  ipn('addr', 'add', '198.18.0.1/15', 'dev', 'rt0');
  ipn('link', 'set', 'rt0', 'up');
  ipn('link', 'set', 'rt1', 'up');
  ipn('link', 'add', 'vxlan0', 'type', 'vxlan', 'id', '1', 'dstport', '8472', 'nolearning', 'local', '198.18.0.1', 'dev', 'rt0');
  ipn('link', 'set', 'vxlan0', 'up');
  const index = (dev: string): number => Number(run('ip', ['netns', 'exec', NS, 'cat', `/sys/class/net/${dev}/ifindex`]).trim());
  return { rt0: index('rt0'), vxlan0: index('vxlan0') };
}

/** Objects of `kind` in the kernel, counted by iproute2 (independent of the code under test). */
function countInKernel(kind: Kind): number {
  const lines = (text: string, re: RegExp): number => text.split('\n').filter((l) => re.test(l)).length;
  switch (kind) {
    case 'route':
      return lines(run('ip', ['-n', NS, '-4', 'route', 'show', 'proto', 'static']), /onlink/);
    case 'fdb':
      return lines(run('bridge', ['-n', NS, 'fdb', 'show', 'dev', 'vxlan0']), /dst 198\.19\./);
    case 'neigh':
      return lines(run('ip', ['-n', NS, 'neigh', 'show', 'dev', 'vxlan0']), /PERMANENT/);
  }
}

function writeBatchFiles(dir: string, set: ObjectSet): Record<Kind, Record<Op, string>> {
  const files = {} as Record<Kind, Record<Op, string>>;
  for (const kind of KINDS) {
    files[kind] = {} as Record<Op, string>;
    for (const op of ['add', 'del'] as const) {
      const lines: string[] = [];
      for (let i = 0; i < set.n; i++) {
        const dst = ipText(set.dsts[i]);
        const mac = macText(set.macs, i);
        if (kind === 'route') lines.push(`route ${op} ${dst}/24 via 198.18.0.2 dev rt0 onlink proto static`);
        if (kind === 'fdb') lines.push(`fdb ${op} ${mac} dev vxlan0 dst ${ipText(set.vteps[i])} self permanent`);
        if (kind === 'neigh') lines.push(`neigh ${op} ${dst} lladdr ${mac} dev vxlan0 nud permanent`);
      }
      const file = path.join(dir, `${kind}.${op}`);
      fs.writeFileSync(file, `${lines.join('\n')}\n`);
      files[kind][op] = file;
    }
  }
  return files;
}

class NativeMethod {
  private readonly slabs = new Map<string, MessageSlab>();
  constructor(
    private readonly transport: NativeNetlinkTransport,
    private readonly set: ObjectSet,
    private readonly links: { rt0: number; vxlan0: number },
  ) {}

  /** Encodes and applies; returns seconds. Throws if any message failed. */
  async run(kind: Kind, op: Op): Promise<number> {
    const key = `${kind}.${op}`;
    let slab = this.slabs.get(key);
    if (!slab) this.slabs.set(key, (slab = new MessageSlab()));
    const wop = op === 'add' ? 'add' : 'delete';
    const { set, links } = this;
    const t0 = process.hrtime.bigint();
    let messages: Buffer[];
    if (kind === 'route') {
      messages = new Ipv4RouteEncoder({ op: wop, gateway: '198.18.0.2', oif: links.rt0, onlink: true, protocol: 4 }).encodeMany(set.dsts, 24, slab);
    } else if (kind === 'fdb') {
      messages = new FdbEncoder({ op: wop, ifindex: links.vxlan0 }).encodeMany(set.macs, set.vteps, slab);
    } else {
      messages = new Ipv4NeighEncoder({ op: wop, ifindex: links.vxlan0 }).encodeMany(set.dsts, set.macs, slab);
    }
    const errnos = await this.transport.batch(messages);
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const failed = errnos.reduce((n, e) => (e !== 0 ? n + 1 : n), 0);
    if (failed > 0) throw new Error(`native ${kind} ${op}: ${failed} messages failed (first errno ${errnos.find((e) => e !== 0)})`);
    return seconds;
  }
}

function runIpBatch(files: Record<Kind, Record<Op, string>>, kind: Kind, op: Op): number {
  const tool = kind === 'fdb' ? 'bridge' : 'ip';
  const t0 = process.hrtime.bigint();
  const r = spawnSync(tool, ['-n', NS, '-batch', files[kind][op]], { stdio: ['ignore', 'ignore', 'pipe'] });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`${tool} -batch ${kind} ${op} exited ${r.status}: ${String(r.stderr).slice(0, 500)}`);
  return seconds;
}

function runNpmNetlink(kind: Kind, op: Op, n: number): number {
  const child = path.join(__dirname, 'npm-netlink-child.js');
  const r = spawnSync('ip', ['netns', 'exec', NS, process.execPath, child, '--kind', kind, '--op', op, '--n', String(n)], {
    encoding: 'utf8',
    maxBuffer: 1 << 20,
  });
  if (r.status !== 0) throw new Error(`npm-netlink ${kind} ${op} exited ${r.status}: ${r.stderr.slice(0, 500)}`);
  const out = JSON.parse(r.stdout.trim()) as { seconds: number; errors: number };
  if (out.errors > 0) throw new Error(`npm-netlink ${kind} ${op}: ${out.errors} requests failed`);
  return out.seconds;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

interface Row {
  method: Method;
  kind: Kind;
  op: Op;
  seconds: number[];
  medianSeconds: number;
  perSec: number;
}

async function main(): Promise<void> {
  const n = Number(arg('n', '10000'));
  const rounds = Number(arg('rounds', '3'));
  const out = arg('out', path.join('bench', 'results', 'netlink.json'));
  if (!Number.isInteger(n) || n < 1 || n > 65536) throw new Error(`--n must be 1..65536 (got ${n})`);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 20) throw new Error(`--rounds must be 1..20 (got ${rounds})`);

  const rootBefore = rootSnapshot();
  const links = setupNamespace();
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwn-bench-'));
  const set = objectSet(n);
  const files = writeBatchFiles(workDir, set);
  const transport = await openNetlinkTransport({ path: `/run/netns/${NS}` });
  const transportDg = await openNetlinkTransport({ path: `/run/netns/${NS}` }, undefined, { ackEach: false });
  const native = new NativeMethod(transport, set, links);
  const nativeDg = new NativeMethod(transportDg, set, links);

  const samples = new Map<string, number[]>();
  const record = (m: Method, kind: Kind, op: Op, s: number): void => {
    const key = `${m}|${kind}|${op}`;
    samples.set(key, [...(samples.get(key) ?? []), s]);
  };

  // Warm-up, not recorded: JIT-compiles the encoders and packer and sizes their reusable
  // buffers (the steady state of a daemon); the other methods are fresh processes anyway.
  for (const m of [native, nativeDg]) {
    for (const kind of KINDS) {
      await m.run(kind, 'add');
      await m.run(kind, 'del');
    }
  }

  // Methods run back to back per object kind, in a rotating order, so the methods being
  // compared share the machine's momentary load; ratios are also taken per round.
  for (let round = 0; round < rounds; round++) {
    const order = METHODS.map((_, i) => METHODS[(i + round) % METHODS.length]);
    for (const kind of KINDS) {
      for (const method of order) {
        for (const op of ['add', 'del'] as const) {
          const seconds =
            method === 'native'
              ? await native.run(kind, op)
              : method === 'native-dgack'
                ? await nativeDg.run(kind, op)
                : method === 'ip-batch'
                  ? runIpBatch(files, kind, op)
                  : runNpmNetlink(kind, op, n);
          const present = countInKernel(kind);
          const expected = op === 'add' ? n : 0;
          if (present !== expected) {
            throw new Error(`${method} ${kind} ${op}: kernel holds ${present} objects, expected ${expected}; no rate reported`);
          }
          record(method, kind, op, seconds);
          process.stderr.write(
            `round ${round + 1}/${rounds} ${method.padEnd(11)} ${kind.padEnd(5)} ${op}  ${seconds.toFixed(3)}s  ${Math.round(n / seconds)}/s  (kernel: ${present})\n`,
          );
        }
      }
    }
  }
  transport.close();
  transportDg.close();

  const rows: Row[] = [];
  for (const method of METHODS) {
    for (const kind of KINDS) {
      for (const op of ['add', 'del'] as const) {
        const seconds = samples.get(`${method}|${kind}|${op}`) ?? [];
        const med = median(seconds);
        rows.push({ method, kind, op, seconds, medianSeconds: med, perSec: Math.round(n / med) });
      }
    }
  }
  /** Median over rounds of (rate of a) / (rate of b) measured in the same round. */
  const pairedRatio = (a: Method, b: Method, kind: Kind, op: Op): number => {
    const sa = samples.get(`${a}|${kind}|${op}`) ?? [];
    const sb = samples.get(`${b}|${kind}|${op}`) ?? [];
    return median(sa.map((s, i) => sb[i] / s));
  };
  const rate = (m: Method, kind: Kind, op: Op): number => rows.find((r) => r.method === m && r.kind === kind && r.op === op)!.perSec;
  const total = (m: Method): number => rows.filter((r) => r.method === m).reduce((s, r) => s + r.medianSeconds, 0);
  const objects = KINDS.length * 2 * n;

  const header = ['kind', 'op', 'native/s', 'native-dgack/s', 'ip-batch/s', 'npm-netlink/s', 'native/ip-batch', 'dgack/ip-batch', 'native/npm', 'paired native/ip'];
  const table: string[][] = [header];
  const ratios: {
    kind: Kind | 'all';
    op: Op | 'all';
    nativeVsIpBatch: number;
    dgackVsIpBatch: number;
    nativeVsNpm: number;
    pairedNativeVsIpBatch: number | undefined;
  }[] = [];
  const addRow = (kind: Kind | 'all', op: Op | 'all', nat: number, dg: number, ipb: number, npm: number, paired?: number): void => {
    ratios.push({ kind, op, nativeVsIpBatch: nat / ipb, dgackVsIpBatch: dg / ipb, nativeVsNpm: nat / npm, pairedNativeVsIpBatch: paired });
    table.push([
      kind,
      op,
      ...[nat, dg, ipb, npm].map((v) => String(Math.round(v))),
      (nat / ipb).toFixed(2),
      (dg / ipb).toFixed(2),
      (nat / npm).toFixed(2),
      paired === undefined ? '' : paired.toFixed(2),
    ]);
  };
  for (const kind of KINDS) {
    for (const op of ['add', 'del'] as const) {
      addRow(kind, op, rate('native', kind, op), rate('native-dgack', kind, op), rate('ip-batch', kind, op), rate('npm-netlink', kind, op),
        pairedRatio('native', 'ip-batch', kind, op));
    }
  }
  const overall = {
    native: objects / total('native'),
    dgack: objects / total('native-dgack'),
    ipBatch: objects / total('ip-batch'),
    npm: objects / total('npm-netlink'),
  };
  addRow('all', 'all', overall.native, overall.dgack, overall.ipBatch, overall.npm);
  const widths = header.map((_, c) => Math.max(...table.map((r) => r[c].length)));
  const print = (r: string[]): string => r.map((cell, c) => (c < 2 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ');
  console.log(`netlink programming rate, n=${n} per step, median of ${rounds} rounds (objects/s)`);
  for (const r of table) console.log(print(r));
  const worst = Math.min(...ratios.map((r) => r.nativeVsIpBatch));
  const worstDg = Math.min(...ratios.map((r) => r.dgackVsIpBatch));
  const pass = worst >= TARGET_RATIO;
  console.log(
    `target native >= ${TARGET_RATIO}x ip-batch: worst row ${worst.toFixed(2)}x, overall ${(overall.native / overall.ipBatch).toFixed(2)}x -> ${pass ? 'PASS' : 'FAIL'}` +
      ` (native-dgack: worst row ${worstDg.toFixed(2)}x, overall ${(overall.dgack / overall.ipBatch).toFixed(2)}x)`,
  );

  cleanup();
  const rootAfter = rootSnapshot();
  const rootUnchanged = rootAfter === rootBefore;
  console.log(rootUnchanged ? 'root netns unchanged: OK' : 'ROOT NETNS CHANGED');

  fs.mkdirSync(path.dirname(out), { recursive: true });
  const report = {
    bench: 'netlink',
    date: new Date().toISOString(),
    n,
    rounds,
    environment: { node: process.version, kernel: os.release(), iproute2: run('ip', ['-V']).trim(), cpus: os.cpus().length },
    methods: {
      native: 'podwire addon, batched 16 KiB datagrams, NLM_F_ACK on every message, fast encoders; timed: encode + batch',
      'native-dgack': 'same, ackEach=false: NLM_F_ACK on the last message of each datagram (errors still answered per message)',
      'ip-batch': 'ip -batch / bridge -batch; timed: whole process',
      'npm-netlink': 'npm netlink 0.3.0, one awaited request at a time; timed: request loop in a child inside the netns',
    },
    rows,
    ratios,
    target: { nativeVsIpBatch: TARGET_RATIO, worstRow: worst, overall: overall.native / overall.ipBatch, pass, dgackWorstRow: worstDg },
    rootUnchanged,
  };
  fs.writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`wrote ${out}`);
}

process.on('exit', cleanup);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    cleanup();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  });
}
main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  cleanup();
  process.exit(1);
});
