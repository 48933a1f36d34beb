/**
 * The kube-dns VIP steered to the node-local server with NOTRACK, and autopath, from a
 * pod with real `dig`. A stand-in for the Service proxy DNATs the kube-dns VIP's port 53
 * to a silent underlay address in the node namespace (its own nft table), as kube-proxy would to the
 * CoreDNS pods: the query still answers from the local server because port 53 to the VIP
 * is NOTRACK at raw priority (no conntrack entry, so no NAT), and `conntrack -L` shows no
 * port-53 entry, while a control flow to another port is tracked. Cleanup removes our
 * table and the VIP from `lo`.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { exec, execOk, labTest } from '../harness';
import { dig, dnsLab, m, ManifestDir, NODE_LOCAL, startDns } from './helpers';

const VIP = '10.96.0.10';
const HOST_JS = path.join(__dirname, 'host.js');

labTest('kube-dns VIP served locally with NOTRACK, and autopath, from a pod', { prefix: 'qd-steer', timeout: 150_000 }, async (t, lab) => {
  const md = new ManifestDir('qd-steer');
  const tmp = mkdtempSync(path.join(tmpdir(), 'qd-steer-'));
  t.teardown(() => {
    md.remove();
    rmSync(tmp, { recursive: true, force: true });
  });
  const resolvConf = path.join(tmp, 'resolv.conf');
  writeFileSync(resolvConf, 'search corp.example\n');
  md.write('cluster.yaml', [
    m.namespace('kube-system'),
    m.namespace('prod'),
    m.namespace('default'),
    m.service('kube-system', 'kube-dns', { clusterIP: VIP, clusterIPs: [VIP], ports: [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }] }),
    m.service('prod', 'web', { clusterIP: '10.96.1.10', clusterIPs: ['10.96.1.10'], ports: [{ name: 'http', port: 80, protocol: 'TCP' }] }),
    m.service('default', 'kubernetes', { clusterIP: '10.96.0.1', clusterIPs: ['10.96.0.1'], ports: [{ name: 'https', port: 443, protocol: 'TCP' }] }),
    // The lab pod (10.244.1.2) is prod/client on this node; 10.244.1.3 is held by two pods (an IP being reused).
    m.pod('prod', 'client', '10.244.1.2'),
  ]);
  const { node, pod } = await dnsLab(lab);
  // The proxy stand-in: DNAT the kube-dns VIP to an address nobody answers on.
  await execOk(node.ns, ['nft', '-f', '-'], {
    input: ['table ip qd-fakeproxy {', '  chain pre { type nat hook prerouting priority dstnat; policy accept;', `    ip daddr ${VIP} counter dnat to 198.18.0.99`, '  }', '}', ''].join('\n'),
  });
  const host = await startDns(lab, node.ns, md.dir, { upstreams: [], resolvConf, bindInterface: 'lo', autopath: true });
  t.teardown(() => host.stop());
  // The VIP is bound once the first sync saw the Service.
  for (let i = 0; i < 50 && !/10\.96\.0\.10/.test((await exec(node.ns, ['ip', '-4', 'addr', 'show', 'dev', 'lo'])).stdout); i++) await new Promise((r) => setTimeout(r, 100));

  const table = await execOk(node.ns, ['nft', 'list', 'table', 'inet', 'podwire-dns']);
  t.match(table, /notrack/, 'our table has NOTRACK rules');
  t.match(table, new RegExp(VIP.replace(/\./g, '\\.')), 'the VIP is in the set');
  t.match(table, /169\.254\.20\.10/, 'the node-local address too');
  t.match((await exec(node.ns, ['ip', '-4', 'addr', 'show', 'dev', 'lo'])).stdout, /10\.96\.0\.10\/32/, 'the VIP is on lo');

  await exec(node.ns, ['conntrack', '-F']);
  let r = await dig(pod, 'web.prod.svc.cluster.local', 'A', { server: VIP });
  t.equal(r.status, 'NOERROR', 'the kube-dns VIP answers from podwired despite the DNAT');
  t.same(r.answers.map((a) => a[3]), ['10.96.1.10']);
  r = await dig(pod, 'web.prod.svc.cluster.local', 'A', { server: VIP, args: ['+tcp'] });
  t.equal(r.status, 'NOERROR', 'and over TCP');
  r = await dig(pod, 'web.prod.svc.cluster.local', 'A', { server: NODE_LOCAL });
  t.equal(r.status, 'NOERROR', '169.254.20.10 as before');
  // A control flow that conntrack does see: UDP to another port of the VIP.
  const ctl = await exec(pod, ['dig', `@${VIP}`, '-p', '5353', '+tries=1', '+timeout=1', 'x.example'], { timeoutMs: 5000 });
  t.notMatch(ctl.stdout, /status:/, 'the control query went to the DNAT black hole');
  const ct = (await exec(node.ns, ['conntrack', '-L'])).stdout + (await exec(node.ns, ['conntrack', '-L'])).stderr;
  t.match(ct, /dport=5353/, 'conntrack tracks other flows in the node namespace (the check can fail)');
  t.notMatch(ct, /[ds]port=53\b/, 'no conntrack entry for port 53');

  // autopath: the pod's first search-path query answered with the final name.
  r = await dig(pod, 'web.prod.prod.svc.cluster.local', 'A', { server: VIP });
  t.equal(r.status, 'NOERROR', 'autopath');
  t.same(r.answers.map((a) => [a[2], a[3]]), [['CNAME', 'web.prod.svc.cluster.local.'], ['A', '10.96.1.10']], 'CNAME + the final answer');
  r = await dig(pod, 'web.prod.prod.svc.cluster.local', 'AAAA', { server: VIP });
  t.same(r.answers.map((a) => [a[2], a[3]]), [['CNAME', 'web.prod.svc.cluster.local.']], 'AAAA stops at the same name (NODATA there)');
  r = await dig(pod, 'kubernetes.default.prod.svc.cluster.local', 'A', { server: VIP });
  t.same(r.answers.map((a) => a[3]), ['kubernetes.default.svc.cluster.local.', '10.96.0.1'], 'the search list walked to svc.cluster.local');
  // From the node namespace (no pod has its address): the plain answer.
  r = await dig(node.ns, 'web.prod.prod.svc.cluster.local', 'A', { server: NODE_LOCAL });
  t.equal(r.status, 'NXDOMAIN', 'a client that is not a pod of this node gets the plain answer');

  await host.stop();
  const clean = lab.spawn(node.ns, [process.execPath, HOST_JS, JSON.stringify({ manifests: md.dir, listen: [`${NODE_LOCAL}:53`], cleanup: true, section: { bindInterface: 'lo', upstreams: [], resolvConf } })]);
  await clean.waitForOutput(/DNS CLEANED/, 20_000);
  const after = await exec(node.ns, ['nft', 'list', 'table', 'inet', 'podwire-dns']);
  t.not(after.exitCode, 0, 'cleanup removed our table');
  const lo = (await exec(node.ns, ['ip', '-4', 'addr', 'show', 'dev', 'lo'])).stdout;
  t.notMatch(lo, /10\.96\.0\.10/, 'and the VIP');
  t.notMatch(lo, /169\.254\.20\.10/, 'and the node-local address');
  t.ok((await exec(node.ns, ['nft', 'list', 'table', 'ip', 'qd-fakeproxy'])).exitCode === 0, "another owner's table is untouched");
});
