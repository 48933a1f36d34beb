/**
 * The cni component on fakes: bridge reattach from the IPAM store, podwire.conf beside the
 * binary, fallback records as a metric and in status, and the fast path mounted in start
 * and unmounted in close (through a real Daemon and its control socket).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import t, { type Test } from 'tap';
import { systemClock } from '../common/clock';
import { silentLogger } from '../common/log';
import { hostVethName, parseShimConf, recordFallbackFromEnv, FALLBACK_FILE, CNI_CONF_NAME } from '../cni-plugin';
import { clusterStateOf, RecordingNodeWriter } from '../k8s';
import { fakeKernel, type FakeKernel } from '../kernel/testing';
import { CniInstaller, cniRegistration, type CniInstallerOptions } from './cni-installer';
import { loadConfig, type DaemonConfig } from './config';
import { Daemon } from './daemon';
import { request } from './route-server';
import { FakeSource, nodeObject } from './testing/fake-source';

function tmp(t: Test): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'pwd-cnic-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function config(dir: string, extra: string[] = []): DaemonConfig {
  return loadConfig({
    argv: [
      '--node-name', 'n1',
      '--cni-conf-dir', path.join(dir, 'net.d'),
      '--cni-bin-dir', path.join(dir, 'bin'),
      '--state-dir', path.join(dir, 'state'),
      '--control-socket', path.join(dir, 'run', 'pw.sock'),
      '--min-sync-interval', '5ms',
      ...extra,
    ],
    env: {},
    readFile: () => {
      throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    },
  }).config;
}

function component(cfg: DaemonConfig, source: FakeSource, kernel: FakeKernel, metrics = new Registry(), options: CniInstallerOptions = {}): CniInstaller {
  return new CniInstaller(
    { config: cfg, section: { fastPath: true, reconcileIntervalMs: 1000 }, state: clusterStateOf(source), node: new RecordingNodeWriter(), kernel, logger: silentLogger, clock: systemClock, metrics },
    { underlayMtu: async () => 1500, ...options },
  );
}

/** An IPAM reservation as the plugin writes it (host-local layout). */
function reserve(cfg: DaemonConfig, ip: string, containerId: string, ifname = 'eth0'): void {
  const dir = path.join(cfg.stateDir, 'ipam', 'podwire');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, ip), `${containerId}\r\n${ifname}`);
}

/** A pod's veth as an ADD leaves it: host end up, on the bridge, hairpin on. */
async function plug(k: FakeKernel, containerId: string): Promise<string> {
  const name = hostVethName(containerId, 'eth0');
  await k.net.createLink({ kind: 'veth', name, peerName: `p${containerId.slice(0, 10)}`, up: true, master: 'pw0' });
  await k.net.setBridgePort(name, { hairpin: true });
  return name;
}

t.test('bridge reattach: a deleted pw0 is recreated and the pods known to IPAM go back on it', async (t) => {
  const dir = tmp(t);
  const cfg = config(dir);
  const source = new FakeSource();
  source.apply(nodeObject('n1', ['10.244.1.0/24']));
  const k = fakeKernel();
  const metrics = new Registry();
  const c = component(cfg, source, k, metrics);

  await c.sync();
  t.equal(await k.net.getLink('pw0'), undefined, 'no pods: no bridge made');

  await k.net.createLink({ kind: 'bridge', name: 'pw0', up: true });
  const a = await plug(k, 'aaaa1111');
  const b = await plug(k, 'bbbb2222');
  const stranger = await plug(k, 'cccc3333'); // a veth IPAM does not know: not ours to touch
  reserve(cfg, '10.244.1.2', 'aaaa1111');
  reserve(cfg, '10.244.1.3', 'bbbb2222');
  reserve(cfg, '10.244.1.4', 'dddd4444'); // reserved, but its veth is gone: skipped
  writeFileSync(path.join(cfg.stateDir, 'ipam', 'podwire', '10.244.1.9'), 'old-style-id-only'); // no ifname: skipped

  await k.net.setLinkUp(b, false);
  await k.net.deleteLink('pw0');
  t.equal((await k.net.getLink(a))?.masterIndex, undefined, 'detached by the delete');

  await c.sync();
  const bridge = await k.net.getLink('pw0');
  t.ok(bridge, 'bridge recreated');
  t.equal(bridge!.up, true, 'bridge up');
  t.equal(bridge!.kind, 'bridge');
  for (const v of [a, b]) {
    const l = await k.net.getLink(v);
    t.equal(l?.masterIndex, bridge!.index, `${v} back on pw0`);
    t.equal(l?.up, true, `${v} up`);
    t.equal(k.net.portFlags(v).hairpin, true, `${v} hairpin on`);
  }
  t.equal((await k.net.getLink(stranger))?.masterIndex, undefined, 'a veth IPAM does not know is left alone');
  t.same((await k.net.listAddresses('pw0')).map((x) => x.cidr.toString()), ['10.244.1.1/24'], 'gateway address back on the bridge');
  const st = c.status();
  t.equal(st.pods, 3, 'three attachments with an ifname');
  t.equal(st.reattachedTotal, 2);
  t.match(st.lastReattach, { veths: 2, reattached: 2, bridgeCreated: true });
  t.match(await metrics.metrics(), /^podwire_cni_veths_reattached_total 2$/m, 'counted in a metric');

  // Steady state: nothing to do, no link changes.
  const calls = k.net.calls.length;
  await c.sync();
  t.same(
    k.net.calls.slice(calls).filter((x) => ['createLink', 'setMaster', 'setBridgePort', 'deleteLink'].includes(x.method)),
    [],
    'a second sync changes no link',
  );
  t.equal(c.status().reattachedTotal, 2);
});

t.test('the MAC of an existing bridge is kept; a non-bridge pw0 is an error', async (t) => {
  const dir = tmp(t);
  const cfg = config(dir);
  const source = new FakeSource();
  source.apply(nodeObject('n1', ['10.244.1.0/24']));
  const k = fakeKernel();
  await k.net.createLink({ kind: 'bridge', name: 'pw0', up: true, mac: '02:00:00:00:00:01' });
  const a = await plug(k, 'aaaa1111');
  reserve(cfg, '10.244.1.2', 'aaaa1111');
  await k.net.setMaster(a, undefined);
  const c = component(cfg, source, k);
  await c.sync();
  t.equal((await k.net.getLink('pw0'))?.mac, '02:00:00:00:00:01', 'pinned MAC unchanged');
  t.equal((await k.net.getLink(a))?.masterIndex, (await k.net.getLink('pw0'))?.index);

  await k.net.deleteLink('pw0');
  await k.net.createLink({ kind: 'vxlan', name: 'pw0', vni: 5, port: 4789, learning: false });
  await t.rejects(c.sync(), { message: /not a bridge/ }, 'sync fails loudly');
});

t.test('podwire.conf beside the binary: the control socket and state dir, written only when changed', async (t) => {
  const dir = tmp(t);
  const cfg = config(dir);
  const source = new FakeSource();
  source.apply(nodeObject('n1', ['10.244.1.0/24']));
  const c = component(cfg, source, fakeKernel());
  await c.sync();
  const file = path.join(cfg.cniBinDir, CNI_CONF_NAME);
  const text = readFileSync(file, 'utf8');
  t.same(parseShimConf(text), { controlSocket: cfg.controlSocket, stateDir: cfg.stateDir });
  t.match(text, /^control_socket=\/.*pw\.sock$/m, 'the line the shim reads');
  await c.sync();
  t.same(c.status().shimConf, { path: file, sha256: (c.status().shimConf as { sha256: string }).sha256 });
  await c.cleanup();
  t.throws(() => readFileSync(file), { code: 'ENOENT' }, 'cleanup removes it');
});

t.test('fallback records: counted as podwire_cni_fallback_total and shown in status', async (t) => {
  const dir = tmp(t);
  const cfg = config(dir);
  const source = new FakeSource();
  source.apply(nodeObject('n1', ['10.244.1.0/24']));
  const metrics = new Registry();
  const c = component(cfg, source, fakeKernel(), metrics);
  await c.sync(); // writes podwire.conf
  const conf = path.join(cfg.cniBinDir, CNI_CONF_NAME);
  const metric = async () => /podwire_cni_fallback_total (\d+)/.exec(await metrics.metrics())?.[1];
  t.equal(await metric(), '0');
  t.equal(c.status().fallbacks, 0);

  const env = { PODWIRE_CNI_CONF: conf, PODWIRE_CNI_FALLBACK: cfg.controlSocket, PODWIRE_CNI_FALLBACK_REASON: 'Connection refused', CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'abc' };
  t.equal(recordFallbackFromEnv(env), path.join(cfg.stateDir, FALLBACK_FILE));
  t.equal(recordFallbackFromEnv({ ...env, CNI_CONTAINERID: 'def' }), path.join(cfg.stateDir, FALLBACK_FILE));
  t.equal(recordFallbackFromEnv({ ...env, PODWIRE_CNI_FALLBACK: undefined }), undefined, 'no fallback: no record');
  t.equal(recordFallbackFromEnv({ ...env, PODWIRE_CNI_CONF: path.join(dir, 'nope') }), undefined, 'no conf: no record, no throw');
  t.equal(await metric(), '2');
  const st = c.status();
  t.equal(st.fallbacks, 2);
  t.match(st.lastFallback, { command: 'ADD', containerId: 'def', socket: cfg.controlSocket, reason: 'Connection refused' });
  appendFileSync(path.join(cfg.stateDir, FALLBACK_FILE), 'garbage\n');
  t.equal(await metric(), '3', 'every line counts');
  rmSync(path.join(cfg.stateDir, FALLBACK_FILE));
  t.equal(await metric(), '0', 'file removed: counter reset');
});

t.test('through a Daemon: the fast path is mounted in start and unmounted in close; --no-cni-fast-path keeps it off', async (t) => {
  const dir = tmp(t);
  const cfg = config(dir, ['--enable', 'cni']);
  const source = new FakeSource();
  source.apply(nodeObject('n1', ['10.244.1.0/24']));
  source.markSynced();
  let closed = 0;
  const fastPathDeps = () => ({ ...fakeCniDeps(), close: () => void closed++ });
  const d = new Daemon({ config: cfg, source, components: [cniRegistration({ underlayMtu: async () => 1500, fastPathDeps })], logger: silentLogger, processMetrics: false, tcpServers: false, kernel: fakeKernel() });
  const ac = new AbortController();
  await d.start(ac.signal);
  const version = Buffer.concat([Buffer.from('CNI_COMMAND=VERSION\0\0'), Buffer.from('{"cniVersion":"1.0.0"}')]);
  const r = await request({ socketPath: cfg.controlSocket }, 'POST', '/v1/cni', version);
  t.equal(r.status, 200, 'served by the cni component');
  t.equal(r.headers['x-cni-exit-code'], '0');
  t.match(r.body.toString(), /"supportedVersions"/);
  t.equal(d.status().components[0]!.status.fastPath, true);
  t.same(d.intervalsOf('cni'), { minIntervalMs: 5, maxIntervalMs: 10_000 }, 'cni.reconcileInterval drives its runner');
  ac.abort();
  await d.stop();
  t.equal(closed, 1, 'fast-path deps closed');

  const cfg2 = config(dir, ['--enable', 'cni', '--control-socket', path.join(dir, 'run', 'pw2.sock')]);
  const loaded = loadConfig({ argv: ['--node-name', 'n1', '--no-cni-fast-path', '--cni-reconcile-interval', '3s'], env: {}, readFile: () => '' });
  const d2 = new Daemon({ config: cfg2, source, components: [cniRegistration({ underlayMtu: async () => 1500, fastPathDeps })], logger: silentLogger, processMetrics: false, tcpServers: false, kernel: fakeKernel(), sections: loaded.sections });
  const ac2 = new AbortController();
  await d2.start(ac2.signal);
  t.equal((await request({ socketPath: cfg2.controlSocket }, 'POST', '/v1/cni', version)).status, 404, 'not mounted');
  t.equal(d2.status().components[0]!.status.fastPath, false);
  t.same(d2.intervalsOf('cni'), { minIntervalMs: 5, maxIntervalMs: 3000 });
  ac2.abort();
  await d2.stop();
});

t.test('close waits for fast-path calls in flight before closing their sockets', async (t) => {
  const dir = tmp(t);
  const cfg = config(dir, ['--enable', 'cni']);
  const source = new FakeSource();
  let closed = 0;
  let entered!: () => void;
  const inside = new Promise<void>((r) => (entered = r));
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const fastPathDeps = () => ({
    ...fakeCniDeps(),
    // The netns check passes, so ADD goes on to the host kernel: hold it there.
    checkNetns: () => ({ ok: true as const }),
    hostKernel: async (): Promise<never> => {
      entered();
      await gate;
      throw new Error('host kernel not in this test');
    },
    close: () => void closed++,
  });
  const d = new Daemon({ config: cfg, source, components: [cniRegistration({ underlayMtu: async () => 1500, fastPathDeps })], logger: silentLogger, processMetrics: false, tcpServers: false, kernel: fakeKernel() });
  const ac = new AbortController();
  await d.start(ac.signal);
  const env = 'CNI_COMMAND=ADD\0CNI_CONTAINERID=c1\0CNI_NETNS=/run/netns/x\0CNI_IFNAME=eth0\0CNI_PATH=/opt/cni/bin\0\0';
  const conf = JSON.stringify({ cniVersion: '1.0.0', name: 'podwire', type: 'podwire', ipam: { type: 'host-local', ranges: [[{ subnet: '10.244.1.0/24' }]] } });
  const pending = request({ socketPath: cfg.controlSocket }, 'POST', '/v1/cni', Buffer.from(env + conf));
  await inside;
  ac.abort();
  const stopped = d.stop();
  await new Promise((r) => setTimeout(r, 50));
  t.equal(closed, 0, 'sockets stay open while a call is in flight');
  release();
  const r = await pending;
  t.equal(r.status, 200, 'the call in flight got its answer');
  t.match(r.body.toString(), /"code":\d+,.*host kernel not in this test/, 'its CNI result (the error the held call ended with)');
  await stopped;
  t.equal(closed, 1, 'then closed');
});

/** CNI deps that must not be reached by VERSION (it touches nothing). */
function fakeCniDeps() {
  const no = (): never => {
    throw new Error('not in this test');
  };
  return {
    log: silentLogger,
    hostKernel: async () => no(),
    openPodKernel: async () => no(),
    netnsExists: async () => false,
    checkNetns: () => ({ ok: false as const, missing: true, reason: 'does not exist' }),
    sysctl: fakeKernel().sysctl,
    podSysctl: () => fakeKernel().sysctl,
    iptables: () => fakeKernel().iptables(4),
    openStore: () => no(),
    execPlugin: async () => no(),
  };
}
