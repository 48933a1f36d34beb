import t, { type Test } from 'tap';
import YAML from 'yaml';
import { InvalidInputError } from '../common/errors';
import { DEFAULT_CONFIG_FILE, loadConfig, renderConfig, type LoadOptions } from './config';

function files(map: Record<string, string>): (f: string) => string {
  return (f) => {
    const v = map[f];
    if (v === undefined) throw Object.assign(new Error(`ENOENT: ${f}`), { code: 'ENOENT' });
    return v;
  };
}

function load(argv: string[], env: Record<string, string> = {}, fileMap: Record<string, string> = {}) {
  const opts: LoadOptions = { argv, env, readFile: files(fileMap) };
  return loadConfig(opts);
}

function expectInvalid(t: Test, fn: () => unknown, field: string, value: unknown, reason?: RegExp): void {
  try {
    fn();
    t.fail(`expected InvalidInputError for ${field}`);
  } catch (err) {
    t.ok(err instanceof InvalidInputError, 'InvalidInputError');
    const e = err as InvalidInputError;
    t.equal(e.field, field, 'names the key');
    t.same(e.value, value, 'names the value');
    t.match(e.message, field, 'message names the key');
    if (reason) t.match(e.message, reason);
  }
}

t.test('defaults', async (t) => {
  const { config, origins } = load(['--node-name', 'n1']);
  t.equal(config.nodeName, 'n1');
  t.equal(config.clusterCIDR, '10.244.0.0/16');
  t.equal(config.serviceCIDR, '10.96.0.0/12');
  t.equal(config.clusterDomain, 'cluster.local');
  t.equal(config.backend, 'vxlan');
  t.equal(config.proxyMode, 'nftables');
  t.same(config.dnsListen, ['169.254.20.10:53']);
  t.equal(config.healthListen, '127.0.0.1:10266');
  t.equal(config.metricsListen, '127.0.0.1:10269');
  t.equal(config.controlSocket, '/run/podwire/podwire.sock');
  t.equal(config.cniConfDir, '/etc/cni/net.d');
  t.equal(config.cniBinDir, '/opt/cni/bin');
  t.equal(config.stateDir, '/var/lib/podwire');
  t.same(config.enable, ['cni', 'overlay', 'proxy', 'dns']);
  t.equal(config.minSyncInterval, 1000);
  t.equal(config.syncInterval, 30_000);
  t.equal(origins.nodeName, 'flag');
  t.equal(origins.backend, 'default');
});

t.test('precedence: flag > env > file > default, per key', async (t) => {
  const file = YAML.stringify({
    nodeName: 'from-file',
    backend: 'host-gw',
    proxyMode: 'iptables',
    clusterDomain: 'file.local',
    logLevel: 'debug',
    dnsListen: ['10.96.0.10:53', '169.254.20.10:53'],
    syncInterval: '2m',
  });
  const env = {
    PODWIRE_NODE_NAME: 'from-env',
    PODWIRE_PROXY_MODE: 'ipvs',
    PODWIRE_CLUSTER_DOMAIN: 'env.local',
  };
  const { config, origins, configFile } = load(
    ['--config', '/x/c.yaml', '--node-name', 'from-flag', '--proxy-mode', 'nftables'],
    env,
    { '/x/c.yaml': file },
  );
  t.equal(configFile, '/x/c.yaml');
  t.equal(config.nodeName, 'from-flag', 'flag beats env and file');
  t.equal(origins.nodeName, 'flag');
  t.equal(config.proxyMode, 'nftables', 'flag beats env beats file');
  t.equal(config.clusterDomain, 'env.local', 'env beats file');
  t.equal(origins.clusterDomain, 'env');
  t.equal(config.backend, 'host-gw', 'file beats default');
  t.equal(origins.backend, 'file');
  t.equal(config.logLevel, 'debug');
  t.same(config.dnsListen, ['10.96.0.10:53', '169.254.20.10:53']);
  t.equal(config.syncInterval, 120_000);
  t.equal(config.clusterCIDR, '10.244.0.0/16', 'untouched keys keep defaults');
  t.equal(origins.clusterCIDR, 'default');
});

t.test('the default config file is read when present and optional when absent', async (t) => {
  const withFile = load([], {}, { [DEFAULT_CONFIG_FILE]: 'nodeName: filenode\n' });
  t.equal(withFile.config.nodeName, 'filenode');
  t.equal(withFile.configFile, DEFAULT_CONFIG_FILE);
  const without = load(['--node-name', 'a']);
  t.equal(without.configFile, undefined);
  t.equal(load([], { PODWIRE_CONFIG: '/e.yaml', PODWIRE_NODE_NAME: 'b' }, { '/e.yaml': 'backend: host-gw' }).config.backend, 'host-gw');
  expectInvalid(t, () => load(['--node-name', 'a', '--config', '/missing.yaml']), 'config', '/missing.yaml', /cannot read/);
});

t.test('repeatable --dns-listen, comma lists in env and --enable', async (t) => {
  const a = load(['--node-name', 'n', '--dns-listen', '10.0.0.1:53', '--dns-listen', '[fd00::1]:5353']);
  t.same(a.config.dnsListen, ['10.0.0.1:53', '[fd00::1]:5353']);
  const b = load(['--node-name', 'n'], { PODWIRE_DNS_LISTEN: '127.0.0.1:53, 127.0.0.2:53', PODWIRE_ENABLE: 'proxy,dns' });
  t.same(b.config.dnsListen, ['127.0.0.1:53', '127.0.0.2:53']);
  t.same(b.config.enable, ['proxy', 'dns']);
  const c = load(['--node-name', 'n', '--enable', 'dns,proxy']);
  t.same(c.config.enable, ['proxy', 'dns'], 'normalised order');
});

t.test('validation errors name the key and the bad value', async (t) => {
  expectInvalid(t, () => load([]), 'nodeName', '', /required/);
  expectInvalid(t, () => load(['--node-name', 'Bad_Name']), 'nodeName', 'Bad_Name');
  expectInvalid(t, () => load(['--node-name', 'n', '--backend', 'geneve']), 'backend', 'geneve', /vxlan, host-gw.*--backend/);
  expectInvalid(t, () => load(['--node-name', 'n'], { PODWIRE_PROXY_MODE: 'userspace' }), 'proxyMode', 'userspace', /PODWIRE_PROXY_MODE/);
  expectInvalid(t, () => load(['--node-name', 'n', '--cluster-cidr', '10.244.0.0/33']), 'clusterCIDR', '10.244.0.0/33', /prefix length/);
  expectInvalid(t, () => load(['--node-name', 'n', '--cluster-cidr', '10.244.1.0/16']), 'clusterCIDR', '10.244.1.0/16', /host bits/);
  expectInvalid(t, () => load(['--node-name', 'n', '--cluster-cidr', 'banana']), 'clusterCIDR', 'banana');
  expectInvalid(t, () => load(['--node-name', 'n', '--service-cidr', '10.244.0.0/24']), 'serviceCIDR', '10.244.0.0/24', /overlaps/);
  expectInvalid(t, () => load(['--node-name', 'n', '--cluster-domain', 'bad..domain']), 'clusterDomain', 'bad..domain');
  expectInvalid(t, () => load(['--node-name', 'n', '--health-listen', 'localhost:80']), 'healthListen', 'localhost:80', /not an IP/);
  expectInvalid(t, () => load(['--node-name', 'n', '--metrics-listen', '127.0.0.1']), 'metricsListen', '127.0.0.1');
  expectInvalid(t, () => load(['--node-name', 'n', '--dns-listen', '1.2.3.4:70000']), 'dnsListen', '1.2.3.4:70000');
  expectInvalid(t, () => load(['--node-name', 'n', '--state-dir', 'relative/dir']), 'stateDir', 'relative/dir', /absolute/);
  expectInvalid(t, () => load(['--node-name', 'n', '--enable', 'overlay,bgp']), 'enable', 'overlay,bgp', /bgp/);
  expectInvalid(t, () => load(['--node-name', 'n', '--mtu', 'big']), 'mtu', 'big', /integer/);
  expectInvalid(t, () => load(['--node-name', 'n', '--mtu', '100']), 'mtu', 100);
  expectInvalid(t, () => load(['--node-name', 'n', '--log-level', 'loud']), 'logLevel', 'loud');
  expectInvalid(t, () => load(['--node-name', 'n', '--sync-interval', 'soon']), 'syncInterval', 'soon', /duration/);
  expectInvalid(t, () => load(['--node-name', 'n', '--sync-interval', '1s', '--min-sync-interval', '5s']), 'syncInterval', '1s', /minSyncInterval/);
  expectInvalid(t, () => load(['--node-name', 'n', '--kubeconfig', '/k', '--manifests', '/m']), 'manifests', '/m', /not both/);
  expectInvalid(t, () => load(['--node-name', 'n', '--leader-election-lease-duration', '5s']), 'leaderElectionLeaseDuration', '5s', /> leaderElectionRenewDeadline \(10s\).*--leader-election-lease-duration/);
  expectInvalid(t, () => load(['--node-name', 'n', '--leader-election-renew-deadline', '1s']), 'leaderElectionRenewDeadline', '1s', /> leaderElectionRetryPeriod \(2s\).*--leader-election-renew-deadline/);
  expectInvalid(t, () => load(['--node-name', 'n', '--leader-election-retry-period', '0s']), 'leaderElectionRetryPeriod', '0ms', /positive/);
  expectInvalid(t, () => load(['--node-name', 'n', '--bogus', 'x']), 'flag', '--bogus', /Unknown option/);
  expectInvalid(t, () => load(['--node-name', 'n', 'extra']), 'argument', 'extra');
});

t.test('leader election timings: defaults like kube-controller-manager, shorter ones for tests', async (t) => {
  const d = load(['--node-name', 'n']).config;
  t.same([d.leaderElectionLeaseDuration, d.leaderElectionRenewDeadline, d.leaderElectionRetryPeriod], [15_000, 10_000, 2_000]);
  const s = load(['--node-name', 'n', '--leader-election-lease-duration', '3s', '--leader-election-renew-deadline', '2s', '--leader-election-retry-period', '500ms']).config;
  t.same([s.leaderElectionLeaseDuration, s.leaderElectionRenewDeadline, s.leaderElectionRetryPeriod], [3_000, 2_000, 500]);
});

t.test('config file errors name the key', async (t) => {
  expectInvalid(t, () => load(['--node-name', 'n', '--config', '/c'], {}, { '/c': 'clusterCidr: 10.0.0.0/8\n' }), 'clusterCidr', '10.0.0.0/8', /unknown key.*did you mean clusterCIDR/);
  expectInvalid(t, () => load(['--node-name', 'n', '--config', '/c'], {}, { '/c': 'backend: [1, 2]\n' }), 'backend', [1, 2], /expected a string/);
  expectInvalid(t, () => load(['--node-name', 'n', '--config', '/c'], {}, { '/c': 'backend: wireguard\n' }), 'backend', 'wireguard', /config file/);
  expectInvalid(t, () => load(['--node-name', 'n', '--config', '/c'], {}, { '/c': '- a\n- b\n' }), 'config', '/c', /mapping/);
  expectInvalid(t, () => load(['--node-name', 'n', '--config', '/c'], {}, { '/c': 'a: [\n' }), 'config', '/c', /YAML/);
});

t.test('--print-config renders the effective config and needs no node name', async (t) => {
  const { config, actions, origins } = load(['--print-config', '--backend', 'host-gw']);
  t.equal(actions.printConfig, true);
  const text = renderConfig(config, origins);
  const parsed = YAML.parse(text) as Record<string, unknown>;
  t.equal(parsed.backend, 'host-gw');
  t.equal(parsed.syncInterval, '30s');
  t.equal(parsed.clusterDomain, 'cluster.local');
  t.match(text, /backend: host-gw # from flag/);
  t.equal(load(['--node-name', 'n', '--cleanup']).actions.cleanup, true);
});

t.test('docs/configuration.md holds the generated tables (node scripts/gen-config-docs.js)', async (t) => {
  const { readFileSync } = await import('node:fs');
  const path = await import('node:path');
  const { OPTIONS, configDocsTables, DOCS_BEGIN, DOCS_END } = await import('./config');
  const doc = readFileSync(path.resolve(__dirname, '../../../docs/configuration.md'), 'utf8');
  const a = doc.indexOf(DOCS_BEGIN);
  const b = doc.indexOf(DOCS_END);
  t.ok(a >= 0 && b > a, 'markers present');
  t.equal(doc.slice(a + DOCS_BEGIN.length + 1, b), configDocsTables(), 'generated tables are current: run node scripts/gen-config-docs.js');
  for (const o of OPTIONS) {
    t.ok(doc.includes(`\`--${o.flag}\``), `--${o.flag} documented`);
    t.ok(doc.includes(`\`${o.env}\``), `${o.env} documented`);
  }
});
