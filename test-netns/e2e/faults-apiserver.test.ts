/**
 * Fault test: the API server goes away for a while. node2's podwired is restarted on a kubeconfig
 * pointing at the API-server fixture (test-netns/fixtures/apiserver, run inside node2's namespace,
 * loaded with the lab's objects); the other nodes keep reading the manifest folder. Under load
 * (curl by VIP and by name, pings, dig loops from pods on node1 and node2):
 *   - the fixture stops listening and cuts every connection for OUTAGE_MS (a short outage standing
 *     for the issue's 60 s: podwired's reflector retries with backoff, the same code path);
 *   - meanwhile a Service is added to the fixture's store;
 *   - during the outage node2's data plane is unchanged and every load loop keeps working;
 *   - after the server is back, node2 catches up: the new Service's VIP is programmed and answers.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { readManifestDocs } from '../../src/lab/topology';
import { exec, labTest } from '../harness';
import { daemonArgv, dataPlane, failedRows, checkRows, leftovers, restartDaemon, standardLoad, startLab, stopLab, waitExit, waitReady, type LoadResult } from './e2e-lab';

const PREFIX = 'qlfa';
const OUTAGE_MS = 10_000;
const CHILD = path.join(__dirname, 'apiserver-child.js');
const RESOURCE: Record<string, string> = { Node: 'nodes', Service: 'services', EndpointSlice: 'endpointslices', Pod: 'pods', Namespace: 'namespaces', ConfigMap: 'configmaps' };

function report(results: LoadResult[]): Record<string, string> {
  return Object.fromEntries(results.map((r) => [r.name, `${r.sent} sent, ${r.failed} failed${r.detail ? `: ${r.detail}` : ''}`]));
}

labTest('faults: the API server goes away and comes back', { prefix: `${PREFIX}-x`, timeout: 200_000 }, async (t) => {
  const lab = await startLab(PREFIX);
  const dir = `/tmp/${PREFIX}-${process.pid}-api`;
  mkdirSync(dir, { recursive: true });
  const kubeconfig = path.join(dir, 'kubeconfig');
  const node2 = lab.state.daemons.find((d) => d.node === 'node2')!;
  const objects: Record<string, unknown[]> = {};
  for (const d of readManifestDocs(lab.state.manifests)) {
    const r = RESOURCE[String(d.doc.kind)];
    if (r) (objects[r] ??= []).push(d.doc);
  }
  const child = spawn('ip', ['netns', 'exec', node2.ns, process.execPath, CHILD, JSON.stringify({ objects, kubeconfig })], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (out += b.toString()));
  const until = async (re: RegExp, ms = 10_000): Promise<boolean> => {
    const deadline = Date.now() + ms;
    while (!re.test(out) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    return re.test(out);
  };
  let n = 0;
  const command = async (line: string): Promise<boolean> => {
    n++;
    const mark = out.length;
    child.stdin.write(`${line}\n`);
    const deadline = Date.now() + 10_000;
    while (!/(OK|ERR) /.test(out.slice(mark)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    return out.slice(mark).includes('OK ');
  };
  try {
    t.ok(await until(/READY \d+/), 'the API-server fixture runs in node2', { out });
    // node2's podwired now reads the API server instead of the folder.
    const argv = daemonArgv(node2);
    const i = argv.indexOf('--manifests');
    const apiArgv = [...argv.slice(0, i), '--kubeconfig', kubeconfig, ...argv.slice(i + 2)];
    const old = node2.pid;
    process.kill(old!, 'SIGTERM');
    t.ok(await waitExit(old), 'node2: the manifest-reading podwired stopped');
    restartDaemon(node2, apiArgv);
    t.equal(await waitReady(node2, 30_000, node2.pid), true, 'node2: podwired on --kubeconfig is ready');
    t.same(failedRows(await checkRows(lab)), [], 'every row ok with node2 on the API server');

    const before = await dataPlane(node2.ns);
    const load = standardLoad(lab, path.join(dir, 'load'));
    await new Promise((r) => setTimeout(r, 1_000));
    t.ok(await command('stop'), 'the API server goes away (listener closed, connections cut)');
    const late = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'late', namespace: 'shop' }, spec: { type: 'ClusterIP', clusterIP: '10.96.0.50', clusterIPs: ['10.96.0.50'], selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] } };
    const lateSlice = { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'late-1abcd', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'late' } }, addressType: 'IPv4', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }], endpoints: (objects.endpointslices as { metadata: { name: string }; endpoints: unknown[] }[]).find((s) => s.metadata.name.startsWith('web-'))!.endpoints };
    t.ok(await command(`put services ${JSON.stringify(late)}`), 'a Service is added while the server is away');
    t.ok(await command(`put endpointslices ${JSON.stringify(lateSlice)}`), 'and its EndpointSlice');
    await new Promise((r) => setTimeout(r, OUTAGE_MS));
    t.same(await dataPlane(node2.ns), before, `after ${OUTAGE_MS / 1000} s without the API server, node2's data plane is unchanged`);
    t.ok(await command('start'), 'the API server is back');
    const deadline = Date.now() + 30_000;
    let nft = '';
    while (Date.now() < deadline && !nft.includes('10.96.0.50')) {
      nft = (await exec(node2.ns, ['nft', '-s', 'list', 'ruleset'])).stdout;
      if (!nft.includes('10.96.0.50')) await new Promise((r) => setTimeout(r, 250));
    }
    t.ok(nft.includes('10.96.0.50'), 'node2 caught up: the Service added during the outage is programmed');
    const web1 = lab.state.pods.find((p) => p.name === 'web-1')!;
    // The VIP may be programmed well before its endpoints: each resource's reflector reconnects on
    // its own jittered backoff (0.8 s doubling, ×1.5 jitter), so after a 10 s outage the
    // EndpointSlice watch can come back up to ~10 s after the Service watch. Bounded tries to 40 s.
    const answerDeadline = Date.now() + 40_000;
    let r = await exec(web1.ns, ['curl', '-s', '-m', '3', 'http://10.96.0.50/']);
    for (let i = 0; i < 160 && Date.now() < answerDeadline && !/^server web-\d/.test(r.stdout); i++) {
      await new Promise((res) => setTimeout(res, 250));
      r = await exec(web1.ns, ['curl', '-s', '-m', '3', 'http://10.96.0.50/']);
    }
    t.match(r.stdout, /^server web-\d/, 'and answers from node2\'s pod web-1', { out: r.stdout + r.stderr });
    const results = await load.stop();
    t.ok(results.every((x) => x.sent >= 5), 'every loop ran', report(results));
    t.same(results.filter((x) => x.failed > 0).map((x) => x.name), [], '0 failed requests, 0 lost pings, 0 failed queries through the outage', report(results));
  } finally {
    child.stdin.end();
    child.kill('SIGTERM');
    t.same(await stopLab(lab), [], 'lab down: no problems');
    rmSync(dir, { recursive: true, force: true });
    t.same(leftovers(PREFIX, lab.stateDir), [], 'nothing left');
    void n;
  }
});
