import t from 'tap';
import { createFakeDeps, HOST_NS } from './testing';
import { runCni } from './plugin';
import { hostVethName } from './names';

const conf = (extra: Record<string, unknown> = {}, ipam: Record<string, unknown> = {}): Buffer =>
  Buffer.from(
    JSON.stringify({
      cniVersion: '1.1.0',
      name: 'net1',
      type: 'podwire',
      ipam: { type: 'host-local', ranges: [[{ subnet: '10.244.1.0/29' }]], dataDir: '/data', ...ipam },
      ...extra,
    }),
  );

const env = (command: string, id = 'c1', more: Record<string, string> = {}): Record<string, string> => ({
  CNI_COMMAND: command,
  CNI_CONTAINERID: id,
  CNI_NETNS: `/fake/pod-${id}`,
  CNI_IFNAME: 'eth0',
  CNI_PATH: '/usr/lib/cni',
  ...more,
});

function parse(out: { stdout: string }): Record<string, unknown> {
  return JSON.parse(out.stdout) as Record<string, unknown>;
}

t.test('ADD wires bridge, veth, address and default route; result in the requested version', async (t) => {
  const deps = createFakeDeps();
  const before = await deps.world.kernel('/fake/pod-c1').getLink('lo');
  t.equal(before?.up, false, 'a new pod netns starts with lo down (as in the kernel)');
  const out = await runCni(env('ADD'), conf(), deps);
  t.equal(out.exitCode, 0, out.stdout);
  const r = parse(out) as { ips: { address: string; gateway: string; interface: number }[]; interfaces: { name: string; sandbox?: string }[]; routes: unknown[] };
  t.same(r.ips, [{ interface: 2, address: '10.244.1.2/29', gateway: '10.244.1.1' }]);
  t.same(r.routes, [{ dst: '0.0.0.0/0', gw: '10.244.1.1' }]);
  t.same(r.interfaces.map((i) => i.name), ['pw0', hostVethName('c1', 'eth0'), 'eth0']);
  const host = deps.world.kernel(HOST_NS);
  const pod = deps.world.kernel('/fake/pod-c1');
  const br = await host.getLink('pw0');
  t.equal(br?.kind, 'bridge');
  t.equal((await host.getLink(hostVethName('c1', 'eth0')))?.masterIndex, br?.index);
  t.same((await pod.listAddresses('eth0')).map((a) => a.cidr.toString()), ['10.244.1.2/29']);
  t.ok((await pod.listRoutes()).some((rt) => rt.dst.toString() === '0.0.0.0/0' && rt.gateway?.toString() === '10.244.1.1'));
  const lo = await pod.getLink('lo');
  t.ok(lo, 'lo exists in the pod');
  t.equal(lo?.up, true, 'ADD brought lo up');
  t.same((await host.listAddresses('pw0')).map((a) => a.cidr.toString()), ['10.244.1.1/29']);
  t.equal(deps.sysctlFake.get('net.ipv4.ip_forward'), '1');

  const legacy = parse(await runCni(env('ADD', 'c2'), conf({ cniVersion: '0.3.1' }), (deps.world.kernel('/fake/pod-c2'), deps)));
  t.equal(legacy.cniVersion, '0.3.1');
  t.same((legacy.ips as unknown[])[0], { version: '4', interface: 2, address: '10.244.1.3/29', gateway: '10.244.1.1' });
});

t.test('ADD refuses an existing interface; exhausted pool; failure rolls back', async (t) => {
  const deps = createFakeDeps();
  const pod = deps.world.kernel('/fake/pod-c1');
  await pod.createLink({ kind: 'bridge', name: 'eth0' });
  const dup = parse(await runCni(env('ADD'), conf(), deps));
  t.equal(dup.code, 102);
  t.match(dup.msg, /already exists/);
  // /29: .2-.6 usable (5 addresses)
  for (let i = 0; i < 5; i++) {
    deps.world.kernel(`/fake/pod-p${i}`);
    t.equal((await runCni(env('ADD', `p${i}`), conf(), deps)).exitCode, 0);
  }
  deps.world.kernel('/fake/pod-p9');
  const ex = parse(await runCni(env('ADD', 'p9'), conf(), deps));
  t.equal(ex.code, 101, 'pool exhausted');
  const status = parse(await runCni(env('STATUS', ''), conf(), deps));
  t.equal(status.code, 50, 'STATUS reports the exhausted pool');
  t.equal((await deps.world.kernel(HOST_NS).getLink(hostVethName('p9', 'eth0'))), undefined, 'no veth left by the failed ADD');

  // A failure half-way (pod route) removes veth and reservation.
  const d2 = createFakeDeps();
  d2.world.kernel('/fake/pod-c1');
  d2.failPod = 'addRoute';
  const failed = await runCni(env('ADD'), conf(), d2);
  t.equal(failed.exitCode, 1);
  t.equal(await d2.world.kernel(HOST_NS).getLink(hostVethName('c1', 'eth0')), undefined, 'veth rolled back');
  t.same([...d2.stores.get('/data/net1')!.reserved.keys()], [], 'reservation rolled back');
  t.notOk(d2.stores.get('/data/net1')!.isLocked, 'lock released');
});

t.test('DEL is idempotent, works without netns and for unknown containers', async (t) => {
  const deps = createFakeDeps();
  deps.world.kernel('/fake/pod-c1');
  await runCni(env('ADD'), conf({ ipMasq: true }), deps);
  t.ok(deps.ipt.chains('nat').some((c) => c.startsWith('PW-MASQ-')));
  deps.world.deleteNetns('/fake/pod-c1');
  const e = env('DEL');
  delete e.CNI_NETNS;
  t.same(await runCni(e, conf({ ipMasq: true }), deps), { exitCode: 0, stdout: '' });
  t.same(await runCni(e, conf({ ipMasq: true }), deps), { exitCode: 0, stdout: '' });
  t.same(await runCni(env('DEL', 'never-added'), conf(), deps), { exitCode: 0, stdout: '' });
  t.same([...deps.stores.get('/data/net1')!.reserved.keys()], []);
  t.notOk(deps.ipt.chains('nat').some((c) => c.startsWith('PW-MASQ-')), 'masq chain removed');
  t.notOk(deps.ipt.rules('nat', 'POSTROUTING').some((r) => r.includes('PW-MASQ-')), 'jump removed');
});

t.test('CHECK passes after ADD and names what is missing', async (t) => {
  const deps = createFakeDeps();
  deps.world.kernel('/fake/pod-c1');
  const added = parse(await runCni(env('ADD'), conf(), deps));
  const withPrev = conf({ prevResult: added });
  t.same(await runCni(env('CHECK'), withPrev, deps), { exitCode: 0, stdout: '' });
  await deps.world.kernel('/fake/pod-c1').deleteAddress('eth0', (await deps.world.kernel('/fake/pod-c1').listAddresses('eth0'))[0]!.cidr);
  const bad = parse(await runCni(env('CHECK'), withPrev, deps));
  t.equal(bad.code, 105);
  t.match(bad.msg, /address 10\.244\.1\.2\/29 is missing/);
  const old = parse(await runCni(env('CHECK'), conf({ cniVersion: '0.3.1', prevResult: added }), deps));
  t.equal(old.code, 1, 'CHECK needs 0.4.0+');
});

t.test('GC releases everything not in valid-attachments, with the lock', async (t) => {
  const deps = createFakeDeps();
  for (const id of ['a', 'b', 'c']) {
    deps.world.kernel(`/fake/pod-${id}`);
    await runCni(env('ADD', id), conf(), deps);
  }
  const gc = conf({ 'cni.dev/valid-attachments': [{ containerID: 'b', ifname: 'eth0' }] });
  t.same(await runCni({ CNI_COMMAND: 'GC', CNI_PATH: '/x' }, gc, deps), { exitCode: 0, stdout: '' });
  const store = deps.stores.get('/data/net1')!;
  t.same([...store.reserved.values()].map((r) => r.containerId), ['b']);
  t.ok(store.lockCount >= 4, 'GC took the store lock');
  const host = deps.world.kernel(HOST_NS);
  t.equal(await host.getLink(hostVethName('a', 'eth0')), undefined, 'stale veth removed');
  t.ok(await host.getLink(hostVethName('b', 'eth0')), 'valid veth kept');
  await runCni({ CNI_COMMAND: 'GC', CNI_PATH: '/x' }, conf({ 'cni.dev/valid-attachments': [] }), deps);
  t.equal(store.reserved.size, 0, 'empty list releases all');
  const old = parse(await runCni({ CNI_COMMAND: 'GC', CNI_PATH: '/x' }, conf({ cniVersion: '1.0.0' }), deps));
  t.equal(old.code, 1, 'GC needs 1.1.0');
});

t.test('error codes for bad input', async (t) => {
  const deps = createFakeDeps();
  const code = async (e: Record<string, string>, stdin: Buffer | string): Promise<unknown> =>
    parse(await runCni(e, Buffer.from(stdin), deps)).code;
  t.equal(await code(env('ADD'), '{not json'), 6);
  t.equal(await code(env('ADD'), conf({ cniVersion: '0.2.0' })), 1);
  t.equal(await code(env('ADD'), conf({ cniVersion: '7.0.0' })), 1);
  const noNetns = env('ADD');
  delete noNetns.CNI_NETNS;
  t.equal(await code(noNetns, conf()), 4);
  t.equal(await code(env('ADD', 'c1', { CNI_IFNAME: 'a/../b' }), conf()), 4);
  t.equal(await code(env('ADD', 'c1', { CNI_IFNAME: 'waytoolonginterfacename' }), conf()), 4);
  t.equal(await code(env('ADD', '../../etc'), conf()), 4);
  t.equal(await code({ CNI_COMMAND: 'FROB' }, conf()), 4);
  t.equal(await code(env('ADD'), conf({ vlan: 100 })), 2);
  t.equal(await code(env('ADD'), conf({}, { ranges: [[{ subnet: '10.244.1.0/33' }]] })), 7);
  t.equal(await code(env('ADD'), conf({ mtu: 'big' })), 7);
  t.equal(await code(env('ADD'), conf({}, { dataDir: 'relative' })), 7);
  t.equal(await code(env('ADD', 'nons'), conf()), 3, 'missing netns: container unknown');
  deps.notNetns = new Map([['/fake/pod-file', 'a regular file, not a network namespace']]);
  const notNs = parse(await runCni(env('ADD', 'file'), conf(), deps));
  t.equal(notNs.code, 4, 'a CNI_NETNS that is no netns: invalid env');
  t.equal(notNs.msg, 'invalid CNI_NETNS="/fake/pod-file": a regular file, not a network namespace');
  t.equal(parse(await runCni(env('CHECK', 'file'), conf({ prevResult: { cniVersion: '1.1.0' } }), deps)).code, 4, 'CHECK too');
  deps.world.kernel('/fake/pod-nosubnet');
  t.equal(await code(env('ADD', 'nosubnet'), conf({}, { ranges: undefined })), 11, 'no subnet yet: try again later');
  t.equal(await code({ CNI_COMMAND: 'STATUS', CNI_PATH: '/x' }, conf({}, { ranges: undefined })), 50, 'no subnet yet: STATUS 50');
  const v = parse(await runCni({ CNI_COMMAND: 'VERSION' }, Buffer.from('{"cniVersion":"0.4.0"}'), deps));
  t.same(v, { cniVersion: '0.4.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
});

t.test('requested IP via CNI_ARGS and runtimeConfig', async (t) => {
  const deps = createFakeDeps();
  deps.world.kernel('/fake/pod-c1');
  deps.world.kernel('/fake/pod-c2');
  deps.world.kernel('/fake/pod-c3');
  const a = parse(await runCni(env('ADD', 'c1', { CNI_ARGS: 'IgnoreUnknown=1;IP=10.244.1.5' }), conf(), deps));
  t.equal((a.ips as { address: string }[])[0]!.address, '10.244.1.5/29');
  const b = parse(await runCni(env('ADD', 'c2'), conf({ runtimeConfig: { ips: ['10.244.1.5/29'] } }), deps));
  t.equal(b.code, 103, 'taken address refused');
  const c = parse(await runCni(env('ADD', 'c3'), conf({ runtimeConfig: { ips: ['10.244.1.6'] } }), deps));
  t.equal((c.ips as { address: string }[])[0]!.address, '10.244.1.6/29');
});

t.test('a repeated ADD fails without freeing the existing attachment', async (t) => {
  const deps = createFakeDeps();
  deps.world.kernel('/fake/pod-c1');
  t.equal((await runCni(env('ADD'), conf(), deps)).exitCode, 0);
  const again = parse(await runCni(env('ADD'), conf(), deps));
  t.equal(again.code, 102);
  t.same([...deps.stores.get('/data/net1')!.reserved.keys()], ['10.244.1.2'], 'the first reservation is intact');
  t.ok(await deps.world.kernel(HOST_NS).getLink(hostVethName('c1', 'eth0')), 'the first veth is intact');
});

t.test('warm caller: the remembered bridge is verified, a recreated or downed bridge is looked up again', async (t) => {
  const deps = createFakeDeps();
  deps.bridges = new Map();
  deps.ensured = new Set();
  const host = deps.world.kernel(HOST_NS);
  const add = async (id: string): Promise<void> => {
    deps.world.kernel(`/fake/pod-${id}`);
    const out = await runCni(env('ADD', id), conf(), deps);
    t.equal(out.exitCode, 0, `ADD ${id}: ${out.stdout}`);
  };
  const enslavedTo = async (id: string): Promise<number | undefined> => (await host.getLink(hostVethName(id, 'eth0')))?.masterIndex;
  await add('c1');
  const first = await host.getLink('pw0');
  t.equal(deps.bridges.get('pw0')?.index, first?.index, 'bridge remembered');
  t.equal(await enslavedTo('c1'), first?.index);
  t.ok(host.portFlags(hostVethName('c1', 'eth0')).hairpin, 'hairpin on');
  t.ok((await deps.world.kernel('/fake/pod-c1').getLink('eth0'))?.up, 'pod interface up');

  // Recreated bridge: the remembered ifindex is stale (gone).
  await host.deleteLink('pw0');
  await add('c2');
  const second = await host.getLink('pw0');
  t.not(second?.index, first?.index, 'a new bridge');
  t.equal(await enslavedTo('c2'), second?.index, 'veth on the new bridge');
  t.equal(deps.bridges.get('pw0')?.index, second?.index, 'memory refreshed');

  // Stale index now owned by another bridge: the veth must not stay there.
  const other = await host.createLink({ kind: 'bridge', name: 'other0', up: true });
  deps.bridges.set('pw0', { ...second!, index: other.index });
  await add('c3');
  t.equal(await enslavedTo('c3'), second?.index, 'veth moved to the configured bridge');

  // Downed bridge: brought up again by the careful path.
  await host.setLinkUp('pw0', false);
  await add('c4');
  t.ok((await host.getLink('pw0'))?.up, 'bridge up again');
  t.equal(await enslavedTo('c4'), second?.index);
});

t.test('a network config over the 4 MiB limit is a permanent error (108), not "try again" (11)', async (t) => {
  const deps = createFakeDeps();
  deps.world.kernel('/fake/pod-c1');
  const big = Buffer.from(JSON.stringify({ cniVersion: '1.0.0', name: 'net1', type: 'podwire', pad: 'x'.repeat(10 << 20), ipam: { type: 'host-local', ranges: [[{ subnet: '10.244.1.0/29' }]], dataDir: '/data' } }));
  const out = await runCni(env('ADD'), big, deps);
  t.equal(out.exitCode, 1);
  const e = parse(out);
  t.equal(e.code, 108);
  t.equal(e.cniVersion, '1.0.0', "in the request's version");
  t.equal(e.msg, `network config on stdin is ${big.length} bytes, over the limit of 4194304 bytes (4 MiB)`);
  t.equal(deps.stores.size, 0, 'nothing was reserved');
  const atLimit = Buffer.concat([conf(), Buffer.alloc((4 << 20) - conf().length, ' ')]);
  t.equal((await runCni(env('ADD'), atLimit, deps)).exitCode, 0, 'exactly 4 MiB is accepted');
});

t.test('warm caller: a gateway address deleted behind our back is put back by the next ADD', async (t) => {
  const deps = createFakeDeps();
  deps.bridges = new Map();
  deps.ensured = new Set();
  const host = deps.world.kernel(HOST_NS);
  const add = async (id: string): Promise<void> => {
    deps.world.kernel(`/fake/pod-${id}`);
    const out = await runCni(env('ADD', id), conf(), deps);
    t.equal(out.exitCode, 0, `ADD ${id}: ${out.stdout}`);
  };
  await add('g1');
  await add('g2');
  t.ok([...deps.ensured].some((k) => k.startsWith('gw pw0#')), 'the gateway is remembered as ensured');
  const gw = (await host.listAddresses('pw0'))[0]!.cidr;
  t.equal(gw.toString(), '10.244.1.1/29');
  await host.deleteAddress('pw0', gw); // `ip addr del 10.244.1.1/29 dev pw0`
  await add('g3');
  t.same((await host.listAddresses('pw0')).map((a) => a.cidr.toString()), ['10.244.1.1/29'], 'the gateway is back on the bridge');
});
