/**
 * Fault tests on a running lab (vxlan, nftables) that change its input or hammer its CNI binary:
 *   - broken documents in the manifest folder every podwired reads (a bad field in an existing
 *     Service, a new file with a bad field, a YAML syntax error): every node's data plane is
 *     unchanged, every row still ok, and each node's `podwire status` names the file, the document
 *     and the field; fixing the files clears the problems.
 *   - a node removed from the manifests: its route, neighbour and FDB entries (its podCIDR, its
 *     VTEP) are removed on every other node; put back, they return and every row is ok again.
 *   - 1,000 CNI operations (500 ADD + 500 DEL) at 4-way concurrency through the CNI binary node1's
 *     podwired installed, exec'd as a runtime does: every one succeeds, and afterwards there are 0
 *     leaked IPs (the IPAM state), links, rules or routes on node1.
 */
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { DaemonStatus } from '../../src/daemon/daemon';
import { daemonStatus } from '../../src/lab/up';
import { exec, labTest, netnsPath } from '../harness';
import { pluginConfig, readConflist } from '../lab/cni-client';
import { checkRows, dataPlane, dataPlanes, failedRows, leftovers, startLab, stopLab } from './e2e-lab';

const PREFIX = 'qlfm';
const CNI_OPS = 1000;
const CNI_CONCURRENCY = 4;

async function poll<T>(what: () => Promise<T>, ok: (v: T) => boolean, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let v = await what();
  while (!ok(v) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    v = await what();
  }
  return v;
}

function listTree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const n of readdirSync(d)) {
      const f = path.join(d, n);
      if (statSync(f).isDirectory()) walk(f);
      else out.push(`${path.relative(dir, f)} ${readFileSync(f, 'utf8').length}`);
    }
  };
  walk(dir);
  return out.sort();
}

labTest('faults: broken manifests, a node removed, 1,000 CNI operations', { prefix: `${PREFIX}-x`, timeout: 300_000 }, async (t, scratch) => {
  const lab = await startLab(PREFIX);
  const mdir = lab.state.manifests;
  try {
    t.same(failedRows(lab.rows), [], 'the lab is healthy before the faults');
    const statuses = (): Promise<(DaemonStatus | string)[]> => Promise.all(lab.state.daemons.map((d) => daemonStatus(d.socket)));

    await t.test('broken documents: data plane unchanged, the error names file, document and field', async (t) => {
      const before = await dataPlanes(lab.state);
      const services = readFileSync(path.join(mdir, 'services.yaml'), 'utf8');
      const webDoc = services.split(/^---$/m).findIndex((d) => /name: web, namespace: shop/.test(d));
      t.ok(webDoc >= 0, `the web Service is document ${webDoc} of services.yaml`);
      writeFileSync(path.join(mdir, 'services.yaml'), services.replace('ports: [{ name: http, port: 80, targetPort: 8080, protocol: TCP }]', 'ports: [{ name: http, port: 70000, targetPort: 8080, protocol: TCP }]'));
      writeFileSync(
        path.join(mdir, 'zz-broken.yaml'),
        [
          'apiVersion: v1\nkind: Namespace\nmetadata: { name: extra, uid: lab-ns-extra }',
          'apiVersion: v1\nkind: Service\nmetadata: { name: bad, namespace: shop, uid: lab-svc-bad }\nspec: { type: ClusterIP, clusterIP: 10.96.0.999, clusterIPs: [10.96.0.999], ports: [{ port: 80, protocol: TCP }] }',
        ].join('\n---\n') + '\n',
      );
      writeFileSync(path.join(mdir, 'zz-syntax.yaml'), 'apiVersion: v1\nkind: Service\nmetadata: { name: [unclosed\n');
      const want = (p: DaemonStatus['source']['problems']): boolean =>
        p.some((x) => x.file === 'services.yaml' && x.documentIndex === webDoc && x.field === 'spec.ports[0].port') &&
        p.some((x) => x.file === 'zz-broken.yaml' && x.documentIndex === 1 && /^spec\.clusterIPs?(\[0\])?$/.test(x.field ?? '')) &&
        p.some((x) => x.file === 'zz-syntax.yaml' && /line \d+/.test(x.reason));
      const st = await poll(statuses, (all) => all.every((s) => typeof s !== 'string' && want(s.source.problems)), 15_000);
      for (const [i, s] of st.entries()) {
        const problems = typeof s === 'string' ? s : s.source.problems.map((p) => `${p.file} document ${p.documentIndex} ${p.field ?? ''}: ${p.reason}`);
        t.ok(typeof s !== 'string' && want(s.source.problems), `${lab.state.daemons[i]!.node}: podwire status names services.yaml document ${webDoc} spec.ports[0].port, zz-broken.yaml document 1 spec.clusterIP(s), zz-syntax.yaml (YAML syntax, line)`, { problems });
      }
      const node1Log = readFileSync(lab.state.daemons[0]!.log, 'utf8');
      t.match(node1Log, /"file":"services\.yaml","documentIndex":\d+.*"field":"spec\.ports\[0\]\.port"/, 'the log line names file, document and field too');
      // Give every podwired a moment past the report, then compare.
      await new Promise((r) => setTimeout(r, 1_000));
      t.same(await dataPlanes(lab.state), before, 'every node\'s data plane is unchanged (routes, rules, links, nftables, iptables, neighbours, FDB)');
      t.same(failedRows(await checkRows(lab)), [], 'every row still ok (web keeps its last good port 80)');
      // Fixed: the problems clear.
      writeFileSync(path.join(mdir, 'services.yaml'), services);
      writeFileSync(path.join(mdir, 'zz-broken.yaml'), 'apiVersion: v1\nkind: Namespace\nmetadata: { name: extra, uid: lab-ns-extra }\n');
      writeFileSync(path.join(mdir, 'zz-syntax.yaml'), '# fixed\n');
      const fixed = await poll(statuses, (all) => all.every((s) => typeof s !== 'string' && s.source.problems.length === 0), 15_000);
      t.ok(fixed.every((s) => typeof s !== 'string' && s.source.problems.length === 0), 'fixing the files clears every problem', { fixed: fixed.map((s) => (typeof s === 'string' ? s : s.source.problems)) });
    });

    await t.test('a node removed from the manifests: its state is cleaned up on every node', async (t) => {
      const gone = lab.state.nodes.find((n) => n.name === 'node3')!;
      const others = lab.state.nodes.filter((n) => n !== gone);
      const nodes = readFileSync(path.join(mdir, 'nodes.yaml'), 'utf8');
      const mentions = async (ns: string): Promise<string[]> => {
        const dp = await dataPlane(ns);
        const net = gone.podCIDR.replace(/\.0\/24$/, '.');
        return [...dp.routes.split('\n'), ...dp.fdb.split('\n'), ...(await exec(ns, ['ip', 'neigh', 'show'])).stdout.split('\n')].filter((l) => l.includes(net) || l.includes(`${gone.ip} `) || l.endsWith(gone.ip));
      };
      for (const n of others) t.ok((await mentions(n.ns)).length > 0, `${n.name} has routes/FDB entries for ${gone.name} before`);
      writeFileSync(path.join(mdir, 'nodes.yaml'), nodes.split(/^---$/m).filter((d) => !d.includes(`name: ${gone.name},`)).join('---'));
      for (const n of others) {
        const left = await poll(() => mentions(n.ns), (l) => l.length === 0, 20_000);
        t.same(left, [], `${n.name}: no route, neighbour or FDB entry for ${gone.name} (${gone.podCIDR}, ${gone.ip}) is left`);
      }
      writeFileSync(path.join(mdir, 'nodes.yaml'), nodes);
      for (const n of others) {
        const back = await poll(() => mentions(n.ns), (l) => l.some((x) => x.startsWith(gone.podCIDR)), 20_000);
        t.ok(back.some((x) => x.startsWith(gone.podCIDR)), `${n.name}: ${gone.name} is back once its Node is back`, { back });
      }
      const rows = await poll(() => checkRows(lab), (r) => failedRows(r).length === 0, 20_000);
      t.same(failedRows(rows), [], 'every row ok again');
    });

    await t.test(`${CNI_OPS} CNI ADD/DEL at ${CNI_CONCURRENCY}-way concurrency: 0 leaked IPs, links, rules, routes`, async (t) => {
      const d = lab.state.daemons.find((x) => x.node === 'node1')!;
      const conf = readConflist(path.join(d.dir, 'net.d', '10-podwire.conflist'));
      const stdin = pluginConfig(conf, 0);
      const ipam = path.join(d.dir, 'state');
      const before = { plane: await dataPlane(d.ns), ipam: listTree(ipam) };
      const workers = await Promise.all(Array.from({ length: CNI_CONCURRENCY }, (_, i) => scratch.addNetns(`cni${i}`)));
      const failures: string[] = [];
      const ips = new Set<string>();
      let ops = 0;
      const perWorker = CNI_OPS / 2 / CNI_CONCURRENCY;
      const call = async (cmd: 'ADD' | 'DEL', ns: string, id: string): Promise<string | undefined> => {
        const r = await exec(d.ns, [path.join(d.dir, 'cni-bin', 'podwire')], {
          env: {
            CNI_COMMAND: cmd,
            CNI_CONTAINERID: id,
            CNI_NETNS: netnsPath(ns),
            CNI_IFNAME: 'eth0',
            CNI_PATH: path.join(d.dir, 'cni-bin'),
            CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=churn;K8S_POD_NAME=${id};K8S_POD_INFRA_CONTAINER_ID=${id}`,
            PODWIRE_CONTROL_SOCKET: d.socket,
          },
          input: stdin,
          timeoutMs: 30_000,
        });
        ops++;
        if (r.exitCode !== 0) failures.push(`${cmd} ${id}: exit ${String(r.exitCode)} ${(r.stdout + r.stderr).slice(0, 200)}`);
        return cmd === 'ADD' ? /"address":\s*"([\d.]+)\//.exec(r.stdout)?.[1] : undefined;
      };
      await Promise.all(
        workers.map(async (ns, w) => {
          for (let i = 0; i < perWorker && failures.length < 10; i++) {
            const id = `${PREFIX}-churn-${w}-${i}`;
            const addr = await call('ADD', ns, id);
            if (addr) ips.add(addr);
            await call('DEL', ns, id);
          }
        }),
      );
      t.equal(ops, CNI_OPS, `${ops} CNI operations ran`);
      t.same(failures, [], 'every ADD and DEL succeeded');
      t.ok(ips.size > 1, `ADD handed out addresses (${ips.size} distinct)`);
      const after = { plane: await dataPlane(d.ns), ipam: listTree(ipam) };
      t.same(after.ipam, before.ipam, '0 leaked IPs: the IPAM state is what it was');
      t.same(after.plane.links, before.plane.links, '0 leaked links on node1');
      t.same(after.plane.rules, before.plane.rules, '0 leaked rules');
      t.same(after.plane.routes, before.plane.routes, '0 leaked routes');
      t.same(after.plane.neigh, before.plane.neigh, '0 leaked permanent neighbours');
      for (const ns of workers) t.same((await exec(ns, ['ip', '-o', 'link', 'show'])).stdout.trim().split('\n').length, 1, `${ns}: only lo is left`);
      t.same(failedRows(await checkRows(lab)), [], 'every row still ok');
    });
  } finally {
    t.same(await stopLab(lab), [], 'lab down: no problems');
    t.same(leftovers(PREFIX, lab.stateDir), [], 'nothing left');
  }
});
