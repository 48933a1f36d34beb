/**
 * Inputs that are wrong for good, on both paths (in-process and the fast path through the
 * shim), with the same answer from each:
 *  - a network config over the 4 MiB limit: code 108, naming the limit (was 11 "try again
 *    later" on the fast path, which a runtime retries forever, and accepted in-process);
 *  - CNI_NETNS that exists but is no network namespace (a regular file, a directory,
 *    /dev/null, a uts namespace): code 4 naming CNI_NETNS and its value (was 100 EINVAL
 *    from RTM_NEWLINK, or 3 "does not exist"); a missing path stays code 3.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exec, labTest } from '../harness';
import { cniEnv, netconf, runner, tmpDataDir, type CniCall } from './helpers';

labTest('too-large config and a CNI_NETNS that is no netns: same permanent errors on both paths', { prefix: 'pwc2-bad', requires: ['veth', 'bridge'], timeout: 120_000 }, async (t, lab) => {
  const data = tmpDataDir(t, 'bad');
  const host = await lab.addNetns('host');
  const pod = await lab.addPod();
  const file = join(data, 'regular-file');
  writeFileSync(file, 'not a netns');
  const dir = join(data, 'a-directory');
  mkdirSync(dir);
  const paths: { netns: string; code: number; reason: RegExp }[] = [
    { netns: file, code: 4, reason: /a regular file, not a network namespace/ },
    { netns: dir, code: 4, reason: /a directory, not a network namespace/ },
    { netns: '/dev/null', code: 4, reason: /a character device, not a network namespace/ },
    { netns: '/proc/self/ns/uts', code: 4, reason: /a uts namespace, not a network namespace/ },
    // root here may not open pid 1's handles (EACCES); either way it is not a usable netns, and it exists.
    { netns: '/proc/1/ns/uts', code: 4, reason: /a uts namespace, not a network namespace|cannot be opened: EACCES/ },
    { netns: join(data, 'missing'), code: 3, reason: /does not exist/ },
  ];
  const answers: Record<string, CniCall[]> = {};
  for (const mode of ['inprocess', 'fastpath'] as const) {
    const cni = await runner(lab, host, mode, join(data, mode === 'inprocess' ? '' : 'fp'));
    const conf = netconf('badnet', data);
    const calls: CniCall[] = [];
    answers[mode] = calls;

    const big = JSON.stringify({ ...conf, cniVersion: '1.0.0', padding: 'x'.repeat(10 << 20) });
    const r = await cni.run(cniEnv('ADD', 'big-1', pod), big);
    calls.push(r);
    t.equal(r.exitCode, 1, `${mode}: 10 MiB config fails`);
    t.equal(r.json?.code, 108, `${mode}: code 108, not 11: ${r.stdout.slice(0, 300)}`);
    t.equal(r.json?.cniVersion, '1.0.0', `${mode}: in the request's version`);
    t.match(String(r.json?.msg), /over the limit of 4194304 bytes \(4 MiB\)/, `${mode}: names the limit`);

    for (const p of paths) {
      const env = { ...cniEnv('ADD', 'ns-1', undefined), CNI_NETNS: p.netns };
      const a = await cni.run(env, conf);
      calls.push(a);
      t.equal(a.json?.code, p.code, `${mode}: CNI_NETNS=${p.netns}: code ${p.code}: ${a.stdout}`);
      t.ok(String(a.json?.msg).includes(`CNI_NETNS=${JSON.stringify(p.netns)}`), `${mode}: the message names CNI_NETNS and its value`);
      t.match(String(a.json?.msg), p.reason, `${mode}: and says what it is`);
      const c = await cni.run({ ...env, CNI_COMMAND: 'CHECK' }, { ...conf, prevResult: { cniVersion: '1.1.0' } });
      calls.push(c);
      t.equal(c.json?.code, p.code, `${mode}: CHECK with CNI_NETNS=${p.netns}: code ${p.code}`);
    }
    t.notMatch((await exec(host, ['ip', '-o', 'link'])).stdout, /pwv[0-9a-f]{12}/, `${mode}: no veth left behind`);
    if (cni.daemon) await cni.daemon.stop();
  }
  // /proc/self is the plugin process in-process, the daemon on the fast path: both are uts namespaces.
  t.same(
    answers.fastpath!.map((c) => c.stdout.trim()),
    answers.inprocess!.map((c) => c.stdout.trim()),
    'both paths give byte-identical answers',
  );
});
