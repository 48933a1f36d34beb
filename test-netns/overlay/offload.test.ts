/**
 * TX checksum offload through the native SIOCETHTOOL binding on a real VXLAN device in a
 * lab namespace: read, set off, set on, each checked with `ethtool -k` when it is installed
 * (the kernel's own view), and the overlay's `auto` decision on this kernel leaves it on.
 */
import os from 'node:os';
import { exec, ip, labTest, netnsPath } from '../harness';
import { netnsRef } from '../../src/kernel';
import { ethtoolTxChecksum } from '../../src/kernel/native';
import { decideTxChecksum, kernelVersion } from '../../src/overlay/offload';

labTest('vxlan TX checksum offload via the ethtool ioctl', { prefix: 'qo-csum', requires: ['veth', 'vxlan'], timeout: 30_000 }, async (t, lab) => {
  const ns = await lab.addNetns('n');
  await ip(ns, ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1']);
  await ip(ns, ['addr', 'add', '198.18.0.1/24', 'dev', 'eth0']);
  await ip(ns, ['link', 'add', 'pw.1', 'type', 'vxlan', 'id', '1', 'dstport', '8472', 'nolearning', 'local', '198.18.0.1', 'dev', 'eth0']);
  const ref = netnsRef(netnsPath(ns));
  const ethtool = (await exec(null, ['sh', '-c', 'command -v ethtool'])).exitCode === 0;
  const kernelView = async (): Promise<string | undefined> => {
    if (!ethtool) return undefined;
    const r = await exec(ns, ['ethtool', '-k', 'pw.1']);
    return /^tx-checksumming: (on|off)/m.exec(r.stdout)?.[1];
  };
  t.equal(await ethtoolTxChecksum(ref, 'pw.1'), true, 'a new VXLAN device has TX checksum offload on');
  t.equal(await ethtoolTxChecksum(ref, 'pw.1', false), false, 'set off');
  if (ethtool) t.equal(await kernelView(), 'off', 'ethtool -k agrees: off');
  else t.comment('ethtool not installed: the kernel view is checked only through the ioctl read-back');
  t.equal(await ethtoolTxChecksum(ref, 'pw.1'), false, 'reads back off');
  t.equal(await ethtoolTxChecksum(ref, 'pw.1', true), true, 'set on again');
  if (ethtool) t.equal(await kernelView(), 'on', 'ethtool -k agrees: on');
  await t.rejects(ethtoolTxChecksum(ref, 'nosuch0'), /ENODEV|No such device/, 'an unknown device is a clear error');
  const [maj, min] = kernelVersion(os.release()) ?? [0, 0];
  t.equal(decideTxChecksum('auto', os.release(), true).action, maj > 5 || (maj === 5 && min >= 7) ? 'leave' : 'off', `auto on this kernel (${os.release()})`);
});
