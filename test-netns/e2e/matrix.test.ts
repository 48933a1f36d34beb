/**
 * The e2e suite: the lab (examples/lab) built for every backend × proxy mode this machine can
 * run, asserting every row of the table is ok and that the rows of every capability are there
 * (pod ↔ pod same node / across nodes / across subnets, each Service by VIP and by name, DNS A and
 * SRV and headless, NodePort from outside on every node, the stub domain, ExternalName, egress
 * masquerade). A proxy mode is taken from PROXY_MODES and runs as soon as `podwired --proxy-mode
 * MODE` starts with a ready proxy component here; otherwise its tests skip with podwired's reason.
 * Then: a second `lab up` over a running lab (the CLI, as a user runs it twice) works and `lab
 * down` leaves nothing. Negative controls (vxlan × nftables): the outside cut off from node1, the
 * router hiding clients behind its own address, a stub record expected different — the NodePort,
 * egress and stub-domain rows FAIL and name their re-run command.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import type { Test } from 'tap';
import type { RowResult } from '../../src/lab/rows';
import { execOk, labTest } from '../harness';
import { REPO_ROOT } from '../lab/podwired';
import { BACKENDS, checkRows, failedRows, leftovers, PROXY_MODES, proxyModeUnavailable, startLab, stateDirFor, stopLab, type RunningLab } from './e2e-lab';

const PREFIX = 'qle2e';

/** Row name prefixes every full lab must have, each at least `n` times. */
const EXPECTED: [RegExp, number][] = [
  [/^podwire status: node\d/, 3],
  [/^pod ↔ pod, same node/, 1],
  [/^pod ↔ pod, across nodes/, 1],
  [/^pod ↔ pod, across subnets/, 1],
  [/^TCP \(nc\), across nodes/, 1],
  [/^UDP echo/, 1],
  [/^Service \S+ by VIP 10\.96\.\S+\/udp/, 1],
  [/^Service \S+ by VIP 10\.96\.\S+:80$/, 2],
  [/^Service by name: http:\/\/api\.shop\//, 1],
  [/^DNS A db\.shop\.svc\.cluster\.local \(headless/, 1],
  [/^DNS SRV /, 3],
  [/^NodePort from outside: api\.shop at node\d/, 3],
  [/^stub domain corp\.lab/, 2],
  [/^ExternalName search\.shop\.svc\.cluster\.local → CNAME search\.corp\.lab/, 1],
  [/^ExternalName by name: http:\/\/search\.shop\//, 1],
  [/^egress masquerade: /, 2],
];

for (const backend of BACKENDS) {
  for (const mode of PROXY_MODES) {
    labTest(`e2e: lab with backend ${backend}, proxy mode ${mode}: every row ok`, { prefix: `${PREFIX}-${backend}-${mode}`, timeout: 150_000 }, async (t, scratch) => {
      const why = await proxyModeUnavailable(scratch, mode);
      if (why) {
        await t.test(`proxy mode ${mode}`, { skip: why }, () => undefined);
        return;
      }
      const prefix = `${PREFIX}${backend === 'vxlan' ? 'v' : 'h'}${mode[0]}`;
      const lab = await startLab(prefix, { backend, proxyMode: mode });
      try {
        t.same(lab.state.components.slice().sort(), ['cni', 'dns', 'overlay', 'proxy'], 'every node runs every component');
        t.notOk(lab.state.fallbackRoutes.length, 'no routes added by the lab itself');
        t.same(failedRows(lab.rows).map((r) => `${r.name}: ${r.detail} (re-run: ${r.command})`), [], `all ${lab.rows.results.length} rows ok`);
        t.same(lab.rows.skipped, [], 'no group skipped');
        for (const [re, n] of EXPECTED) {
          const got = lab.rows.results.filter((r) => re.test(r.name));
          t.ok(got.length >= n, `${got.length} row(s) ${re} (want ≥ ${n})`);
        }
        // The daemons run the mode and backend asked for.
        for (const d of lab.state.daemons) t.match((await import('node:fs')).readFileSync(`/proc/${d.pid!}/cmdline`, 'utf8').replace(/\0/g, ' '), new RegExp(`--backend ${backend} --proxy-mode ${mode}`), `${d.node}: podwired --backend ${backend} --proxy-mode ${mode}`);
        if (backend === 'vxlan' && mode === 'nftables') await negativeControls(t, lab);
      } finally {
        t.same(await stopLab(lab), [], 'lab down: no problems');
        t.same(leftovers(prefix, lab.stateDir), [], 'lab down leaves nothing');
      }
    });
  }
}

/**
 * The new rows can fail: break what each one checks, outside podwired (in the lab's own outside,
 * router and DNS namespaces), and each FAILS with the command to re-run it.
 */
async function negativeControls(t: Test, lab: RunningLab): Promise<void> {
  const node1 = lab.state.nodes.find((n) => n.name === 'node1')!;
  const router = lab.state.namespaces.find((n) => n.endsWith('-router'))!;
  // The outside cannot reach node1; the router hides every client behind its own address.
  await execOk(lab.state.outside!.ns, ['ip', 'route', 'add', 'blackhole', `${node1.ip}/32`]);
  await execOk(router, ['iptables', '-w', '5', '-t', 'nat', '-A', 'POSTROUTING', '-o', `eth${lab.spec.subnets.length}`, '-j', 'MASQUERADE']);
  // The stub domain's rows compare the answer with the server's records: expect another address
  // (the node-local cache would keep answering the old ones if the server were simply killed).
  const records = lab.state.dnsServers![0]!.records;
  const www = records['www.corp.lab']!;
  records['www.corp.lab'] = { ...www, A: ['198.19.0.81'] };
  const rows = await checkRows(lab);
  records['www.corp.lab'] = www;
  const failed = (re: RegExp): RowResult[] => failedRows(rows).filter((r) => re.test(r.name));
  t.equal(failed(/^NodePort from outside: .* at node1 /).length, 1, 'NodePort at node1 FAILS when the outside cannot reach node1');
  t.equal(failed(/^NodePort from outside: .* at node[23] /).length, 0, 'the other nodes\' NodePort rows stay ok');
  t.match(failed(/^NodePort from outside: .* at node1 /)[0]?.command ?? '', /lab exec outside .*-- curl -s -m 3 http:\/\/198\.18\.0\.1:30080\//, 'its re-run command runs curl in the outside namespace');
  const egress = failed(/^egress masquerade: /);
  t.equal(egress.length, 2, 'both egress rows FAIL when the outside sees another address than the node IP');
  t.match(egress[0]?.detail ?? '', /outside saw 198\.19\.0\.254, expected the node IP/, 'and say what the outside saw');
  t.same(failed(/^stub domain corp\.lab/).map((r) => `${r.name}: ${r.detail}`), ['stub domain corp.lab (→ corp 198.18.0.53): A www.corp.lab: 198.19.0.80'], 'the stub-domain row FAILS when the answer is not the record');
  t.equal(failed(/^DNS A web\.shop/).length, 0, 'cluster names still resolve');
}

function podwire(args: string[], timeoutMs = 150_000): Promise<{ code: number | string; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin/podwire'), ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd: REPO_ROOT });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs); // a backstop, not an assertion
    child.on('exit', (code, sig) => {
      clearTimeout(timer);
      resolve({ code: code ?? String(sig), out, err });
    });
  });
}

labTest('e2e: a second `lab up` on the same machine replaces the first; `lab down` leaves nothing', { prefix: `${PREFIX}-again`, timeout: 200_000 }, async (t) => {
  const prefix = `${PREFIX}a`;
  const stateDir = stateDirFor(prefix);
  const common = ['--state-dir', stateDir, '--prefix', prefix];
  try {
    const first = await podwire(['lab', 'up', ...common, '--backend', 'host-gw']);
    t.equal(first.code, 0, 'first lab up exits 0', { out: first.out.slice(-3000), err: first.err.slice(-1000) });
    const second = await podwire(['lab', 'up', ...common]);
    t.equal(second.code, 0, 'second lab up exits 0', { out: second.out.slice(-3000), err: second.err.slice(-1000) });
    t.match(second.out, /removing the previous lab/, 'it removed the first lab first');
    t.match(second.out, /\n(\d+)\/\1 rows ok\n/, 'every row ok the second time');
    t.notMatch(second.out, /FAILED/, 'no FAILED row');
  } finally {
    const down = await podwire(['lab', 'down', ...common]);
    t.equal(down.code, 0, 'lab down exits 0', { out: down.out + down.err });
  }
  t.same(leftovers(prefix, stateDir), [], 'nothing left');
});
