/**
 * On a host kernel without ip_vs (this project's CI machines), the start-up check and every
 * IpvsKernel call fail with the message that names the module and suggests nftables mode,
 * through the real addon and CTRL_CMD_GETFAMILY. Where the host has ip_vs this is skipped;
 * the IPVS behaviour itself is tested in the kernel VM (test-netns/vm/ipvs.test.ts).
 */
import { existsSync } from 'node:fs';
import { labTest } from '../harness';
import { netnsRef } from '../../src/kernel';
import { NetlinkIpvs, checkIpvsAvailable } from '../../src/kernel/ipvs';

const hostHasIpvs = existsSync('/proc/net/ip_vs') || existsSync('/sys/module/ip_vs');

labTest('no ip_vs on the host: the error names the module and nftables mode', { prefix: 'pwv', skip: hostHasIpvs ? 'this kernel has ip_vs (covered by the kernel-VM test)' : undefined }, async (t, lab) => {
  const ns = await lab.addNetns('ipvs');
  const err = await checkIpvsAvailable(netnsRef(ns)).then(() => null, (e: unknown) => e as Error & { errno?: number });
  t.ok(err, 'checkIpvsAvailable rejects');
  t.match(err?.message, /IPVS is not available in \/run\/netns\//);
  t.match(err?.message, /modprobe ip_vs/);
  t.match(err?.message, /nftables mode/);
  t.equal(err?.errno, 2, 'ENOENT from the genetlink controller');
  const k = new NetlinkIpvs(netnsRef(ns));
  await t.rejects(k.listServices(), /modprobe ip_vs/);
  await t.rejects(k.apply([{ op: 'add', entry: { kind: 'service', service: { family: 4, protocol: 'tcp', address: '10.96.0.1', port: 80, scheduler: 'rr' } } }]), /nftables mode/);
  k.close();
});
