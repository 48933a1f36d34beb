/**
 * `podwire lab ...`: a local multi-node Kubernetes-style network in network namespaces.
 *
 *   podwire lab up [--manifests DIR] [--backend vxlan|host-gw] [--proxy-mode nftables|iptables]
 *   podwire lab status [--json]
 *   podwire lab check                 (run the rows again against the running lab)
 *   podwire lab exec POD|NODE -- CMD [ARGS...]
 *   podwire lab down
 *   common: [--state-dir DIR (env PODWIRE_LAB_STATE_DIR, default /run/podwire-lab)]
 *           [--prefix P (env PODWIRE_LAB_PREFIX, default pwlab): namespace names <P>-node-node1 ...]
 *
 * Exit codes: 0 ok; 1 failed (a FAILED row, a build error, an unhealthy daemon, no lab);
 * 2 usage; 130 interrupted; `exec` exits with the command's status.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { errorMessage } from '../common/errors';
import type { Feature } from '../daemon/config';
import { endpointAddresses } from '../k8s/types';
import type { CliDeps } from '../cli/main';
import { DEFAULT_PREFIX, DEFAULT_STATE_DIR, PREFIX_RE, readState, statePath, type LabState } from './state';
import { teardown } from './teardown';
import { loadLabSpec, type LabSpec } from './topology';
import { runRows } from './rows';
import { ROW_GROUPS } from './rows/index';
import { AbortedError, daemonStatus, DEFAULT_MANIFESTS, labCmd, labContext, prerequisites, summary, topologyDir, up } from './up';

export const LAB_USAGE = `Usage: podwire lab <command> [options]

  up       build the lab from a manifest folder, start podwired on every node, wire the pods
           through the installed CNI binary, start their servers, print what it proved
             --manifests DIR       (default ${DEFAULT_MANIFESTS})
             --backend vxlan|host-gw        (default vxlan)
             --proxy-mode nftables|iptables (default nftables)
  status   nodes, pods with IPs, Services, each daemon's health   [--json]
  check    run the table's checks again against the running lab (exit 1 if a row FAILED)
  exec     POD|NODE|outside|dns-NAME -- CMD [ARGS...]: run CMD in that namespace (stdio inherited)
  down     remove everything: daemons, namespaces, /etc/netns files, the state dir

Common options:
  --state-dir DIR   where the lab keeps its state (env PODWIRE_LAB_STATE_DIR, default ${DEFAULT_STATE_DIR})
  --prefix P        namespace name prefix (env PODWIRE_LAB_PREFIX, default ${DEFAULT_PREFIX})
Needs root. Nothing in the namespace you run it from is changed. See docs/lab.md.
`;

function now(t0: number): string {
  return ((Date.now() - t0) / 1000).toFixed(1).padStart(5);
}

export async function labCli(deps: CliDeps): Promise<number> {
  const argv = [...deps.argv];
  const dd = argv.indexOf('--');
  const own = dd >= 0 ? argv.slice(0, dd) : argv;
  const rest = dd >= 0 ? argv.slice(dd + 1) : [];
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: own,
      options: {
        manifests: { type: 'string' },
        backend: { type: 'string' },
        'proxy-mode': { type: 'string' },
        'state-dir': { type: 'string' },
        prefix: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    }));
  } catch (e) {
    deps.stderr(`podwire lab: ${errorMessage(e)}\n${LAB_USAGE}`);
    return 2;
  }
  if (values.help) {
    deps.stdout(LAB_USAGE);
    return 0;
  }
  const [cmd, ...args] = positionals;
  const stateDir = String(values['state-dir'] ?? deps.env.PODWIRE_LAB_STATE_DIR ?? DEFAULT_STATE_DIR);
  const prefix = String(values.prefix ?? deps.env.PODWIRE_LAB_PREFIX ?? DEFAULT_PREFIX);
  const usage = (msg: string): number => {
    deps.stderr(`podwire lab: ${msg}\n${LAB_USAGE}`);
    return 2;
  };
  if (!PREFIX_RE.test(prefix)) return usage(`--prefix ${JSON.stringify(prefix)} must match ${PREFIX_RE}`);
  if (!stateDir.startsWith('/')) return usage(`--state-dir must be an absolute path`);
  if (!cmd) return usage('a command is required');
  if (cmd !== 'exec' && (args.length > 0 || rest.length > 0)) return usage(`unexpected arguments ${JSON.stringify([...args, ...rest].join(' '))}`);
  if (cmd !== 'up' && (values.manifests || values.backend || values['proxy-mode'])) return usage('--manifests, --backend and --proxy-mode are options of `lab up`');
  if (process.getuid?.() !== 0 && cmd !== 'status') {
    deps.stderr('podwire lab: needs root (it creates network namespaces)\n');
    return 1;
  }
  switch (cmd) {
    case 'up':
      return labUp(deps, values, stateDir, prefix);
    case 'down':
      return labDown(deps, stateDir, prefix);
    case 'status':
      return labStatus(deps, stateDir, values.json === true);
    case 'check':
      return labCheck(deps, stateDir);
    case 'exec':
      if (args.length !== 1 || rest.length === 0) return usage('usage: podwire lab exec POD|NODE -- CMD [ARGS...]');
      return labExec(deps, stateDir, args[0]!, rest);
    default:
      return usage(`unknown command ${JSON.stringify(cmd)}`);
  }
}

async function labUp(deps: CliDeps, values: Record<string, string | boolean | undefined>, stateDir: string, prefix: string): Promise<number> {
  const backend = String(values.backend ?? 'vxlan');
  const proxyMode = String(values['proxy-mode'] ?? 'nftables');
  if (backend !== 'vxlan' && backend !== 'host-gw') return usage2(deps, `--backend ${JSON.stringify(backend)}: vxlan or host-gw`);
  if (proxyMode !== 'nftables' && proxyMode !== 'iptables') return usage2(deps, `--proxy-mode ${JSON.stringify(proxyMode)}: nftables or iptables`);
  const manifests = String(values.manifests ?? DEFAULT_MANIFESTS);
  const missing = prerequisites();
  if (missing.length) {
    deps.stderr(`podwire lab: cannot run:\n  ${missing.join('\n  ')}\n(bash scripts/quickstart.sh installs and builds everything)\n`);
    return 1;
  }
  let spec: LabSpec;
  try {
    spec = loadLabSpec(manifests);
  } catch (e) {
    deps.stderr(`podwire lab: ${manifests}: ${errorMessage(e)}\n`);
    return 1;
  }
  const t0 = Date.now();
  const log = (m: string): void => deps.stdout(`[lab ${now(t0)}s] ${m}\n`);
  if (existsSync(statePath(stateDir)) || existsSync(stateDir)) log(`removing the previous lab in ${stateDir} first`);
  const pre = await teardown(stateDir, prefix, log);
  for (const p of pre.problems) log(`warning: ${p}`);

  let aborted: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (aborted) return;
    aborted = sig;
    deps.stderr(`\npodwire lab: ${sig}: stopping the build and tearing down what was built\n`);
  };
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const s of signals) process.on(s, onSignal);
  try {
    log(`building from ${manifests} (backend ${backend}, proxy mode ${proxyMode}, state ${stateDir}, namespaces ${prefix}-*)`);
    const { state, rows } = await up({ manifests, stateDir, prefix, backend, proxyMode, log, aborted: () => aborted !== undefined }, spec);
    deps.stdout(`\n${summary(state, rows)}`);
    return rows.results.some((r) => r.status === 'FAILED') ? 1 : 0;
  } catch (e) {
    if (e instanceof AbortedError || aborted) {
      await teardown(stateDir, prefix, log);
      return 130;
    }
    deps.stderr(`podwire lab: up failed: ${errorMessage(e)}\n`);
    try {
      const s = readState(stateDir);
      if (s) {
        s.phase = 'failed';
        (await import('./state')).writeState(s);
      }
    } catch {
      /* keep the error above */
    }
    deps.stderr(`The partial lab is left for inspection: ${labCmd(stateDir, 'status')}; remove it with: ${labCmd(stateDir, 'down')}\n`);
    return 1;
  } finally {
    for (const s of signals) process.removeListener(s, onSignal);
  }
}

function usage2(deps: CliDeps, msg: string): number {
  deps.stderr(`podwire lab: ${msg}\n`);
  return 2;
}

async function labDown(deps: CliDeps, stateDir: string, prefix: string): Promise<number> {
  const log = (m: string): void => deps.stdout(`lab down: ${m}\n`);
  const r = await teardown(stateDir, prefix, log);
  for (const p of r.problems) deps.stderr(`lab down: ${p}\n`);
  if (r.namespaces.length === 0 && r.terminated + r.killed === 0) log('nothing to remove');
  else log('done: nothing is left');
  return r.problems.some((p) => !p.startsWith('state file unreadable')) ? 1 : 0;
}

function readLab(deps: CliDeps, stateDir: string): LabState | undefined {
  try {
    const s = readState(stateDir);
    if (!s) deps.stderr(`podwire lab: no lab in ${stateDir} (start one with: ${labCmd(stateDir, 'up')})\n`);
    return s;
  } catch (e) {
    deps.stderr(`podwire lab: ${errorMessage(e)}\n`);
    return undefined;
  }
}

async function labStatus(deps: CliDeps, stateDir: string, json: boolean): Promise<number> {
  const s = readLab(deps, stateDir);
  if (!s) return 1;
  const health = await Promise.all(
    s.daemons.map(async (d) => {
      const alive = d.pid !== undefined && existsSync(`/proc/${d.pid}`);
      const st = await daemonStatus(d.socket);
      return typeof st === 'string'
        ? { node: d.node, pid: d.pid, alive, ready: false, error: st, components: [] as { name: string; feature: Feature; ready: boolean }[] }
        : { node: d.node, pid: d.pid, alive, ready: st.ready, error: undefined, components: st.components.map((c) => ({ name: c.name, feature: c.feature, ready: c.ready })) };
    }),
  );
  let services: LabSpec['services'] = [];
  let slices: LabSpec['endpointSlices'] = [];
  try {
    const spec = loadLabSpec(s.manifests, topologyDir(s.stateDir));
    services = spec.services;
    slices = spec.endpointSlices;
  } catch (e) {
    deps.stderr(`podwire lab: cannot read ${s.manifests}: ${errorMessage(e)}\n`);
  }
  const healthy = health.every((h) => h.ready);
  if (json) {
    deps.stdout(JSON.stringify({ ...s, health, services: services.map((x) => ({ key: x.meta.key, type: x.type, clusterIPs: x.clusterIPs, ports: x.ports, externalName: x.externalName })) }, null, 2) + '\n');
    return healthy ? 0 : 1;
  }
  const out: string[] = [];
  out.push(`Lab:      ${s.phase}, built ${s.startedAt} from ${s.source} (backend ${s.backend}, proxy mode ${s.proxyMode})`);
  out.push(`State:    ${s.stateDir} (manifests podwired reads: ${s.manifests})`);
  if (s.fallbackRoutes.length) out.push(`Routing:  FALLBACK routes added by the lab (podwired has no overlay component yet): ${s.fallbackRoutes.length}`);
  if (s.underlayRoutes?.length) out.push(`Underlay: host-gw across subnets: the router routes each podCIDR to its node (${s.underlayRoutes.length} routes)`);
  out.push('', 'Nodes:');
  const table = (rows: string[][]): void => {
    const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const r of rows) out.push(`  ${r.map((c, i) => c.padEnd(w[i]!)).join('  ').trimEnd()}`);
  };
  table([
    ['NODE', 'NAMESPACE', 'IP', 'SUBNET', 'POD CIDR', 'PODWIRED', 'HEALTH'],
    ...s.nodes.map((n) => {
      const h = health.find((x) => x.node === n.name);
      const comp = h?.components.map((c) => `${c.name}${c.ready ? '' : '(not ready)'}`).join(',') ?? '';
      return [n.name, n.ns, n.ip, n.subnet, n.podCIDR, h?.pid ? `pid ${h.pid}${h.alive ? '' : ' (gone)'}` : '-', h?.ready ? `ready [${comp}]` : `NOT READY: ${h?.error ?? 'not ready'}`];
    }),
  ]);
  if (s.outside || s.dnsServers?.length) {
    out.push('', 'Outside the cluster:');
    table([
      ['NAME', 'NAMESPACE', 'IP', 'WHAT'],
      ...(s.outside ? [['outside', s.outside.ns, s.outside.ip, `"the internet" behind the router ${s.outside.router}: HTTP :${s.outside.port}, answers with the client address`]] : []),
      ...(s.dnsServers ?? []).map((d) => [`dns-${d.name}`, d.ns, d.ip, `authoritative DNS for ${d.zone} (${Object.keys(d.records).join(' ')})`]),
    ]);
  }
  out.push('', 'Pods:');
  table([['POD', 'NODE', 'IP', 'SERVERS', 'NAMESPACE'], ...s.pods.map((p) => [`${p.namespace}/${p.name}`, p.node, p.ip ?? '(no IP)', p.servers.map((x) => `${x.kind}:${x.port}`).join(' ') || '-', p.ns])]);
  out.push('', 'Services:');
  const eps = (ns: string | undefined, name: string): string[] =>
    slices.filter((e) => e.serviceName === name && e.meta.namespace === ns).flatMap((e) => e.endpoints.flatMap(endpointAddresses));
  table([
    ['SERVICE', 'TYPE', 'CLUSTER-IP', 'PORTS', 'ENDPOINTS'],
    ...services.map((x) => [
      x.meta.key,
      x.clusterIPs[0] === 'None' ? 'Headless' : x.type,
      x.type === 'ExternalName' ? (x.externalName ?? '-') : (x.clusterIPs[0] ?? '-'),
      x.ports.map((p) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ''}/${p.protocol}`).join(',') || '-',
      eps(x.meta.namespace, x.meta.name).join(',') || '-',
    ]),
  ]);
  out.push('', `Enter a pod: ${labCmd(stateDir, `exec ${s.client}`)} -- sh`, `Tear down:   ${labCmd(stateDir, 'down')}`);
  deps.stdout(out.join('\n') + '\n');
  return healthy ? 0 : 1;
}

async function labCheck(deps: CliDeps, stateDir: string): Promise<number> {
  const s = readLab(deps, stateDir);
  if (!s) return 1;
  let spec: LabSpec;
  try {
    spec = loadLabSpec(s.manifests, topologyDir(s.stateDir));
  } catch (e) {
    deps.stderr(`podwire lab: cannot read ${s.manifests}: ${errorMessage(e)}\n`);
    return 1;
  }
  const components = new Set<Feature>();
  const statuses = await Promise.all(s.daemons.map((d) => daemonStatus(d.socket)));
  for (const f of ['cni', 'overlay', 'proxy', 'dns'] as const)
    if (statuses.every((st) => typeof st !== 'string' && st.components.some((c) => c.feature === f))) components.add(f);
  const rows = await runRows(ROW_GROUPS, labContext(s, spec, components));
  deps.stdout(summary(s, rows));
  return rows.results.some((r) => r.status === 'FAILED') ? 1 : 0;
}

function labExec(deps: CliDeps, stateDir: string, target: string, argv: string[]): Promise<number> {
  const s = readLab(deps, stateDir);
  if (!s) return Promise.resolve(1);
  const ns =
    s.pods.find((p) => p.name === target || `${p.namespace}/${p.name}` === target)?.ns ??
    s.nodes.find((n) => n.name === target)?.ns ??
    (target === 'outside' ? s.outside?.ns : undefined) ??
    s.dnsServers?.find((d) => `dns-${d.name}` === target)?.ns;
  if (!ns || !existsSync(`/run/netns/${ns}`)) {
    deps.stderr(`podwire lab: no pod or node ${JSON.stringify(target)} in the lab (pods: ${s.pods.map((p) => p.name).join(' ')}; nodes: ${s.nodes.map((n) => n.name).join(' ')}${s.outside ? '; outside' : ''}${(s.dnsServers ?? []).map((d) => `; dns-${d.name}`).join('')})\n`);
    return Promise.resolve(1);
  }
  return new Promise((resolve) => {
    const child = spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: 'inherit' });
    const fwd = (sig: NodeJS.Signals): void => void child.kill(sig);
    process.on('SIGINT', fwd);
    process.on('SIGTERM', fwd);
    const done = (code: number): void => {
      process.removeListener('SIGINT', fwd);
      process.removeListener('SIGTERM', fwd);
      resolve(code);
    };
    child.on('error', (e) => {
      deps.stderr(`podwire lab: ${e.message}\n`);
      done(127);
    });
    child.on('exit', (code, sig) => done(code ?? (sig ? 128 + (require('node:os').constants.signals[sig] as number) : 1)));
  });
}
