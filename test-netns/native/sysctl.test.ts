// Sysctls under /proc/sys/net resolve against the opening thread's namespace: writes
// through the addon change that namespace only.
import * as fs from 'node:fs';
import t from 'tap';
import { InvalidInputError, NotFoundError } from '../../src/common/errors';
import { readSysctl, writeSysctl } from '../../src/kernel/native';
import { rootSnapshot, scratchNetns, sh } from './helpers';

const rootBefore = rootSnapshot();

t.test('writing ip_forward in one namespace changes that namespace only', async (t) => {
  const a = scratchNetns(t, 'pwn-sc-a');
  const b = scratchNetns(t, 'pwn-sc-b');
  const rootValue = fs.readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim();
  t.equal(await readSysctl(a, 'net.ipv4.ip_forward'), '0', 'a fresh namespace starts with forwarding off');
  await writeSysctl(a, 'net.ipv4.ip_forward', 1);
  t.equal(await readSysctl(a, 'net.ipv4.ip_forward'), '1');
  t.equal(sh('ip', ['netns', 'exec', 'pwn-sc-a', 'sysctl', '-n', 'net.ipv4.ip_forward']).trim(), '1', 'sysctl(8) inside the namespace agrees');
  t.equal(await readSysctl(b, 'net.ipv4.ip_forward'), '0', 'the other namespace is untouched');
  t.equal(fs.readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim(), rootValue, 'the root namespace is untouched');
  t.equal(await readSysctl(undefined, 'net.ipv4.ip_forward'), rootValue, 'no netns reads the caller\'s namespace');
});

t.test('slash keys name interfaces with dots', async (t) => {
  const ns = scratchNetns(t, 'pwn-sc-dot');
  sh('ip', ['-n', 'pwn-sc-dot', 'link', 'add', 'v0.100', 'type', 'veth', 'peer', 'name', 'v1']);
  await writeSysctl(ns, 'net/ipv4/conf/v0.100/rp_filter', '2');
  t.equal(await readSysctl(ns, 'net/ipv4/conf/v0.100/rp_filter'), '2');
  t.equal(sh('ip', ['netns', 'exec', 'pwn-sc-dot', 'cat', '/proc/sys/net/ipv4/conf/v0.100/rp_filter']).trim(), '2');
});

t.test('errors name the key or the namespace', async (t) => {
  const ns = scratchNetns(t, 'pwn-sc-err');
  const missing = await readSysctl(ns, 'net.ipv4.conf.nosuchdev.forwarding').catch((e: unknown) => e);
  t.ok(missing instanceof NotFoundError);
  t.match(missing, { field: 'sysctl', value: 'net.ipv4.conf.nosuchdev.forwarding' });
  const noNs = await writeSysctl({ path: '/run/netns/pwn-sc-gone' }, 'net.ipv4.ip_forward', 1).catch((e: unknown) => e);
  t.ok(noNs instanceof NotFoundError);
  t.match(noNs, { field: 'netns', value: '/run/netns/pwn-sc-gone' });
  for (const key of ['../../etc/passwd', 'net/../../etc/passwd', '', 'net.ipv4.ip forward']) {
    const bad = await readSysctl(ns, key).catch((e: unknown) => e);
    t.ok(bad instanceof InvalidInputError, `refused ${JSON.stringify(key)}`);
  }
  const invalid = await writeSysctl(ns, 'net.ipv4.ip_forward', 'banana').catch((e: unknown) => e);
  t.match(invalid, { code: 'PW_KERNEL', errno: 22 }, 'the kernel\'s EINVAL comes back as KernelError');
});

t.test('the root namespace is unchanged', async (t) => {
  t.equal(rootSnapshot(), rootBefore);
});
