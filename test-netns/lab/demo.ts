/**
 * The lab demo (root only):
 *
 *   node dist/test-netns/lab/demo.js [--nodes N (2, 1..8)] [--pods-per-node M (2, 1..16)]
 *   node dist/test-netns/lab/demo.js --no-host-gw-routes     (negative control: must exit 1)
 *
 * It runs the real Podwire pieces inside network namespaces and checks them with real packets:
 *   1. an underlay bridge and N node namespaces (198.18.0.i/24, pod CIDR 10.244.i.0/24);
 *   2. `podwired` (bin/podwired) in every node, fed by a folder of Node manifests, every path
 *      in a per-run temp dir; waits for /readyz, checks the conflist and the installed CNI binary;
 *   3. M pods per node, each wired by the INSTALLED CNI binary (the native shim, which forwards
 *      to the node's podwired over its control socket) with CNI ADD, as a runtime would, then
 *      CNI CHECK with the ADD result; the daemon's log shows it served each ADD (the fast path);
 *   4. host-gw routes between the nodes, programmed by podwired's overlay component (checked in
 *      demo-overlay.ts; the negative control deletes them and the cross-node checks FAIL);
 *   5. ping pod->gateway, pod->pod on one node and across nodes, TCP across nodes with nc, and
 *      negative controls (an address nobody owns, a closed port);
 *   6. DNS (demo-dns.ts): a pod per node digs a Service's A (UDP, TCP) and SRV, and a missing
 *      name, through its node's podwired DNS server on 169.254.20.10; `podwire status` per node;
 *   7. teardown: CNI DEL for every pod (and its reservation and veth gone), SIGTERM every daemon
 *      (exit 0), namespaces deleted, temp dir removed; also on failure and on Ctrl-C.
 * The root-namespace guard snapshots the root namespace before and compares after.
 * It prints a progress log and a summary table; exit 0 only if every check passed.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Cidr, IpAddress } from '../../src/common/ip';
import { exec, formatDiff, Guard, notInRootNetnsMessage, RootNamespaceChangedError, rootNetnsCheck, withLab, type Lab, type LabNode } from '../harness';
import { Checks, formatTable, inParallel, pingCheck, tcpCheck, tcpRefusedCheck, type CheckResult, type Log, type TcpEndpoint } from './checks';
import { pluginConfig, readConflist, resultIpv4, runInstalledCni, type Conflist } from './cni-client';
import { dnsChecks, prepareDns } from './demo-dns';
import { proxyDemo } from './demo-proxy';
import { createRunDir, PODWIRE_CLI, Podwired, REPO_ROOT, SHIM, writeNodeManifests, type RunDir } from './podwired';
import { NEGATIVE_CONTROL_ARGS, overlayRoutes } from './demo-overlay';

export { formatTable, type CheckResult } from './checks';

const PREFIX = 'pwlab';
export const LIMITS = { nodes: { min: 1, max: 8 }, podsPerNode: { min: 1, max: 16 } } as const;
const TCP_PORT = 8080;
const CLOSED_PORT = 8081;
/** On the pod network, but in no node's pod CIDR: nobody owns it. */
const UNOWNED_IP = '10.244.250.99';

export interface DemoArgs {
  nodes: number;
  podsPerNode: number;
  /** false only for the negative control (`--no-host-gw-routes`): cross-node checks must then FAIL. */
  hostGwRoutes: boolean;
}

export function parseArgs(argv: readonly string[]): DemoArgs | 'help' {
  const args: DemoArgs = { nodes: 2, podsPerNode: 2, hostGwRoutes: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const val = (key: keyof typeof LIMITS): number => {
      const raw = argv[++i];
      const v = Number(raw);
      const { min, max } = LIMITS[key];
      if (raw === undefined || !Number.isInteger(v) || v < min || v > max)
        throw new RangeError(`${a}=${JSON.stringify(raw ?? null)}: must be an integer ${min}..${max}`);
      return v;
    };
    if (a === '--nodes') args.nodes = val('nodes');
    else if (a === '--pods-per-node') args.podsPerNode = val('podsPerNode');
    else if (a === '--no-host-gw-routes') args.hostGwRoutes = false;
    else if (a === '-h' || a === '--help') return 'help';
    else throw new RangeError(`unknown argument ${JSON.stringify(a)}`);
  }
  return args;
}

const USAGE = `usage: node dist/test-netns/lab/demo.js [--nodes N] [--pods-per-node M]
  --nodes N          node namespaces, each running podwired (default 2, ${LIMITS.nodes.min}..${LIMITS.nodes.max})
  --pods-per-node M  pods per node, wired by the CNI plugin (default 2, ${LIMITS.podsPerNode.min}..${LIMITS.podsPerNode.max})
  --no-host-gw-routes  negative control: skip the cross-node routes; the cross-node checks must FAIL
Needs root. Everything happens in network namespaces named ${PREFIX}-<pid>-*, removed at the end.
`;

interface DemoNode {
  name: string;
  index: number;
  lab: LabNode;
  podCidr: Cidr;
  gateway: string;
  daemon: Podwired;
  conflist?: Conflist;
}

interface DemoPod {
  name: string;
  node: DemoNode;
  ns: string;
  containerId: string;
  /** Set once CNI ADD returned an address. */
  ip?: string;
  /** The ADD result: prevResult for CHECK and DEL, as a runtime caches it. */
  result?: Record<string, unknown>;
  added: boolean;
}

function label(p: DemoPod): string {
  return `${p.name} ${p.ip ?? '?'}`;
}

function endpoint(p: DemoPod): TcpEndpoint {
  return { ns: p.ns, ip: p.ip!, label: label(p) };
}

/**
 * Run the whole demo. Checks are recorded into `checks` as they happen, so the caller can print
 * them even when a step throws.
 */
export async function runDemo(args: DemoArgs, checks: Checks, log: Log): Promise<void> {
  // The root-namespace guard below only means something in the initial network namespace.
  const where = rootNetnsCheck();
  if (where.inRoot !== true) throw new Error(`demo: ${notInRootNetnsMessage(where)}`);
  let run: RunDir | undefined;
  const removeRunDir = (): void => run?.remove();
  // Ctrl-C: the harness kills the lab's processes and deletes its namespaces; this removes the
  // temp dir. Both handlers remove themselves, so the re-raised signal still ends the process.
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  const onSignal = (sig: NodeJS.Signals): void => {
    removeRunDir();
    process.removeListener(sig, onSignal);
  };
  for (const s of signals) process.on(s, onSignal);
  process.on('exit', removeRunDir);
  // The harness's root-namespace guard, held here (not inside withLab) so that its verdict is a
  // row of the table on every path, also when a step fails.
  const guard = await Guard.start(null);
  let failure: unknown;
  try {
    await withLab(
      PREFIX,
      async (lab) => {
        log(`lab ${lab.id}: ${args.nodes} node(s), ${args.podsPerNode} pod(s) per node`);
        run = createRunDir(PREFIX);
        log(`per-run dir ${run.dir} (manifests, CNI conf/bin dirs, state, control sockets)`);
        const nodes: DemoNode[] = [];
        const pods: DemoPod[] = [];
        try {
          await buildNodes(lab, run, args, nodes, log);
          await startDaemons(nodes, checks, log);
          await createPods(lab, nodes, pods, args, checks, log);
          await connectivity(lab, nodes, pods, args, checks, log);
          await proxyDemo(lab, run.manifests, [...pods.filter((p) => p.node === nodes[0]), ...pods.filter((p) => p.node === nodes[1]).slice(0, 1)].map((p) => ({ name: p.name, ns: p.ns, ip: p.ip!, nodeName: p.node.name, nodeNs: p.node.lab.ns })), checks, log);
          await dnsChecks(nodes, pods, checks, log);
          await statuses(nodes, checks, log);
        } finally {
          await teardown(nodes, pods, checks, log);
        }
      },
      { guard: false },
    );
  } catch (e) {
    failure = e;
  } finally {
    removeRunDir();
    process.removeListener('exit', removeRunDir);
    for (const s of signals) process.removeListener(s, onSignal);
  }
  // withLab has deleted every namespace (and killed what ran in them) by now, on both paths.
  const diffs = await guard.diff();
  checks.record({
    kind: 'root namespace unchanged',
    from: 'guard',
    to: '-',
    expect: 'no diff',
    passed: diffs.length === 0,
    detail: diffs.length === 0 ? 'links, addrs, routes, rules, iptables, nft, sysctls' : `CHANGED: ${diffs.map((d) => d.section).join(', ')}`,
    output: diffs.length === 0 ? undefined : formatDiff(diffs, null),
  });
  if (failure !== undefined) throw failure;
  if (diffs.length) throw new RootNamespaceChangedError(diffs, null);
}

async function buildNodes(lab: Lab, run: RunDir, args: DemoArgs, nodes: DemoNode[], log: Log): Promise<void> {
  const ul = await lab.addUnderlay();
  log(`underlay ${ul.ns}: bridge ${ul.bridge}`);
  const labNodes: LabNode[] = [];
  for (let i = 1; i <= args.nodes; i++) labNodes.push(await lab.addNode(ul, { mtu: 1500 }));
  writeNodeManifests(
    run.manifests,
    labNodes.map((n, i) => ({ name: `node${i + 1}`, podCIDR: `10.244.${i + 1}.0/24`, internalIP: n.ip })),
  );
  log(`wrote ${labNodes.length} Node manifest(s) to ${run.manifests}`);
  const dnsArgs = prepareDns(run);
  labNodes.forEach((ln, i) => {
    const name = `node${i + 1}`;
    const podCidr = Cidr.parse(`10.244.${i + 1}.0/24`);
    // host-gw backend: the demo routes pods across nodes over the underlay (MTU 1500, no VXLAN).
    const daemon = new Podwired(lab, ln.ns, { nodeName: name, run, extraArgs: ['--backend', 'host-gw', ...dnsArgs, ...(args.hostGwRoutes ? [] : NEGATIVE_CONTROL_ARGS)] });
    nodes.push({ name, index: i + 1, lab: ln, podCidr, gateway: podCidr.nth(1).toString(), daemon });
    log(`${name} = ${ln.ns}: ${ln.ifname} ${ln.cidr}, podCIDR ${podCidr}; started podwired (pid ${daemon.proc.pid ?? '?'})`);
  });
}

async function startDaemons(nodes: DemoNode[], checks: Checks, log: Log): Promise<void> {
  log('waiting for every podwired to answer /readyz 200 (bounded poll)');
  const ready = await Promise.all(nodes.map((n) => n.daemon.waitReady()));
  nodes.forEach((n, i) => {
    const r = ready[i]!;
    checks.record({
      kind: 'podwired ready',
      from: n.name,
      to: '-',
      expect: '/readyz 200',
      passed: r.ready,
      detail: `${r.last} after ${r.polls} poll(s)`,
      output: r.ready ? undefined : n.daemon.tail(),
    });
  });
  if (ready.some((r) => !r.ready)) throw new Error('a podwired did not become ready; see the table');

  for (const n of nodes) {
    const d = n.daemon;
    let conflistOk = false;
    let detail: string;
    try {
      const conf = readConflist(d.conflistPath);
      const plugin = conf.plugins[0]!;
      const ipam = plugin.ipam as { ranges?: { subnet?: string }[][] } | undefined;
      const subnet = ipam?.ranges?.[0]?.[0]?.subnet;
      conflistOk = plugin.type === 'podwire' && subnet === n.podCidr.toString();
      detail = `${path.basename(d.conflistPath)}: type ${plugin.type}, subnet ${String(subnet)}, mtu ${String(plugin.mtu)}`;
      if (conflistOk) n.conflist = conf;
    } catch (e) {
      detail = `cannot read ${d.conflistPath}: ${(e as Error).message}`;
    }
    checks.record({ kind: 'conflist written', from: n.name, to: '-', expect: `subnet ${n.podCidr}`, passed: conflistOk, detail });

    const installed = existsSync(d.binaryPath) && existsSync(SHIM) && readFileSync(d.binaryPath).equals(readFileSync(SHIM));
    checks.record({
      kind: 'CNI binary installed',
      from: n.name,
      to: '-',
      expect: '= native shim',
      passed: installed,
      detail: installed ? `${path.relative(path.dirname(path.dirname(d.binDir)), d.binaryPath)} (the fast-path shim)` : `${d.binaryPath} missing or not the shim ${SHIM}`,
    });
  }
}

async function createPods(lab: Lab, nodes: DemoNode[], pods: DemoPod[], args: DemoArgs, checks: Checks, log: Log): Promise<void> {
  log('creating pods with CNI ADD: the installed binary, run inside the node, forwards to podwired');
  for (const n of nodes) {
    if (!n.conflist) throw new Error(`${n.name} has no usable conflist; cannot create pods`);
    const stdin = pluginConfig(n.conflist, 0);
    for (let p = 1; p <= args.podsPerNode; p++) {
      const ns = await lab.addPod(`n${n.index}p${p}`);
      const pod: DemoPod = { name: `${n.name}/p${p}`, node: n, ns, containerId: ns, added: false };
      pods.push(pod);
      const r = await runInstalledCni(n.daemon, stdin, { command: 'ADD', containerId: pod.containerId, podNs: ns });
      pod.added = true; // attempted: DEL runs at teardown either way (DEL after a failed ADD must be safe)
      const addr = resultIpv4(r.json);
      const inCidr = addr !== undefined && n.podCidr.contains(IpAddress.parse(addr.ip));
      if (r.ok && addr && inCidr) {
        pod.ip = addr.ip;
        pod.result = r.json;
      }
      checks.record({
        kind: 'CNI ADD',
        from: n.name,
        to: pod.name,
        expect: `IP in ${n.podCidr}`,
        passed: r.ok && inCidr,
        detail: r.ok ? (addr ? `${addr.cidr} gw ${addr.gateway ?? '-'}` : 'no IPv4 in the result') : r.summary,
        output: `${r.stdout}\n${r.stderr}`,
      });
    }
  }
  log(`only the conflist's first plugin (podwire) is run: a chained portmap acts on runtime port mappings, and the demo has none`);

  log('CNI CHECK for every pod (the ADD result as prevResult): the plugin verifies what it set up');
  for (const p of pods) {
    if (!p.result || !p.node.conflist) continue;
    const r = await runInstalledCni(p.node.daemon, pluginConfig(p.node.conflist, 0, p.result), { command: 'CHECK', containerId: p.containerId, podNs: p.ns });
    checks.record({ kind: 'CNI CHECK', from: p.node.name, to: label(p), expect: 'exit 0', passed: r.ok, detail: r.summary, output: `${r.stdout}\n${r.stderr}` });
  }

  for (const n of nodes) {
    const adds = n.daemon.fastPathRequests().filter((q) => q.command === 'ADD');
    const want = pods.filter((p) => p.node === n).length;
    const ms = adds.map((q) => q.ms).sort((a, b) => a - b);
    checks.record({
      kind: 'ADD via fast path',
      from: n.name,
      to: 'podwired',
      expect: `${want} ADD served`,
      passed: adds.length === want && adds.every((q) => q.exitCode === 0),
      detail: `podwired served ${adds.length} ADD on its control socket${ms.length ? ` (median ${ms[Math.floor(ms.length / 2)]} ms in the daemon)` : ''}`,
    });
  }

  for (const n of nodes) {
    const want = pods.filter((p) => p.node === n && p.ip !== undefined).map((p) => p.ip!).sort();
    const f = await nodeFootprint(n);
    checks.record({
      kind: 'after ADD: IPAM + veths',
      from: n.name,
      to: '-',
      expect: `${want.length} IPs, ${want.length} pod veths`,
      passed: f.ips.join(' ') === want.join(' ') && f.veths.length === want.length,
      detail: f.error ? `ip link: ${f.error}` : footprintDetail(f),
    });
  }

  const ips = pods.map((p) => p.ip).filter((ip): ip is string => ip !== undefined);
  const distinct = new Set(ips).size === ips.length && ips.length === pods.length;
  checks.record({
    kind: 'pod IPs distinct',
    from: 'all pods',
    to: '-',
    expect: `${pods.length} distinct`,
    passed: distinct,
    detail: ips.join(' '),
  });
  if (ips.length !== pods.length) throw new Error('a CNI ADD failed; see the table');
}

async function connectivity(lab: Lab, nodes: DemoNode[], pods: DemoPod[], args: DemoArgs, checks: Checks, log: Log): Promise<void> {
  const on = (n: DemoNode): DemoPod[] => pods.filter((p) => p.node === n);
  const [first, second] = nodes;

  await overlayRoutes(nodes.map((n) => ({ name: n.name, ns: n.lab.ns, ip: n.lab.ip, podCidr: n.podCidr.toString(), ifname: n.lab.ifname })), args.hostGwRoutes, checks, log);

  log('running connectivity checks');
  const pings: (() => Promise<CheckResult>)[] = [];
  const bridge = (n: DemoNode): string => String(n.conflist?.plugins[0]?.bridge ?? 'bridge');
  for (const p of pods) pings.push(() => pingCheck('ping pod->gateway', p.ns, label(p), p.node.gateway, `${p.node.name} ${bridge(p.node)} ${p.node.gateway}`, true));
  for (const n of nodes) {
    const ps = on(n);
    if (ps.length < 2) continue;
    // Each pod to the next one on its node (a ring): every pod sends and receives once.
    ps.forEach((a, i) => {
      const b = ps[(i + 1) % ps.length]!;
      pings.push(() => pingCheck('ping pod->pod same node', a.ns, label(a), b.ip!, label(b), true));
    });
  }
  for (const a of nodes)
    for (const b of nodes) {
      if (a === b) continue;
      // Every pod of a pings one pod of b (rotating), so each pod is exercised in both roles.
      const dst = on(b);
      on(a).forEach((s, i) => {
        const d = dst[i % dst.length]!;
        pings.push(() => pingCheck('ping pod->pod x-node', s.ns, label(s), d.ip!, label(d), true));
      });
    }
  for (const r of await inParallel(pings)) checks.record(r);
  const p0 = on(first!)[0]!;
  checks.record(await pingCheck('ping unowned IP (control)', p0.ns, label(p0), UNOWNED_IP, UNOWNED_IP, false));

  for (const a of nodes)
    for (const b of nodes) {
      if (a === b) continue;
      const server = on(b)[0]!;
      const client = on(a)[on(a).length - 1]!;
      checks.record(await tcpCheck(lab, 'tcp nc x-node', endpoint(server), endpoint(client), TCP_PORT));
    }
  const srv = second ? on(second)[0]! : on(first!)[on(first!).length - 1]!;
  checks.record(await tcpRefusedCheck('tcp closed port (control)', endpoint(srv), endpoint(p0), CLOSED_PORT));
}

async function statuses(nodes: DemoNode[], checks: Checks, log: Log): Promise<void> {
  for (const n of nodes) {
    const r = await exec(n.lab.ns, [process.execPath, PODWIRE_CLI, 'status', '--socket', n.daemon.socket]);
    log(`podwire status (${n.name}, exit ${String(r.exitCode)}):`);
    for (const line of `${r.stdout}${r.stderr}`.trimEnd().split('\n')) log(`  | ${line}`);
    const subnet = new RegExp(`Subnet:\\s+${n.podCidr.toString().replace(/\./g, '\\.')}`).test(r.stdout);
    checks.record({
      kind: 'podwire status',
      from: n.name,
      to: '-',
      expect: 'exit 0, own subnet',
      passed: r.exitCode === 0 && subnet,
      detail: `exit ${String(r.exitCode)}${subnet ? `, Subnet ${n.podCidr}` : ', subnet missing'}`,
      output: `${r.stdout}${r.stderr}`,
    });
  }
}

/**
 * What the CNI plugin left on a node: IP-named files in its IPAM store (host-local layout, one
 * file per reserved address, under the conflist's ipam.dataDir/<network name>) and pod veths
 * (host side `pwv<hash>`).
 */
async function nodeFootprint(n: DemoNode): Promise<{ ips: string[]; veths: string[]; error?: string }> {
  const ipam = n.conflist?.plugins[0]?.ipam as { dataDir?: string } | undefined;
  const dir = path.join(ipam?.dataDir ?? path.join(n.daemon.stateDir, 'ipam'), n.conflist?.name ?? 'podwire');
  const ips = existsSync(dir) ? readdirSync(dir).filter((f) => IpAddress.tryParse(f) !== undefined).sort() : [];
  const r = await exec(n.lab.ns, ['ip', '-o', 'link', 'show', 'type', 'veth']);
  const veths = r.stdout
    .split('\n')
    .map((l) => /^\d+:\s+(pwv[^@:\s]*)/.exec(l)?.[1])
    .filter((v): v is string => v !== undefined);
  return { ips, veths, error: r.exitCode === 0 ? undefined : r.stderr };
}

function footprintDetail(f: { ips: string[]; veths: string[] }): string {
  return `${f.ips.length} reserved IP(s)${f.ips.length ? ` (${f.ips.join(' ')})` : ''}, ${f.veths.length} pod veth(s)`;
}

async function teardown(nodes: DemoNode[], pods: DemoPod[], checks: Checks, log: Log): Promise<void> {
  log('teardown: CNI DEL for every pod, then SIGTERM every podwired');
  for (const p of pods) {
    if (!p.added || !p.node.conflist) continue;
    const r = await runInstalledCni(p.node.daemon, pluginConfig(p.node.conflist, 0, p.result), { command: 'DEL', containerId: p.containerId, podNs: p.ns });
    checks.record({ kind: 'CNI DEL', from: p.node.name, to: label(p), expect: 'exit 0', passed: r.ok, detail: r.summary, output: `${r.stdout}\n${r.stderr}` });
  }
  for (const n of nodes) {
    if (!pods.some((p) => p.node === n && p.added)) continue;
    const f = await nodeFootprint(n);
    checks.record({
      kind: 'after DEL: nothing left',
      from: n.name,
      to: '-',
      expect: '0 IPs, 0 pod veths',
      passed: f.ips.length === 0 && f.veths.length === 0 && f.error === undefined,
      detail: f.error ? `ip link: ${f.error}` : footprintDetail(f),
    });
    const dels = n.daemon.fastPathRequests().filter((q) => q.command === 'DEL');
    const want = pods.filter((p) => p.node === n && p.added).length;
    checks.record({
      kind: 'DEL via fast path',
      from: n.name,
      to: 'podwired',
      expect: `${want} DEL served`,
      passed: dels.length === want && dels.every((q) => q.exitCode === 0),
      detail: `podwired served ${dels.length} DEL on its control socket`,
    });
  }
  const exitedEarly = nodes.map((n) => n.daemon.proc.exit !== null);
  const exits = await Promise.all(nodes.map((n) => n.daemon.stop()));
  nodes.forEach((n, i) => {
    const e = exits[i]!;
    if (exitedEarly[i]) {
      checks.record({ kind: 'podwired SIGTERM', from: n.name, to: '-', expect: 'exit 0', passed: false, detail: `had already exited (${e.signal ?? `exit ${String(e.exitCode)}`})` });
      return;
    }
    checks.record({
      kind: 'podwired SIGTERM',
      from: n.name,
      to: '-',
      expect: 'exit 0',
      passed: e.exitCode === 0,
      detail: e.signal ? `killed by ${e.signal}` : `exit ${String(e.exitCode)}`,
      output: e.exitCode === 0 ? undefined : n.daemon.tail(),
    });
  });
}

/** What the demo runs, so a missing build or tool is one clear line instead of a failed check. */
function prerequisites(): string[] {
  const problems: string[] = [];
  if (!existsSync(SHIM)) problems.push(`${SHIM} is not built (npm run build:native)`);
  for (const js of ['dist/src/daemon/main.js', 'dist/src/cli/main.js', 'dist/src/cni-plugin/main.js'])
    if (!existsSync(path.join(REPO_ROOT, js))) problems.push(`${js} is not built (npx tsc -p .)`);
  for (const tool of ['ip', 'ping', 'curl', 'nc', 'ss']) {
    const found = (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').some((d) => d && existsSync(path.join(d, tool)));
    if (!found) problems.push(`${tool} not found on PATH (scripts/install-deps.sh installs it)`);
  }
  return problems;
}

const t0 = Date.now();
function log(msg: string): void {
  process.stdout.write(`[lab +${((Date.now() - t0) / 1000).toFixed(2)}s] ${msg}\n`);
}

export async function main(argv: readonly string[]): Promise<number> {
  let args: DemoArgs | 'help';
  try {
    args = parseArgs(argv);
  } catch (e) {
    process.stderr.write(`demo: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (args === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('demo: needs root (it creates network namespaces)\n');
    return 2;
  }
  const missing = prerequisites();
  if (missing.length) {
    process.stderr.write(`demo: cannot run:\n  ${missing.join('\n  ')}\n(bash scripts/quickstart.sh installs and builds everything)\n`);
    return 2;
  }
  log('root-namespace guard: snapshot taken before and compared after');
  const checks = new Checks(log);
  let aborted: unknown;
  try {
    await runDemo(args, checks, log);
    log('cleanup done: namespaces deleted, temp dir removed, root namespace unchanged');
  } catch (e) {
    aborted = e;
    if (!(e instanceof RootNamespaceChangedError)) checks.record({ kind: 'demo ran to the end', from: '-', to: '-', expect: 'no error', passed: false, detail: (e as Error).message.split('\n')[0]!.slice(0, 100), output: (e as Error).stack });
    log(`ABORTED: ${e instanceof RootNamespaceChangedError ? e.message : ((e as Error).stack ?? String(e))}`);
    log('cleanup done: daemons stopped, namespaces deleted, temp dir removed');
  }
  const results = checks.results;
  const failed = checks.failed;
  process.stdout.write(`\n${formatTable(results)}\n\n`);
  for (const f of failed)
    process.stdout.write(`FAILED ${f.kind} ${f.from}${f.to === '-' ? '' : ` -> ${f.to}`}: ${f.detail}\n${(f.output ?? '').trim()}\n\n`);
  const ok = failed.length === 0 && aborted === undefined;
  process.stdout.write(
    `lab demo: ${results.length - failed.length}/${results.length} checks passed${aborted ? ', demo ABORTED before the end' : ''}${ok ? '' : ', FAILED'}\n`,
  );
  return ok ? 0 : 1;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`demo: ${String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
