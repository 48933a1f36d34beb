/**
 * Tests of the root-namespace guard itself. The real root namespace is never changed: the guard
 * is pointed at a scratch `pwl-` namespace standing in for the root, each kind of change is made
 * there, and the guard must report it. (The outer labTest guard still watches the real root.)
 */
import { readFileSync, statSync } from 'node:fs';
import {
  diffSnapshots,
  execOk,
  Guard,
  inRootNetns,
  ip,
  labTest,
  ping,
  RootNamespaceChangedError,
  rootNetnsCheck,
  selfNetnsInode,
  snapshot,
  withLab,
  type Lab,
  type SectionDiff,
} from '../harness';

const PREFIX = 'pwl-guard';

labTest('the default target is the root namespace', { prefix: PREFIX }, async (t, lab) => {
  t.equal(inRootNetns(), true, 'this process runs in the root network namespace');
  t.equal(rootNetnsCheck().method, 'kthreadd', 'decided by kthreadd\'s netns (this procfs shows kernel threads)');
  t.equal(selfNetnsInode(), statSync('/proc/2/ns/net').ino, 'same netns inode as kthreadd (always in init_net)');

  const snap = await snapshot();
  const rootLinks = (await execOk(null, ['ip', '-o', 'link', 'show']))
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(':')[1]!.trim().split('@')[0]!)
    .sort();
  const snapLinks = snap.sections.links!.map((l) => l.split(' ')[0]!).sort();
  t.same(snapLinks, rootLinks, 'snapshot links are exactly `ip -o link` of the root namespace');
  t.same(snap.errors, {}, 'every probe ran');
  t.equal(
    snap.sections.sysctl!.join('\n'),
    `net.ipv4.ip_forward = ${readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim()}\n` +
      `net.ipv6.conf.all.forwarding = ${readFileSync('/proc/sys/net/ipv6/conf/all/forwarding', 'utf8').trim()}`,
    'sysctls are the root values',
  );

  // and it really differs from a fresh namespace (the snapshot is not a constant)
  const scratch = await lab.addNetns('fresh');
  const fresh = await snapshot(scratch);
  t.same(
    fresh.sections.links!.map((l) => l.split(' ')[0]),
    ['lo'],
    'a fresh namespace snapshot has only lo',
  );
  t.ok(diffSnapshots(snap, fresh).length > 0, 'root and fresh namespace snapshots differ');
});

/** One kind of change, applied to the stand-in namespace. */
interface Change {
  name: string;
  section: string;
  /** a line the diff must contain (added or removed) */
  expect: RegExp;
  setup?: (ns: string) => Promise<unknown>;
  apply: (ns: string) => Promise<unknown>;
}

const CHANGES: Change[] = [
  {
    name: 'a link added',
    section: 'links',
    expect: /^pwg0 .*kind=bridge/,
    apply: (ns) => ip(ns, ['link', 'add', 'pwg0', 'type', 'bridge']),
  },
  {
    name: 'a link removed',
    section: 'links',
    expect: /^pwg0 /,
    setup: (ns) => ip(ns, ['link', 'add', 'pwg0', 'type', 'bridge']),
    apply: (ns) => ip(ns, ['link', 'del', 'pwg0']),
  },
  {
    name: 'a link set up',
    section: 'links',
    expect: /^pwg0 .*flags=.*UP/,
    setup: (ns) => ip(ns, ['link', 'add', 'pwg0', 'type', 'bridge']),
    apply: (ns) => ip(ns, ['link', 'set', 'pwg0', 'up']),
  },
  {
    name: 'a link enslaved to a bridge',
    section: 'links',
    expect: /master=pwg0/,
    setup: async (ns) => {
      await ip(ns, ['link', 'add', 'pwg0', 'type', 'bridge']);
      await ip(ns, ['link', 'add', 'pwv0', 'type', 'veth', 'peer', 'name', 'pwv1']);
    },
    apply: (ns) => ip(ns, ['link', 'set', 'pwv0', 'master', 'pwg0']),
  },
  {
    name: 'an address added',
    section: 'addresses',
    expect: /^lo inet 198\.18\.9\.9\/32/,
    apply: (ns) => ip(ns, ['addr', 'add', '198.18.9.9/32', 'dev', 'lo']),
  },
  {
    name: 'an IPv4 route added (main table)',
    section: 'routes4',
    expect: /^198\.19\.0\.0\/16 dev pwg0/,
    setup: async (ns) => {
      await ip(ns, ['link', 'add', 'pwg0', 'type', 'bridge']);
      await ip(ns, ['link', 'set', 'pwg0', 'up']);
    },
    apply: (ns) => ip(ns, ['route', 'add', '198.19.0.0/16', 'dev', 'pwg0']),
  },
  {
    name: 'an IPv4 route added (another table)',
    section: 'routes4',
    expect: /198\.19\.1\.0\/24 dev lo table 100/,
    apply: (ns) => ip(ns, ['route', 'add', '198.19.1.0/24', 'dev', 'lo', 'table', '100']),
  },
  {
    name: 'an IPv6 route added',
    section: 'routes6',
    expect: /^fd99::\/64 dev lo/,
    apply: (ns) => ip(ns, ['-6', 'route', 'add', 'fd99::/64', 'dev', 'lo']),
  },
  {
    name: 'a policy rule added',
    section: 'rules4',
    expect: /lookup 100/,
    apply: (ns) => ip(ns, ['rule', 'add', 'from', '10.244.0.0/16', 'lookup', '100']),
  },
  {
    name: 'an iptables rule added',
    section: 'iptables',
    expect: /^-A FORWARD -s 10\.244\.0\.0\/16 -j ACCEPT/,
    apply: (ns) => execOk(ns, ['iptables', '-w', '5', '-A', 'FORWARD', '-s', '10.244.0.0/16', '-j', 'ACCEPT']),
  },
  {
    name: 'an iptables chain policy changed',
    section: 'iptables',
    expect: /^:FORWARD DROP/,
    setup: (ns) => execOk(ns, ['iptables', '-w', '5', '-S']),
    apply: (ns) => execOk(ns, ['iptables', '-w', '5', '-P', 'FORWARD', 'DROP']),
  },
  {
    name: 'an ip6tables rule added',
    section: 'ip6tables',
    expect: /^-A INPUT -s fd99::\/64 -j DROP/,
    apply: (ns) => execOk(ns, ['ip6tables', '-w', '5', '-A', 'INPUT', '-s', 'fd99::/64', '-j', 'DROP']),
  },
  {
    name: 'an iptables-legacy rule added',
    section: 'iptables-legacy',
    expect: /^-A OUTPUT -d 10\.96\.0\.1\/32 -j ACCEPT/,
    apply: (ns) => execOk(ns, ['iptables-legacy', '-w', '5', '-A', 'OUTPUT', '-d', '10.96.0.1/32', '-j', 'ACCEPT']),
  },
  {
    name: 'an nft table added',
    section: 'nft',
    expect: /^table inet pwguard/,
    apply: (ns) => execOk(ns, ['nft', 'add table inet pwguard']),
  },
  {
    name: 'an nft rule added to an existing chain',
    section: 'nft',
    expect: /ip daddr 10\.96\.0\.10 drop/,
    setup: (ns) => execOk(ns, ['nft', 'add table inet pwguard; add chain inet pwguard c { type filter hook output priority 0; }']),
    apply: (ns) => execOk(ns, ['nft', 'add rule inet pwguard c ip daddr 10.96.0.10 drop']),
  },
  {
    name: 'net.ipv4.ip_forward flipped',
    section: 'sysctl',
    expect: /^net\.ipv4\.ip_forward = 1/,
    apply: (ns) => execOk(ns, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']),
  },
  {
    name: 'net.ipv6.conf.all.forwarding flipped',
    section: 'sysctl',
    expect: /^net\.ipv6\.conf\.all\.forwarding = 1/,
    apply: (ns) => execOk(ns, ['sysctl', '-q', '-w', 'net.ipv6.conf.all.forwarding=1']),
  },
];

function lines(d: SectionDiff[]): string[] {
  return d.flatMap((s) => [...s.removed.map((l) => `${s.section}: - ${l}`), ...s.added.map((l) => `${s.section}: + ${l}`)]);
}

labTest('the guard reports each kind of change in the watched namespace', { prefix: PREFIX }, async (t, lab) => {
  let i = 0;
  for (const c of CHANGES) {
    const standIn = await lab.addNetns(`root${++i}`);
    if (c.setup) await c.setup(standIn);
    const guard = await Guard.start(standIn);
    await c.apply(standIn);
    const diffs = await guard.diff();
    const hit = diffs.find((d) => d.section === c.section);
    t.ok(
      hit !== undefined && [...hit.removed, ...hit.added].some((l) => c.expect.test(l)),
      `${c.name}: reported in [${c.section}]`,
      { diff: lines(diffs).join('\n') },
    );
  }
});

labTest('the guard reports nothing when nothing changed', { prefix: PREFIX }, async (t, lab) => {
  const standIn = await lab.addNetns('quiet');
  // state that must not count as a change: counters, neighbours, traffic
  await execOk(standIn, ['iptables', '-w', '5', '-A', 'INPUT', '-i', 'lo', '-j', 'ACCEPT']);
  await execOk(standIn, ['nft', 'add table inet pwq; add chain inet pwq c { type filter hook input priority 0; }; add rule inet pwq c counter']);
  const guard = await Guard.start(standIn);
  const r = await ping(standIn, '127.0.0.1', { count: 2 });
  t.ok(r.ok, 'traffic flowed inside the stand-in (counters moved)', { output: r.output });
  const counters = await execOk(standIn, ['nft', 'list', 'ruleset']);
  t.match(counters, /counter packets [1-9]/, 'nft counter is non-zero now');
  await execOk(standIn, ['ip', 'link', 'show']); // read-only commands
  t.same(lines(await guard.diff()), [], 'no violation reported');

  // and the real root namespace against itself
  const root = await Guard.start();
  t.same(lines(await root.diff()), [], 'root vs root: no violation');
});

labTest('withLab throws RootNamespaceChangedError naming the change', { prefix: PREFIX }, async (t, lab: Lab) => {
  const standIn = await lab.addNetns('wl');
  const err = await withLab(
    'pwl-guardwl',
    async (inner) => {
      await inner.addNetns('x'); // lab namespaces themselves are not a change of the watched ns
      await ip(standIn, ['route', 'add', 'blackhole', '10.96.0.0/12']);
    },
    { guardTarget: standIn },
  ).then(
    () => null,
    (e: unknown) => e,
  );
  t.type(err, RootNamespaceChangedError, 'rejected with RootNamespaceChangedError');
  t.match(String(err), /\[routes4\][\s\S]*\+ blackhole 10\.96\.0\.0\/12/, 'message carries the diff');

  const ok = await withLab('pwl-guardwl', async (inner) => (await inner.addNetns('y')).length > 0, { guardTarget: standIn });
  t.equal(ok, true, 'no change: withLab returns fn result');
});
