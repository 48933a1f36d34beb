/**
 * Side-by-side conformance: the same scenarios against the reference
 * /usr/lib/cni/bridge (+ host-local) and against podwire-cni, each in its own node
 * namespace with the same config (only `type` differs). Asserts equality wherever the
 * spec makes results comparable; where the reference answers the blanket 999, asserts
 * that we answer a specific code instead.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { exec, labTest } from '../harness';
import { cniEnv, firstIp, runner, tmpDataDir, type CniCall, type PluginRunner } from './helpers';

type Json = Record<string, unknown>;

function conf(type: string, dataDir: string, version: string, extra: Json = {}, subnet = '10.244.5.0/24'): Json {
  return {
    cniVersion: version,
    name: 'confnet',
    type,
    bridge: 'cni0',
    isGateway: true,
    isDefaultGateway: true,
    hairpinMode: true,
    ipMasq: false,
    ipam: { type: 'host-local', ranges: [[{ subnet }]], dataDir },
    ...extra,
  };
}

/** Strip what legitimately differs (MACs, host veth names, netns paths). */
function shape(r: Json | undefined): Json {
  if (!r) return {};
  const itfs = (r.interfaces ?? []) as Json[];
  return {
    keys: Object.keys(r).sort(),
    cniVersion: r.cniVersion,
    interfaces: itfs.map((i) => ({ keys: Object.keys(i).sort(), sandbox: i.sandbox !== undefined, name: i.sandbox !== undefined || i.name === 'cni0' ? i.name : '<veth>' })),
    ips: r.ips,
    routes: r.routes,
    dns: r.dns,
  };
}

async function podState(pod: string): Promise<Json> {
  const addrs = JSON.parse((await exec(pod, ['ip', '-j', '-4', 'addr', 'show', 'eth0'])).stdout || '[]') as { addr_info: Json[]; mtu: number; operstate: string }[];
  const routes = (await exec(pod, ['ip', '-4', 'route'])).stdout.split('\n').filter(Boolean).sort();
  const lo = (await exec(pod, ['ip', '-j', 'link', 'show', 'lo'])).stdout.includes('"UP"');
  return {
    mtu: addrs[0]?.mtu,
    up: addrs[0]?.operstate,
    addrs: (addrs[0]?.addr_info ?? []).map((a) => `${String(a.local)}/${String(a.prefixlen)}`),
    routes,
    lo,
  };
}

interface Side {
  name: string;
  type: string;
  cni: PluginRunner;
  data: string;
  pods: string[];
}

labTest('conformance vs reference bridge + host-local', { prefix: 'pwc-conf', requires: ['veth', 'bridge'], timeout: 300_000 }, async (t, lab) => {
  const sides: Side[] = [];
  for (const [name, type, mode] of [['reference', 'bridge', 'reference'], ['podwire', 'podwire', 'inprocess']] as const) {
    const data = tmpDataDir(t, `conf-${name}`);
    const host = await lab.addNetns(`h${name.slice(0, 3)}`);
    const pods: string[] = [];
    for (let i = 0; i < 6; i++) pods.push(await lab.addPod());
    sides.push({ name, type, cni: await runner(lab, host, mode, data), data, pods });
  }
  const both = async (fn: (s: Side) => Promise<CniCall>): Promise<[CniCall, CniCall]> => [await fn(sides[0]!), await fn(sides[1]!)];

  // 1. ADD in every version both speak: same result shape, IPs, routes, pod state.
  const versions = ['0.3.1', '0.4.0', '1.0.0'];
  for (const [i, v] of versions.entries()) {
    const [ref, pw] = await both((s) => s.cni.run(cniEnv('ADD', `ctr-${i}`, s.pods[i]), conf(s.type, s.data, v)));
    t.equal(ref.exitCode, 0, `reference ADD ${v}`);
    t.equal(pw.exitCode, 0, `podwire ADD ${v}`);
    t.same(shape(pw.json), shape(ref.json), `ADD result for cniVersion ${v} matches`);
    t.same(await podState(sides[1]!.pods[i]!), await podState(sides[0]!.pods[i]!), `pod state after ADD ${v} matches`);
  }

  // 2. CHECK with prevResult passes on both.
  const [cRef, cPw] = await both(async (s) => {
    const add = await s.cni.run(cniEnv('ADD', 'ctr-check', s.pods[3]), conf(s.type, s.data, '1.0.0'));
    return s.cni.run(cniEnv('CHECK', 'ctr-check', s.pods[3]), { ...conf(s.type, s.data, '1.0.0'), prevResult: add.json });
  });
  t.equal(cRef.exitCode, 0, 'reference CHECK');
  t.equal(cPw.exitCode, 0, 'podwire CHECK');

  // 3. Round-robin allocation after a DEL: same sequence.
  const seq = await both(async (s) => {
    await s.cni.run(cniEnv('DEL', 'ctr-1', s.pods[1]), conf(s.type, s.data, '1.0.0'));
    return s.cni.run(cniEnv('ADD', 'ctr-next', s.pods[4]), conf(s.type, s.data, '1.0.0'));
  });
  t.equal(firstIp(seq[1].json), firstIp(seq[0].json), 'round-robin picks the same next IP after a DEL');

  // 4. On-disk layout and file contents are identical.
  const listing = (s: Side): Json => {
    const dir = join(s.data, 'confnet');
    const files = readdirSync(dir).sort();
    return Object.fromEntries(files.map((f) => [f, f === 'lock' ? '' : readFileSync(join(dir, f), 'utf8')]));
  };
  t.same(listing(sides[1]!), listing(sides[0]!), 'IPAM dataDir layout and contents match host-local');

  // 5. DEL twice, DEL without netns, DEL of a never-added container: all succeed on both.
  for (const [label, env] of [
    ['DEL', cniEnv('DEL', 'ctr-0', undefined)],
    ['DEL again', cniEnv('DEL', 'ctr-0', undefined)],
    ['DEL never added', cniEnv('DEL', 'ghost', undefined)],
  ] as const) {
    const [r, p] = await both((s) => s.cni.run(env, conf(s.type, s.data, '1.0.0')));
    t.equal(p.exitCode, r.exitCode, `${label}: same exit code (${String(r.exitCode)})`);
  }

  // 6. Errors: the same spec code where the reference uses one; a specific one where it says 999.
  const errCases: [string, (s: Side) => Promise<CniCall>][] = [
    ['malformed JSON', (s) => s.cni.run(cniEnv('ADD', 'e1', s.pods[5]), '{"cniVersion":')],
    ['unknown version', (s) => s.cni.run(cniEnv('ADD', 'e1', s.pods[5]), conf(s.type, s.data, '9.9.9'))],
    ['missing CNI_NETNS', (s) => s.cni.run({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'e1', CNI_IFNAME: 'eth0' }, conf(s.type, s.data, '1.0.0'))],
    ['missing CNI_COMMAND', (s) => s.cni.run({ CNI_CONTAINERID: 'e1' }, conf(s.type, s.data, '1.0.0'))],
    ['bad interface name', (s) => s.cni.run(cniEnv('ADD', 'e1', s.pods[5], 'a/b'), conf(s.type, s.data, '1.0.0'))],
    ['netns does not exist', (s) => s.cni.run({ ...cniEnv('ADD', 'e1', undefined), CNI_NETNS: '/run/netns/pwc-does-not-exist' }, conf(s.type, s.data, '1.0.0'))],
    ['exhausted pool', (s) => s.cni.run(cniEnv('ADD', 'e2', s.pods[5]), conf(s.type, s.data, '1.0.0', { name: 'tiny' }, '10.244.6.0/30')).then(() => s.cni.run(cniEnv('ADD', 'e3', s.pods[5], 'eth1'), conf(s.type, s.data, '1.0.0', { name: 'tiny' }, '10.244.6.0/30')))],
  ];
  for (const [label, fn] of errCases) {
    const [r, p] = await both(fn);
    const rc = r.json?.code as number | undefined;
    const pc = p.json?.code as number | undefined;
    t.equal(p.exitCode, 1, `${label}: podwire fails`);
    if (label === 'missing CNI_COMMAND') {
      // skel prints its version banner and exits 0 here: nothing comparable, we answer 4.
      t.equal(pc, 4, `${label}: podwire answers 4 (reference exits ${String(r.exitCode)} with a banner)`);
      continue;
    }
    t.equal(r.exitCode, 1, `${label}: reference fails`);
    if (rc !== undefined && rc < 100) t.equal(pc, rc, `${label}: same code ${rc}`);
    else t.ok(pc !== undefined && pc !== 999 && pc !== rc, `${label}: reference says ${String(rc)}, podwire a specific code ${String(pc)}`);
  }

  // 7. A failed ADD: the reference leaves the pod's interface behind; podwire does not.
  const tinyPod = sides.map((s) => s.pods[5]!);
  const leftovers = await Promise.all(tinyPod.map(async (p) => (await exec(p, ['ip', '-o', 'link', 'show', 'eth1'])).exitCode === 0));
  t.notOk(leftovers[1], 'podwire leaves no eth1 after a failed ADD');
  t.comment(`reference left eth1 behind after a failed ADD: ${String(leftovers[0])}`);

  // 8. Interop: the same dataDir used by both plugins in turn (a node moving between them).
  const shared = sides[1]!.data; // podwire's store
  const ref = sides[0]!;
  const refInShared = await ref.cni.run(cniEnv('ADD', 'from-ref', ref.pods[5], 'eth2'), conf('bridge', shared, '1.0.0'));
  t.equal(refInShared.exitCode, 0, 'reference host-local allocates in a podwire store');
  const taken = readdirSync(join(shared, 'confnet')).filter((f) => f.startsWith('10.'));
  t.equal(new Set(taken).size, taken.length);
  // podwire's last reservation there was ctr-next = .6, so host-local must continue at .7.
  t.equal(firstIp(refInShared.json), '10.244.5.7', 'continues podwire round-robin from last_reserved_ip');
  const refDelOurs = await ref.cni.run(cniEnv('DEL', 'ctr-2', undefined), conf('bridge', shared, '1.0.0'));
  t.equal(refDelOurs.exitCode, 0);
  t.notOk(readdirSync(join(shared, 'confnet')).includes('10.244.5.4'), 'reference DEL releases a podwire reservation');
  await ref.cni.run(cniEnv('DEL', 'from-ref', ref.pods[5], 'eth2'), conf('bridge', shared, '1.0.0'));

  // 9. VERSION: we speak every version the reference does from 0.3.0, plus 1.1.0.
  const [vr, vp] = await both((s) => s.cni.run({ CNI_COMMAND: 'VERSION' }, '{"cniVersion":"1.0.0"}'));
  const refVersions = (vr.json?.supportedVersions as string[]).filter((v) => v >= '0.3.0');
  t.same(refVersions.filter((v) => !(vp.json?.supportedVersions as string[]).includes(v)), [], 'every reference version >= 0.3.0 supported');
  t.ok((vp.json?.supportedVersions as string[]).includes('1.1.0'), 'plus 1.1.0');

  // Clean up the pods of both sides through their own plugin.
  for (const s of sides) {
    for (const id of ['ctr-0', 'ctr-1', 'ctr-2', 'ctr-check', 'ctr-next', 'e1', 'e2', 'e3']) {
      await s.cni.run(cniEnv('DEL', id, undefined), conf(s.type, s.data, '1.0.0'));
    }
  }
});
