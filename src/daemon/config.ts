/**
 * podwired configuration: one declared list of options, each with its YAML key,
 * flag, environment variable, default and validator. Precedence, per key:
 * flags > environment > config file > defaults.
 *
 * Flags are parsed with `node:util` parseArgs rather than a CLI library (commander,
 * yargs): our flags are a flat list of `--key value` options with one repeatable and
 * two actions, parseArgs covers exactly that with strict unknown-flag errors, and the
 * daemon's start-up stays free of another dependency. Help text is generated from
 * the same option table, so flags, env names and docs cannot drift apart.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import { parseArgs } from 'node:util';
import YAML from 'yaml';
import { InvalidInputError, PodwireError, errnoCode, errorMessage } from '../common/errors';
import { Cidr } from '../common/ip';

export const FEATURES = ['overlay', 'proxy', 'dns'] as const;
export type Feature = (typeof FEATURES)[number];
export const BACKENDS = ['vxlan', 'host-gw'] as const;
export type BackendName = (typeof BACKENDS)[number];
export const PROXY_MODES = ['nftables', 'iptables', 'ipvs'] as const;
export type ProxyMode = (typeof PROXY_MODES)[number];
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

export const DEFAULT_CONFIG_FILE = '/etc/podwire/config.yaml';

export interface DaemonConfig {
  nodeName: string;
  /** Kubernetes API access; neither set means in-cluster config. */
  kubeconfig: string | undefined;
  /** Read cluster state from a folder of manifests instead of the API (lab, tests). */
  manifests: string | undefined;
  /** One CIDR per family, comma-separated for dual-stack. */
  clusterCIDR: string;
  serviceCIDR: string;
  clusterDomain: string;
  backend: BackendName;
  proxyMode: ProxyMode;
  dnsListen: string[];
  healthListen: string;
  metricsListen: string;
  controlSocket: string;
  cniConfDir: string;
  cniBinDir: string;
  /** The CNI binary to install; unset means the built shim, if any. */
  cniBinSource: string | undefined;
  stateDir: string;
  logLevel: (typeof LOG_LEVELS)[number];
  enable: Feature[];
  /** Pod MTU; 0 means derive it from the underlay MTU and the backend's overhead. */
  mtu: number;
  /** Milliseconds between two syncs of one component, at least. */
  minSyncInterval: number;
  /** Milliseconds between two syncs of one component, at most (periodic reconcile). */
  syncInterval: number;
}

export type ConfigKey = keyof DaemonConfig;
export type ValueOrigin = 'default' | 'file' | 'env' | 'flag';

type Kind = 'string' | 'list' | 'int' | 'duration';

interface OptionSpec<K extends ConfigKey = ConfigKey> {
  key: K;
  flag: string;
  env: string;
  kind: Kind;
  default: DaemonConfig[K];
  help: string;
  /** Throws InvalidInputError naming the key; may normalise the value. */
  validate?: (value: DaemonConfig[K], config: DaemonConfig) => DaemonConfig[K] | void;
}

/** An option with its key's type erased, so the table can hold every key. */
interface AnyOption {
  key: ConfigKey;
  flag: string;
  env: string;
  kind: Kind;
  default: unknown;
  help: string;
  validate?: (value: never, config: DaemonConfig) => unknown;
}

function opt<K extends ConfigKey>(spec: OptionSpec<K>): AnyOption {
  return spec;
}

/** The option table. Order is the order of `--print-config` and of the docs. */
export const OPTIONS: readonly AnyOption[] = [
  opt({ key: 'nodeName', flag: 'node-name', env: 'PODWIRE_NODE_NAME', kind: 'string', default: '', help: 'This node\'s Kubernetes Node name (required)', validate: validateNodeName }),
  opt({ key: 'kubeconfig', flag: 'kubeconfig', env: 'PODWIRE_KUBECONFIG', kind: 'string', default: undefined, help: 'kubeconfig file (default: in-cluster service account)', validate: (v) => (v ? path.resolve(v) : v) }),
  opt({ key: 'manifests', flag: 'manifests', env: 'PODWIRE_MANIFESTS', kind: 'string', default: undefined, help: 'read cluster state from this folder of YAML manifests instead of the API', validate: (v) => (v ? path.resolve(v) : v) }),
  opt({ key: 'clusterCIDR', flag: 'cluster-cidr', env: 'PODWIRE_CLUSTER_CIDR', kind: 'string', default: '10.244.0.0/16', help: 'pod network, one CIDR per family, comma-separated', validate: (v) => validateCidrList('clusterCIDR', v).join(',') }),
  opt({ key: 'serviceCIDR', flag: 'service-cidr', env: 'PODWIRE_SERVICE_CIDR', kind: 'string', default: '10.96.0.0/12', help: 'Service ClusterIP range, one CIDR per family', validate: validateServiceCidr }),
  opt({ key: 'clusterDomain', flag: 'cluster-domain', env: 'PODWIRE_CLUSTER_DOMAIN', kind: 'string', default: 'cluster.local', help: 'cluster DNS domain', validate: validateDomain }),
  opt({ key: 'backend', flag: 'backend', env: 'PODWIRE_BACKEND', kind: 'string', default: 'vxlan', help: 'overlay backend: vxlan | host-gw', validate: (v) => oneOf('backend', v, BACKENDS) }),
  opt({ key: 'proxyMode', flag: 'proxy-mode', env: 'PODWIRE_PROXY_MODE', kind: 'string', default: 'nftables', help: 'Service proxy mode: nftables | iptables | ipvs', validate: (v) => oneOf('proxyMode', v, PROXY_MODES) }),
  opt({ key: 'dnsListen', flag: 'dns-listen', env: 'PODWIRE_DNS_LISTEN', kind: 'list', default: ['169.254.20.10:53'], help: 'DNS server address ADDR:PORT (repeatable; env: comma-separated)', validate: validateDnsListen }),
  opt({ key: 'healthListen', flag: 'health-listen', env: 'PODWIRE_HEALTH_LISTEN', kind: 'string', default: '127.0.0.1:10266', help: '/healthz and /readyz server ADDR:PORT', validate: (v) => validateHostPort('healthListen', v) }),
  opt({ key: 'metricsListen', flag: 'metrics-listen', env: 'PODWIRE_METRICS_LISTEN', kind: 'string', default: '127.0.0.1:10269', help: '/metrics (Prometheus) server ADDR:PORT', validate: (v) => validateHostPort('metricsListen', v) }),
  opt({ key: 'controlSocket', flag: 'control-socket', env: 'PODWIRE_CONTROL_SOCKET', kind: 'string', default: '/run/podwire/podwire.sock', help: 'control socket (CNI fast path, podwire status)', validate: (v) => absolutePath('controlSocket', v) }),
  opt({ key: 'cniConfDir', flag: 'cni-conf-dir', env: 'PODWIRE_CNI_CONF_DIR', kind: 'string', default: '/etc/cni/net.d', help: 'where 10-podwire.conflist is written', validate: (v) => absolutePath('cniConfDir', v) }),
  opt({ key: 'cniBinDir', flag: 'cni-bin-dir', env: 'PODWIRE_CNI_BIN_DIR', kind: 'string', default: '/opt/cni/bin', help: 'where the podwire CNI binary is installed', validate: (v) => absolutePath('cniBinDir', v) }),
  opt({ key: 'cniBinSource', flag: 'cni-bin-source', env: 'PODWIRE_CNI_BIN_SOURCE', kind: 'string', default: undefined, help: 'CNI binary to install (default: native/cni-shim/build/Release/podwire-cni-shim if built)', validate: (v) => (v ? path.resolve(v) : v) }),
  opt({ key: 'stateDir', flag: 'state-dir', env: 'PODWIRE_STATE_DIR', kind: 'string', default: '/var/lib/podwire', help: 'persistent state (IPAM, leases)', validate: (v) => absolutePath('stateDir', v) }),
  opt({ key: 'logLevel', flag: 'log-level', env: 'PODWIRE_LOG_LEVEL', kind: 'string', default: 'info', help: 'trace | debug | info | warn | error | fatal | silent', validate: (v) => oneOf('logLevel', v, LOG_LEVELS) }),
  opt({ key: 'enable', flag: 'enable', env: 'PODWIRE_ENABLE', kind: 'list', default: [...FEATURES], help: 'components to run, comma-separated: overlay,proxy,dns', validate: validateEnable }),
  opt({ key: 'mtu', flag: 'mtu', env: 'PODWIRE_MTU', kind: 'int', default: 0, help: 'pod MTU; 0 = underlay MTU minus the backend overhead', validate: validateMtu }),
  opt({ key: 'minSyncInterval', flag: 'min-sync-interval', env: 'PODWIRE_MIN_SYNC_INTERVAL', kind: 'duration', default: 1000, help: 'least time between two syncs of a component (e.g. 1s, 500ms)', validate: (v) => nonNegative('minSyncInterval', v) }),
  opt({ key: 'syncInterval', flag: 'sync-interval', env: 'PODWIRE_SYNC_INTERVAL', kind: 'duration', default: 30_000, help: 'periodic full reconcile interval (e.g. 30s, 1m)', validate: validateSyncInterval }),
];

const BY_KEY = new Map(OPTIONS.map((o) => [o.key, o]));

/** What the command line asks for besides configuration. */
export interface DaemonActions {
  printConfig: boolean;
  cleanup: boolean;
  help: boolean;
  version: boolean;
}

export interface LoadedConfig {
  config: DaemonConfig;
  actions: DaemonActions;
  /** Where each key's value came from. */
  origins: Record<ConfigKey, ValueOrigin>;
  /** The config file that was read, if any. */
  configFile: string | undefined;
}

export interface LoadOptions {
  argv: readonly string[];
  env: Readonly<Record<string, string | undefined>>;
  /** Injected for tests; defaults to fs.readFileSync(path, 'utf8'). */
  readFile?: (file: string) => string;
}

type RawLayer = Partial<Record<ConfigKey, unknown>>;

/** Parse flags, env and the file, merge by precedence, validate. Throws InvalidInputError. */
export function loadConfig(options: LoadOptions): LoadedConfig {
  const readFile = options.readFile ?? ((f: string) => readFileSync(f, 'utf8'));
  const { layer: flagLayer, configPath: flagConfig, actions } = parseFlags(options.argv);
  const envLayer = parseEnv(options.env);

  const explicitConfig = flagConfig ?? options.env.PODWIRE_CONFIG;
  const configFile = explicitConfig ?? DEFAULT_CONFIG_FILE;
  let fileLayer: RawLayer = {};
  let fileRead: string | undefined;
  let text: string | undefined;
  try {
    text = readFile(configFile);
  } catch (err) {
    // The default path is optional; a path the operator named must exist.
    if (explicitConfig !== undefined || errnoCode(err) !== 'ENOENT') {
      throw new InvalidInputError('config', configFile, `cannot read config file: ${errorMessage(err)}`, err);
    }
  }
  if (text !== undefined) {
    fileLayer = parseConfigFile(configFile, text);
    fileRead = configFile;
  }

  const origins = {} as Record<ConfigKey, ValueOrigin>;
  const merged = {} as Record<ConfigKey, unknown>;
  for (const spec of OPTIONS) {
    const layers: [ValueOrigin, RawLayer, string][] = [
      ['flag', flagLayer, `--${spec.flag}`],
      ['env', envLayer, spec.env],
      ['file', fileLayer, `${configFile}: ${spec.key}`],
    ];
    const hit = layers.find(([, layer]) => layer[spec.key] !== undefined);
    if (hit) {
      merged[spec.key] = coerce(spec, hit[1][spec.key], hit[2]);
      origins[spec.key] = hit[0];
    } else {
      merged[spec.key] = Array.isArray(spec.default) ? [...spec.default] : spec.default;
      origins[spec.key] = 'default';
    }
  }
  const config = merged as unknown as DaemonConfig;
  validateConfig(config, origins, actions);
  return { config, actions, origins, configFile: fileRead };
}

/** Run every option's validator (normalising values in place), then cross-key checks. */
export function validateConfig(
  config: DaemonConfig,
  origins?: Partial<Record<ConfigKey, ValueOrigin>>,
  actions?: Partial<DaemonActions>,
): DaemonConfig {
  const mutable = config as unknown as Record<ConfigKey, unknown>;
  for (const spec of OPTIONS) {
    if (spec.key === 'nodeName' && (actions?.printConfig || actions?.help || actions?.version) && !config.nodeName) continue;
    try {
      const out = (spec.validate as ((v: unknown, c: DaemonConfig) => unknown) | undefined)?.(mutable[spec.key], config);
      if (out !== undefined) mutable[spec.key] = out;
    } catch (err) {
      throw withOrigin(err, spec, origins?.[spec.key]);
    }
  }
  if (config.kubeconfig && config.manifests) {
    throw new InvalidInputError('manifests', config.manifests, 'set either kubeconfig or manifests, not both');
  }
  return config;
}

function withOrigin(err: unknown, spec: AnyOption, origin: ValueOrigin | undefined): unknown {
  if (!(err instanceof InvalidInputError) || origin === undefined) return err;
  const where =
    origin === 'flag' ? `--${spec.flag}` : origin === 'env' ? spec.env : origin === 'file' ? 'the config file' : 'the default';
  const reason = err.message.replace(/^invalid [^:]*: /, '');
  return new InvalidInputError(err.field ?? spec.key, err.value, `${reason} (set by ${where})`, err);
}

function parseFlags(argv: readonly string[]): { layer: RawLayer; configPath: string | undefined; actions: DaemonActions } {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = {
    config: { type: 'string' },
    'print-config': { type: 'boolean' },
    cleanup: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
    version: { type: 'boolean' },
  };
  for (const spec of OPTIONS) options[spec.flag] = { type: 'string', ...(spec.key === 'dnsListen' ? { multiple: true } : {}) };
  let values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args: [...argv], options, strict: true, allowPositionals: true }));
  } catch (err) {
    const flag = /'([^']+)'/.exec(errorMessage(err))?.[1] ?? argv.join(' ');
    throw new InvalidInputError('flag', flag, errorMessage(err).split('\n')[0] ?? 'bad flag', err);
  }
  if (positionals.length > 0) throw new InvalidInputError('argument', positionals[0], 'podwired takes no positional arguments');
  const layer: RawLayer = {};
  for (const spec of OPTIONS) {
    const v = values[spec.flag];
    if (v !== undefined) layer[spec.key] = v;
  }
  return {
    layer,
    configPath: typeof values.config === 'string' ? values.config : undefined,
    actions: {
      printConfig: values['print-config'] === true,
      cleanup: values.cleanup === true,
      help: values.help === true,
      version: values.version === true,
    },
  };
}

function parseEnv(env: Readonly<Record<string, string | undefined>>): RawLayer {
  const layer: RawLayer = {};
  for (const spec of OPTIONS) {
    const v = env[spec.env];
    if (v !== undefined && v !== '') layer[spec.key] = v;
  }
  return layer;
}

function parseConfigFile(file: string, text: string): RawLayer {
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch (err) {
    throw new InvalidInputError('config', file, `not valid YAML: ${errorMessage(err).split('\n')[0]}`, err);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new InvalidInputError('config', file, 'the config file must be a YAML mapping of key: value');
  }
  const layer: RawLayer = {};
  for (const [key, value] of Object.entries(doc as Record<string, unknown>)) {
    const spec = BY_KEY.get(key as ConfigKey);
    if (!spec) {
      const near = OPTIONS.find((o) => o.key.toLowerCase() === key.toLowerCase().replace(/[-_]/g, ''));
      throw new InvalidInputError(key, value, `unknown key in ${file}${near ? ` (did you mean ${near.key}?)` : ''}`);
    }
    if (value !== null && value !== undefined) layer[spec.key] = value;
  }
  return layer;
}

/** Turn a flag/env string or a YAML value into the option's type. */
function coerce(spec: AnyOption, raw: unknown, where: string): unknown {
  const bad = (reason: string) => new InvalidInputError(spec.key, raw, `${reason} (set by ${where})`);
  switch (spec.kind) {
    case 'string':
      if (typeof raw === 'string') return raw.trim();
      if (typeof raw === 'number' && spec.key === 'nodeName') return String(raw);
      throw bad('expected a string');
    case 'list': {
      const parts = Array.isArray(raw) ? raw : [raw];
      const out: string[] = [];
      for (const p of parts) {
        if (typeof p !== 'string') throw bad('expected a string or a list of strings');
        out.push(...p.split(',').map((s) => s.trim()).filter((s) => s !== ''));
      }
      return out;
    }
    case 'int': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\s*-?\d+\s*$/.test(raw) ? Number(raw) : NaN;
      if (!Number.isInteger(n)) throw bad('expected an integer');
      return n;
    }
    case 'duration': {
      const ms = parseDuration(raw);
      if (ms === undefined) throw bad('expected a duration like 500ms, 1s, 2m (or milliseconds as a number)');
      return ms;
    }
  }
}

export function parseDuration(raw: unknown): number | undefined {
  if (typeof raw === 'number') return Number.isFinite(raw) && raw >= 0 ? raw : undefined;
  if (typeof raw !== 'string') return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(raw);
  if (!m) return undefined;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 'ms') as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(m[1]) * unit);
}

export function formatDuration(ms: number): string {
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0 && ms > 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

// ---- validators -----------------------------------------------------------------

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

function validateNodeName(v: string): void {
  if (!v) throw new InvalidInputError('nodeName', v, 'required: pass --node-name or set PODWIRE_NODE_NAME');
  if (v.length > 253 || !v.split('.').every((l) => DNS_LABEL.test(l))) {
    throw new InvalidInputError('nodeName', v, 'must be a lower-case RFC 1123 DNS subdomain');
  }
}

function validateDomain(v: string): string {
  const d = v.replace(/\.$/, '').toLowerCase();
  if (!d || d.length > 253 || !d.split('.').every((l) => DNS_LABEL.test(l))) {
    throw new InvalidInputError('clusterDomain', v, 'must be a DNS domain like cluster.local');
  }
  return d;
}

function oneOf<T extends string>(key: ConfigKey, v: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(v)) throw new InvalidInputError(key, v, `must be one of ${allowed.join(', ')}`);
  return v as T;
}

/** Parse a comma-separated list of network CIDRs, at most one per family. */
export function validateCidrList(key: ConfigKey, v: string): Cidr[] {
  const parts = v.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (parts.length === 0) throw new InvalidInputError(key, v, 'at least one CIDR is required');
  const out: Cidr[] = [];
  for (const p of parts) {
    let c: Cidr;
    try {
      c = Cidr.parse(p, key);
    } catch (err) {
      throw new InvalidInputError(key, v, errorMessage(err).replace(/^invalid [^:]*: /, ''), err);
    }
    if (!c.isNetwork()) throw new InvalidInputError(key, v, `${p} has host bits set; did you mean ${c.masked.toString()}?`);
    if (out.some((o) => o.family === c.family)) throw new InvalidInputError(key, v, 'at most one CIDR per IP family');
    out.push(c);
  }
  return out;
}

function validateServiceCidr(v: string, config: DaemonConfig): string {
  const svc = validateCidrList('serviceCIDR', v);
  let pods: Cidr[] = [];
  try {
    pods = validateCidrList('clusterCIDR', config.clusterCIDR);
  } catch {
    // clusterCIDR reports its own error.
  }
  for (const s of svc) {
    const clash = pods.find((p) => p.overlaps(s));
    if (clash) throw new InvalidInputError('serviceCIDR', v, `overlaps clusterCIDR ${clash.toString()}`);
  }
  return svc.join(',');
}

/** `ADDR:PORT` or `[V6]:PORT`; returns host and port. */
export function parseHostPort(key: string, v: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(v) ?? /^([^:[\]]+):(\d+)$/.exec(v);
  if (!m) throw new InvalidInputError(key, v, 'expected ADDR:PORT, e.g. 127.0.0.1:10266 or [::1]:10266');
  const host = m[1]!;
  const port = Number(m[2]);
  if (isIP(host) === 0) throw new InvalidInputError(key, v, `"${host}" is not an IP address`);
  if (port > 65535) throw new InvalidInputError(key, v, 'port must be 0..65535');
  return { host, port };
}

function validateHostPort(key: ConfigKey, v: string): void {
  parseHostPort(key, v);
}

function validateDnsListen(v: string[], config: DaemonConfig): string[] {
  if (v.length === 0 && config.enable.includes('dns')) {
    throw new InvalidInputError('dnsListen', v, 'at least one address is required when dns is enabled');
  }
  for (const a of v) {
    const { port } = parseHostPort('dnsListen', a);
    if (port === 0) throw new InvalidInputError('dnsListen', a, 'a DNS server needs a fixed port');
  }
  return [...new Set(v)];
}

function absolutePath(key: ConfigKey, v: string): string {
  if (!v || !path.isAbsolute(v)) throw new InvalidInputError(key, v, 'must be an absolute path');
  return path.normalize(v);
}

function validateEnable(v: string[]): Feature[] {
  if (v.length === 0) throw new InvalidInputError('enable', v.join(','), `enable at least one of ${FEATURES.join(', ')}`);
  for (const f of v) {
    if (!(FEATURES as readonly string[]).includes(f)) {
      throw new InvalidInputError('enable', v.join(','), `unknown component "${f}"; known: ${FEATURES.join(', ')}`);
    }
  }
  return FEATURES.filter((f) => v.includes(f));
}

function validateMtu(v: number): void {
  if (v !== 0 && (v < 576 || v > 65535)) throw new InvalidInputError('mtu', v, 'must be 0 (auto) or 576..65535');
}

function nonNegative(key: ConfigKey, v: number): void {
  if (!(v >= 0)) throw new InvalidInputError(key, v, 'must not be negative');
}

function validateSyncInterval(v: number, config: DaemonConfig): void {
  if (!(v > 0)) throw new InvalidInputError('syncInterval', formatDuration(v), 'must be positive');
  if (v < config.minSyncInterval) {
    throw new InvalidInputError(
      'syncInterval',
      formatDuration(v),
      `must be >= minSyncInterval (${formatDuration(config.minSyncInterval)})`,
    );
  }
}

// ---- output ---------------------------------------------------------------------

/** The effective config as YAML, in option order, durations human-readable. */
export function renderConfig(config: DaemonConfig, origins?: Partial<Record<ConfigKey, ValueOrigin>>): string {
  const doc = new YAML.Document({});
  for (const spec of OPTIONS) {
    const raw = config[spec.key];
    const value = spec.kind === 'duration' ? formatDuration(raw as number) : raw ?? null;
    const pair = doc.createPair(spec.key, value);
    if (origins?.[spec.key] && origins[spec.key] !== 'default') {
      (pair.value as { comment?: string }).comment = ` from ${origins[spec.key]}`;
    }
    (doc.contents as YAML.YAMLMap).items.push(pair);
  }
  return doc.toString();
}

export function helpText(): string {
  const lines = [
    'Usage: podwired --node-name NAME [--config FILE] [--kubeconfig FILE | --manifests DIR] [options]',
    '',
    'Options (flag > environment > config file > default):',
  ];
  for (const spec of OPTIONS) {
    const def = spec.kind === 'duration' ? formatDuration(spec.default as number) : Array.isArray(spec.default) ? spec.default.join(',') : spec.default;
    lines.push(`  --${spec.flag.padEnd(20)} ${spec.help}`);
    lines.push(`  ${''.padEnd(22)} env ${spec.env}, key ${spec.key}${def !== undefined && def !== '' ? `, default ${def}` : ''}`);
  }
  lines.push(
    `  --${'config'.padEnd(20)} YAML config file (env PODWIRE_CONFIG, default ${DEFAULT_CONFIG_FILE}, optional)`,
    `  --${'print-config'.padEnd(20)} print the effective config as YAML and exit`,
    `  --${'cleanup'.padEnd(20)} remove everything Podwire programmed on this node and exit`,
    `  --${'help'.padEnd(20)} this text`,
  );
  return lines.join('\n') + '\n';
}

/** True for errors the operator must fix in the configuration (exit code 2). */
export function isConfigError(err: unknown): err is PodwireError {
  return err instanceof InvalidInputError;
}
