import { clusterStateOf, RecordingNodeWriter } from '../k8s';
import { fakeKernel } from '../kernel/testing';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { silentLogger } from '../common/log';
import { systemClock } from '../common/clock';
import { Registry } from 'prom-client';
import { decodeJson, parseNetConf } from '../cni-plugin/config';
import { copyFileAtomic, writeFileAtomic } from './atomic-file';
import { CniInstaller, CONFLIST_NAME, renderConflist } from './cni-installer';
import { buildSectionDefaults, loadConfig, type DaemonConfig } from './config';
import { FakeSource, nodeObject } from './testing/fake-source';
import type { ConfigSection } from './config-section';
import { overlaySection, type OverlaySection } from '../overlay';

function tmp(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'pwd-cni-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function config(dir: string, extra: string[] = []): DaemonConfig {
  return loadConfig({
    argv: ['--node-name', 'n1', '--cni-conf-dir', path.join(dir, 'net.d'), '--cni-bin-dir', path.join(dir, 'bin'), '--state-dir', path.join(dir, 'state'), ...extra],
    env: {},
    readFile: () => {
      throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    },
  }).config;
}

t.test('the rendered conflist is accepted by the CNI plugin parser', async (t) => {
  const text = renderConflist({ stateDir: '/var/lib/podwire' }, ['10.244.1.0/24', 'fd00:10:244:1::/64'], 1450, { cniVersion: '1.1.0', plugins: ['portmap'] });
  const list = JSON.parse(text) as { cniVersion: string; name: string; plugins: Record<string, unknown>[] };
  t.equal(list.cniVersion, '1.1.0');
  t.equal(list.name, 'podwire');
  t.equal(list.plugins[1]!.type, 'portmap');
  // The runtime hands each plugin its entry plus cniVersion and name.
  const entry = { ...list.plugins[0]!, cniVersion: list.cniVersion, name: list.name };
  const conf = parseNetConf(decodeJson(JSON.stringify(entry)));
  t.equal(conf.type, 'podwire');
  t.equal(conf.bridge, 'pw0');
  t.equal(conf.mtu, 1450);
  t.equal(conf.isGateway, true);
  t.equal(conf.ipMasq, false);
  t.equal(conf.hairpinMode, true);
  t.equal(conf.ipam.dataDir, '/var/lib/podwire/ipam');
  t.same(conf.ipam.rangeSets.map((s) => s.map((r) => r.subnet.toString())), [['10.244.1.0/24'], ['fd00:10:244:1::/64']]);
  t.same(conf.ipam.rangeSets[0]![0]!.gateway?.toString(), '10.244.1.1', 'gateway is the first address (the bridge)');
  t.same(conf.ipam.routes.map((r) => r.dst), ['0.0.0.0/0', '::/0']);
  let field: unknown;
  try {
    renderConflist({ stateDir: '/x' }, ['bogus'], 1450, { cniVersion: '1.1.0', plugins: [] });
  } catch (err) {
    field = (err as { field?: unknown }).field;
  }
  t.equal(field, 'node.spec.podCIDRs[0]', 'a bad podCIDR names the field');
});

t.test('atomic write: unchanged content is not rewritten; changes replace by rename; no temp files left', async (t) => {
  const dir = tmp(t);
  const f = path.join(dir, 'sub', 'a.conflist');
  t.same(await writeFileAtomic(f, 'one'), { path: f, changed: true });
  const ino = statSync(f).ino;
  t.same(await writeFileAtomic(f, 'one'), { path: f, changed: false });
  t.equal(statSync(f).ino, ino, 'same inode: not rewritten');
  t.same(await writeFileAtomic(f, 'two'), { path: f, changed: true });
  t.not(statSync(f).ino, ino, 'new inode: replaced by rename');
  t.equal(readFileSync(f, 'utf8'), 'two');
  t.same(readdirSync(path.dirname(f)), ['a.conflist'], 'no temp files left');
  const src = path.join(dir, 'bin-src');
  writeFileSync(src, 'ELF');
  const dst = path.join(dir, 'bin', 'podwire');
  t.equal((await copyFileAtomic(src, dst)).changed, true);
  t.equal(statSync(dst).mode & 0o777, 0o755);
  t.equal((await copyFileAtomic(src, dst)).changed, false);
});

function installer(cfg: DaemonConfig, source: FakeSource, underlay: number | undefined): CniInstaller {
  return new CniInstaller(
    { config: cfg, section: undefined, state: clusterStateOf(source), node: new RecordingNodeWriter(), kernel: fakeKernel(), logger: silentLogger, clock: systemClock, metrics: new Registry() },
    { underlayMtu: async () => underlay },
  );
}

t.test('pod MTU: explicit, vxlan = underlay - 50, host-gw = underlay, default underlay 1500', async (t) => {
  const cases: [string[], number | undefined, number][] = [
    [[], 9000, 8950],
    [['--backend', 'host-gw'], 9000, 9000],
    [[], undefined, 1450],
    [['--mtu', '1400'], 9000, 1400],
  ];
  for (const [flags, underlay, want] of cases) {
    const dir = tmp(t);
    const cfg = config(dir, flags);
    const source = new FakeSource();
    source.apply(nodeObject('n1', ['10.244.5.0/24']));
    const c = installer(cfg, source, underlay);
    await c.sync();
    const list = JSON.parse(readFileSync(path.join(cfg.cniConfDir, CONFLIST_NAME), 'utf8')) as { plugins: { mtu: number }[] };
    t.equal(list.plugins[0]!.mtu, want, `${flags.join(' ') || 'vxlan'} underlay ${underlay}`);
  }
});

t.test('pod MTU, dual-stack vxlan with an IPv6 node IP: the smaller of pw.1 (v4 underlay - 50) and pw-v6.1 (v6 underlay - 70)', async (t) => {
  const cases: [string, string[], string[], Record<string, number>, number][] = [
    ['v6 node IP on an interface', ['10.244.5.0/24', 'fd00:10:244:5::/64'], ['198.18.0.1', 'fd00:198:18::1'], { '198.18.0.1': 1500, 'fd00:198:18::1': 1500 }, 1430],
    ['a larger v6 underlay', ['10.244.5.0/24', 'fd00:10:244:5::/64'], ['198.18.0.1', 'fd00:198:18::1'], { '198.18.0.1': 1500, 'fd00:198:18::1': 9000 }, 1450],
    ['v6 node IP on no interface (no pw-v6.1)', ['10.244.5.0/24', 'fd00:10:244:5::/64'], ['198.18.0.1', 'fd00:198:18::1'], { '198.18.0.1': 1500 }, 1450],
    ['no v6 pod CIDR', ['10.244.5.0/24'], ['198.18.0.1', 'fd00:198:18::1'], { '198.18.0.1': 1500, 'fd00:198:18::1': 1500 }, 1450],
    // The node IP is chosen per family (as the overlay does), whatever order the InternalIPs come in.
    ['the v6 InternalIP listed first', ['10.244.5.0/24', 'fd00:10:244:5::/64'], ['fd00:198:18::1', '198.18.0.1'], { '198.18.0.1': 1500, 'fd00:198:18::1': 9000 }, 1450],
    ['the v6 InternalIP first, a smaller v6 underlay', ['10.244.5.0/24', 'fd00:10:244:5::/64'], ['fd00:198:18::1', '198.18.0.1'], { '198.18.0.1': 9000, 'fd00:198:18::1': 1500 }, 1430],
  ];
  for (const [what, cidrs, ips, mtus, want] of cases) {
    const dir = tmp(t);
    const cfg = config(dir, ['--cluster-cidr', '10.244.0.0/16,fd00:10:244::/56']);
    const source = new FakeSource();
    const n = nodeObject('n1', cidrs, ips[0]);
    source.apply({ ...n, addresses: ips.map((address) => ({ type: 'InternalIP', address })) });
    const c = new CniInstaller(
      { config: cfg, section: undefined, state: clusterStateOf(source), node: new RecordingNodeWriter(), kernel: fakeKernel(), logger: silentLogger, clock: systemClock, metrics: new Registry() },
      { underlayMtu: async (ip) => (ip === undefined ? undefined : mtus[ip]) },
    );
    await c.sync();
    const list = JSON.parse(readFileSync(path.join(cfg.cniConfDir, CONFLIST_NAME), 'utf8')) as { plugins: { mtu: number }[] };
    t.equal(list.plugins[0]!.mtu, want, what);
  }
});

t.test('pod MTU with overlay vxlan.ipv6Device=false: no IPv6 device, so pw.1\'s MTU alone (the overlay\'s section, read through sectionOf)', async (t) => {
  for (const [ipv6Device, want] of [[true, 1430], [false, 1450]] as const) {
    const dir = tmp(t);
    const cfg = config(dir, ['--cluster-cidr', '10.244.0.0/16,fd00:10:244::/56']);
    const source = new FakeSource();
    const n = nodeObject('n1', ['10.244.5.0/24', 'fd00:10:244:5::/64'], '198.18.0.1');
    source.apply({ ...n, addresses: ['198.18.0.1', 'fd00:198:18::1'].map((address) => ({ type: 'InternalIP', address })) });
    const ov = buildSectionDefaults(overlaySection, cfg);
    const sections: OverlaySection = { ...ov, vxlan: { ...ov.vxlan, ipv6Device } };
    const c = new CniInstaller(
      {
        config: cfg, section: undefined, state: clusterStateOf(source), node: new RecordingNodeWriter(), kernel: fakeKernel(), logger: silentLogger, clock: systemClock, metrics: new Registry(),
        sectionOf: <T>(s: ConfigSection<T>): T => (s.name === 'overlay' ? (sections as T) : buildSectionDefaults(s, cfg)),
      },
      { underlayMtu: async () => 1500 },
    );
    await c.sync();
    const list = JSON.parse(readFileSync(path.join(cfg.cniConfDir, CONFLIST_NAME), 'utf8')) as { plugins: { mtu: number }[] };
    t.equal(list.plugins[0]!.mtu, want, `vxlan.ipv6Device=${String(ipv6Device)}`);
  }
});

t.test('events: only this node matters; sync fails (retryable) without node or podCIDR', async (t) => {
  const dir = tmp(t);
  const cfg = config(dir);
  const source = new FakeSource();
  const c = installer(cfg, source, 1500);
  await t.rejects(c.sync(), { code: 'PW_TRY_AGAIN', field: 'nodeName', value: 'n1' });
  t.equal(c.handleEvent({ type: 'add', kind: 'Node', current: nodeObject('other', ['10.244.9.0/24']) }), false, 'other nodes ignored');
  const n = nodeObject('n1', []);
  t.equal(c.handleEvent({ type: 'add', kind: 'Node', current: n }), true);
  source.apply(n);
  await t.rejects(c.sync(), { code: 'PW_TRY_AGAIN', field: 'node.spec.podCIDRs' });
  t.equal(c.handleEvent({ type: 'update', kind: 'Node', previous: n, current: n }), false, 'no change, no sync');
  const n2 = nodeObject('n1', ['10.244.4.0/24']);
  t.equal(c.handleEvent({ type: 'update', kind: 'Node', previous: n, current: n2 }), true);
  source.apply(n2);
  t.same(await c.sync(), { objects: 1 });
  t.same(c.status().subnet, ['10.244.4.0/24']);
  t.equal(c.status().conflistWrites, 1);
  await c.sync();
  t.equal(c.status().conflistWrites, 1, 'resync with no change writes nothing');
  // A missing explicit binary source is a named error.
  const c2 = new CniInstaller(
    { config: cfg, section: undefined, state: clusterStateOf(source), node: new RecordingNodeWriter(), kernel: fakeKernel(), logger: silentLogger, clock: systemClock, metrics: new Registry() },
    { underlayMtu: async () => 1500, binSource: path.join(dir, 'missing') },
  );
  await t.rejects(c2.sync(), { code: 'PW_NOT_FOUND', field: 'cniBinSource' });
});
