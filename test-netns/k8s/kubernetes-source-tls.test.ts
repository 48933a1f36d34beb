/**
 * The Kubernetes source over HTTPS: the real source (kubeconfig resolved by
 * @kubernetes/client-node in the helper process, list/watch over node:https) against the
 * fixture API server serving TLS with a throwaway PKI made by `openssl` (pki.ts).
 * Covers CA + client certificate, CA + bearer token, a wrong CA, a missing client
 * certificate and a bad token. No root needed; needs the `openssl` binary.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { silentLogger } from '../../src/common';
import type { KubernetesSource } from '../../src/k8s';
import * as o from '../fixtures/apiserver/objects';
import { startSource, waitFor } from './helpers';
import { generateTestPki, haveOpenssl, type TestPki } from '../fixtures/apiserver/pki';
import { FakeApiServer, type FakeApiServerTls, type KubeconfigOptions } from '../fixtures/apiserver/server';

const maybePki: TestPki | undefined = haveOpenssl() ? generateTestPki('node-a') : undefined;
if (maybePki === undefined) t.plan(0, 'openssl not installed (apt-get install -y openssl)');
const pki = maybePki as TestPki;

interface Harness {
  api: FakeApiServer;
  src: KubernetesSource;
  events: string[];
  kubeconfig: string;
}

async function setup(
  t: Test,
  server: { clientCerts: FakeApiServerTls['clientCerts']; tokenAuth: boolean; token?: string },
  kubeconfig: KubeconfigOptions,
  options: { credentialRefreshMs?: number } = {},
): Promise<Harness> {
  const api = new FakeApiServer({
    tls: { cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, clientCerts: server.clientCerts },
    tokenAuth: server.tokenAuth,
    token: server.token,
  });
  await api.start();
  api.put('namespaces', o.namespace('default'));
  api.put('services', o.service('default', 'web', '10.96.0.10'));
  const dir = mkdtempSync(join(tmpdir(), 'pwt-k8s-tls-'));
  const path = join(dir, 'kubeconfig');
  api.writeKubeconfig(path, kubeconfig);
  const { src, events } = await startSource(t, api, dir, {
    kubeconfigPath: path,
    nodeName: 'node-a',
    logger: silentLogger,
    kinds: ['Service', 'Namespace'],
    tuning: { backoffInitialMs: 10, backoffMaxMs: 100 },
    credentialRefreshMs: options.credentialRefreshMs,
  });
  return { api, src, events, kubeconfig: path };
}

const svcStats = (h: Harness) => h.src.stats().find((s) => s.kind === 'Service')!;

/** Lists, watches, and delivers a live add, update and delete over the TLS connection. */
async function listAndWatch(t: Test, h: Harness): Promise<void> {
  await h.src.waitForSync(AbortSignal.timeout(30_000));
  t.ok(h.src.get('Service', 'default/web'), 'listed over HTTPS');
  t.ok(h.src.get('Namespace', 'default'));
  await waitFor(t, 'two watches open', () => h.api.watcherCount === 2, 20_000);
  h.events.length = 0;
  h.api.put('services', o.service('default', 'live', '10.96.0.11'));
  h.api.put('services', o.service('default', 'web', '10.96.0.10', [{ port: 8080 }]));
  h.api.delete('services', 'default/live');
  await waitFor(t, 'three watch events', () => h.events.length === 3, 20_000);
  t.same(h.events, ['add Service default/live', 'update Service default/web', 'delete Service default/live']);
  t.equal(svcStats(h).errors, 0, 'no errors');
  t.equal(svcStats(h).lists, 1);
}

function tests(): void {
  t.test('CA + client certificate: the server verifies the certificate; lists and watches', async (t) => {
    const h = await setup(t, { clientCerts: 'required', tokenAuth: false }, { auth: 'client-cert', clientCert: pki.client });
    await listAndWatch(t, h);
    t.ok(h.api.requests.length > 0);
    t.ok(
      h.api.requests.every((r) => r.user === `cert:${pki.clientCommonName}` && r.status === 200),
      `every request authenticated by the client certificate (${pki.clientCommonName})`,
    );
  });

  t.test('CA + bearer token: lists and watches', async (t) => {
    const h = await setup(t, { clientCerts: 'off', tokenAuth: true, token: 'tls-token' }, { auth: 'token' });
    await listAndWatch(t, h);
    t.ok(h.api.requests.every((r) => r.user === 'token' && r.status === 200), 'every request authenticated by the token');
  });

  t.test('wrong CA: not synced, nothing delivered, a certificate error reported; recovers once the kubeconfig is fixed', async (t) => {
    const h = await setup(
      t,
      { clientCerts: 'off', tokenAuth: true },
      { auth: 'token', caPem: pki.otherCa.cert },
      // The default 5-minute credential refresh: the fixed CA must be picked up because a
      // trust failure drops the cached credentials, not because the refresh came round.
      {},
    );
    await waitFor(t, 'three failed attempts', () => svcStats(h).errors >= 3, 20_000);
    t.notOk(h.src.hasSynced(), 'not synced');
    t.same(h.events, [], 'no events');
    t.same(h.src.list('Service'), [], 'nothing cached');
    t.equal(h.api.requests.length, 0, 'no request got past the TLS handshake');
    // What the source says about it (stats().lastError, also logged as a warning).
    const said = svcStats(h).lastError ?? '';
    t.comment(`lastError with a wrong CA: ${said}`);
    t.match(said, /self-signed certificate in certificate chain|unable to (get local issuer|verify the first) certificate/, 'names the certificate problem');
    t.match(said, /^cannot reach the API server https:\/\/127\.0\.0\.1:\d+: /, 'names the server');
    t.match(said, /not trusted by the configured certificate authority/, 'says the configured CA is the problem');

    h.api.writeKubeconfig(h.kubeconfig, { auth: 'token' }); // the right CA
    await h.src.waitForSync(AbortSignal.timeout(30_000));
    t.ok(h.src.get('Service', 'default/web'), 'synced after the CA was fixed');
  });

  t.test('client certificate required but none configured: TLS refused, reported, nothing delivered', async (t) => {
    const h = await setup(t, { clientCerts: 'required', tokenAuth: true }, { auth: 'token' });
    await waitFor(t, 'three failed attempts', () => svcStats(h).errors >= 3, 20_000);
    t.notOk(h.src.hasSynced());
    t.same(h.events, []);
    t.equal(h.api.requests.length, 0, 'no request got past the TLS handshake');
    const said = svcStats(h).lastError ?? '';
    t.comment(`lastError without a required client certificate: ${JSON.stringify(said)}`);
    t.match(said, /certificate required|ECONNRESET|socket hang up/, 'names the refused handshake');
    t.match(said, /^cannot reach the API server https:\/\/127\.0\.0\.1:\d+: /, 'names the server');
  });

  t.test('bad bearer token over TLS: 401 reported with the path, nothing delivered', async (t) => {
    const h = await setup(t, { clientCerts: 'off', tokenAuth: true, token: 'good-token' }, { auth: 'token', token: 'bad-token' });
    await waitFor(t, 'three 401s', () => svcStats(h).errors >= 3, 20_000);
    t.notOk(h.src.hasSynced());
    t.same(h.events, []);
    const said = svcStats(h).lastError ?? '';
    t.comment(`lastError with a bad token: ${said}`);
    t.equal(said, '/api/v1/services: HTTP 401 Unauthorized: Unauthorized');
    t.ok(h.api.requests.length >= 3 && h.api.requests.every((r) => r.status === 401 && r.user === undefined), 'the server answered 401 each time');
  });
}

if (maybePki !== undefined) tests();
