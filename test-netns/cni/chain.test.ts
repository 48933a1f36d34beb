/**
 * Chaining: podwire-cni first, then the reference portmap, tuning and bandwidth plugins,
 * each fed our result as prevResult exactly as libcni does. A hostPort is reached from
 * another namespace across the underlay; DEL runs the chain in reverse.
 */
import { join } from 'node:path';
import { exec, labTest } from '../harness';
import { REF_DIR, cniEnv, firstIp, netconf, runner, tmpDataDir, type Mode } from './helpers';

for (const mode of ['inprocess', 'fastpath'] as Mode[]) {
  labTest(`chain ahead of portmap/tuning/bandwidth (${mode})`, { prefix: 'pwc-chain', requires: ['veth', 'bridge', 'iptables'], timeout: 120_000 }, async (t, lab) => {
    const data = tmpDataDir(t, 'chain');
    const ul = await lab.addUnderlay();
    const node = await lab.addNode(ul);
    const client = await lab.addNode(ul);
    const pod = await lab.addPod();
    const cni = await runner(lab, node.ns, mode, data);
    const name = 'chainnet';
    const main = netconf(name, data, { ipMasq: true }, '10.244.3.0/24');
    const env = cniEnv('ADD', 'chained', pod);
    const add = await cni.run(env, main);
    t.equal(add.exitCode, 0, `ADD${add.exitCode === 0 ? '' : `: ${add.stdout}`}`);
    let prev = add.json!;

    const plugins: Record<string, unknown>[] = [
      { type: 'portmap', capabilities: { portMappings: true }, snat: true, runtimeConfig: { portMappings: [{ hostPort: 18080, containerPort: 8080, protocol: 'tcp' }] } },
      { type: 'tuning', sysctl: { 'net.core.somaxconn': '512' } },
      { type: 'bandwidth', capabilities: { bandwidth: true }, runtimeConfig: { bandwidth: { ingressRate: 100_000_000, ingressBurst: 10_000_000, egressRate: 100_000_000, egressBurst: 10_000_000 } } },
    ];
    for (const p of plugins) {
      const r = await cni.run(env, { cniVersion: '1.0.0', name, ...p, prevResult: { ...prev, cniVersion: '1.0.0' } }, join(REF_DIR, String(p.type)));
      t.equal(r.exitCode, 0, `reference ${String(p.type)} accepts our result${r.exitCode === 0 ? '' : `: ${r.stdout}`}`);
      prev = r.json ?? prev;
    }
    t.equal(firstIp(prev), firstIp(add.json), 'the chain passes our IP through');
    t.equal((await exec(pod, ['sysctl', '-n', 'net.core.somaxconn'])).stdout.trim(), '512', 'tuning applied in the pod');

    const server = lab.spawn(pod, ['nc', '-l', '-p', '8080']);
    await new Promise((r) => setTimeout(r, 300)); // nc has no readiness signal; the connect below retries anyway
    let got = '';
    for (let i = 0; i < 10 && !got.includes('hello'); i++) {
      const c = await exec(client.ns, ['sh', '-c', `echo hello-from-client | nc -w 2 -q 1 ${node.ip} 18080`], { timeoutMs: 5000 });
      await server.exited.then(() => undefined, () => undefined).catch(() => undefined);
      got = server.stdout;
      if (c.exitCode !== 0) await new Promise((r) => setTimeout(r, 200));
    }
    t.match(got, /hello-from-client/, 'hostPort on the node reaches the pod from another namespace');

    // DEL in reverse order, like libcni.
    for (const p of [...plugins].reverse()) {
      const r = await cni.run({ ...env, CNI_COMMAND: 'DEL' }, { cniVersion: '1.0.0', name, ...p, prevResult: prev }, join(REF_DIR, String(p.type)));
      t.equal(r.exitCode, 0, `reference ${String(p.type)} DEL: ${r.stdout}`);
    }
    t.equal((await cni.run({ ...env, CNI_COMMAND: 'DEL' }, main)).exitCode, 0);
    t.notMatch((await exec(node.ns, ['ip', '-o', 'link'])).stdout, /pwv[0-9a-f]{12}/, 'no veth left');
  });
}
