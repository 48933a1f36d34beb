/**
 * Real ADD/CHECK/DEL/GC/STATUS through the podwire-cni binary over the CNI protocol,
 * on both paths (in-process fallback and the daemon fast path), in lab namespaces.
 */
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exec, labTest, ping } from '../harness';
import { cniEnv, firstIp, netconf, runner, tmpDataDir, type Mode } from './helpers';

for (const mode of ['inprocess', 'fastpath'] as Mode[]) {
  labTest(`podwire-cni lifecycle (${mode})`, { prefix: 'pwc-life', requires: ['veth', 'bridge'], timeout: 120_000 }, async (t, lab) => {
    const data = tmpDataDir(t, 'life');
    const host = await lab.addNetns('host');
    const p1 = await lab.addPod();
    const p2 = await lab.addPod();
    const cni = await runner(lab, host, mode, data);
    const conf = netconf('lifenet', data, { ipMasq: true });

    const a1 = await cni.run(cniEnv('ADD', 'pod-one', p1), conf);
    t.equal(a1.exitCode, 0, `ADD pod-one${a1.exitCode === 0 ? '' : `: ${a1.stdout} ${a1.stderr}`}`);
    const a2 = await cni.run(cniEnv('ADD', 'pod-two', p2), conf);
    t.equal(a2.exitCode, 0, `ADD pod-two${a2.exitCode === 0 ? '' : `: ${a2.stdout}`}`);
    const ip1 = firstIp(a1.json);
    const ip2 = firstIp(a2.json);
    t.equal(ip1, '10.244.1.2');
    t.equal(ip2, '10.244.1.3');
    t.equal(a1.json?.cniVersion, '1.1.0');

    t.ok((await ping(p1, '10.244.1.1')).ok, 'pod pings its gateway');
    t.ok((await ping(p1, ip2)).ok, 'pod pings the second pod');
    const lo = await exec(p1, ['ip', '-j', 'link', 'show', 'lo']);
    t.match(lo.stdout, /"operstate":"UNKNOWN"|LOWER_UP/, 'lo is up in the pod');
    const hairpin = await exec(host, ['bridge', '-d', 'link', 'show']);
    t.match(hairpin.stdout, /hairpin on/, 'hairpin on the host veth');
    t.match((await exec(host, ['iptables-legacy-save', '-t', 'nat'])).stdout + (await exec(host, ['iptables-save', '-t', 'nat'])).stdout, /PW-MASQ-/, 'masquerade chain installed');

    // CHECK: passes, then names what is missing.
    const withPrev = { ...conf, prevResult: a1.json };
    const c1 = await cni.run(cniEnv('CHECK', 'pod-one', p1), withPrev);
    t.equal(c1.exitCode, 0, `CHECK ok: ${c1.stdout}`);
    await exec(p1, ['ip', 'route', 'del', 'default']);
    const c2 = await cni.run(cniEnv('CHECK', 'pod-one', p1), withPrev);
    t.equal(c2.exitCode, 1);
    t.match(String(c2.json?.msg), /route 0\.0\.0\.0\/0 via 10\.244\.1\.1 is missing/, 'CHECK names the missing route');

    // Errors for bad input.
    const bad = async (env: Record<string, string>, stdin: unknown): Promise<unknown> => (await cni.run(env, stdin)).json?.code;
    t.equal(await bad(cniEnv('ADD', 'x1', p2), '{"cniVersion":'), 6, 'malformed JSON: 6');
    t.equal(await bad(cniEnv('ADD', 'x1', p2), { ...conf, cniVersion: '0.0.9' }), 1, 'unknown version: 1');
    t.equal(await bad({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'x1', CNI_IFNAME: 'eth1' }, conf), 4, 'missing CNI_NETNS: 4');
    t.equal(await bad(cniEnv('ADD', 'x1', p2, 'bad/name'), conf), 4, 'bad interface name: 4');
    t.equal(await bad(cniEnv('ADD', '../x1', p2, 'eth1'), conf), 4, 'path-traversal container ID: 4');
    t.equal(await bad(cniEnv('ADD', 'x1', p2), conf), 102, 'existing eth0 in the pod: 102');
    t.equal(await bad({ CNI_COMMAND: 'STATUS' }, conf), undefined, 'STATUS ok');

    // Exhausted pool (a /30 has exactly one address besides the gateway) + STATUS 50.
    const tiny = netconf('tinynet', data, { bridge: 'pw1' }, '10.244.9.0/30');
    const p3 = await lab.addPod();
    const p4 = await lab.addPod();
    t.equal((await cni.run(cniEnv('ADD', 'tiny-1', p3), tiny)).exitCode, 0);
    t.equal(await bad(cniEnv('ADD', 'tiny-2', p4), tiny), 101, 'exhausted pool: 101');
    t.equal(await bad({ CNI_COMMAND: 'STATUS' }, tiny), 50, 'STATUS on an exhausted pool: 50');
    t.same(readdirSync(join(data, 'tinynet')).sort(), ['10.244.9.2', 'last_reserved_ip.0', 'lock'], 'failed ADD left no reservation');
    t.equal((await exec(p4, ['ip', 'link', 'show', 'eth0'])).exitCode, 1, 'failed ADD left no eth0 in the pod');

    // A corrupt file and a foreign file in dataDir: reported, skipped, never reused.
    writeFileSync(join(data, 'lifenet', '10.244.1.4'), '\u0000garbage');
    writeFileSync(join(data, 'lifenet', 'README'), 'not ours');
    const p5 = await lab.addPod();
    const a5 = await cni.run(cniEnv('ADD', 'pod-five', p5), conf);
    t.equal(firstIp(a5.json), '10.244.1.5', 'skips the IP of the corrupt file');

    // DEL: idempotent, without netns, after the netns is gone, never-added.
    t.equal((await cni.run(cniEnv('DEL', 'pod-two', p2), conf)).exitCode, 0);
    t.equal((await cni.run(cniEnv('DEL', 'pod-two', p2), conf)).exitCode, 0, 'DEL twice');
    await exec(null, ['ip', 'netns', 'del', p1]);
    t.equal((await cni.run(cniEnv('DEL', 'pod-one', undefined), conf)).exitCode, 0, 'DEL without CNI_NETNS after the netns is gone');
    t.equal((await cni.run(cniEnv('DEL', 'never-added', p2), conf)).exitCode, 0, 'DEL of a never-added container');
    t.notOk(existsSync(join(data, 'lifenet', ip1)), 'pod-one reservation released');

    // GC: keep pod-five, drop the tiny pod; veths go with it.
    const gc = await cni.run({ CNI_COMMAND: 'GC' }, { ...conf, 'cni.dev/valid-attachments': [{ containerID: 'pod-five', ifname: 'eth0' }] });
    t.equal(gc.exitCode, 0, `GC: ${gc.stdout}`);
    const gc2 = await cni.run({ CNI_COMMAND: 'GC' }, { ...tiny, 'cni.dev/valid-attachments': [] });
    t.equal(gc2.exitCode, 0);
    t.same(readdirSync(join(data, 'tinynet')).filter((f) => f.startsWith('10.')), [], 'GC with an empty list released all');
    t.equal((await cni.run(cniEnv('DEL', 'pod-five', p5), conf)).exitCode, 0);
    const links = (await exec(host, ['ip', '-o', 'link'])).stdout;
    t.notMatch(links, /pwv[0-9a-f]{12}/, 'no host veth left');
    t.same(readdirSync(join(data, 'lifenet')).filter((f) => f.startsWith('10.244.1.') && f !== '10.244.1.4'), [], 'no reservation left');
    const nat = (await exec(host, ['iptables-legacy-save', '-t', 'nat'])).stdout + (await exec(host, ['iptables-save', '-t', 'nat'])).stdout;
    t.notMatch(nat, /PW-MASQ-/, 'no masquerade rules left');
  });
}

for (const mode of ['inprocess', 'fastpath'] as Mode[]) {
  labTest(`dual-stack ADD/DEL (${mode})`, { prefix: 'pwc-dual', requires: ['veth', 'bridge'], timeout: 60_000 }, async (t, lab) => {
    const data = tmpDataDir(t, 'dual');
    const host = await lab.addNetns('host');
    const pods = [await lab.addPod(), await lab.addPod()];
    const cni = await runner(lab, host, mode, data);
    const conf = netconf('dualnet', data);
    (conf.ipam as Record<string, unknown>).ranges = [[{ subnet: '10.244.7.0/24' }], [{ subnet: 'fd00:10:244:7::/64' }]];
    const adds = [await cni.run(cniEnv('ADD', 'dual-a', pods[0]), conf), await cni.run(cniEnv('ADD', 'dual-b', pods[1]), conf)];
    t.same(
      ((adds[0]!.json?.ips ?? []) as { address: string }[]).map((i) => i.address),
      ['10.244.7.2/24', 'fd00:10:244:7::2/64'],
      'one address per range set',
    );
    t.same(adds[0]!.json?.routes, [
      { dst: '0.0.0.0/0', gw: '10.244.7.1' },
      { dst: '::/0', gw: 'fd00:10:244:7::1' },
    ]);
    t.notMatch((await exec(pods[0]!, ['ip', '-6', 'addr', 'show', 'eth0'])).stdout, /tentative/, 'DAD off: the address is usable at once');
    t.ok((await ping(pods[0]!, 'fd00:10:244:7::3')).ok, 'IPv6 pod to pod');
    t.ok((await ping(pods[0]!, 'fd00:10:244:7::1')).ok, 'IPv6 pod to gateway');
    for (const [i, id] of ['dual-a', 'dual-b'].entries()) t.equal((await cni.run(cniEnv('DEL', id, pods[i]), conf)).exitCode, 0);
    t.same(readdirSync(join(data, 'dualnet')).filter((f) => /^[0-9a-f.:]+$/.test(f) && f.includes(':') || f.startsWith('10.')), [], 'both reservations released');
  });
}
