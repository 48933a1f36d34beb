import { mkdtempSync, readFileSync, rmSync, statSync, existsSync, writeFileSync } from 'node:fs';
import { fakeKernel } from '../kernel/testing';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { silentLogger } from '../common/log';
import { AlreadyExistsError } from '../common/errors';
import type { ClusterEvent } from '../k8s/types';
import { cniInstallerRegistration, CONFLIST_NAME } from './cni-installer';
import type { Component, ComponentRegistration } from './component';
import { loadConfig, type DaemonConfig } from './config';
import { Daemon, type DaemonStatus } from './daemon';
import { request } from './route-server';
import { FakeSource, nodeObject } from './testing/fake-source';

interface Env {
  dir: string;
  config: DaemonConfig;
}

function env(t: Test, extra: string[] = []): Env {
  const dir = mkdtempSync(path.join(tmpdir(), 'pwd-daemon-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const binSrc = path.join(dir, 'podwire-cni-src');
  writeFileSync(binSrc, '#!/bin/sh\necho fake cni\n');
  const { config } = loadConfig({
    argv: [
      '--node-name', 'n1',
      '--control-socket', path.join(dir, 'run', 'podwire.sock'),
      '--cni-conf-dir', path.join(dir, 'net.d'),
      '--cni-bin-dir', path.join(dir, 'bin'),
      '--cni-bin-source', binSrc,
      '--state-dir', path.join(dir, 'state'),
      '--min-sync-interval', '5ms',
      '--sync-interval', '1m',
      '--enable', 'cni',
      ...extra,
    ],
    env: {},
    readFile: () => {
      throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    },
  });
  return { dir, config };
}



function newDaemon(config: DaemonConfig, source: FakeSource, components: ComponentRegistration[] = [cniInstallerRegistration()]): Daemon {
  return new Daemon({ config, source, components, logger: silentLogger, processMetrics: false, tcpServers: false, kernel: fakeKernel() });
}

async function get(config: DaemonConfig, p: string) {
  return request({ socketPath: config.controlSocket }, 'GET', p);
}

/** Poll /readyz: bounded count, each try a short pause; not a timed assertion. */
async function waitReady(config: DaemonConfig, tries = 300): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    if ((await get(config, '/readyz')).status === 200) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return false;
}

t.test('start → ready → status/metrics → stop leaves the conflist; restart rewrites nothing', async (t) => {
  const { config } = env(t);
  const source = new FakeSource();
  const ac = new AbortController();
  const d = newDaemon(config, source);
  await d.start(ac.signal);
  source.apply(nodeObject('n1', ['10.244.1.0/24']));
  t.equal((await get(config, '/healthz')).status, 200, 'healthz before sync');
  const notReady = await get(config, '/readyz');
  t.equal(notReady.status, 503, 'not ready before the source synced');
  t.match(notReady.body.toString(), /source fake not synced/);
  source.markSynced();
  t.ok(await waitReady(config), 'ready after source sync and first component sync');

  const conflist = path.join(config.cniConfDir, CONFLIST_NAME);
  const conf = JSON.parse(readFileSync(conflist, 'utf8')) as { plugins: { ipam: { ranges: { subnet: string }[][] } }[] };
  t.equal(conf.plugins[0]!.ipam.ranges[0]![0]!.subnet, '10.244.1.0/24');
  t.equal(readFileSync(path.join(config.cniBinDir, 'podwire'), 'utf8'), '#!/bin/sh\necho fake cni\n', 'binary installed');
  t.equal(statSync(path.join(config.cniBinDir, 'podwire')).mode & 0o777, 0o755);

  const st = JSON.parse((await get(config, '/v1/status')).body.toString()) as DaemonStatus;
  t.equal(st.ready, true);
  t.same(st.node?.podCIDRs, ['10.244.1.0/24']);
  t.equal(st.components[0]!.name, 'cni');
  t.equal(st.components[0]!.status.conflistWrites, 1);

  const metrics = (await get(config, '/metrics')).body.toString();
  t.match(metrics, /podwire_sync_duration_seconds_bucket\{.*component="cni"/);
  t.match(metrics, /podwire_syncs_total\{component="cni",result="success"\} [1-9]/);
  t.match(metrics, /podwire_last_successful_sync_timestamp_seconds\{component="cni"\} \d/);
  t.match(metrics, /podwire_source_objects\{kind="Node"\} 1/);
  t.match(metrics, /podwire_source_events_total\{kind="Node",type="add"\} 1/);
  t.match(metrics, /podwire_ready 1/);
  t.match(metrics, /podwire_sync_errors_total/);

  const inode = statSync(conflist).ino;
  ac.abort();
  await d.stop();
  t.ok(existsSync(conflist), 'SIGTERM-style stop leaves the conflist');
  t.notOk(existsSync(config.controlSocket), 'control socket removed');

  // Restart: same dirs, same node. Ready again, conflist untouched (same inode).
  const ac2 = new AbortController();
  const source2 = new FakeSource();
  source2.apply(nodeObject('n1', ['10.244.1.0/24']));
  source2.markSynced();
  const d2 = newDaemon(config, source2);
  await d2.start(ac2.signal);
  t.ok(await waitReady(config), 'ready after restart');
  t.equal(statSync(conflist).ino, inode, 'conflist not rewritten on restart');
  const st2 = JSON.parse((await get(config, '/v1/status')).body.toString()) as DaemonStatus;
  t.equal(st2.components[0]!.status.conflistWrites, 0);

  // A podCIDR change rewrites it (atomically: new inode).
  source2.apply(nodeObject('n1', ['10.244.7.0/24']));
  let rewritten = false;
  for (let i = 0; i < 300 && !rewritten; i++) {
    await new Promise((r) => setTimeout(r, 10));
    rewritten = readFileSync(conflist, 'utf8').includes('10.244.7.0/24');
  }
  t.ok(rewritten, 'conflist follows the Node podCIDR');
  t.not(statSync(conflist).ino, inode, 'replaced by rename');
  ac2.abort();
  await d2.stop();
});

t.test('not ready while the Node has no podCIDR; ready once it gets one', async (t) => {
  const { config } = env(t);
  const source = new FakeSource();
  source.apply(nodeObject('n1', []));
  source.markSynced();
  const ac = new AbortController();
  const d = newDaemon(config, source);
  await d.start(ac.signal);
  await d.whenRunning();
  let body = '';
  for (let i = 0; i < 300; i++) {
    const st = JSON.parse((await get(config, '/v1/status')).body.toString()) as DaemonStatus;
    if (st.components[0]!.errors > 0) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  const r = await get(config, '/readyz');
  body = r.body.toString();
  t.equal(r.status, 503);
  t.match(body, /cni: no successful sync yet \(Node "n1" has no spec.podCIDRs yet\)/);
  t.notOk(existsSync(path.join(config.cniConfDir, CONFLIST_NAME)), 'no conflist without a podCIDR');
  const metrics = (await get(config, '/metrics')).body.toString();
  t.match(metrics, /podwire_sync_errors_total\{component="cni"\} [1-9]/);
  source.apply(nodeObject('n1', ['10.244.3.0/24']));
  t.ok(await waitReady(config), 'ready after the podCIDR arrives');
  ac.abort();
  await d.stop();
});

t.test('components get events and their own runner; readiness waits for all', async (t) => {
  const { config } = env(t, ['--enable', 'cni,proxy,dns']);
  const seen: string[] = [];
  let proxySyncs = 0;
  let failDns = true;
  const fake = (name: string, feature: 'proxy' | 'dns', sync: () => Promise<void>): ComponentRegistration => ({
    feature,
    name,
    create: (): Component => ({
      name,
      handleEvent: (e: ClusterEvent) => {
        seen.push(`${name}:${e.type}:${e.kind}`);
        return e.kind === 'Service';
      },
      sync,
      status: () => ({ services: proxySyncs }),
    }),
  });
  const source = new FakeSource();
  source.apply(nodeObject('n1', ['10.244.2.0/24']));
  const d = newDaemon(config, source, [
    cniInstallerRegistration(),
    fake('proxy', 'proxy', async () => {
      proxySyncs++;
    }),
    fake('dns', 'dns', async () => {
      if (failDns) throw new Error('dns not yet');
    }),
  ]);
  const ac = new AbortController();
  await d.start(ac.signal);
  source.markSynced();
  await d.whenRunning();
  t.same(seen, [], 'events before start are not replayed (components read the cache on sync)');
  source.apply({ ...nodeObject('n1', ['10.244.2.0/24']), kind: 'Node' });
  t.same(seen, ['proxy:update:Node', 'dns:update:Node'], 'every component receives every event');
  t.equal(await waitReady(config, 30), false, 'not ready while one component keeps failing');
  failDns = false;
  t.ok(await waitReady(config, 500), 'ready once every component synced');
  t.ok(proxySyncs >= 1);
  t.same(d.status().config.enable, ['cni', 'proxy', 'dns']);
  ac.abort();
  await d.stop();
});

t.test('control server: mounted routes get the raw body; 404/405; duplicate route rejected', async (t) => {
  const { config } = env(t);
  const source = new FakeSource();
  const d = newDaemon(config, source);
  d.control.route('POST', '/v1/echo', (req) => ({ status: 200, headers: { 'content-type': 'application/octet-stream' }, body: Buffer.concat([Buffer.from('echo:'), req.body]) }));
  t.throws(() => d.control.route('POST', '/v1/echo', () => ({ status: 200 })), AlreadyExistsError);
  d.control.routeRaw('/v1/raw', (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => res.writeHead(201, { 'x-cni-exit-code': '0' }).end(Buffer.concat(chunks)));
  });
  t.throws(() => d.control.routeRaw('/v1/raw', () => undefined), AlreadyExistsError);
  const ac = new AbortController();
  await d.start(ac.signal);
  const payload = Buffer.from([0, 1, 2, 255]);
  const r = await request({ socketPath: config.controlSocket }, 'POST', '/v1/echo', payload);
  t.equal(r.status, 200);
  t.same([...r.body], [...Buffer.from('echo:'), 0, 1, 2, 255]);
  const raw = await request({ socketPath: config.controlSocket }, 'POST', '/v1/raw', 'KEY=V\0\0{}');
  t.equal(raw.status, 201, 'raw node:http handler mounted');
  t.equal(raw.headers['x-cni-exit-code'], '0');
  t.equal(raw.body.toString(), 'KEY=V\0\0{}');
  t.equal((await get(config, '/nope')).status, 404);
  t.equal((await get(config, '/v1/echo')).status, 405);
  t.equal(statSync(config.controlSocket).mode & 0o777, 0o660, 'socket is not world-accessible');

  // A successor (a rolling upgrade with maxSurge 1) takes the live socket over; the predecessor
  // finishes the request it already accepted, and its stop leaves the successor's socket.
  let finish: (() => void) | undefined;
  d.control.routeRaw('/v1/slow', (_req, res) => {
    finish = () => res.end('done');
  });
  const slow = request({ socketPath: config.controlSocket }, 'GET', '/v1/slow');
  for (let i = 0; i < 200 && !finish; i++) await new Promise((r) => setTimeout(r, 10));
  t.ok(finish, 'a request in flight on the predecessor');
  const d2 = newDaemon(config, new FakeSource());
  const ac2 = new AbortController();
  await d2.start(ac2.signal);
  t.equal((await get(config, '/v1/slow')).status, 404, 'new connections reach the successor (it has no /v1/slow)');
  ac.abort();
  const stopping = d.stop();
  finish!();
  const r2 = await slow;
  t.equal(r2.status, 200, 'the predecessor finished the request it had accepted');
  t.equal(r2.body.toString(), 'done');
  await stopping;
  t.ok(existsSync(config.controlSocket), "the predecessor's stop leaves the successor's socket");
  t.equal((await get(config, '/healthz')).status, 200, 'the successor still answers');
  ac2.abort();
  await d2.stop();
  t.notOk(existsSync(config.controlSocket), 'the last daemon removes its socket');
});

t.test('two daemons in one process keep separate metrics', async (t) => {
  const a = env(t);
  const b = env(t);
  const sa = new FakeSource();
  const sb = new FakeSource();
  sa.apply(nodeObject('n1', ['10.244.1.0/24']));
  sa.markSynced();
  sb.markSynced();
  const da = newDaemon(a.config, sa);
  const db = newDaemon(b.config, sb);
  const ac = new AbortController();
  await da.start(ac.signal);
  await db.start(ac.signal);
  t.ok(await waitReady(a.config));
  t.match((await get(a.config, '/metrics')).body.toString(), /podwire_source_objects\{kind="Node"\} 1/);
  t.match((await get(b.config, '/metrics')).body.toString(), /podwire_source_objects\{kind="Node"\} 0/);
  ac.abort();
  await Promise.all([da.stop(), db.stop()]);
});

t.test('cleanup removes what the components installed', async (t) => {
  const { config } = env(t);
  const source = new FakeSource();
  source.apply(nodeObject('n1', ['10.244.1.0/24']));
  source.markSynced();
  const ac = new AbortController();
  const d = newDaemon(config, source);
  await d.start(ac.signal);
  t.ok(await waitReady(config));
  ac.abort();
  await d.stop();
  const conflist = path.join(config.cniConfDir, CONFLIST_NAME);
  t.ok(existsSync(conflist));
  const c = newDaemon(config, new FakeSource());
  const { failed } = await c.cleanup(new AbortController().signal);
  t.same(failed, []);
  t.notOk(existsSync(conflist), 'conflist removed');
  t.notOk(existsSync(path.join(config.cniBinDir, 'podwire')), 'binary removed');
});

t.test('releaseMemoryWhenReady: called once, after the first ready, not again on later readiness', async (t) => {
  const { config } = env(t);
  const source = new FakeSource();
  source.apply(nodeObject('n1', ['10.244.1.0/24']));
  let calls = 0;
  let readyAtCall: boolean | undefined;
  const d: Daemon = new Daemon({
    config, source, components: [cniInstallerRegistration()], logger: silentLogger, processMetrics: false, tcpServers: false, kernel: fakeKernel(),
    releaseMemoryWhenReady: () => {
      calls++;
      readyAtCall = d.status().ready;
      return { rssBefore: 2, rssAfter: 1, heapUsedAfter: 1, ms: 0 };
    },
  });
  const ac = new AbortController();
  await d.start(ac.signal);
  t.equal(calls, 0, 'not before the source synced');
  source.markSynced();
  t.ok(await waitReady(config), 'ready');
  for (let i = 0; i < 100 && calls === 0; i++) await new Promise((r) => setImmediate(r));
  t.equal(calls, 1, 'called once ready');
  t.equal(readyAtCall, true, 'the daemon was ready when it ran');
  source.apply(nodeObject('n1', ['10.244.3.0/24']));
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  t.ok(await waitReady(config), 'still ready after a change');
  t.equal(calls, 1, 'not called again');
  ac.abort();
  await d.stop();
});
