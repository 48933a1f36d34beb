/**
 * The real podwired (bin/podwired) with `--enable proxy --proxy-mode iptables` in a lab node,
 * fed Services and EndpointSlices from --manifests: the ClusterIP answers from the node and
 * from an outside namespace, a Service without endpoints is refused, a restart adopts the
 * chains, and `podwired --cleanup` removes every chain of ours and nothing else.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { exec, labTest } from '../harness';
import { createRunDir, HEALTH_LISTEN, METRICS_LISTEN, Podwired, PODWIRED_BIN, SHIM, writeNodeManifests } from '../lab/podwired';
import { connectOutcome, get, namedServer } from './helpers';

labTest('podwired --proxy-mode iptables: ClusterIP, REJECT, restart adopts, --cleanup', { prefix: 'qi-pwd', requires: ['veth', 'conntrack'], timeout: 150_000 }, async (t, lab) => {
  const run = createRunDir('ipt-pwd');
  t.teardown(() => run.remove());
  const ul = await lab.addUnderlay();
  const node = await lab.addNode(ul);
  const out = await lab.addNode(ul, { role: 'out' });
  await lab.ip(out.ns, ['route', 'add', '10.96.0.0/12', 'via', node.ip]);
  await lab.ip(node.ns, ['route', 'add', '10.96.0.0/12', 'via', out.ip]);
  await namedServer(lab, node.ns, 'node-server');
  await exec(node.ns, ['iptables-legacy', '-t', 'nat', '-N', 'OTHER-CHAIN']);
  writeNodeManifests(run.manifests, [{ name: 'node-1', podCIDR: '10.244.1.0/24', internalIP: node.ip }]);
  writeFileSync(
    path.join(run.manifests, 'svc.yaml'),
    [
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'ns', uid: 'svc-web', resourceVersion: '1' }, spec: { type: 'ClusterIP', clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10'], ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }] } },
      { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'web-1', namespace: 'ns', uid: 'eps-web', resourceVersion: '1', labels: { 'kubernetes.io/service-name': 'web' } }, addressType: 'IPv4', endpoints: [{ addresses: [node.ip], conditions: { ready: true }, nodeName: 'node-1' }], ports: [{ name: 'http', port: 8080, protocol: 'TCP' }] },
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'empty', namespace: 'ns', uid: 'svc-empty', resourceVersion: '1' }, spec: { type: 'ClusterIP', clusterIP: '10.96.0.20', clusterIPs: ['10.96.0.20'], ports: [{ port: 80, protocol: 'TCP', targetPort: 8080 }] } },
    ].map((o) => YAML.stringify(o)).join('---\n'),
  );
  const args = ['--enable', 'proxy', '--proxy-mode', 'iptables', '--proxy-healthz-bind-address', '127.0.0.1:10356'];
  const ours = async (): Promise<string[]> => {
    const lines: string[] = [];
    for (const table of ['nat', 'filter', 'mangle']) for (const l of (await exec(node.ns, ['iptables-legacy-save', '-t', table])).stdout.split('\n')) if (/^:(PODWIRE-|PW-)|-j PODWIRE-/.test(l)) lines.push(l);
    return lines;
  };
  const waitFor = async (ok: () => Promise<boolean>, what: string): Promise<void> => {
    for (let i = 0; i < 100; i++) {
      if (await ok()) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    t.fail(`timed out waiting for ${what}`);
  };

  let d = new Podwired(lab, node.ns, { nodeName: 'node-1', run, extraArgs: args, logLevel: 'info' });
  const ready = await d.waitReady();
  t.ok(ready.ready, `ready ${ready.last} ${ready.ready ? '' : d.tail()}`);
  await waitFor(async () => (await get(node.ns, 'http://10.96.0.10/', 1)).ok, 'the ClusterIP');
  const fromNode = await get(node.ns, 'http://10.96.0.10/');
  t.match(fromNode.body, /^node-server /, `the ClusterIP answers from the node (${fromNode.err})`);
  const fromOut = await get(out.ns, 'http://10.96.0.10/');
  t.equal(fromOut.body, `node-server ${out.ip}`, 'and from outside, source kept (the endpoint is local)');
  const refused = await connectOutcome(node.ns, '10.96.0.20', 80, 3); // from the node: this lab node does not forward
  t.equal(refused.outcome, 'ConnectionRefusedError', `no endpoints: refused (${refused.outcome})`);
  const before = await ours();
  t.ok(before.some((l) => /^:PW-SVC-/.test(l)), 'our chains are in iptables-legacy');
  const metrics = await exec(node.ns, ['curl', '-s', '--max-time', '2', `http://${METRICS_LISTEN}/metrics`]);
  t.match(metrics.stdout, /kubeproxy_sync_proxy_rules_iptables_total\{table="nat"\} [1-9]/, 'rule count metric');
  const hz = await exec(node.ns, ['curl', '-s', '--max-time', '2', '-o', '/dev/null', '-w', '%{http_code}', 'http://127.0.0.1:10356/healthz']);
  t.equal(hz.stdout, '200', 'proxy /healthz');

  t.equal((await d.stop()).exitCode, 0, 'SIGTERM: exit 0');
  t.same(await ours(), before, 'a stop leaves the rules (the next start adopts them)');
  t.equal((await get(out.ns, 'http://10.96.0.10/')).body, `node-server ${out.ip}`, 'traffic flows while podwired is down');
  d = new Podwired(lab, node.ns, { nodeName: 'node-1', run, extraArgs: args, logLevel: 'info' });
  t.ok((await d.waitReady()).ready, 'restarted');
  await waitFor(async () => d.logLines().some((l) => /adopted the existing iptables chains/.test(String(l.msg))), 'the adoption log');
  t.same(await ours(), before, 'the restart kept the same rules');
  await d.stop();

  mkdirSync(path.join(run.dir, 'cleanup'), { recursive: true });
  const c = await exec(node.ns, [process.execPath, PODWIRED_BIN, '--config', path.join(run.dir, 'node-1', 'config.yaml'), '--node-name', 'node-1', '--manifests', run.manifests, '--cni-conf-dir', path.join(run.dir, 'cleanup', 'net.d'), '--cni-bin-dir', path.join(run.dir, 'cleanup', 'bin'), '--cni-bin-source', SHIM, '--state-dir', path.join(run.dir, 'cleanup', 'state'), '--control-socket', path.join(run.dir, 'cleanup', 'sock'), '--health-listen', HEALTH_LISTEN, '--metrics-listen', METRICS_LISTEN, ...args, '--cleanup']);
  t.equal(c.exitCode, 0, `--cleanup exit 0 ${c.stderr.slice(-300)}`);
  t.same(await ours(), [], '--cleanup removed every chain and jump of ours');
  t.match((await exec(node.ns, ['iptables-legacy-save', '-t', 'nat'])).stdout, /^:OTHER-CHAIN/m, 'someone else\'s chain is still there');
});
