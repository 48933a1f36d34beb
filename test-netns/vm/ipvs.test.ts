/**
 * IPVS through IpvsKernel against a real kernel: Debian's stock kernel under qemu (the host
 * kernel has no ip_vs). KERNEL_REQUIRES routes this file to the kernel-VM runner
 * (scripts/vm/run-tests.js): `npm run test:vm`.
 *
 * In a lab netns ("node"): a virtual service + 3 real servers (3 pod namespaces behind
 * veths), dumped back and compared with `ipvsadm -Ln`; real HTTP traffic to the VIP bound
 * on a dummy interface (like kube-proxy's kube-ipvs0) spreads round-robin; weight 0
 * takes a real server out of rotation; per-change errors; delete; IPv6; netns isolation.
 */
import { type Test } from 'tap';
import { labTest, type Lab } from '../harness';
import { notInVm } from './in-vm';
import { netnsRef } from '../../src/kernel';
import { NetlinkIpvs, checkIpvsAvailable, type IpvsEntry } from '../../src/kernel/ipvs';
import type { IpvsServiceKey } from '../../src/kernel/ipvs';
import type { Change } from '../../src/kernel/types';

export const KERNEL_REQUIRES = ['ip_vs', 'ip_vs_rr', 'ip_vs_wrr'];

const VIP = '10.96.0.10';
const svc: IpvsServiceKey = { family: 4, protocol: 'tcp', address: VIP, port: 80 };
const BACKENDS = ['10.244.1.2', '10.244.1.3', '10.244.1.4'];

const skip = notInVm('ip_vs');

async function has(lab: Lab, cmd: string): Promise<boolean> {
  return (await lab.exec(null, ['sh', '-c', `command -v ${cmd}`])).exitCode === 0;
}

/** Which backend answered each of `n` requests to the VIP (curl from the node netns). */
async function spread(lab: Lab, ns: string, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await lab.exec(ns, ['curl', '-s', '--max-time', '5', `http://${VIP}/`]);
    out.push(r.exitCode === 0 ? r.stdout.trim() : `curl exit ${r.exitCode}`);
  }
  return out;
}

function count(xs: string[]): Record<string, number> {
  const c: Record<string, number> = {};
  for (const x of xs) c[x] = (c[x] ?? 0) + 1;
  return c;
}

labTest('IPVS service with 3 real servers through IpvsKernel', { prefix: 'pwv', skip, timeout: 120_000 }, async (t: Test, lab: Lab) => {
  const ul = await lab.addUnderlay();
  const node = await lab.addNode(ul);
  const ref = netnsRef(node.ns);
  await checkIpvsAvailable(ref);
  const k = new NetlinkIpvs(ref);
  t.teardown(() => k.close());

  // the guest's own netns is untouched by what we do in the lab netns
  const rootIpvs = new NetlinkIpvs(undefined);
  const rootBefore = await rootIpvs.listServices();

  const add: Change<IpvsEntry>[] = [
    { op: 'add', entry: { kind: 'service', service: { ...svc, scheduler: 'rr' } } },
    ...BACKENDS.map((address): Change<IpvsEntry> => ({ op: 'add', entry: { kind: 'dest', service: svc, dest: { address, port: 8080, weight: 1 } } })),
  ];
  const r1 = await k.apply(add);
  t.same(r1, { applied: 4, failed: [] }, 'service + 3 dests in one batch');

  t.match(await k.listServices(), [{ ...svc, scheduler: 'rr', persistent: false, timeout: 0, netmask: '255.255.255.255' }]);
  const dests = (await k.listDests(svc)).sort((a, b) => a.address.localeCompare(b.address));
  t.same(dests.map((d) => [d.address, d.port, d.forward, d.weight]), BACKENDS.map((a) => [a, 8080, 'masq', 1]));

  if (await has(lab, 'ipvsadm')) {
    const l = await lab.execOk(node.ns, ['ipvsadm', '-Ln']);
    t.match(l, /TCP {2}10\.96\.0\.10:80 rr/, 'ipvsadm -Ln sees the service');
    for (const a of BACKENDS) t.match(l, new RegExp(`-> ${a.replace(/\./g, '\\.')}:8080\\s+Masq\\s+1\\s`), `ipvsadm -Ln sees ${a}`);
  } else t.comment('ipvsadm not installed: comparison skipped');

  // ---- real traffic: 3 pod netns with an HTTP server each, the VIP on a dummy interface
  const traffic = (await has(lab, 'curl')) && (await has(lab, 'busybox'));
  if (!traffic) t.comment('curl or busybox missing: traffic part skipped');
  if (traffic) {
    for (const [i, address] of BACKENDS.entries()) {
      const pod = await lab.addPod();
      await lab.wirePod(pod, node, { address, gateway: '10.244.1.1' });
      const dir = `/tmp/pwv-www-${process.pid}-${i}`;
      await lab.execOk(null, ['sh', '-c', `mkdir -p ${dir} && echo backend-${i} > ${dir}/index.html`]);
      lab.spawn(pod, ['busybox', 'httpd', '-f', '-p', '8080', '-h', dir]);
    }
    await lab.ip(node.ns, ['link', 'add', 'kube-ipvs0', 'type', 'dummy']);
    await lab.ip(node.ns, ['addr', 'add', `${VIP}/32`, 'dev', 'kube-ipvs0']);
    await lab.ip(node.ns, ['link', 'set', 'kube-ipvs0', 'up']);
    // wait for the three servers to listen
    for (const address of BACKENDS) {
      let ok = false;
      for (let i = 0; i < 50 && !ok; i++) {
        ok = (await lab.exec(node.ns, ['curl', '-s', '--max-time', '2', `http://${address}:8080/`])).exitCode === 0;
        if (!ok) await new Promise((res) => setTimeout(res, 100));
      }
      t.ok(ok, `backend ${address} answers directly`);
    }
    const c = count(await spread(lab, node.ns, 6));
    t.same(c, { 'backend-0': 2, 'backend-1': 2, 'backend-2': 2 }, 'rr spreads 6 requests 2/2/2 over the VIP');
  }

  // ---- edit: weight 0 on the second real server (graceful termination), wrr scheduler
  const r2 = await k.apply([
    { op: 'replace', entry: { kind: 'service', service: { ...svc, scheduler: 'wrr' } } },
    { op: 'replace', entry: { kind: 'dest', service: svc, dest: { address: BACKENDS[1]!, port: 8080, weight: 0 } } },
  ]);
  t.same(r2, { applied: 2, failed: [] });
  t.match(await k.listServices(), [{ scheduler: 'wrr' }]);
  t.match((await k.listDests(svc)).find((d) => d.address === BACKENDS[1]), { weight: 0 }, 'weight 0 dumped back');
  if (traffic) {
    const c = count(await spread(lab, node.ns, 4));
    t.notOk(c['backend-1'], 'a weight-0 real server gets no new connections');
    t.equal((c['backend-0'] ?? 0) + (c['backend-2'] ?? 0), 4, 'the other two serve everything');
  }

  // ---- per-change errors in one batch: the good changes still apply
  const r3 = await k.apply([
    { op: 'add', entry: { kind: 'service', service: { ...svc, scheduler: 'rr' } } },
    { op: 'delete', entry: { kind: 'dest', service: svc, dest: { address: '10.244.9.9', port: 8080, weight: 0 } } },
    { op: 'delete', entry: { kind: 'dest', service: svc, dest: { address: BACKENDS[2]!, port: 8080, weight: 0 } } },
    { op: 'add', entry: { kind: 'dest', service: { ...svc, port: 81 }, dest: { address: BACKENDS[0]!, port: 8080, weight: 1 } } },
  ]);
  t.equal(r3.applied, 1);
  t.same(r3.failed.map((f) => f.index), [0, 1, 3], 'EEXIST, missing dest, missing service');
  t.match(r3.failed[0]!.message, /EEXIST/);
  t.equal((await k.listDests(svc)).length, 2, 'the valid delete in the same batch applied');
  t.comment(`kernel errors: ${r3.failed.map((f) => f.message).join(' | ')}`);

  // ---- IPv6 service next to it
  const v6: IpvsServiceKey = { family: 6, protocol: 'udp', address: 'fd00::a', port: 53 };
  t.same(await k.apply([
    { op: 'add', entry: { kind: 'service', service: { ...v6, scheduler: 'rr' } } },
    { op: 'add', entry: { kind: 'dest', service: v6, dest: { address: 'fd00:244::2', port: 5353, weight: 3 } } },
  ]), { applied: 2, failed: [] });
  t.match((await k.listServices()).find((s) => s.family === 6), { ...v6, scheduler: 'rr', netmask: 128 });
  t.match(await k.listDests(v6), [{ address: 'fd00:244::2', port: 5353, weight: 3 }]);

  // ---- delete everything
  const r4 = await k.apply([
    { op: 'delete', entry: { kind: 'service', service: { ...svc, scheduler: 'wrr' } } },
    { op: 'delete', entry: { kind: 'service', service: { ...v6, scheduler: 'rr' } } },
  ]);
  t.same(r4, { applied: 2, failed: [] });
  t.same(await k.listServices(), []);
  t.same(await k.listDests(svc), [], 'the dests dump of a deleted service is empty (the kernel answers an empty dump)');
  if (await has(lab, 'ipvsadm')) t.notMatch(await lab.execOk(node.ns, ['ipvsadm', '-Ln']), /TCP|UDP/, 'ipvsadm -Ln: nothing left');

  t.same(await rootIpvs.listServices(), rootBefore, 'the guest root netns saw none of it');
  rootIpvs.close();
});
