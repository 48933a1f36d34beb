// sysctl, iptables-restore, nft and runInNetns/createNetns: inside a netns only.
import { readFileSync } from 'node:fs';
import { labTest, execOk, exec } from '../harness';
import { CommandError } from '../../src/common/errors';
import { openKernel, netnsRef, runInNetns, createNetns, deleteNetns, netnsExists, NetnsIptables, iptablesBinaries } from '../../src/kernel';

labTest('sysctl writes land in the netns only; bad keys are refused', { prefix: 'pwk-cmd' }, async (t, lab) => {
  const ns = await lab.addNetns('a');
  const k = await openKernel(netnsRef(ns));
  t.teardown(() => k.close());
  const rootBefore = readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim();
  const nsBefore = await k.sysctl.read('net.ipv4.ip_forward');
  const want = nsBefore === '1' ? '0' : '1';
  await k.sysctl.write('net.ipv4.ip_forward', want);
  t.equal(await k.sysctl.read('net.ipv4.ip_forward'), want);
  t.equal((await execOk(ns, ['cat', '/proc/sys/net/ipv4/ip_forward'])).trim(), want, 'the netns sees it');
  t.equal(readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim(), rootBefore, 'the root netns does not');
  await k.sysctl.write('net/ipv4/conf/lo/forwarding', want);
  t.equal(await k.sysctl.read('net/ipv4/conf/lo/forwarding'), want, 'slash form for keys with dotted names');
  for (const bad of ['../../etc/passwd', 'net..ipv4', '/etc/shadow', 'net.ipv4.ip_forward\n', '']) {
    await t.rejects(k.sysctl.read(bad), { name: 'InvalidInputError' }, `refuses ${JSON.stringify(bad)}`);
  }
  await t.rejects(k.sysctl.read('net.ipv4.no_such_key'), { name: 'NotFoundError' });
});

labTest('iptables-restore --noflush inside the netns, errors name the line', { prefix: 'pwk-cmd', requires: ['iptables-legacy'] }, async (t, lab) => {
  const ns = await lab.addNetns('a');
  const k = await openKernel(netnsRef(ns));
  t.teardown(() => k.close());
  const ipt = k.iptables(4);
  t.equal((ipt as NetnsIptables).binaries.restore, 'iptables-legacy-restore', 'legacy preferred by default');
  t.equal(iptablesBinaries(6, 'nft').restore, 'ip6tables-nft-restore', 'backend is selectable');
  // Someone else's rule in the same table must survive our --noflush restores.
  await execOk(ns, ['iptables-legacy', '-t', 'filter', '-A', 'INPUT', '-s', '198.18.9.9/32', '-j', 'DROP']);
  await ipt.restore(['*filter', ':PWK-FWD - [0:0]', '-A PWK-FWD -s 10.244.0.0/16 -m comment --comment "pwk test" -j ACCEPT', '-A FORWARD -j PWK-FWD', 'COMMIT', ''].join('\n'));
  let saved = await ipt.save('filter');
  t.match(saved, /-A PWK-FWD -s 10\.244\.0\.0\/16 -m comment --comment "pwk test" -j ACCEPT/);
  t.match(saved, /-A INPUT -s 198\.18\.9\.9\/32 -j DROP/, 'other rules kept');
  // Re-declaring the chain flushes it (kube-proxy's pattern); the rest stays.
  await ipt.restore(['*filter', ':PWK-FWD - [0:0]', '-A PWK-FWD -j RETURN', 'COMMIT', ''].join('\n'));
  saved = await ipt.save('filter');
  t.notMatch(saved, /pwk test/);
  t.match(saved, /-A PWK-FWD -j RETURN/);
  const err = await ipt.restore(['*filter', ':PWK-X - [0:0]', '-A PWK-X -j ACCEPT', '-A PWK-X -m nosuchmatch --foo -j ACCEPT', 'COMMIT', ''].join('\n')).catch((e: unknown) => e);
  t.type(err, CommandError);
  t.match((err as CommandError).message, /line 4/);
  t.match((err as CommandError).stderr, /input line 4: -A PWK-X -m nosuchmatch/);
  t.notMatch(await ipt.save('filter'), /PWK-X/, 'failed restore is atomic');
  await t.rejects(ipt.save('nosuchtable'), { name: 'InvalidInputError', field: 'table' });
  const rootRules = await exec(null, ['iptables-legacy-save', '-t', 'filter']);
  t.notMatch(rootRules.stdout, /PWK-/, 'root netns untouched');
});

labTest('nft -f is one transaction inside the netns; list and list -j', { prefix: 'pwk-cmd', requires: ['nftables'] }, async (t, lab) => {
  const ns = await lab.addNetns('a');
  const k = await openKernel(netnsRef(ns));
  t.teardown(() => k.close());
  await k.nft.apply(['table inet pwk {', '  chain input {', '    type filter hook input priority 0; policy accept;', '    ip saddr 198.18.9.9 counter drop', '  }', '}', ''].join('\n'));
  t.match(await k.nft.list('table inet pwk'), /ip saddr 198\.18\.9\.9 counter packets 0 bytes 0 drop/);
  const json = (await k.nft.listJson('table inet pwk')) as { nftables: Record<string, { name?: string }>[] };
  t.ok(json.nftables.some((o) => o.chain?.name === 'input'), 'JSON lists the chain');
  const err = await k.nft.apply(['add table inet pwk', 'add chain inet pwk c2', 'add rule inet pwk c2 bogus nonsense', ''].join('\n')).catch((e: unknown) => e);
  t.type(err, CommandError);
  t.match((err as CommandError).stderr, /script line 3: add rule inet pwk c2 bogus nonsense/);
  t.notMatch(await k.nft.list('table inet pwk'), /c2/, 'the failed transaction left nothing');
  await t.rejects(k.nft.list('ruleset; rm -rf /'), { name: 'InvalidInputError' });
  const root = await exec(null, ['nft', 'list', 'tables']);
  t.notMatch(root.stdout, /pwk/, 'root netns untouched');
});

labTest('runInNetns, createNetns/deleteNetns', { prefix: 'pwk-cmd' }, async (t, lab) => {
  const ns = await lab.addNetns('a');
  const { stdout } = await runInNetns(netnsRef(ns), ['ip', '-o', 'link', 'show', 'lo']);
  t.match(stdout, /lo:/);
  const { stdout: echoed } = await runInNetns(netnsRef(ns), ['cat'], { input: 'hello' });
  t.equal(echoed, 'hello', 'input is piped to stdin');
  const err = await runInNetns(netnsRef(ns), ['ip', 'link', 'show', 'nosuch0']).catch((e: unknown) => e);
  t.type(err, CommandError);
  t.equal((err as CommandError).exitCode, 1);
  t.match((err as CommandError).stderr, /nosuch0/);
  await t.rejects(runInNetns(netnsRef('/run/netns/pwk-cmd-nope'), ['true']), { name: 'NotFoundError', field: 'netns' });
  await t.rejects(Promise.resolve().then(() => netnsRef('a/b')), { name: 'InvalidInputError', field: 'netns' });

  const name = `${lab.id}-made`;
  t.teardown(() => deleteNetns(name));
  const ref = await createNetns(name);
  t.ok(await netnsExists(ref));
  await deleteNetns(name);
  t.notOk(await netnsExists(ref));
  await deleteNetns(name); // idempotent
});
