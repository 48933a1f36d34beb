/**
 * Per-component configuration sections: flags, env, nested file keys, defaults, coercion by
 * kind, precedence, origin-aware errors, unknown keys with did-you-mean, --print-config and
 * --help, and `build` running after the daemon-wide options are validated.
 */
import t, { type Test } from 'tap';
import YAML from 'yaml';
import { InvalidInputError } from '../common/errors';
import { defineSection, type ConfigSection } from './config-section';
import { CNI_SECTION } from './cni-installer';
import { OPTIONS, helpText, loadConfig, renderConfig, sectionsOf, type DaemonConfig } from './config';
import { defaultRegistrations } from './registry';

interface Demo {
  name: string;
  peers: string[];
  vni: number;
  port: number;
  interval: number;
  on: boolean;
  domain: string;
}

const demo = defineSection<Demo>({
  name: 'demo',
  options: [
    { key: 'name', flag: 'demo-name', env: 'PODWIRE_DEMO_NAME', kind: 'string', default: 'd', help: 'a name' },
    { key: 'peers', flag: 'demo-peer', env: 'PODWIRE_DEMO_PEERS', kind: 'list', default: ['a'], help: 'peers' },
    { key: 'vxlan.vni', flag: 'demo-vni', env: 'PODWIRE_DEMO_VNI', kind: 'int', default: 1, help: 'VNI' },
    { key: 'vxlan.port', flag: 'demo-port', env: 'PODWIRE_DEMO_PORT', kind: 'int', default: 8472, help: 'UDP port' },
    { key: 'interval', flag: 'demo-interval', env: 'PODWIRE_DEMO_INTERVAL', kind: 'duration', default: 2000, help: 'interval' },
    { key: 'on', flag: 'demo-on', env: 'PODWIRE_DEMO_ON', kind: 'bool', default: true, help: 'on' },
  ],
  build(v, config: DaemonConfig) {
    const vni = v['vxlan.vni'] as number;
    if (vni < 1 || vni > 16_777_215) throw new InvalidInputError('demo.vxlan.vni', vni, 'must be 1..16777215');
    const interval = v.interval as number;
    // Uses a validated daemon-wide value: the order of tables does not matter.
    if (interval < config.minSyncInterval) throw new InvalidInputError('demo.interval', interval, `must be >= minSyncInterval (${config.minSyncInterval})`);
    return {
      name: v.name as string,
      peers: v.peers as string[],
      vni,
      port: v['vxlan.port'] as number,
      interval,
      on: v.on as boolean,
      domain: config.clusterDomain,
    };
  },
});

function files(map: Record<string, string>): (f: string) => string {
  return (f) => {
    const v = map[f];
    if (v === undefined) throw Object.assign(new Error(`ENOENT: ${f}`), { code: 'ENOENT' });
    return v;
  };
}

function load(argv: string[], env: Record<string, string> = {}, file?: unknown, sections: ConfigSection<unknown>[] = [demo as ConfigSection<unknown>]) {
  const fileMap: Record<string, string> = file === undefined ? {} : { '/c.yaml': typeof file === 'string' ? file : YAML.stringify(file) };
  return loadConfig({ argv: ['--node-name', 'n1', ...(file === undefined ? [] : ['--config', '/c.yaml']), ...argv], env, readFile: files(fileMap), sections });
}

function invalid(t: Test, fn: () => unknown, field: string, reason: RegExp): void {
  try {
    fn();
    t.fail(`expected InvalidInputError for ${field}`);
  } catch (err) {
    t.ok(err instanceof InvalidInputError, `InvalidInputError (${String(err)})`);
    t.equal((err as InvalidInputError).field, field, 'names the field');
    t.match((err as Error).message, reason);
  }
}

t.test('defaults build the section; the built section is in LoadedConfig.sections', async (t) => {
  const l = load([]);
  t.same(l.sections.demo, { name: 'd', peers: ['a'], vni: 1, port: 8472, interval: 2000, on: true, domain: 'cluster.local' });
  t.same(l.sectionDetails[0]!.origins, { name: 'default', peers: 'default', 'vxlan.vni': 'default', 'vxlan.port': 'default', interval: 'default', on: 'default' });
});

t.test('flags > env > file > defaults, per key, with coercion by kind', async (t) => {
  const file = { clusterDomain: 'Example.Org.', demo: { name: 'file', peers: ['f1', 'f2'], vxlan: { vni: 7, port: 9000 }, interval: '3s', on: false } };
  const l = load(
    ['--demo-name', 'flag', '--demo-peer', 'p1,p2', '--demo-peer', 'p3', '--no-demo-on'],
    { PODWIRE_DEMO_NAME: 'env', PODWIRE_DEMO_VNI: '42', PODWIRE_DEMO_INTERVAL: '1m', PODWIRE_DEMO_ON: 'true' },
    file,
  );
  const s = l.sections.demo as Demo;
  t.equal(s.name, 'flag', 'flag beats env and file');
  t.same(s.peers, ['p1', 'p2', 'p3'], 'a list flag repeats and splits on commas');
  t.equal(s.vni, 42, 'env beats file (int from a string)');
  t.equal(s.port, 9000, 'file beats default (nested mapping)');
  t.equal(s.interval, 60_000, 'duration from env');
  t.equal(s.on, false, '--no-<flag> beats env');
  t.equal(s.domain, 'example.org', 'build sees the validated daemon-wide config');
  t.same(l.sectionDetails[0]!.origins, { name: 'flag', peers: 'flag', 'vxlan.vni': 'env', 'vxlan.port': 'file', interval: 'env', on: 'flag' });

  t.equal((load(['--demo-on']).sections.demo as Demo).on, true, '--<flag> sets a bool');
  t.equal((load([], { PODWIRE_DEMO_ON: 'no' }).sections.demo as Demo).on, false);
  t.same((load([], { PODWIRE_DEMO_PEERS: 'x, y' }).sections.demo as Demo).peers, ['x', 'y'], 'env list: comma-separated');
  t.equal((load([], {}, 'demo:\n  vxlan.vni: 9\n').sections.demo as Demo).vni, 9, 'dotted key in the file');
  t.equal((load([], {}, 'demo:\n').sections.demo as Demo).vni, 1, 'an empty section is all defaults');
});

t.test('the flat table keeps working beside sections', async (t) => {
  const l = load(['--backend', 'host-gw', '--proxy-mode', 'iptables', '--dns-listen', '10.0.0.1:53', '--mtu', '1400'], {}, { demo: { name: 'x' }, backend: 'vxlan' });
  t.equal(l.config.backend, 'host-gw');
  t.equal(l.config.proxyMode, 'iptables');
  t.same(l.config.dnsListen, ['10.0.0.1:53']);
  t.equal(l.config.mtu, 1400);
  t.equal((l.sections.demo as Demo).name, 'x');
});

t.test('errors name the field, the value and where it was set', async (t) => {
  invalid(t, () => load(['--demo-vni', 'abc']), 'demo.vxlan.vni', /expected an integer \(set by --demo-vni\)/);
  invalid(t, () => load([], { PODWIRE_DEMO_ON: 'maybe' }), 'demo.on', /expected true or false \(set by PODWIRE_DEMO_ON\)/);
  invalid(t, () => load([], {}, { demo: { interval: 'soon' } }), 'demo.interval', /duration like .* \(set by \/c.yaml: demo.interval\)/);
  invalid(t, () => load([], {}, { demo: { peers: [1] } }), 'demo.peers', /list of strings/);
  invalid(t, () => load(['--demo-vni', '0']), 'demo.vxlan.vni', /must be 1\.\.16777215 \(set by --demo-vni\)/);
  invalid(t, () => load([], { PODWIRE_DEMO_VNI: '99999999' }), 'demo.vxlan.vni', /\(set by PODWIRE_DEMO_VNI\)/);
  invalid(t, () => load([], {}, { demo: { vxlan: { vni: -1 } } }), 'demo.vxlan.vni', /\(set by the config file\)/);
  invalid(t, () => load(['--min-sync-interval', '5s']), 'demo.interval', /minSyncInterval \(5000\) \(set by the default\)/);
  invalid(t, () => load(['--demo-port', '--demo-name', 'x']), 'flag', /--demo-port/);
  invalid(t, () => load(['--no-demo-name']), 'flag', /--no-demo-name/);
});

t.test('unknown keys inside a section are errors with a did-you-mean', async (t) => {
  invalid(t, () => load([], {}, { demo: { vxlan: { vnii: 3 } } }), 'demo.vxlan.vnii', /unknown key in \/c.yaml \(did you mean demo.vxlan.vni\?\)/);
  invalid(t, () => load([], {}, { demo: { Name: 'x' } }), 'demo.Name', /did you mean demo.name\?/);
  invalid(t, () => load([], {}, { demo: { completely: 1 } }), 'demo.completely', /unknown key in \/c.yaml$/);
  invalid(t, () => load([], {}, { demo: { vxlan: 5 } }), 'demo.vxlan', /unknown key/);
  invalid(t, () => load([], {}, { demo: ['a'] }), 'demo', /must be a mapping/);
  invalid(t, () => load([], {}, { dmeo: { name: 'x' } }), 'dmeo', /did you mean demo\?/);
  invalid(t, () => load([], {}, { clusterCidr: '10.0.0.0/8' }), 'clusterCidr', /did you mean clusterCIDR\?/);
});

t.test('a section whose flag, env or name clashes is rejected', async (t) => {
  const clash = (o: Partial<ConfigSection<unknown>['options'][number]>, name = 'other') =>
    defineSection<unknown>({ name, options: [{ key: 'k', flag: 'other-k', env: 'PODWIRE_OTHER_K', kind: 'string', default: '', help: '', ...o }], build: () => ({}) });
  invalid(t, () => load([], {}, undefined, [demo as ConfigSection<unknown>, clash({ flag: 'demo-name' })]), 'section', /--demo-name.*demo.name/);
  invalid(t, () => load([], {}, undefined, [clash({ flag: 'backend' })]), 'section', /--backend/);
  invalid(t, () => load([], {}, undefined, [clash({ env: 'PODWIRE_BACKEND' })]), 'section', /PODWIRE_BACKEND/);
  invalid(t, () => load([], {}, undefined, [clash({ env: 'OTHER' })]), 'section', /PODWIRE_/);
  invalid(t, () => load([], {}, undefined, [clash({}, 'backend')]), 'section', /twice|clashes/);
});

t.test('--print-config and --help include sections', async (t) => {
  const l = loadConfig({ argv: ['--print-config', '--demo-vni', '5'], env: { PODWIRE_DEMO_INTERVAL: '1m' }, readFile: files({}), sections: [demo as ConfigSection<unknown>] });
  const text = renderConfig(l.config, l.origins, l.sectionDetails);
  const parsed = YAML.parse(text) as { demo: { vxlan: { vni: number; port: number }; interval: string; on: boolean } };
  t.equal(parsed.demo.vxlan.vni, 5, 'nested under the section, dotted keys nested');
  t.equal(parsed.demo.vxlan.port, 8472);
  t.equal(parsed.demo.interval, '1m', 'durations human-readable');
  t.match(text, /vni: 5 # from flag/);
  t.match(text, /interval: 1m # from env/);
  // What it prints loads back to the same section.
  const again = loadConfig({ argv: ['--node-name', 'n1', '--config', '/p.yaml'], env: {}, readFile: files({ '/p.yaml': text }), sections: [demo as ConfigSection<unknown>] });
  t.same({ ...(again.sections.demo as Demo) }, { ...(l.sections.demo as Demo) }, '--print-config output is a valid config file');
  const help = helpText([demo as ConfigSection<unknown>]);
  t.match(help, /Section demo/);
  t.match(help, /--demo-vni +VNI/);
  t.match(help, /env PODWIRE_DEMO_VNI, key demo.vxlan.vni, default 1/);
  t.match(help, /--\[no-\]demo-on/);
});

t.test('loadConfig defaults to the sections of defaultRegistrations()', async (t) => {
  t.same(sectionsOf(defaultRegistrations()).map((s) => s.name), ['cni', 'overlay', 'proxy', 'dns'], 'every built-in component\'s section, in start-up order');
  const l = loadConfig({ argv: ['--node-name', 'n1', '--cni-reconcile-interval', '5s', '--dns-ttl', '9'], env: { PODWIRE_DNS_UPSTREAMS: '192.0.2.1,192.0.2.2:5353' }, readFile: files({}) });
  t.same(l.sections.cni, { fastPath: true, reconcileIntervalMs: 5000 });
  const dns = l.sections.dns as { ttl: number; upstreams: unknown[]; drainMs: number };
  t.equal(dns.ttl, 9, 'dns section from a flag');
  t.same(dns.upstreams, [{ host: '192.0.2.1', port: 53 }, { host: '192.0.2.2', port: 5353 }], 'dns section from the environment');
  t.equal(dns.drainMs, 5000, 'dns section defaults');
  invalid(t, () => loadConfig({ argv: ['--node-name', 'n1', '--dns-pod-records', 'sometimes'], env: {}, readFile: files({}) }), 'dns.podRecords', /insecure/);
  invalid(t, () => loadConfig({ argv: ['--node-name', 'n1', '--dns-keeper', 'a/b'], env: {}, readFile: files({}) }), 'dns.keeper', /a\/b/);
  t.equal((loadConfig({ argv: ['--node-name', 'n1', '--dns-keeper', ''], env: {}, readFile: files({}) }).sections.dns as { keeper: string }).keeper, '', 'dns.keeper "" turns the keeper off');
  invalid(t, () => loadConfig({ argv: ['--node-name', 'n1'], env: { PODWIRE_CNI_RECONCILE_INTERVAL: '0' }, readFile: files({}) }), 'cni.reconcileInterval', /positive \(set by PODWIRE_CNI_RECONCILE_INTERVAL\)/);
  t.equal(CNI_SECTION.name, 'cni');
  t.match(helpText(), /--cni-reconcile-interval/);
});

t.test('flat validators see only their own value (order of the table does not matter)', async (t) => {
  for (const o of OPTIONS) t.ok(!o.validate || o.validate.length <= 1, `${o.key}: validator takes one value`);
  invalid(t, () => load(['--sync-interval', '1s', '--min-sync-interval', '5s']), 'syncInterval', /minSyncInterval/);
  invalid(t, () => load(['--service-cidr', '10.244.0.0/24']), 'serviceCIDR', /overlaps.*\(set by --service-cidr\)/);
  invalid(t, () => load(['--enable', 'dns'], { PODWIRE_DNS_LISTEN: ' , ' }), 'dnsListen', /required when dns is enabled/);
  t.same(load(['--enable', 'proxy']).config.enable, ['proxy']);
});

t.test('build errors without the section prefix are named <section>.<key> with their origin', async (t) => {
  const s = defineSection<unknown>({
    name: 'short',
    options: [{ key: 'port', flag: 'short-port', env: 'PODWIRE_SHORT_PORT', kind: 'int', default: 1, help: '' }],
    build: (v) => {
      if ((v.port as number) > 10) throw new InvalidInputError('port', v.port, 'too big');
      if ((v.port as number) < 0) throw new InvalidInputError('whole', v.port, 'negative');
      return v;
    },
  });
  invalid(t, () => load([], { PODWIRE_SHORT_PORT: '11' }, undefined, [s]), 'short.port', /too big \(set by PODWIRE_SHORT_PORT\)/);
  invalid(t, () => load(['--short-port=-1'], {}, undefined, [s]), 'short.whole', /negative/);
});
