/**
 * Tests of the guard's neighbour, conntrack and sysctl-tree sections, in the style of
 * guard.test.ts: each change is made in a scratch `pwg-` namespace standing in for the root, and
 * the guard pointed at it must report it; the kernel's own churn (neighbour cache states, NOARP
 * entries for multicast/broadcast, conntrack entries of other addresses or timing out) must not be
 * reported. The real root namespace is never changed (the outer labTest guard watches it).
 */
import t from 'tap';
import { existsSync } from 'node:fs';
import {
  diffSnapshots,
  execOk,
  Guard,
  ip,
  labTest,
  normaliseConntrack,
  normaliseNeighbours,
  normaliseSysctlTrees,
  ping,
  snapshot,
  type Lab,
  type SectionDiff,
} from '../harness';

const PREFIX = 'pwg-watch';

function lines(d: SectionDiff[]): string[] {
  return d.flatMap((s) => [...s.removed.map((l) => `${s.section}: - ${l}`), ...s.added.map((l) => `${s.section}: + ${l}`)]);
}

// ---- normalisers (no namespaces) ------------------------------------------------------------

t.test('normaliseNeighbours keeps configuration, drops the kernel cache', async (t) => {
  const links = JSON.stringify([
    { ifname: 'lo', flags: ['LOOPBACK', 'UP'] },
    { ifname: 'eth0', flags: ['BROADCAST', 'MULTICAST', 'UP'] },
    { ifname: 'tun0', flags: ['POINTOPOINT', 'NOARP', 'UP'] },
  ]);
  const neigh = JSON.stringify([
    { dst: '10.244.1.9', dev: 'eth0', lladdr: '02:00:00:00:00:09', state: ['PERMANENT'] },
    { dst: 'fd00:10:244::9', dev: 'eth0', lladdr: '02:00:00:00:00:0b', router: null, state: ['PERMANENT'] },
    { dst: '10.244.1.11', dev: 'eth0', lladdr: '02:00:00:00:00:0c', extern_learn: null, state: ['STALE'] },
    { dst: '10.244.1.10', dev: 'eth0', lladdr: '02:00:00:00:00:0a', state: ['NOARP'] },
    { dst: '224.0.0.1', dev: 'eth0', lladdr: '01:00:5e:00:00:01', state: ['NOARP'] },
    { dst: 'ff02::1', dev: 'eth0', lladdr: '33:33:00:00:00:01', state: ['NOARP'] },
    { dst: '198.18.77.255', dev: 'eth0', lladdr: 'ff:ff:ff:ff:ff:ff', state: ['NOARP'] },
    { dst: '0.0.0.0', dev: 'lo', lladdr: '00:00:00:00:00:00', state: ['NOARP'] },
    { dst: '10.0.0.2', dev: 'tun0', state: ['NOARP'] },
    ...['REACHABLE', 'STALE', 'DELAY', 'PROBE', 'INCOMPLETE', 'FAILED', 'NONE'].map((s, i) => ({ dst: `198.18.0.${i + 1}`, dev: 'eth0', lladdr: '02:aa:00:00:00:01', state: [s] })),
  ]);
  const proxy = JSON.stringify([{ dst: '10.244.1.12', dev: 'eth0', proxy: null }]);
  t.same(normaliseNeighbours(neigh, proxy, links), [
    'inet 10.244.1.10 dev eth0 lladdr 02:00:00:00:00:0a NOARP',
    'inet 10.244.1.11 dev eth0 lladdr 02:00:00:00:00:0c extern_learn',
    'inet 10.244.1.9 dev eth0 lladdr 02:00:00:00:00:09 PERMANENT',
    'inet6 fd00:10:244::9 dev eth0 lladdr 02:00:00:00:00:0b PERMANENT router',
    'proxy inet 10.244.1.12 dev eth0',
  ]);
  t.same(normaliseNeighbours('', '', ''), [], 'empty output');
});

t.test('normaliseConntrack keeps tuples of entries touching the test ranges', async (t) => {
  const out = [
    'ipv4     2 tcp      6 431999 ESTABLISHED src=10.244.1.2 dst=10.96.0.1 sport=41000 dport=443 src=10.96.0.1 dst=10.244.1.2 sport=443 dport=41000 [ASSURED] mark=0 zone=0 use=1',
    'ipv4     2 udp      17 29 src=192.0.2.2 dst=192.0.2.1 sport=5353 dport=53 src=192.0.2.1 dst=192.0.2.2 sport=53 dport=5353 mark=0 use=1',
    'ipv4     2 udp      17 29 src=10.244.1.2 dst=169.254.20.10 sport=5353 dport=53 [UNREPLIED] src=169.254.20.10 dst=10.244.1.2 sport=53 dport=5353 mark=7 zone=3 use=1',
    'ipv6     10 icmpv6   58 29 src=fd00:10:244::2 dst=fd00::1 type=128 code=0 id=9 src=fd00::1 dst=fd00:10:244::2 type=129 code=0 id=9 mark=0 use=1',
    // /proc/net/nf_conntrack spells IPv6 addresses out; the same entry as the CLI prints it
    'ipv6     10 icmpv6   58 29 src=fd00:0010:0244:0000:0000:0000:0000:0002 dst=fd00:0000:0000:0000:0000:0000:0000:0001 type=128 code=0 id=9 src=fd00:0000:0000:0000:0000:0000:0000:0001 dst=fd00:0010:0244:0000:0000:0000:0000:0002 type=129 code=0 id=9 mark=0 zone=0 use=2',
    'ipv4     2 icmp     1 29 src=198.19.0.5 dst=8.8.8.8 type=8 code=0 id=1 src=8.8.8.8 dst=198.19.0.5 type=0 code=0 id=1 mark=0 use=1',
    'ipv4     2 icmp     1 29 src=198.20.0.5 dst=8.8.8.8 type=8 code=0 id=1 src=8.8.8.8 dst=198.20.0.5 type=0 code=0 id=1 mark=0 use=1',
    'conntrack v1.4.7 (conntrack-tools): 6 flow entries have been shown.',
  ].join('\n');
  t.same(normaliseConntrack(out), [
    'ipv4 icmp src=198.19.0.5 dst=8.8.8.8 type=8 code=0 id=1 src=8.8.8.8 dst=198.19.0.5 type=0 code=0 id=1',
    'ipv4 tcp src=10.244.1.2 dst=10.96.0.1 sport=41000 dport=443 src=10.96.0.1 dst=10.244.1.2 sport=443 dport=41000',
    'ipv4 udp src=10.244.1.2 dst=169.254.20.10 sport=5353 dport=53 src=169.254.20.10 dst=10.244.1.2 sport=53 dport=5353 zone=3',
    'ipv6 icmpv6 src=fd00:10:244::2 dst=fd00::1 type=128 code=0 id=9 src=fd00::1 dst=fd00:10:244::2 type=129 code=0 id=9',
  ], 'state, timeout, flags, mark, use dropped; IPv6 compressed; 192.0.2.x, 198.20.x and plain fd00::/64 are not ours');
});

t.test('normaliseSysctlTrees', async (t) => {
  const out = '/proc/sys/net/ipv4/conf/all/rp_filter:2\n/proc/sys/net/ipv4/conf/eth0/rp_filter:0\n/proc/sys/net/bridge/bridge-nf-call-iptables:1\n';
  t.same(normaliseSysctlTrees(out), {
    'sysctl-ipv4-conf': ['net.ipv4.conf.all.rp_filter = 2', 'net.ipv4.conf.eth0.rp_filter = 0'],
    'sysctl-bridge': ['net.bridge.bridge-nf-call-iptables = 1'],
  });
  t.same(normaliseSysctlTrees('/proc/sys/net/ipv4/conf/lo/forwarding:0\n')['sysctl-bridge'], ['net.bridge: absent'], 'no br_netfilter: one "absent" line');
});

// ---- in a stand-in namespace ----------------------------------------------------------------

/** A stand-in with a veth `pwv0` (198.18.201.1/24) whose peer `pwv1` (198.18.201.2) is in another lab namespace. */
async function standInWithPeer(lab: Lab, role: string): Promise<{ ns: string; peer: string }> {
  const ns = await lab.addNetns(role);
  const peer = await lab.addNetns(`${role}p`);
  await ip(ns, ['link', 'add', 'pwv0', 'type', 'veth', 'peer', 'name', 'pwv1', 'netns', peer]);
  await ip(ns, ['addr', 'add', '198.18.201.1/24', 'brd', '+', 'dev', 'pwv0']);
  await ip(peer, ['addr', 'add', '198.18.201.2/24', 'dev', 'pwv1']);
  // no DAD (it takes a second or two per link): the link-local addresses are valid at once
  await execOk(ns, ['sysctl', '-q', '-w', 'net.ipv6.conf.pwv0.accept_dad=0']);
  await execOk(peer, ['sysctl', '-q', '-w', 'net.ipv6.conf.pwv1.accept_dad=0']);
  await ip(ns, ['link', 'set', 'pwv0', 'up']);
  await ip(peer, ['link', 'set', 'pwv1', 'up']);
  // wait for the IPv6 link-local addresses, so their routes do not appear mid-test
  for (const [n, dev] of [[ns, 'pwv0'], [peer, 'pwv1']] as const) {
    for (let i = 0; i < 100; i++) {
      const a = await ip(n, ['-6', 'addr', 'show', 'dev', dev, 'scope', 'link']);
      if (/fe80::/.test(a) && !/tentative/.test(a)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return { ns, peer };
}

const ctInsert = (ns: string, args: string[]): Promise<string> => execOk(ns, ['conntrack', '-I', ...args, '-t', '120']);
const CT_SVC = ['-p', 'tcp', '-s', '10.244.1.2', '-d', '10.96.0.1', '--sport', '41000', '--dport', '443', '-r', '10.96.0.1', '-q', '10.244.1.2', '--reply-port-src', '443', '--reply-port-dst', '41000', '--state', 'ESTABLISHED'];

interface Change {
  name: string;
  section: string;
  expect: RegExp;
  setup?: (ns: string) => Promise<unknown>;
  apply: (ns: string) => Promise<unknown>;
  /** skip reason, decided at run time */
  skip?: () => string | null;
}

const bridgeTree = (ns: string): Promise<boolean> => execOk(ns, ['ls', '/proc/sys/net/bridge']).then(() => true, () => false);

const CHANGES: Change[] = [
  {
    name: 'a permanent IPv4 neighbour added',
    section: 'neighbours',
    expect: /^inet 10\.244\.1\.9 dev pwv0 lladdr 02:00:00:00:00:09 PERMANENT$/,
    apply: (ns) => ip(ns, ['neigh', 'add', '10.244.1.9', 'lladdr', '02:00:00:00:00:09', 'dev', 'pwv0']),
  },
  {
    name: 'a permanent IPv6 neighbour added',
    section: 'neighbours',
    expect: /^inet6 fd00:10:244::9 dev pwv0 .*PERMANENT/,
    apply: (ns) => ip(ns, ['-6', 'neigh', 'add', 'fd00:10:244::9', 'lladdr', '02:00:00:00:00:0b', 'dev', 'pwv0']),
  },
  {
    name: 'a permanent neighbour removed',
    section: 'neighbours',
    expect: /^inet 10\.244\.1\.9 /,
    setup: (ns) => ip(ns, ['neigh', 'add', '10.244.1.9', 'lladdr', '02:00:00:00:00:09', 'dev', 'pwv0']),
    apply: (ns) => ip(ns, ['neigh', 'del', '10.244.1.9', 'dev', 'pwv0']),
  },
  {
    name: 'a permanent neighbour\'s lladdr changed',
    section: 'neighbours',
    expect: /^inet 10\.244\.1\.9 dev pwv0 lladdr 02:00:00:00:00:99 PERMANENT/,
    setup: (ns) => ip(ns, ['neigh', 'add', '10.244.1.9', 'lladdr', '02:00:00:00:00:09', 'dev', 'pwv0']),
    apply: (ns) => ip(ns, ['neigh', 'replace', '10.244.1.9', 'lladdr', '02:00:00:00:00:99', 'dev', 'pwv0']),
  },
  {
    name: 'a NOARP neighbour set by hand',
    section: 'neighbours',
    expect: /^inet 10\.244\.1\.10 dev pwv0 lladdr 02:00:00:00:00:0a NOARP/,
    apply: (ns) => ip(ns, ['neigh', 'add', '10.244.1.10', 'lladdr', '02:00:00:00:00:0a', 'dev', 'pwv0', 'nud', 'noarp']),
  },
  {
    name: 'an extern_learn neighbour added',
    section: 'neighbours',
    expect: /^inet 10\.244\.1\.11 dev pwv0 .*extern_learn/,
    apply: (ns) => ip(ns, ['neigh', 'add', '10.244.1.11', 'lladdr', '02:00:00:00:00:0c', 'dev', 'pwv0', 'extern_learn']),
  },
  {
    name: 'a proxy neighbour added',
    section: 'neighbours',
    expect: /^proxy inet 10\.244\.1\.12 dev pwv0/,
    apply: (ns) => ip(ns, ['neigh', 'add', 'proxy', '10.244.1.12', 'dev', 'pwv0']),
  },
  {
    name: 'a conntrack entry for a Service address appeared',
    section: 'conntrack',
    expect: /^ipv4 tcp src=10\.244\.1\.2 dst=10\.96\.0\.1 sport=41000 dport=443 /,
    apply: (ns) => ctInsert(ns, CT_SVC),
  },
  {
    name: 'a conntrack entry for node-local DNS appeared',
    section: 'conntrack',
    expect: /^ipv4 udp src=10\.244\.1\.2 dst=169\.254\.20\.10 /,
    apply: (ns) =>
      ctInsert(ns, ['-p', 'udp', '-s', '10.244.1.2', '-d', '169.254.20.10', '--sport', '5353', '--dport', '53', '-r', '169.254.20.10', '-q', '10.244.1.2', '--reply-port-src', '53', '--reply-port-dst', '5353']),
  },
  {
    name: 'an IPv6 conntrack entry for a pod address appeared',
    section: 'conntrack',
    expect: /^ipv6 udp src=fd00:10:244::2 /,
    apply: (ns) =>
      ctInsert(ns, ['-p', 'udp', '-s', 'fd00:10:244::2', '-d', 'fd00:10:96::a', '--sport', '5353', '--dport', '53', '-r', 'fd00:10:96::a', '-q', 'fd00:10:244::2', '--reply-port-src', '53', '--reply-port-dst', '5353']),
  },
  {
    name: 'lab traffic tracked by conntrack',
    section: 'conntrack',
    expect: /^ipv4 icmp src=198\.18\.201\.1 dst=198\.18\.201\.2 type=8 /,
    // a ct rule makes conntrack track this namespace (hooks are registered on demand)
    setup: (ns) => execOk(ns, ['nft', 'add table inet pwct; add chain inet pwct c { type filter hook output priority 0; }; add rule inet pwct c ct state new accept']),
    apply: (ns) => ping(ns, '198.18.201.2', { count: 1 }),
  },
  {
    name: 'net.ipv4.conf.all.rp_filter changed',
    section: 'sysctl-ipv4-conf',
    expect: /^net\.ipv4\.conf\.all\.rp_filter = 2$/,
    apply: (ns) => execOk(ns, ['sysctl', '-q', '-w', 'net.ipv4.conf.all.rp_filter=2']),
  },
  {
    name: 'a per-link net.ipv4.conf key changed',
    section: 'sysctl-ipv4-conf',
    expect: /^net\.ipv4\.conf\.pwv0\.proxy_arp = 1$/,
    apply: (ns) => execOk(ns, ['sysctl', '-q', '-w', 'net.ipv4.conf.pwv0.proxy_arp=1']),
  },
  {
    name: 'net.ipv4.conf.default key changed',
    section: 'sysctl-ipv4-conf',
    expect: /^net\.ipv4\.conf\.default\.accept_local = 1$/,
    apply: (ns) => execOk(ns, ['sysctl', '-q', '-w', 'net.ipv4.conf.default.accept_local=1']),
  },
  {
    name: 'net.bridge.bridge-nf-call-iptables flipped',
    section: 'sysctl-bridge',
    expect: /^net\.bridge\.bridge-nf-call-iptables = 0$/,
    apply: (ns) => execOk(ns, ['sysctl', '-q', '-w', 'net.bridge.bridge-nf-call-iptables=0']),
    skip: () => (existsSync('/proc/sys/net/bridge') ? null : 'br_netfilter is not loaded (net.bridge absent); loading it would change the root namespace'),
  },
];

labTest('the guard reports neighbour, conntrack and sysctl-tree changes in the watched namespace', { prefix: PREFIX, requires: ['conntrack'] }, async (t, lab) => {
  let i = 0;
  for (const c of CHANGES) {
    const reason = c.skip?.() ?? null;
    if (reason) {
      t.pass(c.name, { skip: reason });
      continue;
    }
    const { ns } = await standInWithPeer(lab, `r${++i}`);
    if (c.section === 'sysctl-bridge' && !(await bridgeTree(ns))) {
      t.pass(c.name, { skip: 'net.bridge is not per-namespace on this kernel' });
      continue;
    }
    if (c.setup) await c.setup(ns);
    const guard = await Guard.start(ns);
    await c.apply(ns);
    const diffs = await guard.diff();
    const hit = diffs.find((d) => d.section === c.section);
    t.ok(hit !== undefined && [...hit.removed, ...hit.added].some((l) => c.expect.test(l)), `${c.name}: reported in [${c.section}]`, {
      diff: lines(diffs).join('\n'),
    });
    if (c.section === 'conntrack') t.match(hit?.note ?? '', /^nf_conntrack_count \d+ -> \d+/, `${c.name}: the diff carries the conntrack count`);
  }
});

labTest('the guard reports nothing for the kernel\'s own neighbour and conntrack churn, or sysctls rewritten unchanged', { prefix: PREFIX, requires: ['conntrack'] }, async (t, lab) => {
  const { ns, peer } = await standInWithPeer(lab, 'quiet');
  // configuration present before and after: must not count
  await ip(ns, ['neigh', 'add', '10.244.1.9', 'lladdr', '02:00:00:00:00:09', 'dev', 'pwv0']);
  await ip(ns, ['neigh', 'add', '10.244.1.11', 'lladdr', '02:00:00:00:00:0c', 'dev', 'pwv0', 'extern_learn']);
  await ctInsert(ns, CT_SVC);
  const before = await snapshot(ns);
  t.ok(before.sections.conntrack!.length === 1, 'the stand-in has one test-range conntrack entry', { conntrack: before.sections.conntrack });

  // the kernel's neighbour cache moves: resolved, unresolvable, multicast/broadcast NOARP, IPv6 NDP
  t.ok((await ping(ns, '198.18.201.2', { count: 1 })).ok, 'ping the peer (REACHABLE entry)');
  await ping(ns, '198.18.201.99', { count: 1, waitS: 1 }); // INCOMPLETE -> FAILED
  await execOk(ns, ['ping', '-c', '1', '-W', '1', '-I', 'pwv0', '224.0.0.1']).catch(() => undefined);
  await execOk(ns, ['ping', '-b', '-c', '1', '-W', '1', '198.18.201.255']).catch(() => undefined);
  await execOk(ns, ['ping', '-6', '-c', '1', '-W', '1', 'ff02::1%pwv0']).catch(() => undefined);
  t.ok((await ping(peer, '198.18.201.1', { count: 1 })).ok, 'the peer pings us (we learn it as STALE/REACHABLE)');
  const cache = await ip(ns, ['neigh', 'show', 'nud', 'all']);
  t.match(cache, /198\.18\.201\.2 .*(REACHABLE|STALE|DELAY|PROBE)/, 'a cache entry exists now');
  t.match(cache, /224\.0\.0\.1 .*NOARP|ff02::1 .*NOARP/, 'and a kernel-made NOARP entry');
  // the extern_learn entry's reachability state may move; flip it explicitly
  await ip(ns, ['neigh', 'replace', '10.244.1.11', 'lladdr', '02:00:00:00:00:0c', 'dev', 'pwv0', 'extern_learn', 'nud', 'stale']);

  // conntrack: entries of other addresses appear, a test-range entry goes away (as on timeout)
  await ctInsert(ns, ['-p', 'udp', '-s', '192.0.2.2', '-d', '192.0.2.1', '--sport', '5353', '--dport', '53', '-r', '192.0.2.1', '-q', '192.0.2.2', '--reply-port-src', '53', '--reply-port-dst', '5353']);
  await execOk(ns, ['conntrack', '-D', '-p', 'tcp', '-s', '10.244.1.2', '-d', '10.96.0.1']);

  // sysctls written with the value they already have, and read: not a change
  const rp = (await execOk(ns, ['cat', '/proc/sys/net/ipv4/conf/all/rp_filter'])).trim();
  await execOk(ns, ['sysctl', '-q', '-w', `net.ipv4.conf.all.rp_filter=${rp}`]);
  if (await bridgeTree(ns)) {
    const nf = (await execOk(ns, ['cat', '/proc/sys/net/bridge/bridge-nf-call-iptables'])).trim();
    await execOk(ns, ['sysctl', '-q', '-w', `net.bridge.bridge-nf-call-iptables=${nf}`]);
  }
  await execOk(ns, ['sysctl', '-a', '-r', '^net\\.(ipv4\\.conf|bridge)\\.']);

  const after = await snapshot(ns);
  t.not(after.info.nf_conntrack_count, undefined, 'the conntrack count is recorded', { count: after.info.nf_conntrack_count });
  const d = diffSnapshots(before, after);
  t.same(lines(d), [], 'no violation reported');
  t.same(after.errors, {}, 'every probe ran');
});

labTest('the root namespace snapshot has the new sections, and reading them changes nothing', { prefix: PREFIX }, async (t) => {
  const a = await snapshot();
  for (const s of ['neighbours', 'conntrack', 'sysctl-ipv4-conf', 'sysctl-bridge']) t.ok(Array.isArray(a.sections[s]), `[${s}] present`);
  t.ok(a.sections['sysctl-ipv4-conf']!.some((l) => /^net\.ipv4\.conf\.all\.rp_filter = \d$/.test(l)), 'net.ipv4.conf.all.rp_filter is read');
  t.ok(a.sections['sysctl-ipv4-conf']!.some((l) => /^net\.ipv4\.conf\.lo\./.test(l)), 'and per-link keys (lo)');
  if (existsSync('/proc/sys/net/bridge')) t.ok(a.sections['sysctl-bridge']!.some((l) => l.startsWith('net.bridge.bridge-nf-call-iptables = ')), 'net.bridge keys read');
  else t.same(a.sections['sysctl-bridge'], ['net.bridge: absent'], 'net.bridge absent');
  t.match(a.info.nf_conntrack_count ?? '', /^\d+$|absent/, 'nf_conntrack_count recorded');
  t.same(a.errors, {}, 'every probe ran');
  t.same(lines(diffSnapshots(a, await snapshot())), [], 'root vs root: no violation');
});

labTest('/proc/net/nf_conntrack and the conntrack CLI give the same lines', { prefix: PREFIX, requires: ['conntrack'] }, async (t, lab) => {
  const ns = await lab.addNetns('ctsrc');
  await ctInsert(ns, CT_SVC);
  await ctInsert(ns, ['-p', 'udp', '-s', 'fd00:10:244::2', '-d', 'fd00:10:96::a', '--sport', '5353', '--dport', '53', '-r', 'fd00:10:96::a', '-q', 'fd00:10:244::2', '--reply-port-src', '53', '--reply-port-dst', '5353']);
  const proc = await lab.exec(ns, ['cat', '/proc/net/nf_conntrack']);
  if (proc.exitCode !== 0) {
    t.pass('same lines', { skip: 'no /proc/net/nf_conntrack on this kernel (the CLI is used)' });
    return;
  }
  const cli = `${await execOk(ns, ['conntrack', '-L', '-o', 'extended'])}\n${await execOk(ns, ['conntrack', '-L', '-o', 'extended', '-f', 'ipv6'])}`;
  const fromProc = normaliseConntrack(proc.stdout);
  t.equal(fromProc.length, 2, 'both entries (IPv4 and IPv6) listed', { fromProc });
  t.same(normaliseConntrack(cli), fromProc, 'identical normalised lines');
});
