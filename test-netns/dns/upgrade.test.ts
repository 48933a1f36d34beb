/**
 * A rolling upgrade with maxSurge 1 on one node, with the real daemon (bin/podwired,
 * `--enable dns`): a second podwired starts with the same arguments while the first
 * serves, under a 200 QPS query loop from a pod; every socket allows the overlap (DNS
 * and health/metrics with SO_REUSEPORT, the control socket taken over); the first is
 * then stopped. 0 failed queries, and the successor keeps its control socket.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { exec, labTest, type Lab } from '../harness';
import { dig, NODE_LOCAL, realPodwired, realPodwiredLab } from './helpers';

const REPO = path.resolve(__dirname, '../../..');
const PODWIRE = path.join(REPO, 'bin/podwire');
const CLIENT = path.join(__dirname, 'load-client.js');

function podwired(lab: Lab, ns: string, dir: string, manifests: string) {
  return realPodwired(lab, ns, dir, manifests, { drain: '5s' });
}

labTest('podwired upgraded in place (maxSurge 1) under a 200 QPS loop loses no queries', { prefix: 'pwdns-upg', timeout: 120_000 }, async (t, lab) => {
  const { pod, nodeNs, dir, manifests } = await realPodwiredLab(t, lab, 'pwdns-upg');
  const node = { ns: nodeNs };

  const first = podwired(lab, node.ns, dir, manifests);
  await first.waitForOutput(/"msg":"DNS serving"/, 30_000);
  // With no other server on the address, "DNS serving" comes before the first sync, and until
  // then the answer is SERVFAIL by design (records.test checks that): wait for the zone, bounded.
  let firstAnswer = await dig(pod, 'web.prod.svc.cluster.local');
  for (let i = 0; i < 40 && firstAnswer.status === 'SERVFAIL'; i++) {
    await new Promise((r) => setTimeout(r, 250));
    firstAnswer = await dig(pod, 'web.prod.svc.cluster.local');
  }
  t.same(firstAnswer.answers.map((a) => a[3]), ['10.96.1.10'], 'the first podwired answers', { status: firstAnswer.status });
  const loop = lab.spawn(pod, [process.execPath, CLIENT, 'loop', JSON.stringify({ server: NODE_LOCAL, names: ['web.prod.svc.cluster.local'], qps: 200, durationMs: 10_000, tries: 3, timeoutMs: 1000 })]);
  await new Promise((r) => setTimeout(r, 2000));

  const second = podwired(lab, node.ns, dir, manifests);
  t.teardown(() => second.stop());
  await second.waitForOutput(/"msg":"DNS serving"/, 30_000);
  t.equal(first.exit, null, 'both run at once (the surge)');
  t.match(second.stdout + second.stderr, /took the socket over from a running predecessor/, 'the successor took the control socket over');
  const health = await exec(node.ns, ['curl', '-s', '--max-time', '2', '-o', '/dev/null', '-w', '%{http_code}', 'http://127.0.0.1:10266/healthz']);
  t.equal(health.stdout, '200', 'the health port is shared (SO_REUSEPORT)');

  const exit = await first.stop(15_000);
  t.equal(exit.exitCode, 0, 'the predecessor exits cleanly');
  t.match(first.stdout + first.stderr, /a successor is serving DNS on our address/, 'it closed its DNS sockets because the successor served');
  t.ok(existsSync(path.join(dir, 'podwire.sock')), "the predecessor left the successor's control socket");
  const st = await exec(node.ns, [process.execPath, PODWIRE, 'status', '--socket', path.join(dir, 'podwire.sock')]);
  t.equal(st.exitCode, 0, 'podwire status reaches the successor');

  await loop.waitForOutput(/\{"sent"/, 30_000);
  const res = JSON.parse(/\{"sent".*\}/.exec(loop.stdout)![0]) as { sent: number; answered: number; failed: number; firstTryLost: number };
  t.ok(res.sent >= 1500, `${res.sent} queries sent`);
  t.equal(res.failed, 0, 'no failed query across the upgrade');
  t.equal(res.answered, res.sent, 'every query answered');
  t.comment(`first tries without an answer (retried like dig): ${res.firstTryLost}`);
  t.same((await dig(pod, 'web.prod.svc.cluster.local')).answers.map((a) => a[3]), ['10.96.1.10'], 'the successor answers');
});
