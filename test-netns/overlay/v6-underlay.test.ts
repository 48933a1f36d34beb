/**
 * vxlan over an IPv6 underlay: two nodes whose only node IPs are IPv6 (2001:db8:18::/64 on one
 * bridge), IPv4 pod CIDRs carried through `pw.1` with an IPv6 VTEP (`local <v6 node IP>`), the
 * pod MTU = underlay − 70, FDB remotes are the peers' IPv6 node IPs, and packets cross the
 * tunnel. The overlay components run in this process on the lab's real kernels (netlink),
 * state from an in-memory source. When the kernel refuses an IPv6 VXLAN device the test says
 * so and skips (it never passes silently).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { silentLogger, systemClock } from '../../src/common';
import { loadConfig } from '../../src/daemon/config';
import { FakeSource, nodeObject } from '../../src/daemon/testing/fake-source';
import { clusterStateOf, RecordingNodeWriter } from '../../src/k8s';
import { netnsRef, openKernel, type Kernel } from '../../src/kernel';
import { defaultOverlaySection, OverlayComponent, vtepMacFor } from '../../src/overlay';
import { IpAddress } from '../../src/common/ip';
import { exec, execOk, ip, labTest, netnsPath, ping } from '../harness';

const V6 = ['2001:db8:18::1', '2001:db8:18::2'];

labTest('vxlan over an IPv6 underlay (v6 VTEP, MTU − 70)', { prefix: 'qo-v6u', requires: ['veth', 'bridge', 'vxlan', 'nftables'], timeout: 60_000 }, async (t, lab) => {
  // Can this kernel make a VXLAN device with an IPv6 local address at all?
  const probe = await lab.addNetns('probe');
  await ip(probe, ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1']);
  await ip(probe, ['addr', 'add', '2001:db8:99::1/64', 'dev', 'eth0', 'nodad']);
  const can = await exec(probe, ['ip', 'link', 'add', 'vx6', 'type', 'vxlan', 'id', '1', 'dstport', '8472', 'local', '2001:db8:99::1', 'dev', 'eth0']);
  if (can.exitCode !== 0) {
    t.pass('IPv6 underlay', { skip: `SKIPPED: this kernel refuses an IPv6 VXLAN device (${can.stderr.trim()}); the IPv6 underlay is not tested here` });
    return;
  }

  const ul = await lab.addUnderlay({ role: 'ul' });
  const nodes = [await lab.addNode(ul, { role: 'n1', address: '198.18.0.1/24' }), await lab.addNode(ul, { role: 'n2', address: '198.18.0.2/24' })];
  for (const [i, n] of nodes.entries()) {
    await ip(n.ns, ['addr', 'add', `${V6[i]}/64`, 'dev', 'eth0', 'nodad']);
    // Only IPv6 between the nodes: the v4 address stays for the harness, but no v4 path exists.
    await ip(n.ns, ['addr', 'del', '198.18.0.' + String(i + 1) + '/24', 'dev', 'eth0']);
  }
  const dir = mkdtempSync(path.join(tmpdir(), 'qo-v6u-'));
  const ac = new AbortController();
  const kernels: Kernel[] = [];
  t.teardown(() => {
    ac.abort();
    for (const k of kernels) k.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const source = new FakeSource();
  source.apply(nodeObject('n1', ['10.244.1.0/24'], V6[0]));
  source.apply(nodeObject('n2', ['10.244.2.0/24'], V6[1]));
  source.markSynced();
  const comps: OverlayComponent[] = [];
  for (const [i, n] of nodes.entries()) {
    const name = `n${i + 1}`;
    const config = loadConfig({
      argv: ['--node-name', name, '--cluster-cidr', '10.244.0.0/16', '--control-socket', path.join(dir, name, 'podwire.sock'), '--backend', 'vxlan'],
      env: {},
      readFile: () => {
        throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
      },
    }).config;
    const kernel = await openKernel(netnsRef(netnsPath(n.ns)));
    kernels.push(kernel);
    comps.push(new OverlayComponent({ config, section: defaultOverlaySection(config), state: clusterStateOf(source), node: new RecordingNodeWriter(), kernel, logger: silentLogger, clock: systemClock, metrics: new Registry() }));
  }
  for (const c of comps) await c.sync(ac.signal);
  t.same(comps[0]!.status().invalidPeers, [], 'no peer rejected');

  const [n1, n2] = nodes as [typeof nodes[0], typeof nodes[0]];
  const link = await execOk(n1.ns, ['ip', '-d', 'link', 'show', 'pw.1']);
  t.match(link, /vxlan id 1 local 2001:db8:18::1 dev eth0 .*dstport 8472/, 'pw.1: an IPv6 VTEP on the underlay device', { link });
  t.match(link, /mtu 1430 /, 'pw.1 MTU = 1500 − 70 (IPv6 outer header)');
  t.equal(comps[0]!.status().mtu, 1430, 'the pod MTU podwire reports (and writes into the CNI conflist) is 1430');
  const fdb = await execOk(n1.ns, ['bridge', 'fdb', 'show', 'dev', 'pw.1']);
  const mac2 = vtepMacFor(IpAddress.parse(V6[1]!));
  t.ok(fdb.includes(`${mac2} dst ${V6[1]} self permanent`), 'n1: FDB n2\'s VTEP MAC -> n2\'s IPv6 node IP', { fdb });
  const routes = await execOk(n1.ns, ['ip', 'route', 'show', 'proto', '77']);
  t.match(routes, /10\.244\.2\.0\/24 via 10\.244\.2\.0 dev pw\.1 .*onlink/, 'n1: IPv4 pod CIDR route through pw.1');
  const p = await ping(n1.ns, '10.244.2.0', { count: 2 });
  t.ok(p.ok, 'n1 -> n2\'s VTEP address over VXLAN-in-IPv6', { output: p.output });
  const enc = await execOk(n2.ns, ['ip', '-s', 'link', 'show', 'pw.1']);
  t.match(enc, /RX:[^\n]*\n\s+\d+\s+[1-9]\d*/, 'n2 received packets on pw.1 (they came through the tunnel)', { enc });

  // A peer on the other underlay family cannot share pw.1: named and skipped, n2 keeps working.
  source.apply(nodeObject('n3', ['10.244.3.0/24'], '198.18.0.3'));
  await comps[0]!.sync(ac.signal);
  const bad = comps[0]!.status().invalidPeers as { node: string; field: string; reason: string }[];
  t.match(bad, [{ node: 'n3', field: 'status.addresses', reason: /IPv4 node IP, but this node's underlay is IPv6/ }], 'an IPv4 peer on an IPv6 underlay is reported by name and field');
  t.ok((await ping(n1.ns, '10.244.2.0', { count: 1 })).ok, 'n2 still reachable');
});
