import t from 'tap';
import { CommandError } from '../common/errors';
import { annotateRestoreError, iptablesBinaries } from './iptables';
import { annotateNftError } from './nft';
import { netnsRef, nsenterArgv } from './netns';
import { sysctlPath } from './sysctl';

t.test('sysctl keys cannot escape /proc/sys', async (t) => {
  t.equal(sysctlPath('net.ipv4.ip_forward'), '/proc/sys/net/ipv4/ip_forward');
  t.equal(sysctlPath('net/ipv4/conf/pw.vxlan/forwarding'), '/proc/sys/net/ipv4/conf/pw.vxlan/forwarding');
  for (const bad of ['', '..', 'net..ipv4', 'net/../../etc', '/etc/passwd', 'net.ipv4.conf.a b', 'net/ipv4/./x', 'a\0b', 'net.ipv4.x\n']) {
    t.throws(() => sysctlPath(bad), { name: 'InvalidInputError', field: 'sysctl.key' }, JSON.stringify(bad));
  }
});

t.test('netns refs and nsenter argv', async (t) => {
  t.same(netnsRef('pwk-a'), { path: '/run/netns/pwk-a' });
  t.same(netnsRef('/proc/1/ns/net'), { path: '/proc/1/ns/net' });
  t.throws(() => netnsRef('../x'), { name: 'InvalidInputError', field: 'netns' });
  t.throws(() => netnsRef(''), { name: 'InvalidInputError' });
  t.same(nsenterArgv({ path: '/run/netns/a' }, ['nft', '-f', '-']), ['nsenter', '--net=/run/netns/a', '--', 'nft', '-f', '-']);
  t.same(nsenterArgv(undefined, ['true']), ['true']);
});

t.test('iptables binaries and error annotation', async (t) => {
  t.same(iptablesBinaries(4, 'legacy'), { save: 'iptables-legacy-save', restore: 'iptables-legacy-restore' });
  t.same(iptablesBinaries(6, 'nft'), { save: 'ip6tables-nft-save', restore: 'ip6tables-nft-restore' });
  const e = annotateRestoreError(new CommandError('iptables-restore', 1, 'iptables-restore: line 3 failed\n'), '*nat\n:X - [0:0]\n-A Y -j X\nCOMMIT\n');
  t.match(e.stderr, /input line 3: -A Y -j X/);
  const n = annotateNftError(new CommandError('nft -f -', 1, '/dev/stdin:2:1-3: Error: syntax error\n'), 'add table inet x\nbad line\n');
  t.match(n.stderr, /script line 2: bad line/);
});
