/**
 * The Kubernetes source with in-cluster config (`inCluster: true`, what the daemon uses
 * without --kubeconfig), against the fixture API server over HTTPS.
 *
 * The library reads KUBERNETES_SERVICE_HOST/PORT and the service-account files under
 * /var/run/secrets/kubernetes.io/serviceaccount (token, ca.crt, namespace). This host's
 * /var/run/secrets must not be touched, so the source runs in a child process
 * (fixtures/apiserver/incluster-child.ts) inside a private mount namespace
 * (`unshare --mount --propagation private`) in which a tmpfs covers /var/run/secrets (or
 * /var/run, if there is no secrets dir to cover) and a temp dir of ours is bind-mounted
 * at .../serviceaccount. The mounts vanish with the child. Needs root and unshare(1);
 * needs openssl.
 */
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import t, { type Test } from 'tap';
import * as o from '../fixtures/apiserver/objects';
import { generateTestPki, haveOpenssl } from '../fixtures/apiserver/pki';
import { FakeApiServer } from '../fixtures/apiserver/server';

const SA_ROOT = '/var/run/secrets/kubernetes.io/serviceaccount';
const CHILD = join(__dirname, '..', 'fixtures', 'apiserver', 'incluster-child.js');

function haveUnshare(): boolean {
  try {
    execFileSync('unshare', ['--version'], { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/** Mounts the service-account dir in the child's own mount namespace, then runs node. */
const MOUNT_SCRIPT = [
  'set -eu',
  // Cover what is there (a real Pod's secrets, if any) or, if nothing is, /var/run itself,
  // so that no directory has to be created on the host.
  'if [ -d /var/run/secrets ]; then mount -t tmpfs -o size=1m,mode=0755 pwt-secrets /var/run/secrets;',
  'else mount -t tmpfs -o size=1m,mode=0755 pwt-run /var/run; fi',
  `mkdir -p ${SA_ROOT}`,
  `mount --bind "$PW_SA_DIR" ${SA_ROOT}`,
  'exec "$PW_NODE" "$PW_CHILD"',
].join('\n');

interface ChildLine {
  stage: string;
  [k: string]: unknown;
}

interface Child {
  proc: ChildProcessWithoutNullStreams;
  lines: ChildLine[];
  stderr: string[];
  exited: Promise<number | null>;
}

function startChild(t: Test, env: Record<string, string>): Child {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env, PW_NODE: process.execPath, PW_CHILD: CHILD };
  delete childEnv.KUBECONFIG;
  const proc = spawn('unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c', MOUNT_SCRIPT], {
    env: childEnv,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const lines: ChildLine[] = [];
  const stderr: string[] = [];
  createInterface({ input: proc.stdout }).on('line', (l) => {
    try {
      lines.push(JSON.parse(l) as ChildLine);
    } catch {
      lines.push({ stage: 'garbage', text: l });
    }
  });
  createInterface({ input: proc.stderr }).on('line', (l) => stderr.push(l));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  t.teardown(async () => {
    proc.stdin.end();
    const done = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 10_000).unref())]);
    if (!done) {
      proc.kill('SIGKILL');
      await exited;
    }
  });
  return { proc, lines, stderr, exited };
}

/** Bounded wait for a line from the child (fails the test, with its stderr, if none comes). */
async function waitForLine(t: Test, child: Child, what: string, pred: (l: ChildLine) => boolean, maxMs = 30_000): Promise<ChildLine> {
  const step = 10;
  for (let i = 0; i < maxMs / step; i++) {
    const hit = child.lines.find(pred);
    if (hit) return hit;
    if (child.proc.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, step));
  }
  const msg = `no ${what} from the in-cluster child; lines=${JSON.stringify(child.lines)} stderr=${child.stderr.join(' | ')}`;
  t.fail(msg);
  throw new Error(msg);
}

async function stats(t: Test, child: Child): Promise<{ kind: string; errors: number; lastError?: string; synced: boolean }[]> {
  const before = child.lines.length;
  child.proc.stdin.write('stats\n');
  const l = await waitForLine(t, child, 'stats', (x) => x.stage === 'stats' && child.lines.indexOf(x) >= before);
  return l.stats as { kind: string; errors: number; lastError?: string; synced: boolean }[];
}

const skip =
  process.getuid?.() !== 0
    ? 'needs root (mount namespace)'
    : !haveUnshare()
      ? 'unshare(1) not installed'
      : !haveOpenssl()
        ? 'openssl not installed'
        : false;

interface Cluster {
  api: FakeApiServer;
  saDir: string;
  env: Record<string, string>;
}

async function cluster(t: Test, pki: ReturnType<typeof generateTestPki>): Promise<Cluster> {
  const api = new FakeApiServer({
    tls: { cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, clientCerts: 'off' },
    token: 'sa-token-1',
  });
  await api.start();
  api.put('namespaces', o.namespace('default'));
  api.put('namespaces', o.namespace('kube-system'));
  api.put('services', o.service('default', 'kubernetes', '10.96.0.1'));
  api.put('services', o.service('kube-system', 'kube-dns', '10.96.0.10'));
  const saDir = mkdtempSync(join(tmpdir(), 'pwt-sa-'));
  api.writeServiceAccount(saDir, { namespace: 'kube-system' });
  t.teardown(async () => {
    await api.stop();
    rmSync(saDir, { recursive: true, force: true });
  });
  return { api, saDir, env: { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(api.port), PW_SA_DIR: saDir } };
}

t.test('in-cluster config', { skip }, async (t) => {
  const pki = generateTestPki('node-a');
  const hostHadSecrets = existsSync('/var/run/secrets');

  t.test('helper process (the default): syncs, watches, follows a token rotation', async (t) => {
    const c = await cluster(t, pki);
    const child = startChild(t, { ...c.env, PW_CREDENTIALS: 'helper' });
    const started = await waitForLine(t, child, 'start', (l) => l.stage === 'started' || l.stage === 'start-failed');
    t.equal(started.stage, 'started', `start() resolved ${JSON.stringify(started)}`);
    t.equal(started.tokenMounted, true, 'the child sees the service-account token');
    const synced = await waitForLine(t, child, 'sync', (l) => l.stage === 'synced' || l.stage === 'sync-failed');
    t.equal(synced.stage, 'synced', JSON.stringify(synced));
    t.same(synced.services, ['default/kubernetes', 'kube-system/kube-dns'], 'Services listed');
    t.same(synced.namespaces, ['default', 'kube-system'], 'Namespaces listed');
    t.ok(c.api.requests.length > 0 && c.api.requests.every((r) => r.user === 'token' && r.status === 200), 'authenticated with the service-account token');
    t.ok(c.api.requests.some((r) => r.query.watch === 'true'), 'watching');

    // A live event over the watch.
    const eventCount = (): number => child.lines.filter((l) => l.stage === 'event').length;
    const before = eventCount();
    await new Promise<void>((resolve, reject) => {
      // Wait (bounded) for both watches before writing, so the add arrives on the stream.
      let n = 0;
      const tick = (): void => {
        if (c.api.watcherCount === 2) return resolve();
        if (++n > 3000) return reject(new Error('watches never opened'));
        setTimeout(tick, 10);
      };
      tick();
    });
    c.api.put('services', o.service('default', 'web', '10.96.0.20'));
    await waitForLine(t, child, 'live event', (l) => l.stage === 'event' && l.event === 'add Service default/web');
    t.equal(eventCount(), before + 1, 'exactly one event for the add');

    // The kubelet rotates the projected token: the server stops accepting the old one and
    // the file changes. The next request gets 401, the helper re-reads the file, and the
    // source carries on.
    c.api.token = 'sa-token-2';
    c.api.writeServiceAccount(c.saDir, { namespace: 'kube-system' });
    c.api.dropWatches();
    c.api.put('services', o.service('default', 'after-rotation', '10.96.0.21'));
    await waitForLine(t, child, 'event after rotation', (l) => l.stage === 'event' && l.event === 'add Service default/after-rotation');
    const st = await stats(t, child);
    t.ok(st.every((s) => s.synced), 'still synced');
    t.ok(c.api.requests.some((r) => r.status === 401), 'the old token was refused at least once');
    t.equal(c.api.requests.at(-1)?.user, 'token', 'and the new one accepted');
  });

  t.test('in-process library: syncs the same', async (t) => {
    const c = await cluster(t, pki);
    const child = startChild(t, { ...c.env, PW_CREDENTIALS: 'in-process' });
    const synced = await waitForLine(t, child, 'sync', (l) => l.stage === 'synced' || l.stage === 'sync-failed' || l.stage === 'start-failed');
    t.equal(synced.stage, 'synced', JSON.stringify(synced));
    t.same(synced.services, ['default/kubernetes', 'kube-system/kube-dns']);
  });

  t.test('service-account CA that does not match the server: reported, nothing synced', async (t) => {
    const c = await cluster(t, pki);
    c.api.writeServiceAccount(c.saDir, { caPem: pki.otherCa.cert });
    const child = startChild(t, { ...c.env, PW_CREDENTIALS: 'helper' });
    await waitForLine(t, child, 'start', (l) => l.stage === 'started');
    let st = await stats(t, child);
    for (let i = 0; i < 300 && !st.every((s) => s.errors >= 2); i++) {
      await new Promise((r) => setTimeout(r, 20));
      st = await stats(t, child);
    }
    t.ok(st.every((s) => s.errors >= 2 && !s.synced), 'every kind failing, none synced');
    t.comment(`lastError: ${st[0]?.lastError}`);
    t.match(st[0]?.lastError, /certificate/, 'a certificate error');
    t.equal(c.api.requests.length, 0, 'nothing got past TLS');
    t.notOk(child.lines.some((l) => l.stage === 'event' || l.stage === 'synced'), 'nothing delivered');
  });

  t.test('the host’s /var/run/secrets was not touched', async (t) => {
    t.equal(existsSync('/var/run/secrets'), hostHadSecrets, 'exists now exactly if it existed before');
    if (!hostHadSecrets) t.notOk(existsSync(`${SA_ROOT}/token`), 'no service-account token on the host');
  });
});
