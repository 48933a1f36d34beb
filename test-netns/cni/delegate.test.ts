/**
 * IPAM delegated to another plugin on CNI_PATH, as the reference bridge does: here the
 * reference `static` IPAM plugin, through the real binary on both paths.
 */
import { exec, labTest, ping } from '../harness';
import { cniEnv, firstIp, runner, tmpDataDir, type Mode } from './helpers';

for (const mode of ['inprocess', 'fastpath'] as Mode[]) {
  labTest(`IPAM delegated to the reference static plugin (${mode})`, { prefix: 'pwc-deleg', requires: ['veth', 'bridge'], timeout: 90_000 }, async (t, lab) => {
    const data = tmpDataDir(t, 'deleg');
    const host = await lab.addNetns('host');
    const pod = await lab.addPod();
    const cni = await runner(lab, host, mode, data);
    const conf = {
      cniVersion: '1.0.0',
      name: 'delegnet',
      type: 'podwire',
      bridge: 'pw0',
      isGateway: true,
      ipam: {
        type: 'static',
        addresses: [{ address: '10.244.7.10/24', gateway: '10.244.7.1' }],
        routes: [{ dst: '0.0.0.0/0' }],
      },
    };
    const add = await cni.run(cniEnv('ADD', 'deleg-pod', pod), conf);
    t.equal(add.exitCode, 0, `ADD${add.exitCode === 0 ? '' : `: ${add.stdout} ${add.stderr}`}`);
    t.equal(firstIp(add.json), '10.244.7.10', 'the address the static plugin chose');
    t.equal(add.json?.cniVersion, '1.0.0', 'result in the requested version');
    const podAddrs = (await exec(pod, ['ip', '-4', '-o', 'addr', 'show', 'eth0'])).stdout;
    t.match(podAddrs, /10\.244\.7\.10\/24/, 'address on the pod eth0');
    t.ok((await ping(pod, '10.244.7.1')).ok, 'pod pings the gateway on the bridge');
    const check = await cni.run(cniEnv('CHECK', 'deleg-pod', pod), { ...conf, prevResult: add.json });
    t.equal(check.exitCode, 0, `CHECK${check.exitCode === 0 ? '' : `: ${check.stdout}`}`);
    t.equal((await cni.run(cniEnv('DEL', 'deleg-pod', pod), conf)).exitCode, 0, 'DEL');
    t.equal((await exec(pod, ['ip', 'link', 'show', 'eth0'])).exitCode, 1, 'pod eth0 gone after DEL');

    const missing = await cni.run(cniEnv('ADD', 'deleg-missing', pod), { ...conf, ipam: { type: 'no-such-ipam' } });
    t.not(missing.exitCode, 0, 'ADD with an IPAM plugin that is not on CNI_PATH fails');
    t.match(String(missing.json?.msg), /no-such-ipam/, `the error names the plugin: ${String(missing.json?.msg)}`);
    t.equal((await exec(pod, ['ip', 'link', 'show', 'eth0'])).exitCode, 1, 'and leaves no eth0 in the pod');
    t.notMatch((await exec(host, ['ip', '-o', 'link'])).stdout, /pwv[0-9a-f]{12}/, 'and no host veth');
  });
}
