/**
 * The proxy as a process inside node namespaces (test-netns/proxy/host.ts): LoadBalancer IP and
 * externalIP from outside with eTP Local (client IP kept), DROP on a node without a local
 * endpoint, healthCheckNodePort answers on both nodes, /healthz, and a kill -9 + restart under
 * a request loop that adopts the table (no element change) without a failed request.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { exec, labTest, type Lab } from '../harness';
import { slice, svc } from '../../src/proxy/testing';
import { connectOutcome, get, namedServer } from './helpers';

const HOST = path.join(__dirname, 'host.js');

function spawnHost(lab: Lab, ns: string, objects: string, nodeName: string) {
  return lab.spawn(ns, [process.execPath, HOST, '--objects', objects, '--node-name', nodeName, '--healthz', '127.0.0.1:10256']);
}

labTest('proxy host: LB IP, externalIP, eTP Local, healthCheckNodePort, /healthz, kill -9 restart', { prefix: 'pwp-host', requires: ['veth', 'nftables', 'conntrack'], timeout: 170_000 }, async (t, lab) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pwp-host-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ul = await lab.addUnderlay();
  const a = await lab.addNode(ul);
  const b = await lab.addNode(ul);
  const out = await lab.addNode(ul, { role: 'out' });
  const pod = await lab.addPod('pa');
  await lab.wirePod(pod, a, { address: '10.244.1.2', gateway: '10.244.1.1' });
  await namedServer(lab, pod, 'pa');
  // The "cloud" routes the LB IP and the external IP to node a.
  await lab.ip(out.ns, ['route', 'add', '198.19.0.10/31', 'via', a.ip]);
  await lab.ip(out.ns, ['route', 'add', '198.19.0.12/31', 'via', a.ip]);
  const objects = path.join(dir, 'objects.json');
  writeFileSync(
    objects,
    JSON.stringify([
      svc('ns/lb', '10.96.0.10', { type: 'LoadBalancer', loadBalancerIPs: ['198.19.0.10'], externalIPs: ['198.19.0.11'], externalTrafficPolicy: 'Local', healthCheckNodePort: 32080, ports: [{ name: 'http', port: 80, nodePort: 30080 }] }),
      slice('ns/lb', [{ ip: '10.244.1.2', node: 'node-a' }], [{ name: 'http', port: 8080 }]),
      svc('ns/fw-deny', '10.96.0.12', { type: 'LoadBalancer', loadBalancerIPs: ['198.19.0.12'], loadBalancerSourceRanges: ['203.0.113.0/24'], ports: [{ name: 'http', port: 80, nodePort: 30081 }] }),
      slice('ns/fw-deny', [{ ip: '10.244.1.2', node: 'node-a' }], [{ name: 'http', port: 8080 }]),
      svc('ns/fw-allow', '10.96.0.13', { type: 'LoadBalancer', loadBalancerIPs: ['198.19.0.13'], loadBalancerSourceRanges: ['198.18.0.0/24'], ports: [{ name: 'http', port: 80, nodePort: 30082 }] }),
      slice('ns/fw-allow', [{ ip: '10.244.1.2', node: 'node-a' }], [{ name: 'http', port: 8080 }]),
    ]),
  );
  let ha = spawnHost(lab, a.ns, objects, 'node-a');
  const hb = spawnHost(lab, b.ns, objects, 'node-b');
  await ha.waitForOutput(/synced/, 30_000);
  await hb.waitForOutput(/synced/, 30_000);

  const lb = await get(out.ns, 'http://198.19.0.10/');
  t.ok(lb.ok, `LoadBalancer IP answers ${lb.err}`);
  t.equal(lb.body, `pa ${out.ip}`, 'eTP Local keeps the client IP');
  const ext = await get(out.ns, 'http://198.19.0.11/');
  t.equal(ext.body, `pa ${out.ip}`, 'externalIP answers, client IP kept');
  const npA = await get(out.ns, `http://${a.ip}:30080/`);
  t.equal(npA.body, `pa ${out.ip}`, 'NodePort on the node with the endpoint');
  const npB = await connectOutcome(out.ns, b.ip, 30080, 2);
  t.equal(npB.outcome, 'TimeoutError', 'NodePort on a node without a local endpoint: dropped');

  const denied = await connectOutcome(out.ns, '198.19.0.12', 80, 2);
  t.equal(denied.outcome, 'TimeoutError', 'loadBalancerSourceRanges: a source outside the ranges is dropped before DNAT');
  const allowed = await get(out.ns, 'http://198.19.0.13/');
  t.ok(allowed.ok && allowed.body.startsWith('pa '), `loadBalancerSourceRanges: a source inside the ranges gets through (${allowed.body}${allowed.err})`);

  const hcA = await exec(out.ns, ['curl', '-sS', '--max-time', '3', '-w', '\n%{http_code}', `http://${a.ip}:32080/`]);
  const [bodyA, codeA] = hcA.stdout.trim().split('\n');
  t.equal(codeA, '200', 'healthCheckNodePort: 200 where the endpoint is');
  t.same(JSON.parse(bodyA ?? '{}'), { service: { namespace: 'ns', name: 'lb' }, localEndpoints: 1, serviceProxyHealthy: true });
  const hcB = await exec(out.ns, ['curl', '-sS', '--max-time', '3', '-w', '\n%{http_code}', `http://${b.ip}:32080/`]);
  const [bodyB, codeB] = hcB.stdout.trim().split('\n');
  t.equal(codeB, '503', 'healthCheckNodePort: 503 without a local endpoint');
  t.equal((JSON.parse(bodyB ?? '{}') as { localEndpoints: number }).localEndpoints, 0);

  const hz = await exec(a.ns, ['curl', '-sS', '--max-time', '3', '-w', '\n%{http_code}', 'http://127.0.0.1:10256/healthz']);
  const [hzBody, hzCode] = hz.stdout.trim().split('\n');
  t.equal(hzCode, '200', '/healthz 200 after a sync');
  t.same(Object.keys(JSON.parse(hzBody ?? '{}')), ['lastUpdated', 'currentTime', 'nodeEligible']);
  const lz = await exec(a.ns, ['curl', '-sS', '--max-time', '3', '-o', '/dev/null', '-w', '%{http_code}', 'http://127.0.0.1:10256/livez']);
  t.equal(lz.stdout, '200', '/livez');

  // kill -9 under a request loop; the rules stay in the kernel, the restart adopts them.
  let failed = 0;
  let done = 0;
  let stop = false;
  const loop = (async () => {
    for (let i = 0; i < 200 && !stop; i++) {
      const r = await get(out.ns, 'http://198.19.0.10/', 2);
      if (!r.ok) failed++;
      done++;
    }
  })();
  await new Promise((r) => setTimeout(r, 300));
  process.kill(-ha.pid!, 'SIGKILL');
  await ha.exited;
  ha = spawnHost(lab, a.ns, objects, 'node-a');
  const synced = await ha.waitForOutput(/synced (\{.*\})/, 30_000);
  await new Promise((r) => setTimeout(r, 300));
  stop = true;
  await loop;
  t.ok(done >= 3, `${done} requests during the restart`);
  t.equal(failed, 0, 'no failed request across kill -9 and restart');
  t.match(ha.stdout + ha.stderr, /adopted the existing nftables table/, 'the restart adopted the table');
  t.equal((JSON.parse(synced[1]!) as { elementChanges: number }).elementChanges, 0, 'first sync after the restart changes no element');
  const term = await ha.stop();
  t.equal(term.exitCode, 0, 'SIGTERM: clean exit');
  await hb.stop();
});
