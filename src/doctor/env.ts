/** The real DoctorEnv: this process's network namespace, its files, podwired's control socket. */
import { spawn } from 'node:child_process';
import { access, readdir, readFile } from 'node:fs/promises';
import { release } from 'node:os';
import { errorMessage } from '../common/errors';
import type { DaemonStatus } from '../daemon/daemon';
import { request } from '../daemon/route-server';
import { openKernel } from '../kernel';
import { NetlinkIpvs } from '../kernel/ipvs';
import { EXPECTED_ROUTE, type ExpectedServices } from '../proxy/expected';
import { dnsQueryUdp } from './dns-query';
import { icmpEcho, rawSocket } from './icmp';
import type { DoctorEnv, RunOutput } from './types';

export function runCommand(argv: readonly string[], timeoutMs = 10_000): Promise<RunOutput> {
  return new Promise((resolve) => {
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
    } catch (err) {
      resolve({ code: 126, stdout: '', stderr: errorMessage(err) });
      return;
    }
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    child.on('error', (err: NodeJS.ErrnoException) => resolve({ code: err.code === 'ENOENT' ? 127 : 126, stdout, stderr: err.message }));
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr }));
  });
}

export async function fetchStatus(socketPath: string): Promise<{ status: DaemonStatus | undefined; error: string | undefined }> {
  try {
    const res = await request({ socketPath }, 'GET', '/v1/status');
    if (res.status !== 200) return { status: undefined, error: `podwired answered HTTP ${res.status}` };
    return { status: JSON.parse(res.body.toString('utf8')) as DaemonStatus, error: undefined };
  } catch (err) {
    return { status: undefined, error: `cannot reach podwired at ${socketPath}: ${errorMessage(err)}` };
  }
}

/** What the proxy should have programmed (src/proxy/expected.ts); undefined on 404 (not served). */
export async function fetchExpectedServices(socketPath: string): Promise<ExpectedServices | { error: string } | undefined> {
  try {
    // Up to ~1 MB at 10,000 Services: a longer timeout than the status.
    const res = await request({ socketPath }, 'GET', EXPECTED_ROUTE, undefined, 30_000);
    if (res.status === 404) return undefined;
    if (res.status !== 200) return { error: `podwired answered HTTP ${res.status} on ${EXPECTED_ROUTE}` };
    return JSON.parse(res.body.toString('utf8')) as ExpectedServices;
  } catch (err) {
    return { error: `${EXPECTED_ROUTE}: ${errorMessage(err)}` };
  }
}

export async function realEnv(opts: { socket: string; cniConfDir: string | undefined }): Promise<DoctorEnv & { close(): void }> {
  const kernel = await openKernel();
  const { status, error } = await fetchStatus(opts.socket);
  const run = (argv: readonly string[]): Promise<RunOutput> => runCommand(argv);
  return {
    kernel,
    status,
    statusError: error,
    // podwired's status does not carry its --cni-conf-dir; the default is the kubelet's.
    cniConfDir: opts.cniConfDir ?? '/etc/cni/net.d',
    kernelRelease: release(),
    readFile: (p) => readFile(p, 'utf8').catch(() => undefined),
    listDir: (p) => readdir(p).catch(() => undefined),
    exists: (p) => access(p).then(() => true, () => false),
    run,
    async ping(address) {
      const raw = rawSocket();
      let why: string;
      if (raw instanceof Error) why = `raw-socket not loaded (${raw.message.split('\n')[0]}); used ping`;
      else {
        try {
          let last = { ok: false, detail: 'not sent' };
          for (let i = 0; i < 3 && !last.ok; i++) last = await icmpEcho(raw, address);
          return last;
        } catch (err) {
          // No CAP_NET_RAW (not root): iputils ping works unprivileged.
          why = `raw socket: ${errorMessage(err)}; used ping`;
        }
      }
      const r = await run(['ping', '-c', '3', '-i', '0.2', '-W', '1', address]);
      return r.code === 0 ? { ok: true, detail: why } : { ok: false, detail: `${why}: ${(r.stdout + r.stderr).trim().split('\n').pop() ?? ''}` };
    },
    dnsQuery: (server, port, name) => dnsQueryUdp(server, port, name),
    proxyServices: () => fetchExpectedServices(opts.socket),
    async ipvsServices() {
      const ipvs = new NetlinkIpvs(undefined);
      try {
        return await ipvs.listServices();
      } finally {
        ipvs.close();
      }
    },
    async dnsQueries() {
      const s = (await fetchStatus(opts.socket)).status;
      const q = s?.components.find((c) => c.name === 'dns')?.status.queries;
      return typeof q === 'number' ? q : undefined;
    },
    close: () => kernel.close(),
  };
}
