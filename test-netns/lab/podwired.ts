/**
 * The real `podwired` (bin/podwired) running inside a lab node namespace, fed by a manifest
 * folder. Every path it writes (CNI conf dir, CNI bin dir, state dir, control socket) lives in
 * a per-run temp dir, never /etc/cni, /opt/cni, /var/lib/podwire or /run/podwire.
 *
 *   const run = createRunDir('pwlab');                   // /tmp/pwlab-<pid>-XXXX, removed by run.remove()
 *   writeNodeManifests(run.manifests, [{ name, podCIDR, internalIP }, ...]);
 *   const d = new Podwired(lab, node.ns, { nodeName, run });   // spawns it (lab.spawn: killed at lab cleanup)
 *   await d.waitReady();                                 // bounded /readyz poll inside the node
 *   ... d.conflistPath, d.binaryPath, d.socket ...
 *   const exit = await d.stop();                         // SIGTERM, { exitCode: 0 } when clean
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { exec, type BackgroundProcess, type ExitInfo, type Lab } from '../harness';

/** The repository root (dist/test-netns/lab/ → ../../..). */
export const REPO_ROOT = path.resolve(__dirname, '../../..');
export const PODWIRED_BIN = path.join(REPO_ROOT, 'bin/podwired');
export const PODWIRE_CLI = path.join(REPO_ROOT, 'bin/podwire');
/** The fast-path shim the daemon installs as the CNI binary (built by `npm run build:native`). */
export const SHIM = path.join(REPO_ROOT, 'native/cni-shim/build/Release/podwire-cni-shim');

/** Each daemon has its own network namespace, so every node can use the same loopback ports. */
export const HEALTH_LISTEN = '127.0.0.1:10266';
export const METRICS_LISTEN = '127.0.0.1:10269';

export interface RunDir {
  dir: string;
  /** One folder of Node manifests, shared by every daemon (each sees the whole cluster). */
  manifests: string;
  remove(): void;
}

/**
 * A temp dir for one demo run: `<tmpdir>/<prefix>-<pid>-XXXXXX`. Dirs of earlier runs whose pid
 * is dead (a SIGKILLed run) are removed first, like the harness sweeps stale namespaces.
 */
export function createRunDir(prefix: string): RunDir {
  sweepStaleRunDirs(prefix);
  const dir = mkdtempSync(path.join(tmpdir(), `${prefix}-${process.pid}-`));
  const manifests = path.join(dir, 'manifests');
  mkdirSync(manifests);
  let removed = false;
  return {
    dir,
    manifests,
    remove: () => {
      if (removed) return;
      removed = true;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function sweepStaleRunDirs(prefix: string): void {
  const re = new RegExp(`^${prefix}-(\\d+)-[A-Za-z0-9]{6}$`);
  for (const name of readdirSync(tmpdir())) {
    const m = re.exec(name);
    if (!m || pidAlive(Number(m[1]))) continue;
    rmSync(path.join(tmpdir(), name), { recursive: true, force: true });
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface NodeManifest {
  name: string;
  podCIDR: string;
  internalIP: string;
}

/** One `Node` manifest per node (spec.podCIDR(s), status.addresses InternalIP + Hostname). */
export function writeNodeManifests(dir: string, nodes: readonly NodeManifest[]): void {
  nodes.forEach((n, i) => {
    writeFileSync(
      path.join(dir, `node-${n.name}.yaml`),
      YAML.stringify({
        apiVersion: 'v1',
        kind: 'Node',
        metadata: { name: n.name, uid: `pwlab-node-uid-${i + 1}`, resourceVersion: '1' },
        spec: { podCIDR: n.podCIDR, podCIDRs: [n.podCIDR] },
        status: { addresses: [{ type: 'InternalIP', address: n.internalIP }, { type: 'Hostname', address: n.name }] },
      }),
    );
  });
}

export interface PodwiredOptions {
  nodeName: string;
  run: RunDir;
  /** `--log-level` (default `debug`: the fast path logs each CNI request it serves at debug). */
  logLevel?: string;
  /** More podwired flags, e.g. `['--backend', 'host-gw']`. */
  extraArgs?: readonly string[];
  /** Extra environment for podwired (e.g. PODWIRE_DIRECT_ROUTING=true). */
  env?: Record<string, string>;
}

export interface ReadyResult {
  ready: boolean;
  /** The last /readyz answer (`200 ok`), or why polling stopped. */
  last: string;
  polls: number;
}

export class Podwired {
  readonly dir: string;
  readonly confDir: string;
  readonly binDir: string;
  readonly stateDir: string;
  readonly socket: string;
  readonly proc: BackgroundProcess;

  constructor(
    readonly lab: Lab,
    readonly ns: string,
    readonly opts: PodwiredOptions,
  ) {
    this.dir = path.join(opts.run.dir, opts.nodeName);
    this.confDir = path.join(this.dir, 'net.d');
    this.binDir = path.join(this.dir, 'cni-bin');
    this.stateDir = path.join(this.dir, 'state');
    this.socket = path.join(this.dir, 'run', 'podwire.sock');
    mkdirSync(this.dir, { recursive: true });
    // An empty config file: never read the host's /etc/podwire/config.yaml.
    const config = path.join(this.dir, 'config.yaml');
    writeFileSync(config, '# podwired config for the lab demo: everything is on the command line\n');
    this.proc = lab.spawn(ns, [
      process.execPath,
      PODWIRED_BIN,
      '--config', config,
      '--node-name', opts.nodeName,
      '--manifests', opts.run.manifests,
      '--cni-conf-dir', this.confDir,
      '--cni-bin-dir', this.binDir,
      '--cni-bin-source', SHIM,
      '--state-dir', this.stateDir,
      '--control-socket', this.socket,
      '--health-listen', HEALTH_LISTEN,
      '--metrics-listen', METRICS_LISTEN,
      '--log-level', opts.logLevel ?? 'debug',
      ...(opts.extraArgs ?? []),
    ], opts.env ? { env: opts.env } : undefined);
  }

  get conflistPath(): string {
    return path.join(this.confDir, '10-podwire.conflist');
  }

  /** The CNI binary the daemon installed (conflist `type` = file name). */
  get binaryPath(): string {
    return path.join(this.binDir, 'podwire');
  }

  /** Poll `GET /readyz` with curl inside the node: at most `tries` polls, 100 ms apart. */
  async waitReady(tries = 150): Promise<ReadyResult> {
    let last = '';
    for (let i = 1; i <= tries; i++) {
      if (this.proc.exit) return { ready: false, last: `podwired exited ${JSON.stringify(this.proc.exit)}`, polls: i };
      const r = await exec(this.ns, ['curl', '-s', '--max-time', '2', '-w', '\n%{http_code}', `http://${HEALTH_LISTEN}/readyz`]);
      const lines = r.stdout.split('\n');
      const code = lines.pop() ?? '';
      last = `${code} ${lines.join(' ').trim()}`.trim();
      if (code === '200') return { ready: true, last, polls: i };
      await new Promise((res) => setTimeout(res, 100));
    }
    return { ready: false, last, polls: tries };
  }

  /** Log lines (pino JSON) the daemon wrote so far, stdout and stderr. */
  logLines(): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    for (const line of `${this.proc.stdout}\n${this.proc.stderr}`.split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        out.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        /* a partial line at the buffer's edge */
      }
    }
    return out;
  }

  /** The CNI requests the daemon served on its control socket (the fast path's debug log). */
  fastPathRequests(): { command: string; exitCode: number; ms: number }[] {
    return this.logLines()
      .filter((l) => l.msg === 'fast-path CNI request')
      .map((l) => ({ command: String(l.command), exitCode: Number(l.exitCode), ms: Number(l.ms) }));
  }

  /** SIGTERM (SIGKILL after graceMs) and the exit status. */
  stop(graceMs = 10_000): Promise<ExitInfo> {
    return this.proc.stop(graceMs);
  }

  tail(chars = 1500): string {
    return `stdout: ${this.proc.stdout.slice(-chars)}\nstderr: ${this.proc.stderr.slice(-chars)}`;
  }
}
