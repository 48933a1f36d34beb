// Our nftables table read over netlink (nft-table.ts + nft-elements.ts) against the real
// kernel: the proxy's own renderer programs every kind of map and set it uses, and the
// netlink reader must find exactly what libnftables' JSON listing (parsed by adopt.ts) finds.
import { labTest } from '../harness';
import { netnsRef, openKernel } from '../../src/kernel';
import { FakeClock } from '../../src/daemon/testing/fake-clock';
import { parseTable } from '../../src/proxy/adopt';
import { proxierHarness, slice, svc } from '../../src/proxy/testing';

const isDynamic = (name: string): boolean => name.startsWith('affinity');
const sorted = <V>(m: Map<string, V> | undefined): [string, V][] => [...(m ?? new Map<string, V>())].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
const local = (ip: string) => ({ ip, node: 'node-a' });
const remote = (ip: string) => ({ ip, node: 'node-b' });

labTest('netlink read of the proxy table equals the libnftables listing, map by map', { prefix: 'hnd-tbl', requires: ['nftables'] }, async (t, lab) => {
  const ns = await lab.addNetns('n');
  const kernel = await openKernel(netnsRef(ns));
  t.teardown(() => kernel.close());
  const h = proxierHarness(kernel, new FakeClock());
  const objs = [
    svc('default/kubernetes', '10.96.0.1', { ports: [{ name: 'https', port: 443, targetPort: 6443 }] }),
    slice('default/kubernetes', [local('10.244.1.2'), remote('10.244.2.2')], [{ name: 'https', port: 6443 }]),
    // NodePort + externalIP, TCP and UDP, external policy Local (a local and a remote endpoint).
    svc('a/np', '10.96.1.10', { type: 'NodePort', externalIPs: ['198.18.50.1'], externalTrafficPolicy: 'Local', healthCheckNodePort: 31999, ports: [{ name: 't', port: 80, nodePort: 30080 }, { name: 'u', protocol: 'UDP', port: 53, targetPort: 5353, nodePort: 30053 }] }),
    slice('a/np', [local('10.244.1.3'), remote('10.244.2.3')], [{ name: 't', port: 8080 }, { name: 'u', port: 5353, protocol: 'UDP' }]),
    // LoadBalancer with source ranges (the interval set firewall-allow4: a prefix, a host, a /25).
    svc('a/lb', '10.96.1.20', { type: 'LoadBalancer', loadBalancerIPs: ['198.18.60.1'], loadBalancerSourceRanges: ['198.18.0.0/16', '198.19.9.9/32', '203.0.113.128/25'], ports: [{ port: 443, targetPort: 8443, nodePort: 30443 }] }),
    slice('a/lb', ['10.244.2.4', '10.244.2.5', '10.244.2.6'], [{ port: 8443 }]),
    svc('a/lb-all', '10.96.1.21', { type: 'LoadBalancer', loadBalancerIPs: ['198.18.60.2'], loadBalancerSourceRanges: ['0.0.0.0/0'], ports: [{ port: 80, nodePort: 30081 }] }),
    slice('a/lb-all', ['10.244.2.7']),
    // IPv6: ClusterIP + NodePort + LB with a v6 source range; a local endpoint (hairpin6).
    svc('a/v6', 'fd00:96::10', { type: 'LoadBalancer', loadBalancerIPs: ['2001:db8:60::1'], loadBalancerSourceRanges: ['2001:db8::/32', 'fd00:1::5'], ports: [{ port: 80, nodePort: 30082 }] }),
    slice('a/v6', [local('fd00:244:1::2'), remote('fd00:244:2::2')], [{ port: 8080 }]),
    // SCTP; ClientIP affinity (its own chain and dynamic sets); no endpoints (reject); Local with no local endpoint (drop).
    svc('a/sctp', '10.96.1.30', { ports: [{ protocol: 'SCTP', port: 9, targetPort: 9 }] }),
    slice('a/sctp', ['10.244.2.8'], [{ port: 9, protocol: 'SCTP' }]),
    svc('a/aff', '10.96.1.40', { sessionAffinity: 'ClientIP', affinityTimeout: 600 }),
    slice('a/aff', ['10.244.2.9', '10.244.2.10']),
    svc('a/none', '10.96.1.50', { type: 'NodePort', ports: [{ port: 80, nodePort: 30084 }] }),
    svc('a/nolocal', '10.96.1.60', { type: 'NodePort', externalTrafficPolicy: 'Local', healthCheckNodePort: 31998, ports: [{ port: 80, nodePort: 30085 }] }),
    slice('a/nolocal', [remote('10.244.2.11')]),
  ];
  for (const o of objs) h.apply(o);
  await h.proxier.sync(new AbortController().signal);
  t.equal(h.proxier.lastSync?.transactions, 2, 'programmed (skeleton + default/kubernetes, then the rest)');

  const viaNetlink = await kernel.nft.readTable!('podwire', isDynamic);
  const listed = parseTable(await kernel.nft.listJson('table inet podwire'), 'podwire', isDynamic);
  t.same(sorted(viaNetlink.objects), sorted(listed.objects), 'the same sets, maps and chains');
  t.same([...viaNetlink.maps].sort(), [...listed.maps].sort(), 'the same of them are maps');
  t.same(viaNetlink.unknown, [], 'every non-dynamic set readable over netlink');
  t.same(listed.unknown, [], 'and through libnftables');
  t.same([...viaNetlink.elements.keys()].sort(), [...listed.elements.keys()].sort(), 'the same sets read');
  for (const [name, els] of listed.elements) t.same(sorted(viaNetlink.elements.get(name)), sorted(els), `${name}: ${els.size} elements, equal`);
  t.same(sorted(viaNetlink.handles), sorted(listed.handles), 'the same rules (handles, per chain, in order)');
  // What the comparison covered: each kind of element the renderer writes.
  const sizes = Object.fromEntries([...listed.elements].map(([n, m]) => [n, m.size]));
  t.match(sizes, { services4: 12, 'no-endpoints4': 1, nodeports4: 4, 'no-endpoint-nodeports4': 2, 'endpoints4-tcp': 14, 'np-endpoints4-tcp': 5, 'endpoints4-udp': 3, 'endpoints4-sctp': 1, 'cluster-ips4': 8, hairpin4: 2, firewall4: 2, 'firewall-allow4': 4, services6: 2, 'endpoints6-tcp': 4, 'firewall-allow6': 2, hairpin6: 1 }, 'every kind of element present');
  t.equal(listed.elements.get('firewall-allow4')?.has('198.18.60.1 . tcp . 443 . 198.18.0.0/16'), true, 'a prefix');
  t.equal(listed.elements.get('firewall-allow4')?.has('198.18.60.1 . tcp . 443 . 198.19.9.9'), true, 'a host');
  t.equal(listed.elements.get('firewall-allow6')?.has('2001:db8:60::1 . tcp . 80 . 2001:db8::/32'), true, 'an IPv6 prefix');
  t.ok([...viaNetlink.objects.keys()].some(isDynamic), 'affinity sets exist (their elements are not read)');

  // A restart adopts the table through the netlink read: its first sync changes no element.
  const again = proxierHarness(kernel, new FakeClock());
  for (const o of objs) again.apply(o);
  await again.proxier.reconcileOnStart(new AbortController().signal);
  await again.proxier.sync(new AbortController().signal);
  t.equal(again.proxier.lastSync?.elementChanges, 0, 'a restart adopts every element as it is (no element change)');

  // A foreign element the renderer never writes (a port range) makes that set unreadable in both.
  await lab.execOk(ns, ['nft', 'add', 'element', 'inet', 'podwire', 'firewall-allow4', '{ 198.18.60.9 . tcp . 1 . 198.18.1.1-198.18.1.5 }']);
  t.same((await kernel.nft.readTable!('podwire', isDynamic)).unknown, ['firewall-allow4'], 'a range: unreadable over netlink');
  t.same(parseTable(await kernel.nft.listJson('table inet podwire'), 'podwire', isDynamic).unknown, ['firewall-allow4'], 'as through libnftables');

  // IPv6 addresses libnftables prints in inet_ntop's dotted forms (IPv4-mapped, -compatible):
  // the reader prints them the same (common/ip formatIPv6 with inetNtop), byte for byte.
  // (Non-overlapping: the set is an interval set, and 2001:db8::/32 is in it already.)
  const dotted = ['::ffff:198.18.0.0/112', '::ffff:198.19.0.1', '::198.18.0.2', '::1', '::', '2001:db9:0:1:1:1:1:1', '2001:db9::1:0:0:1'];
  await lab.execOk(ns, ['nft', 'add', 'element', 'inet', 'podwire', 'firewall-allow6', `{ ${dotted.map((a) => `2001:db8:60::1 . tcp . 80 . ${a}`).join(', ')} }`]);
  const listed6 = parseTable(await kernel.nft.listJson('table inet podwire'), 'podwire', isDynamic).elements.get('firewall-allow6');
  for (const a of dotted) t.equal(listed6?.has(`2001:db8:60::1 . tcp . 80 . ${a}`), true, `libnftables lists ${a}`);
  t.same(sorted((await kernel.nft.readTable!('podwire', isDynamic)).elements.get('firewall-allow6')), sorted(listed6), 'and the netlink read finds the same strings');

  const missing = await kernel.nft.readTable!('nosuchtable', isDynamic).catch((e: unknown) => e);
  t.equal((missing as { errno?: number }).errno, 2, 'a missing table: ENOENT');
});

labTest('the proxier reads back over netlink: a rule changed in place and a deleted element are repaired', { prefix: 'hnd-tbl', requires: ['nftables'] }, async (t, lab) => {
  const ns = await lab.addNetns('n');
  const kernel = await openKernel(netnsRef(ns));
  t.teardown(() => kernel.close());
  const clock = new FakeClock();
  const h = proxierHarness(kernel, clock);
  const signal = new AbortController().signal;
  h.apply(svc('default/kubernetes', '10.96.0.1', { ports: [{ name: 'https', port: 443, targetPort: 6443 }] }));
  h.apply(slice('default/kubernetes', ['10.244.2.2', '10.244.2.3'], [{ name: 'https', port: 6443 }]));
  await h.proxier.sync(signal);
  const period = h.proxier.section.syncPeriodMs;
  clock.advance(period);
  await h.proxier.sync(signal); // the first read-back learns the chains' prints
  t.equal(h.proxier.lastSync?.readBack?.drift, 0, 'a clean table');
  const before = parseTable(await kernel.nft.listJson('table inet podwire'), 'podwire', isDynamic);
  const handle = before.handles.get('mark-for-masquerade')![0]!;
  await lab.execOk(ns, ['nft', 'replace', 'rule', 'inet', 'podwire', 'mark-for-masquerade', 'handle', String(handle), 'meta', 'mark', 'set', 'meta', 'mark', '|', '0x8']);
  await lab.execOk(ns, ['nft', 'delete', 'element', 'inet', 'podwire', 'endpoints4-tcp', '{ 10.96.0.1 . tcp . 443 . 1 }']);
  clock.advance(period);
  await h.proxier.sync(signal);
  const s = h.proxier.lastSync!;
  t.equal(s.readBack?.drift, 2, `one chain and one element found changed (${JSON.stringify(s.readBack)})`);
  const after = parseTable(await kernel.nft.listJson('table inet podwire'), 'podwire', isDynamic);
  t.same(after.rules.get('mark-for-masquerade'), before.rules.get('mark-for-masquerade'), 'the rule is as we wrote it again');
  t.equal(after.elements.get('endpoints4-tcp')?.get('10.96.0.1 . tcp . 443 . 1'), '10.244.2.3 . 6443', 'the element is back');
  clock.advance(period);
  await lab.execOk(ns, ['nft', 'add', 'table', 'inet', 'hnd-other']);
  await h.proxier.sync(signal);
  t.match(h.proxier.lastSync?.readBack, { drift: 0, unchanged: undefined }, 'and the next read-back (after a foreign commit) finds nothing to repair');
});
