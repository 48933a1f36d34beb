/**
 * The daemon is killed in the middle of an ADD (after the IP is reserved and the veth
 * created): the shim answers "try again later" (11), and GC, run through the in-process
 * fallback with the same store and lock, removes the reservation and the veth.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { exec, labTest } from '../harness';
import { cniEnv, netconf, runner, startFastPath, tmpDataDir } from './helpers';

labTest('daemon killed mid-ADD, GC recovers', { prefix: 'pwc-kill', requires: ['veth', 'bridge'], timeout: 120_000 }, async (t, lab) => {
  const data = tmpDataDir(t, 'kill');
  const host = await lab.addNetns('host');
  const pod = await lab.addPod();
  const socket = join(data, 'hang.sock');
  const daemon = await startFastPath(lab, host, socket, { PODWIRE_CNI_TEST_HANG_AFTER: 'veth' });
  const inproc = await runner(lab, host, 'inprocess', data);
  const conf = netconf('killnet', data);

  const adding = inproc.run({ ...cniEnv('ADD', 'victim', pod), PODWIRE_CNI_INPROCESS: '0', PODWIRE_CONTROL_SOCKET: socket }, conf);
  await daemon.waitForOutput(/hanging after veth/, 20_000);
  t.same(readdirSync(join(data, 'killnet')).filter((f) => f.startsWith('10.')), ['10.244.1.2'], 'IP reserved when the daemon dies');
  t.match((await exec(host, ['ip', '-o', 'link'])).stdout, /pwv[0-9a-f]{12}/, 'veth exists when the daemon dies');
  process.kill(-daemon.child.pid!, 'SIGKILL');
  const res = await adding;
  t.equal(res.exitCode, 1);
  t.equal(res.json?.code, 11, `shim says try again later: ${res.stdout}`);

  const gc = await inproc.run({ CNI_COMMAND: 'GC' }, { ...conf, 'cni.dev/valid-attachments': [] });
  t.equal(gc.exitCode, 0, `GC: ${gc.stdout}`);
  t.same(readdirSync(join(data, 'killnet')).filter((f) => f.startsWith('10.')), [], 'GC released the reservation');
  t.notMatch((await exec(host, ['ip', '-o', 'link'])).stdout, /pwv[0-9a-f]{12}/, 'GC removed the veth');
  t.equal((await exec(pod, ['ip', 'link', 'show', 'eth0'])).exitCode, 1, 'the pod end went with it');

  // The runtime retries: the pod comes up on the in-process path (round-robin: the next IP).
  const retry = await inproc.run(cniEnv('ADD', 'victim', pod), conf);
  t.equal(retry.exitCode, 0, `retried ADD${retry.exitCode === 0 ? '' : `: ${retry.stdout}`}`);
  t.equal(((retry.json?.ips ?? []) as { address: string }[])[0]?.address, '10.244.1.3/24');
  t.equal((await inproc.run(cniEnv('DEL', 'victim', pod), conf)).exitCode, 0);
});
