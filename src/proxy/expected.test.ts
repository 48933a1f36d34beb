/**
 * `GET /v1/proxy/services` on a real control socket: each proxier mounts it in start and
 * unmounts it in close; it lists the cluster state's Services (also the ones the proxier has
 * not applied yet, which it counts as pending), in a compact form that stays small at
 * 10,000 Services.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { Registry } from 'prom-client';
import { silentLogger } from '../common/log';
import { FakeClock } from '../daemon/testing/fake-clock';
import { request, RouteServer } from '../daemon/route-server';
import type { ComponentContext } from '../daemon/component';
import { fakeKernel } from '../kernel/testing';
import { FakeIpvs } from '../kernel/testing/fake-ipvs';
import { buildProxySection, type ProxySection } from './config';
import { EXPECTED_ROUTE, expectedServices, type ExpectedServices } from './expected';
import { IptablesProxier } from './iptables/proxier';
import { IpvsProxier } from './ipvs/proxier';
import { NftProxier } from './proxier';
import { MemoryState, svc, testConfig } from './testing';

t.test('each proxier serves the Service list on the control socket while it runs', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pw-expected-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const server = new RouteServer('control', silentLogger);
  const socketPath = path.join(dir, 'c.sock');
  await server.listen({ socketPath });
  t.teardown(() => server.close());
  const control = { routeRaw: (p: string, h: Parameters<RouteServer['routeRaw']>[1]) => (server.routeRaw(p, h), () => void server.unrouteRaw(p, h)) };
  const get = async (method = 'GET') => {
    const r = await request({ socketPath }, method, EXPECTED_ROUTE);
    return { status: r.status, body: r.status === 200 ? (JSON.parse(r.body.toString('utf8')) as ExpectedServices) : undefined };
  };

  for (const mode of ['nftables', 'iptables', 'ipvs'] as const) {
    const config = testConfig({ nodeName: 'node-a', proxyMode: mode });
    const section: ProxySection = buildProxySection({ healthzBindAddress: '' }, config);
    const state = new MemoryState();
    const ctx: ComponentContext<ProxySection> = { config, section, state, node: { patchAnnotations: async () => undefined, setCondition: async () => undefined, writesBack: false }, kernel: fakeKernel(), logger: silentLogger, clock: new FakeClock(), metrics: new Registry(), control };
    const p = mode === 'nftables' ? new NftProxier(ctx) : mode === 'iptables' ? new IptablesProxier(ctx, { backend: 'iptables-legacy-restore' }) : new IpvsProxier(ctx, { ipvs: new FakeIpvs() });
    t.equal((await get()).status, 404, `${mode}: not served before start`);
    await p.start(new AbortController().signal);
    p.handleEvent(state.apply(svc('ns/web', ['10.96.0.80', 'fd00:96::80'], { ports: [{ port: 80 }] })));
    const r = await get();
    t.equal(r.status, 200, `${mode}: served`);
    t.match(r.body, { mode, services: 1, skipped: 0, invalid: 0, pending: 1 }, `${mode}: the Service not synced yet is listed, and pending`);
    t.same(r.body!.entries, mode === 'ipvs' ? [['ns/web', 'c', 4, '10.96.0.80', 'tcp', 80]] : [['ns/web', 'c', 4, '10.96.0.80', 'tcp', 80], ['ns/web', 'c', 6, 'fd00:96::80', 'tcp', 80]], `${mode}: the families it programs`);
    if (mode === 'nftables') t.equal(r.body!.table, 'inet podwire');
    if (mode === 'iptables') t.equal(r.body!.iptablesBackend, 'legacy', 'iptables: the backend the doctor must read');
    t.equal((await get('POST')).status, 405, `${mode}: GET only`);
    await p.close();
    t.equal((await get()).status, 404, `${mode}: unmounted at close`);
  }
});

t.test('compact at 10,000 Services', async (t) => {
  const state = new MemoryState();
  for (let i = 0; i < 10_000; i++) state.apply(svc(`namespace-${i % 50}/service-${i}`, `10.96.${i >> 8}.${i & 255}`, { ports: [{ name: 'http', port: 80 }] }));
  const e = expectedServices(state, 'node-a', { mode: 'nftables', families: [4, 6], pending: 0 });
  t.equal(e.entries.length, 10_000);
  const bytes = JSON.stringify(e).length;
  t.ok(bytes < 800_000, `${bytes} bytes for 10,000 Services`);
});
