/**
 * The cni component with the real podwired in a lab node and pods wired by the CNI binary it
 * installed:
 *
 * 1. Bridge reattach: `ip link del pw0` in the node cuts the running pods off; the cni
 *    component's periodic sync recreates the bridge and puts their host veths back, so both
 *    pods reach each other and the gateway again (bounded polling by count).
 * 2. The installed shim finds a non-default control socket through podwire.conf (the CNI
 *    environment has no PODWIRE_CONTROL_SOCKET) and the daemon serves the ADD; with the
 *    daemon stopped the shim falls back in-process, and the restarted daemon reports that
 *    fallback as podwire_cni_fallback_total and in its status.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { DaemonStatus } from '../../src/daemon/daemon';
import { request } from '../../src/daemon/route-server';
import { exec, labTest, netnsPath, ping, type Lab, type LabNode } from '../harness';
import { pluginConfig, readConflist, resultIpv4, runInstalledCni } from '../lab/cni-client';
import { createRunDir, METRICS_LISTEN, Podwired, SHIM, writeNodeManifests } from '../lab/podwired';

const skip = existsSync(SHIM) ? undefined : `shim not built: ${SHIM}`;

async function startNode(lab: Lab, t: { teardown(fn: () => void): void }, extraArgs: string[]): Promise<{ node: LabNode; d: Podwired; run: ReturnType<typeof createRunDir> }> {
  const ul = await lab.addUnderlay();
  const node = await lab.addNode(ul);
  const run = createRunDir('pwd-cnic');
  t.teardown(() => run.remove());
  writeNodeManifests(run.manifests, [{ name: 'node-1', podCIDR: '10.244.1.0/24', internalIP: node.ip }]);
  const d = new Podwired(lab, node.ns, { nodeName: 'node-1', run, extraArgs: ['--enable', 'cni', ...extraArgs] });
  return { node, d, run };
}

async function status(d: Podwired): Promise<DaemonStatus> {
  return JSON.parse((await request({ socketPath: d.socket }, 'GET', '/v1/status')).body.toString()) as DaemonStatus;
}

labTest('cni: a deleted bridge is recreated and running pods are put back on it', { prefix: 'pwd', timeout: 180_000, skip }, async (t, lab) => {
  const { node, d } = await startNode(lab, t, ['--cni-reconcile-interval', '1s']);
  const r = await d.waitReady();
  t.ok(r.ready, `ready (${r.last}); ${d.tail()}`);
  const stdin = pluginConfig(readConflist(d.conflistPath));
  const pods: { ns: string; ip: string }[] = [];
  for (const [i, id] of ['aaaa0001', 'bbbb0002'].entries()) {
    const ns = await lab.addPod(`p${i + 1}`);
    const out = await runInstalledCni(d, stdin, { command: 'ADD', containerId: `pwdreattach${id}`, podNs: ns });
    t.ok(out.ok, `ADD ${ns}: ${out.summary}`);
    const ip = resultIpv4(out.json);
    t.ok(ip, 'an IPv4 address');
    pods.push({ ns, ip: ip!.ip });
  }
  const [a, b] = pods as [{ ns: string; ip: string }, { ns: string; ip: string }];
  const gw = '10.244.1.1';
  t.ok((await ping(a.ns, b.ip)).ok, 'pod a -> pod b before');
  t.ok((await ping(a.ns, gw)).ok, 'pod a -> gateway before');

  await lab.ip(node.ns, ['link', 'del', 'pw0']);

  // Bounded: at most 60 rounds of three single pings (each waits at most 1 s for a reply).
  let back = false;
  let rounds = 0;
  for (; rounds < 60 && !back; rounds++) {
    const checks = await Promise.all([ping(a.ns, b.ip, { waitS: 1 }), ping(b.ns, a.ip, { waitS: 1 }), ping(a.ns, gw, { waitS: 1 }), ping(b.ns, gw, { waitS: 1 })]);
    back = checks.every((c) => c.ok);
  }
  t.ok(back, `pods reach each other and the gateway again (after ${rounds} rounds); ${d.tail(800)}`);
  const links = await exec(node.ns, ['ip', '-o', 'link', 'show', 'master', 'pw0']);
  t.equal(links.stdout.trim().split('\n').filter((l) => l.includes('pwv')).length, 2, `both host veths on pw0: ${links.stdout}`);
  const hairpin = await exec(node.ns, ['bridge', '-d', 'link', 'show']);
  t.equal((hairpin.stdout.match(/hairpin on/g) ?? []).length, 2, 'hairpin on again for both ports');
  const cni = (await status(d)).components.find((c) => c.name === 'cni');
  t.ok(Number(cni?.status.reattachedTotal) >= 2, `status counts the reattached veths: ${JSON.stringify(cni?.status.lastReattach)}`);
  t.ok(d.logLines().some((l) => l.msg === 'put pod veths back on the bridge'), 'logged');

  for (const [i, p] of pods.entries()) {
    const del = await runInstalledCni(d, stdin, { command: 'DEL', containerId: `pwdreattach${['aaaa0001', 'bbbb0002'][i]}`, podNs: p.ns });
    t.ok(del.ok, `DEL: ${del.summary}`);
  }
  t.equal((await d.stop()).exitCode, 0, 'clean exit');
});

labTest('cni: the installed shim finds a non-default control socket via podwire.conf; a fallback is counted', { prefix: 'pwd', timeout: 180_000, skip }, async (t, lab) => {
  const { node, d, run } = await startNode(lab, t, []);
  t.not(d.socket, '/run/podwire/podwire.sock', 'a non-default control socket');
  const r = await d.waitReady();
  t.ok(r.ready, `ready (${r.last}); ${d.tail()}`);
  const conf = readFileSync(path.join(d.binDir, 'podwire.conf'), 'utf8');
  t.match(conf, new RegExp(`^control_socket=${d.socket.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'), 'podwire.conf beside the binary names the socket');
  const stdin = pluginConfig(readConflist(d.conflistPath));

  // As a container runtime runs it: CNI_* only (PODWIRE_CONTROL_SOCKET explicitly empty = unset).
  const runtimeAdd = async (podNs: string, containerId: string) =>
    exec(node.ns, [d.binaryPath], {
      env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: containerId, CNI_NETNS: netnsPath(podNs), CNI_IFNAME: 'eth0', CNI_PATH: d.binDir, PODWIRE_CONTROL_SOCKET: '' },
      input: stdin,
      timeoutMs: 30_000,
    });
  const before = d.fastPathRequests().length;
  const p1 = await lab.addPod('p1');
  const add1 = await runtimeAdd(p1, 'pwdshim0001');
  t.equal(add1.exitCode, 0, `ADD without PODWIRE_CONTROL_SOCKET: ${add1.stdout} ${add1.stderr}`);
  // The fast path logs each request it served (debug); bounded wait for the log line.
  let served: { command: string }[] = [];
  for (let i = 0; i < 50 && served.length === 0; i++) {
    served = d.fastPathRequests().slice(before).filter((x) => x.command === 'ADD');
    if (served.length === 0) await new Promise((res) => setTimeout(res, 100));
  }
  t.equal(served.length, 1, 'the daemon served the ADD (fast path), not the in-process path');
  const st1 = (await status(d)).components.find((c) => c.name === 'cni');
  t.equal(st1?.status.fallbacks, 0, 'no fallback so far');

  // Daemon gone: the shim falls back in-process, which must be recorded.
  t.equal((await d.stop()).exitCode, 0);
  const p2 = await lab.addPod('p2');
  const add2 = await runtimeAdd(p2, 'pwdshim0002');
  t.equal(add2.exitCode, 0, `ADD in-process while podwired is down: ${add2.stdout} ${add2.stderr}`);
  const record = readFileSync(path.join(d.stateDir, 'cni-fallbacks'), 'utf8');
  t.match(record, /"command":"ADD","containerId":"pwdshim0002","socket":"[^"]*podwire\.sock"/, 'fallback recorded');

  const d2 = new Podwired(lab, node.ns, { nodeName: 'node-1', run, extraArgs: ['--enable', 'cni'] });
  const r2 = await d2.waitReady();
  t.ok(r2.ready, `ready again (${r2.last})`);
  const metrics = await exec(node.ns, ['curl', '-s', '--max-time', '3', `http://${METRICS_LISTEN}/metrics`]);
  t.match(metrics.stdout, /^podwire_cni_fallback_total 1$/m, 'podwire_cni_fallback_total');
  const st2 = (await status(d2)).components.find((c) => c.name === 'cni');
  t.equal(st2?.status.fallbacks, 1, 'status shows the fallback');
  t.match(st2?.status.lastFallback, { command: 'ADD', containerId: 'pwdshim0002' });
  const cli = await exec(node.ns, [process.execPath, path.resolve(__dirname, '../../../bin/podwire'), 'status', '--socket', d2.socket]);
  t.match(cli.stdout, /WARNING: 1 CNI call\(s\) ran in-process/, `podwire status warns: ${cli.stdout}${cli.stderr}`);
  t.equal((await d2.stop()).exitCode, 0);
});
