/** podwired's main(): sections in --print-config and --help, config errors (exit 2), a component start failure (exit 1). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import YAML from 'yaml';
import { fakeKernel } from '../kernel/testing';
import type { ComponentRegistration } from './component';
import { defineSection } from './config-section';
import { main, type MainDeps } from './main';
import { FakeSource } from './testing/fake-source';

const section = defineSection<{ port: number }>({
  name: 'flaky',
  options: [{ key: 'port', flag: 'flaky-port', env: 'PODWIRE_FLAKY_PORT', kind: 'int', default: 53, help: 'its port' }],
  build: (v) => ({ port: v.port as number }),
});

function flaky(log: string[]): ComponentRegistration<{ port: number }> {
  return {
    feature: 'dns',
    name: 'flaky',
    section,
    create: (ctx) => ({
      name: 'flaky',
      handleEvent: () => false,
      sync: async () => undefined,
      status: () => ({}),
      start: async () => {
        throw new Error(`port ${ctx.section.port} is taken`);
      },
      close: async () => void log.push('close'),
    }),
  };
}

async function run(argv: string[], components: ComponentRegistration[], extra: Partial<MainDeps> = {}) {
  let stdout = '';
  let stderr = '';
  const code = await main({
    argv: ['--config', '/dev/null', ...argv],
    env: {},
    stdout: (s) => void (stdout += s),
    stderr: (s) => void (stderr += s),
    onShutdownSignal: () => () => undefined,
    components,
    createSource: () => new FakeSource(),
    kernel: fakeKernel(),
    ...extra,
  });
  return { code, stdout, stderr };
}

t.test('--print-config and --help show the sections of the registrations main runs', async (t) => {
  const p = await run(['--print-config', '--flaky-port', '5353'], [flaky([])]);
  t.equal(p.code, 0);
  t.equal((YAML.parse(p.stdout) as { flaky: { port: number } }).flaky.port, 5353);
  const h = await run(['--help'], [flaky([])]);
  t.match(h.stdout, /--flaky-port/);
  t.notMatch(h.stdout, /--cni-reconcile-interval/, 'only the sections of the given registrations');
  const d = await run(['--print-config'], undefined as unknown as ComponentRegistration[]);
  t.match(d.stdout, /^cni:$/m, 'default registrations: the cni section');
});

t.test('a bad section value exits 2 naming the key and its origin', async (t) => {
  const r = await run(['--node-name', 'n1', '--flaky-port', 'x'], [flaky([])]);
  t.equal(r.code, 2);
  t.match(r.stderr, /invalid flaky.port="x": expected an integer \(set by --flaky-port\)/);
});

t.test('a component whose start throws: exit 1, the error names the component, it is closed', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pwd-main-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const log: string[] = [];
  const r = await run(
    ['--node-name', 'n1', '--enable', 'dns', '--control-socket', path.join(dir, 'pw.sock'), '--health-listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--log-level', 'silent'],
    [flaky(log)],
  );
  t.equal(r.code, 1);
  t.match(r.stderr, /podwired: start-up failed: component flaky: start failed: port 53 is taken/);
  t.same(log, ['close']);
});
