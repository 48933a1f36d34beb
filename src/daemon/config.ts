/**
 * podwired configuration: one declared list of options, each with its YAML key,
 * flag, environment variable, default and validator, plus the components' own
 * sections (config-section.ts), merged the same way. Precedence, per key:
 * flags > environment > config file > defaults.
 *
 * Validation runs in three steps, none of which depends on the order of a table:
 * every flat option on its own, then the cross-key checks (CROSS_CHECKS), then each
 * section's `build(values, config)` with the validated daemon-wide config.
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
import type { ConfigSection, SectionOption } from './config-section';

/** In start-up order of their components (registry.ts). `cni`: the CNI installer and the fast path. */
export const FEATURES = ['cni', 'overlay', 'proxy', 'dns'] as const;
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
  // Optional (filled by loadConfig from their defaults) so config literals built elsewhere stay valid.
  /** Podwire allocates Nodes' pod CIDRs (leader-elected), for clusters whose controller-manager does not. */
  allocateNodeCidrs?: boolean;
  /** Per-node IPv4 pod CIDR prefix length when allocating. */
  nodeCidrMaskSize?: number;
  /** Per-node IPv6 pod CIDR prefix length when allocating. */
  nodeCidrMaskSizeIpv6?: number;
  /** Milliseconds a deleted Node's pod CIDR stays reserved. */
  nodeCidrReleaseGrace?: number;
  /** Namespace of the allocator's Lease. */
  leaderElectionNamespace?: string;
  /** Milliseconds a Lease not renewed counts as held (client-go leaseDuration). */
  leaderElectionLeaseDuration?: number;
  /** Milliseconds a leader keeps trying to renew before it stops leading (renewDeadline). */
  leaderElectionRenewDeadline?: number;
  /** Milliseconds between two acquire/renew attempts (retryPeriod). */
  leaderElectionRetryPeriod?: number;
}

export type ConfigKey = keyof DaemonConfig;
export type ValueOrigin = 'default' | 'file' | 'env' | 'flag';

type Kind = 'string' | 'list' | 'int' | 'duration' | 'bool';

interface OptionSpec<K extends ConfigKey = ConfigKey> {
  key: K;
  flag: string;
  env: string;
  kind: Kind;
  default: DaemonConfig[K];
  help: string;
  /** Throws InvalidInputError naming the key; may normalise the value. Sees only its own value (cross-key checks: CROSS_CHECKS). */
  validate?: (value: DaemonConfig[K]) => DaemonConfig[K] | void;
  /** Longer text for docs/configuration.md (markdown); default `help`. */
  doc?: string;
}

/** An option with its key's type erased, so the table can hold every key. */
interface AnyOption {
  key: ConfigKey;
  flag: string;
  env: string;
  kind: Kind;
  default: unknown;
  help: string;
  validate?: (value: never) => unknown;
  doc?: string;
}

function opt<K extends ConfigKey>(spec: OptionSpec<K>): AnyOption {
  return spec;
}

/** The option table. Order is the order of `--print-config`, `--help` and the docs (not of validation). */
export const OPTIONS: readonly AnyOption[] = [
  opt({ key: 'nodeName', flag: 'node-name', env: 'PODWIRE_NODE_NAME', kind: 'string', default: '', help: 'This node\'s Kubernetes Node name (required)', validate: validateNodeName,
    doc: "this node's Kubernetes Node name; an RFC 1123 subdomain (required)" }),
  opt({ key: 'kubeconfig', flag: 'kubeconfig', env: 'PODWIRE_KUBECONFIG', kind: 'string', default: undefined, help: 'kubeconfig file (default: in-cluster service account)', validate: (v) => (v ? path.resolve(v) : v),
    doc: "kubeconfig file for the API; unset = the Pod's service account" }),
  opt({ key: 'manifests', flag: 'manifests', env: 'PODWIRE_MANIFESTS', kind: 'string', default: undefined, help: 'read cluster state from this folder of YAML manifests instead of the API', validate: (v) => (v ? path.resolve(v) : v),
    doc: 'read cluster state from a folder of manifests instead of the API (lab, standalone nodes; see [sources.md](sources.md)). Not together with `kubeconfig`' }),
  opt({ key: 'clusterCIDR', flag: 'cluster-cidr', env: 'PODWIRE_CLUSTER_CIDR', kind: 'string', default: '10.244.0.0/16', help: 'pod network, one CIDR per family, comma-separated', validate: (v) => validateCidrList('clusterCIDR', v).join(','),
    doc: 'the pod network; one CIDR per IP family, comma-separated for dual-stack; must be a network address' }),
  opt({ key: 'serviceCIDR', flag: 'service-cidr', env: 'PODWIRE_SERVICE_CIDR', kind: 'string', default: '10.96.0.0/12', help: 'Service ClusterIP range, one CIDR per family', validate: (v) => validateCidrList('serviceCIDR', v).join(','),
    doc: 'the Service ClusterIP range; must not overlap `clusterCIDR`' }),
  opt({ key: 'clusterDomain', flag: 'cluster-domain', env: 'PODWIRE_CLUSTER_DOMAIN', kind: 'string', default: 'cluster.local', help: 'cluster DNS domain', validate: validateDomain,
    doc: 'the cluster DNS domain' }),
  opt({ key: 'backend', flag: 'backend', env: 'PODWIRE_BACKEND', kind: 'string', default: 'vxlan', help: 'overlay backend: vxlan | host-gw', validate: (v) => oneOf('backend', v, BACKENDS),
    doc: 'overlay backend: `vxlan` or `host-gw`' }),
  opt({ key: 'proxyMode', flag: 'proxy-mode', env: 'PODWIRE_PROXY_MODE', kind: 'string', default: 'nftables', help: 'Service proxy mode: nftables | iptables | ipvs', validate: (v) => oneOf('proxyMode', v, PROXY_MODES),
    doc: 'Service proxy: `nftables`, `iptables` or `ipvs`' }),
  opt({ key: 'dnsListen', flag: 'dns-listen', env: 'PODWIRE_DNS_LISTEN', kind: 'list', default: ['169.254.20.10:53'], help: 'DNS server address ADDR:PORT (repeatable; env: comma-separated)', validate: validateDnsListen,
    doc: 'addresses the node-local DNS server listens on (`ADDR:PORT`, `[V6]:PORT`; flag repeatable, env comma-separated); the NodeLocal DNSCache link-local address by default' }),
  opt({ key: 'healthListen', flag: 'health-listen', env: 'PODWIRE_HEALTH_LISTEN', kind: 'string', default: '127.0.0.1:10266', help: '/healthz and /readyz server ADDR:PORT', validate: (v) => validateHostPort('healthListen', v),
    doc: '`/healthz` and `/readyz`' }),
  opt({ key: 'metricsListen', flag: 'metrics-listen', env: 'PODWIRE_METRICS_LISTEN', kind: 'string', default: '127.0.0.1:10269', help: '/metrics (Prometheus) server ADDR:PORT', validate: (v) => validateHostPort('metricsListen', v),
    doc: '`/metrics` (Prometheus text format)' }),
  opt({ key: 'controlSocket', flag: 'control-socket', env: 'PODWIRE_CONTROL_SOCKET', kind: 'string', default: '/run/podwire/podwire.sock', help: 'control socket (CNI fast path, podwire status)', validate: (v) => absolutePath('controlSocket', v),
    doc: 'the control socket: the CNI fast path and `podwire status`. The installed CNI binary finds it through `<cniBinDir>/podwire.conf`' }),
  opt({ key: 'cniConfDir', flag: 'cni-conf-dir', env: 'PODWIRE_CNI_CONF_DIR', kind: 'string', default: '/etc/cni/net.d', help: 'where 10-podwire.conflist is written', validate: (v) => absolutePath('cniConfDir', v),
    doc: 'where `10-podwire.conflist` is written' }),
  opt({ key: 'cniBinDir', flag: 'cni-bin-dir', env: 'PODWIRE_CNI_BIN_DIR', kind: 'string', default: '/opt/cni/bin', help: 'where the podwire CNI binary is installed', validate: (v) => absolutePath('cniBinDir', v),
    doc: 'where the CNI binary is installed (as `podwire`, with `podwire.conf` beside it)' }),
  opt({ key: 'cniBinSource', flag: 'cni-bin-source', env: 'PODWIRE_CNI_BIN_SOURCE', kind: 'string', default: undefined, help: 'CNI binary to install (default: native/cni-shim/build/Release/podwire-cni-shim if built)', validate: (v) => (v ? path.resolve(v) : v),
    doc: 'the CNI binary to install; default `native/cni-shim/build/Release/podwire-cni-shim` if it was built, else no binary is installed (the conflist still is)' }),
  opt({ key: 'stateDir', flag: 'state-dir', env: 'PODWIRE_STATE_DIR', kind: 'string', default: '/var/lib/podwire', help: 'persistent state (IPAM, leases)', validate: (v) => absolutePath('stateDir', v),
    doc: 'persistent state; IPAM reservations live in `<stateDir>/ipam`, CNI fast-path fallbacks are recorded in `<stateDir>/cni-fallbacks`' }),
  opt({ key: 'logLevel', flag: 'log-level', env: 'PODWIRE_LOG_LEVEL', kind: 'string', default: 'info', help: 'trace | debug | info | warn | error | fatal | silent', validate: (v) => oneOf('logLevel', v, LOG_LEVELS),
    doc: '`trace`, `debug`, `info`, `warn`, `error`, `fatal`, `silent`' }),
  opt({ key: 'enable', flag: 'enable', env: 'PODWIRE_ENABLE', kind: 'list', default: [...FEATURES], help: `components to run, comma-separated: ${FEATURES.join(',')}`, validate: validateEnable,
    doc: 'components to run: `cni` (CNI binary, conflist and fast path), `overlay`, `proxy`, `dns`. `proxy,dns` runs Podwire\'s Service proxy and DNS beside another CNI' }),
  opt({ key: 'mtu', flag: 'mtu', env: 'PODWIRE_MTU', kind: 'int', default: 0, help: 'pod MTU; 0 = underlay MTU minus the backend overhead', validate: validateMtu,
    doc: "pod MTU; `0` = the MTU of the interface holding the node's InternalIP, minus 50 for `vxlan`" }),
  opt({ key: 'minSyncInterval', flag: 'min-sync-interval', env: 'PODWIRE_MIN_SYNC_INTERVAL', kind: 'duration', default: 1000, help: 'least time between two syncs of a component (e.g. 1s, 500ms)', validate: (v) => nonNegative('minSyncInterval', v),
    doc: 'least time between two syncs of one component (bursts of changes collapse into one sync); a component may declare its own' }),
  opt({ key: 'syncInterval', flag: 'sync-interval', env: 'PODWIRE_SYNC_INTERVAL', kind: 'duration', default: 30_000, help: 'periodic full reconcile interval (e.g. 30s, 1m)', validate: (v) => positive('syncInterval', v),
    doc: 'the periodic full reconcile of each component; must be >= `minSyncInterval`; a component may declare its own' }),
  opt({ key: 'allocateNodeCidrs', flag: 'allocate-node-cidrs', env: 'PODWIRE_ALLOCATE_NODE_CIDRS', kind: 'bool', default: false, help: 'allocate Nodes\' spec.podCIDRs from clusterCIDR (leader-elected over a Lease), for clusters without kube-controller-manager --allocate-node-cidrs',
    doc: 'opt-in: Podwire gives each Node without `spec.podCIDRs` the lowest free subnet of `clusterCIDR` (one per family), like kube-controller-manager\'s range allocator; one podwired at a time, elected over the Lease `<leaderElectionNamespace>/podwire-node-cidr-allocator`. Needs the Kubernetes source and the optional ClusterRole in `deploy/podwire-node-cidr-allocator.yaml` (see [overlay.md](overlay.md))' }),
  opt({ key: 'nodeCidrMaskSize', flag: 'node-cidr-mask-size', env: 'PODWIRE_NODE_CIDR_MASK_SIZE', kind: 'int', default: 24, help: 'per-node IPv4 pod CIDR prefix length with --allocate-node-cidrs', validate: (v) => intRange('nodeCidrMaskSize', v ?? 24, 8, 30),
    doc: 'prefix length of each Node\'s IPv4 pod CIDR when Podwire allocates (kube-controller-manager `--node-cidr-mask-size-ipv4`)' }),
  opt({ key: 'nodeCidrMaskSizeIpv6', flag: 'node-cidr-mask-size-ipv6', env: 'PODWIRE_NODE_CIDR_MASK_SIZE_IPV6', kind: 'int', default: 64, help: 'per-node IPv6 pod CIDR prefix length with --allocate-node-cidrs', validate: (v) => intRange('nodeCidrMaskSizeIpv6', v ?? 64, 16, 126),
    doc: 'prefix length of each Node\'s IPv6 pod CIDR when Podwire allocates (`--node-cidr-mask-size-ipv6`)' }),
  opt({ key: 'nodeCidrReleaseGrace', flag: 'node-cidr-release-grace', env: 'PODWIRE_NODE_CIDR_RELEASE_GRACE', kind: 'duration', default: 300_000, help: 'how long a deleted Node\'s pod CIDR stays reserved before reuse (e.g. 5m)', validate: (v) => nonNegative('nodeCidrReleaseGrace', v ?? 0),
    doc: 'a deleted Node\'s pod CIDR is handed out again only after this long, so packets in flight and stale routes on other nodes for the old Node never reach a new one' }),
  opt({ key: 'leaderElectionNamespace', flag: 'leader-election-namespace', env: 'PODWIRE_LEADER_ELECTION_NAMESPACE', kind: 'string', default: 'kube-system', help: 'namespace of the node CIDR allocator\'s Lease', validate: (v) => { if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(v ?? '')) throw new InvalidInputError('leaderElectionNamespace', v, 'must be a namespace name (RFC 1123 label)'); },
    doc: 'namespace of the Lease `podwire-node-cidr-allocator` (and where the optional ClusterRole\'s RoleBinding grants `leases`)' }),
  // kube-controller-manager's flag names and defaults; tests shorten them to see a takeover in seconds.
  opt({ key: 'leaderElectionLeaseDuration', flag: 'leader-election-lease-duration', env: 'PODWIRE_LEADER_ELECTION_LEASE_DURATION', kind: 'duration', default: 15_000, help: 'how long a candidate waits after the Lease\'s last renew before it takes over (e.g. 15s)', validate: (v) => positive('leaderElectionLeaseDuration', v ?? 15_000),
    doc: 'the node CIDR allocator\'s lease duration: a candidate takes over a Lease whose record has not changed for this long (by its own clock), so a leader killed with `kill -9` is replaced about this long (plus up to one retry period) after its last renew; must be > `leaderElectionRenewDeadline`' }),
  opt({ key: 'leaderElectionRenewDeadline', flag: 'leader-election-renew-deadline', env: 'PODWIRE_LEADER_ELECTION_RENEW_DEADLINE', kind: 'duration', default: 10_000, help: 'how long the leader tries to renew before it stops allocating (e.g. 10s)', validate: (v) => positive('leaderElectionRenewDeadline', v ?? 10_000),
    doc: 'the leader stops allocating when no renew succeeded for this long, before the lease can expire for the others; must be > `leaderElectionRetryPeriod`' }),
  opt({ key: 'leaderElectionRetryPeriod', flag: 'leader-election-retry-period', env: 'PODWIRE_LEADER_ELECTION_RETRY_PERIOD', kind: 'duration', default: 2_000, help: 'time between two acquire or renew attempts (e.g. 2s)', validate: (v) => positive('leaderElectionRetryPeriod', v ?? 2_000),
    doc: 'time between two attempts to acquire or renew the Lease (candidates add up to 20 % jitter)' }),
];

/**
 * Checks across keys, run after every option validated on its own. Each names the key
 * it reports on (for the "set by" origin).
 */
const CROSS_CHECKS: readonly { key: ConfigKey; check: (c: DaemonConfig) => void }[] = [
  { key: 'serviceCIDR', check: checkServiceOverlap },
  { key: 'syncInterval', check: checkSyncIntervals },
  { key: 'dnsListen', check: checkDnsListenEnabled },
  {
    key: 'allocateNodeCidrs',
    check: (c) => {
      if (c.allocateNodeCidrs && c.manifests) throw new InvalidInputError('allocateNodeCidrs', true, 'needs the Kubernetes API (a manifest folder is read-only)');
    },
  },
  // client-go's rule (and LeaderElector's): leaseDuration > renewDeadline > retryPeriod.
  {
    key: 'leaderElectionLeaseDuration',
    check: (c) => {
      const lease = c.leaderElectionLeaseDuration ?? 15_000;
      const renew = c.leaderElectionRenewDeadline ?? 10_000;
      if (!(lease > renew)) throw new InvalidInputError('leaderElectionLeaseDuration', formatDuration(lease), `must be > leaderElectionRenewDeadline (${formatDuration(renew)})`);
    },
  },
  {
    key: 'leaderElectionRenewDeadline',
    check: (c) => {
      const renew = c.leaderElectionRenewDeadline ?? 10_000;
      const retry = c.leaderElectionRetryPeriod ?? 2_000;
      if (!(renew > retry)) throw new InvalidInputError('leaderElectionRenewDeadline', formatDuration(renew), `must be > leaderElectionRetryPeriod (${formatDuration(retry)})`);
    },
  },
  {
    key: 'manifests',
    check: (c) => {
      if (c.kubeconfig && c.manifests) throw new InvalidInputError('manifests', c.manifests, 'set either kubeconfig or manifests, not both');
    },
  },
];

const BY_KEY = new Map(OPTIONS.map((o) => [o.key, o]));

/** What the command line asks for besides configuration. */
export interface DaemonActions {
  printConfig: boolean;
  cleanup: boolean;
  help: boolean;
  version: boolean;
}

/** A component's section after loading: its raw values by key, where each came from, and the built section. */
export interface LoadedSection {
  section: ConfigSection<unknown>;
  values: Record<string, unknown>;
  origins: Record<string, ValueOrigin>;
  built: unknown;
}

export interface LoadedConfig {
  config: DaemonConfig;
  actions: DaemonActions;
  /** Where each key's value came from. */
  origins: Record<ConfigKey, ValueOrigin>;
  /** The config file that was read, if any. */
  configFile: string | undefined;
  /** The components' sections by section name, built (handed to `ComponentContext.section`). */
  sections: Record<string, unknown>;
  /** The same sections with their values and origins (for --print-config). */
  sectionDetails: LoadedSection[];
}

export interface LoadOptions {
  argv: readonly string[];
  env: Readonly<Record<string, string | undefined>>;
  /** Injected for tests; defaults to fs.readFileSync(path, 'utf8'). */
  readFile?: (file: string) => string;
  /**
   * The components' config sections; default: those of `defaultRegistrations()`.
   * Pass the sections of the registrations the daemon will run.
   */
  sections?: readonly ConfigSection<unknown>[];
}

/** One value before coercion, with where it came from. */
interface RawValue {
  raw: unknown;
  origin: ValueOrigin;
  /** For messages: `--flag`, `PODWIRE_X` or `<file>: key`. */
  where: string;
}

/** The common shape of a flat option and a section option, for parsing and coercion. */
interface Field {
  /** Unique id: the flat key, or `<section>.<key>`. */
  id: string;
  flag: string;
  env: string;
  kind: Kind;
}

type RawLayer = Map<string, unknown>;

/** The sections of the built-in registrations (lazily: registry.ts imports the components, which import this file). */
function defaultSections(): ConfigSection<unknown>[] {
  const { defaultRegistrations } = require('./registry') as typeof import('./registry');
  return sectionsOf(defaultRegistrations());
}

/** The distinct sections of a list of registrations, in order. */
export function sectionsOf(regs: readonly { section?: ConfigSection<unknown> | undefined }[]): ConfigSection<unknown>[] {
  const out: ConfigSection<unknown>[] = [];
  for (const r of regs) {
    const s = r.section;
    if (s && !out.includes(s)) out.push(s);
  }
  return out;
}

const ENV_NAME = /^PODWIRE_[A-Z0-9_]+$/;
const FLAG_NAME = /^[a-z][a-z0-9-]*$/;
const RESERVED_FLAGS = ['config', 'print-config', 'cleanup', 'help', 'version'];

/** Every field (flat and sectioned), checking that flags, env names and keys are unique. */
function allFields(sections: readonly ConfigSection<unknown>[]): { fields: Field[]; sectionFields: Map<ConfigSection<unknown>, (Field & { option: SectionOption })[]> } {
  const fields: Field[] = OPTIONS.map((o) => ({ id: o.key, flag: o.flag, env: o.env, kind: o.kind }));
  const flags = new Map<string, string>(RESERVED_FLAGS.map((f) => [f, 'podwired']));
  const envs = new Map<string, string>([['PODWIRE_CONFIG', 'podwired']]);
  for (const f of fields) {
    flags.set(f.flag, f.id);
    envs.set(f.env, f.id);
  }
  const sectionFields = new Map<ConfigSection<unknown>, (Field & { option: SectionOption })[]>();
  const names = new Set<string>();
  for (const section of sections) {
    const bad = (reason: string) => new InvalidInputError('section', section.name, reason);
    if (!/^[a-z][a-zA-Z0-9]*$/.test(section.name)) throw bad('a section name is a lower-camel-case word');
    if (names.has(section.name) || BY_KEY.has(section.name as ConfigKey)) throw bad('declared twice (or clashes with a daemon-wide key)');
    names.add(section.name);
    const list: (Field & { option: SectionOption })[] = [];
    const keys = new Set<string>();
    for (const o of section.options) {
      const id = `${section.name}.${o.key}`;
      if (!/^[a-zA-Z][a-zA-Z0-9]*(\.[a-zA-Z][a-zA-Z0-9]*)*$/.test(o.key) || keys.has(o.key)) throw bad(`option key "${o.key}" is not a unique dotted key`);
      for (const k of keys) {
        if (k.startsWith(`${o.key}.`) || o.key.startsWith(`${k}.`)) throw bad(`option keys "${k}" and "${o.key}" overlap`);
      }
      keys.add(o.key);
      if (!FLAG_NAME.test(o.flag) || o.flag.startsWith('no-')) throw bad(`flag "--${o.flag}" is not a lower-case flag name`);
      if (flags.has(o.flag)) throw bad(`flag --${o.flag} of ${id} is already used by ${flags.get(o.flag)}`);
      if (!ENV_NAME.test(o.env)) throw bad(`environment variable "${o.env}" of ${id} must match PODWIRE_[A-Z0-9_]+`);
      if (envs.has(o.env)) throw bad(`environment variable ${o.env} of ${id} is already used by ${envs.get(o.env)}`);
      flags.set(o.flag, id);
      envs.set(o.env, id);
      const f = { id, flag: o.flag, env: o.env, kind: o.kind, option: o };
      list.push(f);
      fields.push(f);
    }
    sectionFields.set(section, list);
  }
  return { fields, sectionFields };
}

/** Parse flags, env and the file, merge by precedence, validate, build the sections. Throws InvalidInputError. */
export function loadConfig(options: LoadOptions): LoadedConfig {
  const readFile = options.readFile ?? ((f: string) => readFileSync(f, 'utf8'));
  const sections = options.sections ?? defaultSections();
  const { fields, sectionFields } = allFields(sections);
  const { layer: flagLayer, configPath: flagConfig, actions } = parseFlags(options.argv, fields);
  const envLayer = parseEnv(options.env, fields);

  const explicitConfig = flagConfig ?? options.env.PODWIRE_CONFIG;
  const configFile = explicitConfig ?? DEFAULT_CONFIG_FILE;
  let fileLayer: RawLayer = new Map();
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
    fileLayer = parseConfigFile(configFile, text, sections);
    fileRead = configFile;
  }

  const pick = (f: Field): RawValue | undefined => {
    if (flagLayer.has(f.id)) return { raw: flagLayer.get(f.id), origin: 'flag', where: `--${f.flag}` };
    if (envLayer.has(f.id)) return { raw: envLayer.get(f.id), origin: 'env', where: f.env };
    if (fileLayer.has(f.id)) return { raw: fileLayer.get(f.id), origin: 'file', where: `${configFile}: ${f.id}` };
    return undefined;
  };

  const origins = {} as Record<ConfigKey, ValueOrigin>;
  const merged = {} as Record<ConfigKey, unknown>;
  for (const spec of OPTIONS) {
    const hit = pick({ id: spec.key, flag: spec.flag, env: spec.env, kind: spec.kind });
    if (hit) {
      merged[spec.key] = coerce(spec.key, spec.kind, hit.raw, hit.where, spec.key === 'nodeName');
      origins[spec.key] = hit.origin;
    } else {
      merged[spec.key] = copyDefault(spec.default);
      origins[spec.key] = 'default';
    }
  }
  const config = merged as unknown as DaemonConfig;
  validateConfig(config, origins, actions);

  // Sections: after every daemon-wide option is valid, so `build` may rely on them.
  const built: Record<string, unknown> = {};
  const details: LoadedSection[] = [];
  for (const section of sections) {
    const values: Record<string, unknown> = {};
    const sOrigins: Record<string, ValueOrigin> = {};
    for (const f of sectionFields.get(section) ?? []) {
      const hit = pick(f);
      if (hit) {
        values[f.option.key] = coerce(f.id, f.kind, hit.raw, hit.where, false);
        sOrigins[f.option.key] = hit.origin;
      } else {
        values[f.option.key] = copyDefault(f.option.default);
        sOrigins[f.option.key] = 'default';
      }
    }
    built[section.name] = buildSection(section, values, config, sOrigins);
    details.push({ section, values, origins: sOrigins, built: built[section.name] });
  }
  return { config, actions, origins, configFile: fileRead, sections: built, sectionDetails: details };
}

/**
 * A section built from its defaults only (no flags, env or file): for daemons built in
 * code (tests) without loadConfig. Throws like loadConfig when the defaults are invalid.
 */
export function buildSectionDefaults<S>(section: ConfigSection<S>, config: DaemonConfig): S {
  const values: Record<string, unknown> = {};
  const origins: Record<string, ValueOrigin> = {};
  for (const o of section.options) {
    values[o.key] = copyDefault(o.default);
    origins[o.key] = 'default';
  }
  return buildSection(section as ConfigSection<unknown>, values, config, origins) as S;
}

function buildSection(section: ConfigSection<unknown>, values: Record<string, unknown>, config: DaemonConfig, origins: Record<string, ValueOrigin>): unknown {
  try {
    return section.build(Object.freeze({ ...values }), config);
  } catch (err) {
    if (!(err instanceof InvalidInputError)) throw err;
    // The field is `<section>.<key>` (or just `<key>`); the option says where its value came from.
    const field = err.field ?? '';
    const key = field.startsWith(`${section.name}.`) ? field.slice(section.name.length + 1) : field;
    const o = section.options.find((x) => x.key === key);
    if (o) throw originError(err, `${section.name}.${o.key}`, o.flag, o.env, origins[o.key]);
    if (field === section.name || field.startsWith(`${section.name}.`)) throw err;
    throw new InvalidInputError(`${section.name}.${field || '?'}`, err.value, err.message.replace(/^invalid [^:]*: /, ''), err);
  }
}

function copyDefault(v: unknown): unknown {
  return Array.isArray(v) ? [...(v as unknown[])] : v;
}

/**
 * Run every option's validator (normalising values in place), then the cross-key
 * checks. Each validator sees only its own value, so the order of the table does not
 * matter.
 */
export function validateConfig(
  config: DaemonConfig,
  origins?: Partial<Record<ConfigKey, ValueOrigin>>,
  actions?: Partial<DaemonActions>,
): DaemonConfig {
  const mutable = config as unknown as Record<ConfigKey, unknown>;
  for (const spec of OPTIONS) {
    if (spec.key === 'nodeName' && (actions?.printConfig || actions?.help || actions?.version) && !config.nodeName) continue;
    try {
      const out = (spec.validate as ((v: unknown) => unknown) | undefined)?.(mutable[spec.key]);
      if (out !== undefined) mutable[spec.key] = out;
    } catch (err) {
      throw withOrigin(err, spec, origins?.[spec.key]);
    }
  }
  for (const { key, check } of CROSS_CHECKS) {
    try {
      check(config);
    } catch (err) {
      throw withOrigin(err, BY_KEY.get(key)!, origins?.[key]);
    }
  }
  return config;
}

function withOrigin(err: unknown, spec: AnyOption, origin: ValueOrigin | undefined): unknown {
  if (!(err instanceof InvalidInputError) || origin === undefined) return err;
  return originError(err, err.field ?? spec.key, spec.flag, spec.env, origin);
}

function originError(err: InvalidInputError, field: string, flag: string, env: string, origin: ValueOrigin | undefined): InvalidInputError {
  if (origin === undefined) return err;
  const where = origin === 'flag' ? `--${flag}` : origin === 'env' ? env : origin === 'file' ? 'the config file' : 'the default';
  const reason = err.message.replace(/^invalid [^:]*: /, '');
  return new InvalidInputError(field, err.value, `${reason} (set by ${where})`, err);
}

function parseFlags(argv: readonly string[], fields: readonly Field[]): { layer: RawLayer; configPath: string | undefined; actions: DaemonActions } {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = {
    config: { type: 'string' },
    'print-config': { type: 'boolean' },
    cleanup: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
    version: { type: 'boolean' },
  };
  for (const f of fields) {
    options[f.flag] = f.kind === 'bool' ? { type: 'boolean' } : { type: 'string', ...(f.kind === 'list' ? { multiple: true } : {}) };
  }
  let values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  let positionals: string[];
  try {
    // allowNegative: `--no-<flag>` for bool options.
    ({ values, positionals } = parseArgs({ args: [...argv], options, strict: true, allowPositionals: true, allowNegative: true }));
  } catch (err) {
    const flag = /'([^']+)'/.exec(errorMessage(err))?.[1] ?? argv.join(' ');
    throw new InvalidInputError('flag', flag, errorMessage(err).split('\n')[0] ?? 'bad flag', err);
  }
  if (positionals.length > 0) throw new InvalidInputError('argument', positionals[0], 'podwired takes no positional arguments');
  for (const a of ['print-config', 'cleanup', 'help', 'version']) {
    if (values[a] === false) throw new InvalidInputError('flag', `--no-${a}`, `Unknown option '--no-${a}'`);
  }
  const layer: RawLayer = new Map();
  for (const f of fields) {
    const v = values[f.flag];
    if (v === undefined) continue;
    if (typeof v === 'boolean' && f.kind !== 'bool') throw new InvalidInputError('flag', `--no-${f.flag}`, `Unknown option '--no-${f.flag}' (--${f.flag} takes a value)`);
    layer.set(f.id, v);
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

function parseEnv(env: Readonly<Record<string, string | undefined>>, fields: readonly Field[]): RawLayer {
  const layer: RawLayer = new Map();
  for (const f of fields) {
    const v = env[f.env];
    if (v !== undefined && v !== '') layer.set(f.id, v);
  }
  return layer;
}

function parseConfigFile(file: string, text: string, sections: readonly ConfigSection<unknown>[]): RawLayer {
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch (err) {
    throw new InvalidInputError('config', file, `not valid YAML: ${errorMessage(err).split('\n')[0]}`, err);
  }
  const layer: RawLayer = new Map();
  if (doc === null || doc === undefined) return layer;
  if (!isMapping(doc)) {
    throw new InvalidInputError('config', file, 'the config file must be a YAML mapping of key: value');
  }
  const byName = new Map(sections.map((s) => [s.name, s]));
  for (const [key, value] of Object.entries(doc)) {
    const section = byName.get(key);
    if (section) {
      if (value === null || value === undefined) continue;
      if (!isMapping(value)) throw new InvalidInputError(key, value, `in ${file}: the ${key} section must be a mapping of key: value`);
      readSection(file, section, value, '', layer);
      continue;
    }
    const spec = BY_KEY.get(key as ConfigKey);
    if (!spec) {
      const near = didYouMean(key, [...OPTIONS.map((o) => o.key), ...byName.keys()]);
      throw new InvalidInputError(key, value, `unknown key in ${file}${near ? ` (did you mean ${near}?)` : ''}`);
    }
    if (value !== null && value !== undefined) layer.set(spec.key, value);
  }
  return layer;
}

/** A section's mapping: nested mappings and dotted keys both reach `a.b.c`. */
function readSection(file: string, section: ConfigSection<unknown>, map: Record<string, unknown>, prefix: string, layer: RawLayer): void {
  const keys = section.options.map((o) => o.key);
  for (const [k, value] of Object.entries(map)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (keys.includes(key)) {
      if (value !== null && value !== undefined) layer.set(`${section.name}.${key}`, value);
      continue;
    }
    if (isMapping(value) && keys.some((o) => o.startsWith(`${key}.`))) {
      readSection(file, section, value, key, layer);
      continue;
    }
    const near = didYouMean(key, keys);
    throw new InvalidInputError(`${section.name}.${key}`, value, `unknown key in ${file}${near ? ` (did you mean ${section.name}.${near}?)` : ''}`);
  }
}

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The closest candidate by edit distance (case, `-` and `_` ignored), if close enough. */
export function didYouMean(input: string, candidates: readonly string[]): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/[-_]/g, '');
  const a = norm(input);
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(a, norm(c));
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best !== undefined && bestD <= Math.max(1, Math.floor(a.length / 3)) ? best : undefined;
}

/** Optimal string alignment distance: insertions, deletions, substitutions and adjacent transpositions. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** Turn a flag/env string or a YAML value into the option's type. */
function coerce(field: string, kind: Kind, raw: unknown, where: string, numberAsString: boolean): unknown {
  const bad = (reason: string) => new InvalidInputError(field, raw, `${reason} (set by ${where})`);
  switch (kind) {
    case 'string':
      if (typeof raw === 'string') return raw.trim();
      if (typeof raw === 'number' && numberAsString) return String(raw);
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
    case 'bool': {
      if (typeof raw === 'boolean') return raw;
      const s = typeof raw === 'string' ? raw.trim().toLowerCase() : undefined;
      if (s === 'true' || s === '1' || s === 'yes' || s === 'on') return true;
      if (s === 'false' || s === '0' || s === 'no' || s === 'off') return false;
      throw bad('expected true or false');
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

function checkServiceOverlap(config: DaemonConfig): void {
  const svc = validateCidrList('serviceCIDR', config.serviceCIDR);
  const pods = validateCidrList('clusterCIDR', config.clusterCIDR);
  for (const s of svc) {
    const clash = pods.find((p) => p.overlaps(s));
    if (clash) throw new InvalidInputError('serviceCIDR', config.serviceCIDR, `overlaps clusterCIDR ${clash.toString()}`);
  }
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

function validateDnsListen(v: string[]): string[] {
  for (const a of v) {
    const { port } = parseHostPort('dnsListen', a);
    if (port === 0) throw new InvalidInputError('dnsListen', a, 'a DNS server needs a fixed port');
  }
  return [...new Set(v)];
}

function checkDnsListenEnabled(config: DaemonConfig): void {
  if (config.dnsListen.length === 0 && config.enable.includes('dns')) {
    throw new InvalidInputError('dnsListen', config.dnsListen, 'at least one address is required when dns is enabled');
  }
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

function positive(key: ConfigKey, v: number): void {
  if (!(v > 0)) throw new InvalidInputError(key, formatDuration(v), 'must be positive');
}

function checkSyncIntervals(config: DaemonConfig): void {
  if (config.syncInterval < config.minSyncInterval) {
    throw new InvalidInputError(
      'syncInterval',
      formatDuration(config.syncInterval),
      `must be >= minSyncInterval (${formatDuration(config.minSyncInterval)})`,
    );
  }
}

// ---- output ---------------------------------------------------------------------

function display(kind: Kind, v: unknown): unknown {
  if (kind === 'duration' && typeof v === 'number') return formatDuration(v);
  return v ?? null;
}

/** The effective config as YAML, in option order, durations human-readable; sections nested under their names. */
export function renderConfig(config: DaemonConfig, origins?: Partial<Record<ConfigKey, ValueOrigin>>, sections: readonly LoadedSection[] = []): string {
  const doc = new YAML.Document({});
  const root = doc.contents as YAML.YAMLMap;
  const comment = (node: unknown, origin: ValueOrigin | undefined) => {
    if (origin && origin !== 'default') (node as { comment?: string }).comment = ` from ${origin}`;
  };
  for (const spec of OPTIONS) {
    const pair = doc.createPair(spec.key, display(spec.kind, config[spec.key]));
    comment(pair.value, origins?.[spec.key]);
    root.items.push(pair);
  }
  for (const s of sections) {
    if (s.section.options.length === 0) continue;
    const top = new YAML.YAMLMap();
    root.items.push(doc.createPair(s.section.name, top));
    for (const o of s.section.options) {
      const parts = o.key.split('.');
      let map = top;
      for (const part of parts.slice(0, -1)) {
        let next = map.get(part) as YAML.YAMLMap | undefined;
        if (!next) map.set(part, (next = new YAML.YAMLMap()));
        map = next;
      }
      const pair = doc.createPair(parts[parts.length - 1]!, display(o.kind, s.values[o.key]));
      comment(pair.value, s.origins[o.key]);
      map.items.push(pair);
    }
  }
  return doc.toString();
}

function defaultText(kind: Kind, v: unknown): string {
  if (kind === 'duration' && typeof v === 'number') return formatDuration(v);
  if (Array.isArray(v)) return v.join(',');
  return v === undefined || v === '' ? '' : String(v);
}

export function helpText(sections: readonly ConfigSection<unknown>[] = defaultSections()): string {
  const lines = [
    'Usage: podwired --node-name NAME [--config FILE] [--kubeconfig FILE | --manifests DIR] [options]',
    '',
    'Options (flag > environment > config file > default):',
  ];
  const entry = (flag: string, help: string, env: string, key: string, kind: Kind, def: unknown) => {
    const d = defaultText(kind, def);
    const f = kind === 'bool' ? `[no-]${flag}` : flag;
    if (f.length > 20) lines.push(`  --${f}`, `  ${''.padEnd(22)} ${help}`);
    else lines.push(`  --${f.padEnd(20)} ${help}`);
    lines.push(`  ${''.padEnd(22)} env ${env}, key ${key}${d !== '' ? `, default ${d}` : ''}`);
  };
  for (const spec of OPTIONS) entry(spec.flag, spec.help, spec.env, spec.key, spec.kind, spec.default);
  for (const section of sections) {
    if (section.options.length === 0) continue;
    lines.push('', `Section ${section.name} (config file: ${section.name}: { ... }):`);
    for (const o of section.options) entry(o.flag, o.help, o.env, `${section.name}.${o.key}`, o.kind, o.default);
  }
  lines.push(
    '',
    `  --${'config'.padEnd(20)} YAML config file (env PODWIRE_CONFIG, default ${DEFAULT_CONFIG_FILE}, optional)`,
    `  --${'print-config'.padEnd(20)} print the effective config as YAML and exit`,
    `  --${'cleanup'.padEnd(20)} remove everything Podwire programmed on this node and exit`,
    `  --${'help'.padEnd(20)} this text`,
  );
  return lines.join('\n') + '\n';
}

/**
 * The generated part of docs/configuration.md: the daemon-wide key table and one table
 * per section, from the same tables the loader uses (scripts/gen-config-docs.js writes
 * it between the markers; a unit test fails when the document drifts).
 */
export function configDocsTables(sections: readonly ConfigSection<unknown>[] = defaultSections()): string {
  const cell = (s: string) => s.replace(/\|/g, '\\|');
  const def = (kind: Kind, v: unknown, key: string) => {
    if (key === 'nodeName') return '(required)';
    if (key === 'kubeconfig') return 'in-cluster';
    if (key === 'cniBinSource') return 'the built shim';
    const d = defaultText(kind, v);
    return d === '' ? 'unset' : `\`${d}\``;
  };
  const flagCell = (flag: string, kind: Kind) => (kind === 'bool' ? `\`--${flag}\`, \`--no-${flag}\`` : kind === 'list' ? `\`--${flag}\` (repeatable)` : `\`--${flag}\``);
  const envCell = (env: string, kind: Kind) => (kind === 'list' ? `\`${env}\` (comma-separated)` : `\`${env}\``);
  const out: string[] = [
    '| file key | flag | environment | default | meaning |',
    '| --- | --- | --- | --- | --- |',
    ...OPTIONS.map((o) => `| \`${o.key}\` | ${flagCell(o.flag, o.kind)} | ${envCell(o.env, o.kind)} | ${def(o.kind, o.default, o.key)} | ${cell(o.doc ?? o.help)} |`),
  ];
  for (const section of sections) {
    if (section.options.length === 0) continue;
    out.push(
      '',
      `### Section \`${section.name}\``,
      '',
      `In the file: \`${section.name}:\` followed by a mapping; dotted keys nest (\`a.b\` is \`a: { b: ... }\`).`,
      '',
      '| file key | flag | environment | kind | default | meaning |',
      '| --- | --- | --- | --- | --- | --- |',
      ...section.options.map(
        (o) => `| \`${section.name}.${o.key}\` | ${flagCell(o.flag, o.kind)} | ${envCell(o.env, o.kind)} | ${o.kind} | ${def(o.kind, o.default, '')} | ${cell(o.help)} |`,
      ),
    );
  }
  return out.join('\n') + '\n';
}

export const DOCS_BEGIN = '<!-- BEGIN GENERATED: npm run gen:config-docs (scripts/gen-config-docs.js) -->';
export const DOCS_END = '<!-- END GENERATED -->';

/** True for errors the operator must fix in the configuration (exit code 2). */
export function isConfigError(err: unknown): err is PodwireError {
  return err instanceof InvalidInputError;
}

function intRange(key: ConfigKey, v: number, min: number, max: number): void {
  if (!Number.isInteger(v) || v < min || v > max) throw new InvalidInputError(key, v, `must be an integer ${min}..${max}`);
}
