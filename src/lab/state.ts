/**
 * What a running lab consists of, in one JSON file (`<state dir>/state.json`, default
 * /run/podwire-lab/state.json), so that `lab status`, `lab exec` and `lab down` work from later
 * processes, and `lab down` can remove everything after a crash or a Ctrl-C of `lab up`.
 *
 * `lab up` records every resource BEFORE it creates it (intent first) and rewrites the file
 * atomically after each step, so a SIGKILL at any point leaves a file naming at least what exists.
 * `lab down` additionally sweeps namespaces and /etc/netns dirs named `<prefix>-{sub,router,node,pod,outside,dns}-*`.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export const DEFAULT_STATE_DIR = '/run/podwire-lab';
export const DEFAULT_PREFIX = 'pwlab';
export const STATE_FILE = 'state.json';
export const STATE_VERSION = 1;
/** Lab prefixes: short, lower-case; the test uses `pwlt`. */
export const PREFIX_RE = /^[a-z][a-z0-9]{1,11}$/;

export interface DaemonRecord {
  node: string;
  ns: string;
  pid: number | undefined;
  socket: string;
  log: string;
  dir: string;
}

export interface ServerRecord {
  pod: string;
  ns: string;
  pid: number | undefined;
  log: string;
}

export interface NodeRecord {
  name: string;
  ns: string;
  subnet: string;
  ip: string;
  podCIDR: string;
  gateway: string;
  router: string;
}

export interface PodRecord {
  name: string;
  namespace: string;
  node: string;
  ns: string;
  /** Set once CNI ADD returned it. */
  ip: string | undefined;
  servers: { kind: string; port: number }[];
  containerId: string;
}

/** The "outside" namespace (the internet) and its HTTP server. */
export interface OutsideRecord {
  ns: string;
  ip: string;
  port: number;
  router: string;
}

/** An authoritative DNS server namespace (a stub domain's server). */
export interface DnsServerRecord {
  name: string;
  ns: string;
  ip: string;
  zone: string;
  records: Record<string, Record<string, string[]>>;
}

export interface LabState {
  version: number;
  prefix: string;
  stateDir: string;
  /** The lab's own copy of the manifest folder (what every podwired reads). */
  manifests: string;
  /** The folder `lab up --manifests` was given. */
  source: string;
  backend: string;
  proxyMode: string;
  clusterDomain: string;
  client: string;
  /** pid of the `lab up` that built it. */
  upPid: number;
  phase: 'building' | 'up' | 'failed';
  startedAt: string;
  /** Cross-node routes the lab added itself (fallback while podwired has no overlay component). */
  fallbackRoutes: string[];
  /** host-gw across subnets: the router's routes to each podCIDR (the underlay's job, as a cloud route table's). */
  underlayRoutes?: string[];
  /** podwired components present on every node (from their status), e.g. ['cni']. */
  components: string[];
  namespaces: string[];
  etcNetns: string[];
  nodes: NodeRecord[];
  pods: PodRecord[];
  daemons: DaemonRecord[];
  servers: ServerRecord[];
  /** Absent in a lab whose topology has no `outside` (and in state files of older labs). */
  outside?: OutsideRecord;
  dnsServers?: DnsServerRecord[];
}

export function statePath(stateDir: string): string {
  return path.join(stateDir, STATE_FILE);
}

export function readState(stateDir: string): LabState | undefined {
  const file = statePath(stateDir);
  if (!existsSync(file)) return undefined;
  const s = JSON.parse(readFileSync(file, 'utf8')) as LabState;
  if (s.version !== STATE_VERSION) throw new Error(`${file}: state version ${String(s.version)}, expected ${STATE_VERSION}`);
  return s;
}

/** Atomic write (temp file + rename in the same directory). */
export function writeState(s: LabState): void {
  mkdirSync(s.stateDir, { recursive: true });
  const file = statePath(s.stateDir);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(s, null, 2) + '\n', { mode: 0o600 });
  renameSync(tmp, file);
}

/** Namespace names: `<prefix>-sub-<subnet>`, `<prefix>-router`, `<prefix>-node-<node>`, `<prefix>-pod-<pod>`,
 *  `<prefix>-outside`, `<prefix>-dns-<server>`. */
export const nsNames = {
  subnet: (prefix: string, name: string) => `${prefix}-sub-${name}`,
  router: (prefix: string) => `${prefix}-router`,
  node: (prefix: string, name: string) => `${prefix}-node-${name}`,
  pod: (prefix: string, name: string) => `${prefix}-pod-${name}`,
  outside: (prefix: string) => `${prefix}-outside`,
  dns: (prefix: string, name: string) => `${prefix}-dns-${name}`,
};

/** Does `ns` look like one of this prefix's lab namespaces (not the demo's `<prefix>-<pid>-<seq>-*`)? */
export function isLabNamespace(prefix: string, ns: string): boolean {
  return ns === `${prefix}-router` || ns === `${prefix}-outside` || ['sub', 'node', 'pod', 'dns'].some((k) => ns.startsWith(`${prefix}-${k}-`));
}
