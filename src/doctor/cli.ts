/**
 *   podwire doctor [--json] [--socket PATH] [--cni-conf-dir DIR] [--netns NAME]
 *
 * Exit codes: 0 no FAIL (warnings allowed); 1 at least one FAIL; 2 usage error.
 * --netns runs the same command inside that namespace (`ip netns exec NAME ...`), as
 * `ip netns exec NAME podwire doctor` would: every check then sees that node's kernel.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { errorMessage } from '../common/errors';
import { formatReport, realEnv, runDoctor } from './index';

export const DOCTOR_USAGE = `Usage: podwire doctor [--json] [--socket PATH] [--cni-conf-dir DIR] [--netns NAME]

  checks this node: kernel features, ip_forward, MTU, VXLAN checksum offload, the CNI config,
  peer reachability (ICMP), DNS, Service rules, foreign drop policies, iptables-nft restore cost.
  Each finding is ok, warn or FAIL with a one-line fix; exit 1 when any FAIL.

  --json          the same findings as JSON
  --socket        podwired's control socket (env PODWIRE_CONTROL_SOCKET, default /run/podwire/podwire.sock)
  --cni-conf-dir  the CNI config directory podwired writes (default /etc/cni/net.d)
  --netns         run inside the named network namespace (ip netns exec)
`;

export interface DoctorCliDeps {
  argv: readonly string[];
  env: Readonly<Record<string, string | undefined>>;
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

const MAIN_JS = path.resolve(__dirname, '../cli/main.js');

export async function doctorCli(deps: DoctorCliDeps): Promise<number> {
  let values: { json?: boolean; socket?: string; 'cni-conf-dir'?: string; netns?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: [...deps.argv],
      options: { json: { type: 'boolean' }, socket: { type: 'string' }, 'cni-conf-dir': { type: 'string' }, netns: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: false,
      strict: true,
    }));
  } catch (err) {
    deps.stderr(`podwire doctor: ${errorMessage(err)}\n${DOCTOR_USAGE}`);
    return 2;
  }
  if (values.help) {
    deps.stdout(DOCTOR_USAGE);
    return 0;
  }
  if (values.netns !== undefined) {
    if (!/^[A-Za-z0-9_.-]+$/.test(values.netns)) {
      deps.stderr(`podwire doctor: --netns ${JSON.stringify(values.netns)}: expected a name from ip netns list\n`);
      return 2;
    }
    const rest: string[] = [];
    for (let i = 0; i < deps.argv.length; i++) {
      const a = deps.argv[i]!;
      if (a === '--netns') i++;
      else if (!a.startsWith('--netns=')) rest.push(a);
    }
    return reexec(['ip', 'netns', 'exec', values.netns, process.execPath, MAIN_JS, 'doctor', ...rest], deps);
  }
  // nft, iptables and raw sockets need root: without it those checks would report features missing.
  if (process.getuid?.() !== 0) deps.stderr('podwire doctor: not running as root; nftables/iptables listings and the ICMP probe may fail for that reason alone\n');
  const socket = values.socket ?? deps.env.PODWIRE_CONTROL_SOCKET ?? '/run/podwire/podwire.sock';
  const env = await realEnv({ socket, cniConfDir: values['cni-conf-dir'] });
  try {
    const report = await runDoctor(env);
    deps.stdout(values.json ? JSON.stringify(report, null, 2) + '\n' : formatReport(report));
    return report.counts.FAIL > 0 ? 1 : 0;
  } finally {
    env.close();
  }
}

function reexec(argv: string[], deps: DoctorCliDeps): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...deps.env } as NodeJS.ProcessEnv });
    child.stdout.on('data', (d: Buffer) => deps.stdout(d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => deps.stderr(d.toString('utf8')));
    child.on('error', (err) => {
      deps.stderr(`podwire doctor: ${argv.slice(0, 4).join(' ')}: ${err.message}\n`);
      resolve(2);
    });
    child.on('close', (code) => resolve(code ?? 1));
  });
}
