/**
 * The bridge's MAC is the pods' gateway MAC: it must not move when a pod comes or goes.
 * (An unpinned bridge takes the lowest MAC of its ports, so deleting one pod's veth would
 * leave every other pod with a stale gateway neighbour entry.)
 */
import { exec, labTest, ping } from '../harness';
import { hostVethName } from '../../src/cni-plugin/names';
import { cniEnv, netconf, runner, tmpDataDir, type Mode } from './helpers';

async function bridgeState(ns: string): Promise<{ mac: string; assignType: string }> {
  const mac = (await exec(ns, ['cat', '/sys/class/net/pw0/address'])).stdout.trim();
  const assignType = (await exec(ns, ['cat', '/sys/class/net/pw0/addr_assign_type'])).stdout.trim();
  return { mac, assignType };
}

async function hostVethMacs(ns: string): Promise<{ name: string; mac: string }[]> {
  const links = JSON.parse((await exec(ns, ['ip', '-j', 'link', 'show', 'master', 'pw0'])).stdout) as { ifname: string; address: string }[];
  return links.map((l) => ({ name: l.ifname, mac: l.address }));
}

for (const mode of ['inprocess', 'fastpath'] as Mode[]) {
  labTest(`bridge MAC stays put across pod ADD/DEL (${mode})`, { prefix: 'pwc-brmac', requires: ['veth', 'bridge'], timeout: 120_000 }, async (t, lab) => {
    const data = tmpDataDir(t, 'brmac');
    const host = await lab.addNetns('host');
    const cni = await runner(lab, host, mode, data);
    const conf = netconf('macnet', data);
    const pods: { id: string; ns: string }[] = [];
    for (let i = 0; i < 4; i++) {
      const ns = await lab.addPod();
      const id = `mac-pod-${i}`;
      const add = await cni.run(cniEnv('ADD', id, ns), conf);
      t.equal(add.exitCode, 0, `ADD ${id}${add.exitCode === 0 ? '' : `: ${add.stdout}`}`);
      pods.push({ id, ns });
    }
    const before = await bridgeState(host);
    t.equal(before.assignType, '3', 'the bridge MAC was set explicitly (addr_assign_type 3), not inherited from a port');
    for (const p of pods) t.ok((await ping(p.ns, '10.244.1.1')).ok, `${p.id} reaches its gateway`);

    // Remove the pod whose host veth has the lowest MAC: the one an unpinned bridge would copy.
    const veths = await hostVethMacs(host);
    t.equal(veths.length, 4, 'four host veths on the bridge');
    const lowest = [...veths].sort((a, b) => a.mac.localeCompare(b.mac))[0]!;
    const victim = pods.find((p) => hostVethName(p.id, 'eth0') === lowest.name);
    t.ok(victim, 'found the pod with the lowest host-veth MAC');
    const del = await cni.run(cniEnv('DEL', victim!.id, victim!.ns), conf);
    t.equal(del.exitCode, 0, 'DEL');

    const after = await bridgeState(host);
    t.equal(after.mac, before.mac, 'bridge MAC unchanged after the DEL');
    for (const p of pods.filter((q) => q !== victim)) {
      t.ok((await ping(p.ns, '10.244.1.1')).ok, `${p.id} still reaches its gateway right after the DEL`);
    }
    for (const p of pods.filter((q) => q !== victim)) t.equal((await cni.run(cniEnv('DEL', p.id, p.ns), conf)).exitCode, 0);
  });
}

labTest('a bridge that existed without a set MAC gets it pinned by ADD', { prefix: 'pwc-brpin', requires: ['veth', 'bridge'], timeout: 60_000 }, async (t, lab) => {
  const data = tmpDataDir(t, 'brpin');
  const host = await lab.addNetns('host');
  await exec(host, ['ip', 'link', 'add', 'pw0', 'type', 'bridge']);
  t.equal((await bridgeState(host)).assignType, '1', 'precondition: a bridge made without a MAC has a random, unset one');
  const cni = await runner(lab, host, 'inprocess', data);
  const conf = netconf('pinnet', data);
  const pod = await lab.addPod();
  t.equal((await cni.run(cniEnv('ADD', 'pin-pod', pod), conf)).exitCode, 0, 'ADD');
  t.equal((await bridgeState(host)).assignType, '3', 'ADD pinned the existing bridge MAC');
  t.equal((await cni.run(cniEnv('DEL', 'pin-pod', pod), conf)).exitCode, 0, 'DEL');
});
