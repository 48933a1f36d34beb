/**
 * Robustness: 100,000 random and mutated packets (plus garbage TCP streams), after which
 * the server still answers correctly; and a restart under a 200 QPS query loop with 0
 * failed queries: the successor binds with SO_REUSEPORT while the predecessor serves,
 * the predecessor sees the successor answering and only then closes.
 */
import path from 'node:path';
import { labTest } from '../harness';
import { dig, dnsLab, m, ManifestDir, NODE_LOCAL, startDns } from './helpers';

const CLIENT = path.join(__dirname, 'load-client.js');
const manifests = [
  m.namespace('default'),
  m.namespace('prod'),
  m.service('prod', 'web', { clusterIP: '10.96.1.10', ports: [{ name: 'http', port: 80, protocol: 'TCP' }] }),
  m.service('default', 'kubernetes', { clusterIP: '10.96.0.1', ports: [{ name: 'https', port: 443, protocol: 'TCP' }] }),
];

labTest('100,000 fuzzed packets, then still correct', { prefix: 'pwdns-fuzz', timeout: 170_000 }, async (t, lab) => {
  const dir = new ManifestDir('pwdns-fuzz');
  t.teardown(() => dir.remove());
  dir.write('cluster.yaml', manifests);
  const { node, pod } = await dnsLab(lab);
  const host = await startDns(lab, node.ns, dir.dir, { upstreams: [], resolvConf: '/nonexistent', log: false });
  t.teardown(() => host.stop());
  const out = await lab.execOk(pod, [process.execPath, CLIENT, 'fuzz', JSON.stringify({ server: NODE_LOCAL, count: 100_000, seed: 20261201, valid: 'web.prod.svc.cluster.local' })], { timeoutMs: 150_000 });
  const res = JSON.parse(out.trim().split('\n').pop()!) as { sent: number; responses: number; tcpConnections: number };
  t.equal(res.sent, 100_000, 'sent 100,000 packets');
  t.ok(res.responses > 10_000, `the server answered the parseable ones (${res.responses} responses)`);
  t.equal(host.exit, null, 'the server is still running');
  const r = await dig(pod, 'web.prod.svc.cluster.local');
  t.same(r.answers.map((a) => a[3]), ['10.96.1.10'], 'and answers correctly');
  const r2 = await dig(pod, '_http._tcp.web.prod.svc.cluster.local', 'SRV', { args: ['+tcp'] });
  t.same(r2.answers.map((a) => a[3]), ['0 100 80 web.prod.svc.cluster.local.'], 'over TCP too');
});

labTest('restart under a 200 QPS loop loses no queries', { prefix: 'pwdns-restart', timeout: 120_000 }, async (t, lab) => {
  const dir = new ManifestDir('pwdns-restart');
  t.teardown(() => dir.remove());
  dir.write('cluster.yaml', manifests);
  const { node, pod } = await dnsLab(lab);
  const section = { upstreams: [], resolvConf: '/nonexistent', drainTimeout: 5000 };
  const first = await startDns(lab, node.ns, dir.dir, section);
  const loop = lab.spawn(pod, [process.execPath, CLIENT, 'loop', JSON.stringify({ server: NODE_LOCAL, names: ['web.prod.svc.cluster.local', 'kubernetes.default.svc.cluster.local'], qps: 200, durationMs: 10_000, tries: 3, timeoutMs: 1000 })]);
  await new Promise((r) => setTimeout(r, 2000));
  const second = await startDns(lab, node.ns, dir.dir, section); // binds only after its first sync
  t.teardown(() => second.stop());
  const exit = await first.stop(8000);
  t.equal(exit.exitCode, 0, 'the predecessor exits cleanly');
  t.match(first.stdout + first.stderr, /a successor is serving DNS on our address/, 'it closed because the successor served');
  // It either binds its own sockets, or takes the predecessor's from the socket keeper (keeper.ts); both only once it has state.
  t.match(second.stdout + second.stderr, /binding after the first sync|DNS sockets kept across a crash; serving them after the first sync/, 'the successor served only once it had state');
  await loop.waitForOutput(/\{"sent"/, 30_000);
  const res = JSON.parse(/\{"sent".*\}/.exec(loop.stdout)![0]) as { sent: number; answered: number; failed: number; firstTryLost: number };
  t.ok(res.sent >= 1500, `${res.sent} queries sent`);
  t.equal(res.failed, 0, 'no failed query across the restart');
  t.equal(res.answered, res.sent, 'every query answered');
  t.comment(`first tries without an answer (retried like dig): ${res.firstTryLost}`);
  const r = await dig(pod, 'web.prod.svc.cluster.local');
  t.same(r.answers.map((a) => a[3]), ['10.96.1.10'], 'the successor answers');
});
