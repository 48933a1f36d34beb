/**
 * `podwire`: the operator CLI. Talks to podwired over its control socket.
 *
 *   podwire status [--json] [--socket PATH]
 *   podwire doctor [--json] [--netns NAME] ...   (checks this node: src/doctor/cli.ts)
 *   podwire lab up|status|exec|down ...   (a local multi-node lab in namespaces: src/lab/cli.ts)
 *
 * Exit codes: 0 ok (status printed, daemon ready); 3 printed but the daemon is not
 * ready; 1 cannot reach the daemon; 2 usage error.
 */
import { parseArgs } from 'node:util';
import { errorMessage } from '../common/errors';
import type { DaemonStatus } from '../daemon/daemon';
import { request } from '../daemon/route-server';
import { formatStatus } from './format';

const DEFAULT_SOCKET = '/run/podwire/podwire.sock';

const USAGE = `Usage: podwire status [--json] [--socket PATH]
       podwire doctor [--json] [--netns NAME]     (podwire doctor --help)
       podwire lab up|status|exec|down [options]   (podwire lab --help)

  status     print this node's Podwire state: subnet, peers, Services, DNS stats
  --json     print the raw JSON from the daemon
  --socket   control socket (env PODWIRE_CONTROL_SOCKET, default ${DEFAULT_SOCKET})
  doctor     check this node and say what is wrong and how to fix it (docs/troubleshooting.md)
  lab        a local multi-node Kubernetes-style network in network namespaces (docs/lab.md)
`;

export interface CliDeps {
  argv: readonly string[];
  env: Readonly<Record<string, string | undefined>>;
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

export async function cli(deps: CliDeps): Promise<number> {
  if (deps.argv[0] === 'lab') {
    // Loaded only for `lab`: it pulls in the namespace harness, which `status` does not need.
    const { labCli } = await import('../lab/cli');
    return labCli({ ...deps, argv: deps.argv.slice(1) });
  }
  if (deps.argv[0] === 'doctor') {
    const { doctorCli } = await import('../doctor/cli');
    return doctorCli({ ...deps, argv: deps.argv.slice(1) });
  }
  let values: { json?: boolean; socket?: string; help?: boolean };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: [...deps.argv],
      options: { json: { type: 'boolean' }, socket: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    }));
  } catch (err) {
    deps.stderr(`podwire: ${errorMessage(err)}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    deps.stdout(USAGE);
    return 0;
  }
  const [command, ...rest] = positionals;
  if (command !== 'status' || rest.length > 0) {
    deps.stderr(command ? `podwire: unknown command ${JSON.stringify([command, ...rest].join(' '))}\n${USAGE}` : USAGE);
    return 2;
  }
  const socketPath = values.socket ?? deps.env.PODWIRE_CONTROL_SOCKET ?? DEFAULT_SOCKET;
  let res: Awaited<ReturnType<typeof request>>;
  try {
    res = await request({ socketPath }, 'GET', '/v1/status');
  } catch (err) {
    deps.stderr(`podwire: cannot reach podwired at ${socketPath}: ${errorMessage(err)}\n`);
    return 1;
  }
  if (res.status !== 200) {
    deps.stderr(`podwire: podwired answered ${res.status}: ${res.body.toString('utf8').trim()}\n`);
    return 1;
  }
  let status: DaemonStatus;
  try {
    status = JSON.parse(res.body.toString('utf8')) as DaemonStatus;
  } catch (err) {
    deps.stderr(`podwire: bad status JSON from podwired: ${errorMessage(err)}\n`);
    return 1;
  }
  deps.stdout(values.json ? JSON.stringify(status, null, 2) + '\n' : formatStatus(status));
  return status.ready ? 0 : 3;
}

if (require.main === module) {
  cli({ argv: process.argv.slice(2), env: process.env, stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s) }).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`podwire: ${errorMessage(err)}\n`);
      process.exitCode = 1;
    },
  );
}
