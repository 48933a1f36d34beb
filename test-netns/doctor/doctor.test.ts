/**
 * `podwire doctor` on real nodes: two podwireds (vxlan, cni + overlay + proxy + dns). First a
 * control: both nodes are healthy and doctor says 0 warn, 0 FAIL, exit 0. Then node n1 is
 * broken three ways — ip_forward off, a foreign `ip filter` FORWARD chain with policy drop
 * (what Docker installs), a flannel conflist that sorts before ours — and doctor reports FAIL
 * for exactly those three, exit 1, while n2 stays clean. Also through `--netns`. Then one
 * Service's element is deleted from our nft table behind podwired's back, and doctor names
 * that Service. A second lab does the same in iptables mode (one rule deleted).
 */
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { request } from '../../src/daemon/route-server';
import { exec, labTest } from '../harness';
import { createRunDir, Podwired, PODWIRE_CLI, writeNodeManifests } from '../lab/podwired';

interface Report {
  status: string;
  counts: { ok: number; warn: number; FAIL: number };
  findings: { check: string; subject: string; level: string; detail: string; fix?: string }[];
}

// No kube-dns Service: with the proxy component on, a kube-dns VIP without endpoints is REJECTed
// by the proxy's no-endpoints rule even when podwired serves it (--dns-listen), which doctor
// reports as FAIL (the unit tests cover the VIP cases).
const SERVICES = `apiVersion: v1
kind: Service
metadata: { name: kubernetes, namespace: default, uid: qx-svc-kubernetes }
spec: { type: ClusterIP, clusterIP: 10.96.0.1, clusterIPs: [10.96.0.1], ports: [{ name: https, port: 443, targetPort: 6443, protocol: TCP }] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: kubernetes, namespace: default, uid: qx-eps-kubernetes, labels: { kubernetes.io/service-name: kubernetes } }
addressType: IPv4
ports: [{ name: https, port: 6443, protocol: TCP }]
endpoints: [{ addresses: [198.18.0.1], conditions: { ready: true } }]
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: default, uid: qx-svc-web }
spec: { type: ClusterIP, clusterIP: 10.96.0.80, clusterIPs: [10.96.0.80], ports: [{ name: http, port: 80, targetPort: 8080, protocol: TCP }] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: web-1, namespace: default, uid: qx-eps-web, labels: { kubernetes.io/service-name: web } }
addressType: IPv4
ports: [{ name: http, port: 8080, protocol: TCP }]
endpoints: [{ addresses: [198.18.0.2], conditions: { ready: true } }]
---
apiVersion: v1
kind: Namespace
metadata: { name: default, uid: qx-ns-default }
---
apiVersion: v1
kind: Namespace
metadata: { name: kube-system, uid: qx-ns-kube-system }
`;

// Our netns prefix (the harness names namespaces <prefix>-<pid>-<seq>-<role>).
const PREFIX = 'qdoc';

const doctorIn = async (d: Podwired, extra: string[] = []): Promise<{ code: number; report: Report; stderr: string }> => {
  const r = await exec(d.ns, [process.execPath, PODWIRE_CLI, 'doctor', '--json', '--socket', d.socket, '--cni-conf-dir', d.confDir, ...extra], { timeoutMs: 60_000 });
  return { code: r.exitCode ?? -1, report: JSON.parse(r.stdout) as Report, stderr: r.stderr };
};

const notOk = (r: Report): string[] => r.findings.filter((f) => f.level !== 'ok').map((f) => `${f.level} ${f.check}: ${f.subject}`);

labTest('podwire doctor reports exactly the broken conditions of a node', { prefix: PREFIX, requires: ['veth', 'bridge', 'vxlan', 'nftables'], timeout: 150_000 }, async (t, lab) => {
  const run = createRunDir(PREFIX);
  t.teardown(() => run.remove());
  const ul = await lab.addUnderlay({ role: 'ul' });
  const n1 = await lab.addNode(ul, { role: 'n1', address: '198.18.0.1/24' });
  const n2 = await lab.addNode(ul, { role: 'n2', address: '198.18.0.2/24' });
  writeNodeManifests(run.manifests, [
    { name: 'n1', podCIDR: '10.244.1.0/24', internalIP: n1.ip },
    { name: 'n2', podCIDR: '10.244.2.0/24', internalIP: n2.ip },
  ]);
  writeFileSync(path.join(run.manifests, 'services.yaml'), SERVICES);
  // No periodic resync while the test runs: the overlay would turn ip_forward back on, and the
  // proxy's periodic reconcile would re-add the element the test deletes behind its back.
  const extraArgs = ['--backend', 'vxlan', '--enable', 'cni,overlay,proxy,dns', '--sync-interval', '10m', '--min-sync-interval', '100ms', '--proxy-sync-period', '10m'];
  const daemons = [n1, n2].map((n, i) => new Podwired(lab, n.ns, { nodeName: `n${i + 1}`, run, extraArgs, logLevel: 'info' }));
  for (const d of daemons) {
    const r = await d.waitReady();
    if (!r.ready) throw new Error(`${d.opts.nodeName}: podwired not ready: ${r.last}\n${d.tail()}`);
  }
  const doctor = doctorIn;
  // The overlay has programmed its peer once both Nodes are in the status; wait for it.
  for (let i = 0; i < 50; i++) {
    const r = await doctor(daemons[0]!);
    if (r.report.findings.some((f) => f.check === 'peers' && f.subject.includes('n2'))) break;
    await new Promise((res) => setTimeout(res, 200));
  }

  for (const d of daemons) {
    const r = await doctor(d);
    t.same(notOk(r.report), [], `control: ${d.opts.nodeName} is healthy`, { findings: r.report.findings, stderr: r.stderr });
    t.equal(r.code, 0, `control: ${d.opts.nodeName} exit 0`);
    t.ok(r.report.findings.some((f) => f.check === 'peers' && f.level === 'ok' && /VTEP 10\.244\.\d\.0/.test(f.subject)), 'the peer VTEP answered the ICMP probe');
    t.ok(r.report.findings.some((f) => f.check === 'services' && f.subject === 'Services' && f.level === 'ok' && /^all 2 Services programmed in nftables mode/.test(f.detail)), 'every Service is in the kernel', { findings: r.report.findings.filter((f) => f.check === 'services') });
  }

  // Break n1.
  await exec(n1.ns, ['sysctl', '-qw', 'net.ipv4.ip_forward=0']);
  const nft = await exec(n1.ns, ['nft', '-f', '-'], { input: 'table ip filter {\n chain FORWARD {\n  type filter hook forward priority filter; policy drop;\n }\n}\n' });
  t.equal(nft.exitCode, 0, 'a Docker-style FORWARD drop chain added', { stderr: nft.stderr });
  writeFileSync(path.join(daemons[0]!.confDir, '00-flannel.conflist'), JSON.stringify({ cniVersion: '0.3.1', name: 'cbr0', plugins: [{ type: 'flannel', delegate: { isDefaultGateway: true } }] }));

  const broken = await doctor(daemons[0]!);
  t.same(notOk(broken.report).sort(), ['FAIL cni-config: ' + path.join(daemons[0]!.confDir, '00-flannel.conflist'), 'FAIL foreign-drop: nft ip filter FORWARD', 'FAIL ip-forward: net.ipv4.ip_forward'].sort(), 'n1: exactly the three broken conditions', { findings: broken.report.findings });
  t.equal(broken.code, 1, 'n1: exit 1 on FAIL');
  for (const f of broken.report.findings.filter((x) => x.level === 'FAIL')) t.ok(f.fix, `${f.check} says how to fix it: ${f.fix}`);

  const clean = await doctor(daemons[1]!);
  t.same(notOk(clean.report), [], 'n2 is still healthy');

  // The text form and --netns, from outside the node (this process's namespace is not touched).
  const text = await exec(null, [process.execPath, PODWIRE_CLI, 'doctor', '--netns', n1.ns, '--socket', daemons[0]!.socket, '--cni-conf-dir', daemons[0]!.confDir], { timeoutMs: 60_000 });
  t.equal(text.exitCode, 1, '--netns: exit 1');
  t.match(text.stdout, /^FAIL  ip-forward +net\.ipv4\.ip_forward: 0: .*\n +fix: sysctl -w net\.ipv4\.ip_forward=1/m, 'text: FAIL line and its fix');
  t.match(text.stdout, /n1: \d+ ok, 0 warn, 3 FAIL\n$/, 'text: summary');

  // Fixing them clears the report.
  await exec(n1.ns, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  await exec(n1.ns, ['nft', 'delete', 'table', 'ip', 'filter']);
  rmSync(path.join(daemons[0]!.confDir, '00-flannel.conflist'));
  const fixed = await doctor(daemons[0]!);
  t.same(notOk(fixed.report), [], 'n1: after the fixes, all ok');
  t.equal(fixed.code, 0);

  // One Service's element deleted behind podwired's back: doctor names that Service.
  const del = await exec(n1.ns, ['nft', 'delete', 'element', 'inet', 'podwire', 'services4', '{ 10.96.0.80 . tcp . 80 }']);
  t.equal(del.exitCode, 0, 'default/web deleted from services4', { stderr: del.stderr });
  const gone = await doctor(daemons[0]!);
  t.same(notOk(gone.report), ['FAIL services: Services'], 'n1: exactly the missing Service', { findings: gone.report.findings });
  const svcFail = gone.report.findings.find((f) => f.check === 'services' && f.level === 'FAIL');
  t.match(svcFail?.detail, /^1 of 2 Services not programmed in table inet podwire \(1 of 2 addresses\): default\/web 10\.96\.0\.80:80\/tcp/, 'names default/web and its address');
  t.match(svcFail?.fix, /reads its table back at the first proxy syncPeriod/);
  t.equal(gone.code, 1, 'exit 1');
});

labTest('podwire doctor names a Service whose iptables rule was deleted (iptables mode)', { prefix: PREFIX, requires: ['veth', 'bridge', 'iptables'], timeout: 120_000 }, async (t, lab) => {
  const run = createRunDir(PREFIX);
  t.teardown(() => run.remove());
  const ul = await lab.addUnderlay({ role: 'ul' });
  const n1 = await lab.addNode(ul, { role: 'n1', address: '198.18.0.1/24' });
  writeNodeManifests(run.manifests, [{ name: 'n1', podCIDR: '10.244.1.0/24', internalIP: n1.ip }]);
  writeFileSync(path.join(run.manifests, 'services.yaml'), SERVICES);
  // No periodic full sync while the test runs: it would read the chains back and repair them.
  const d = new Podwired(lab, n1.ns, { nodeName: 'n1', run, extraArgs: ['--enable', 'proxy', '--proxy-mode', 'iptables', '--proxy-sync-period', '10m', '--proxy-healthz-bind-address', '127.0.0.1:10356'], logLevel: 'info' });
  const ready = await d.waitReady();
  if (!ready.ready) throw new Error(`podwired not ready: ${ready.last}\n${d.tail()}`);
  const services = (r: Report) => r.findings.filter((f) => f.check === 'services');

  const ok = await doctorIn(d);
  t.match(services(ok.report), [{ subject: 'Services', level: 'ok', detail: /^all 2 Services programmed in iptables mode/ }], 'control: every Service has its rules', { findings: ok.report.findings });

  // The same binaries as podwired's proxy (iptables-legacy when installed): its status names them.
  const st = JSON.parse((await request({ socketPath: d.socket }, 'GET', '/v1/status')).body.toString('utf8')) as { components: { name: string; status: { backend?: string } }[] };
  const bin = (st.components.find((c) => c.name === 'proxy')?.status.backend ?? 'iptables-restore').replace(/-restore$/, '');
  const rules = (await exec(n1.ns, [`${bin}-save`, '-t', 'nat'])).stdout.split('\n').filter((l) => l.startsWith('-A PODWIRE-SERVICES '));
  const n = rules.findIndex((l) => l.startsWith('-A PODWIRE-SERVICES -d 10.96.0.80/32 '));
  t.ok(n >= 0, `default/web's ClusterIP rule is in nat PODWIRE-SERVICES (${bin})`, { rules });
  const del = await exec(n1.ns, [bin, '-w', '-t', 'nat', '-D', 'PODWIRE-SERVICES', String(n + 1)]);
  t.equal(del.exitCode, 0, 'rule deleted', { stderr: del.stderr });

  const gone = await doctorIn(d);
  t.match(services(gone.report), [{ subject: 'Services', level: 'FAIL', detail: /^1 of 2 Services not programmed in \S*iptables\S*-save \(1 of 2 addresses\): default\/web 10\.96\.0\.80:80\/tcp$/, fix: /syncPeriod/ }], 'names default/web', { findings: gone.report.findings });
  t.equal(gone.code, 1, 'exit 1');
  await d.stop();
});
