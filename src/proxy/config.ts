/**
 * The proxy's configuration section (`proxy:` in the config file, `--proxy-*` flags).
 *
 * minSyncPeriod defaults to 0, unlike kube-proxy's 1 s: our sync applies only the
 * map elements that changed (a one-endpoint change is one small transaction), and the
 * runner never overlaps runs, so a burst of events that arrives during a sync still
 * collapses into the next one. A non-zero value would only add latency to the ≤ 50 ms
 * "one endpoint change live" target.
 */
import { isIP } from 'node:net';
import { InvalidInputError } from '../common/errors';
import { Cidr } from '../common/ip';
import type { DaemonConfig } from '../daemon/config';
import { defineSection, type ConfigSection } from '../daemon/config-section';

export type ProxyModeName = 'nftables' | 'iptables' | 'ipvs';

export interface ProxySection {
  mode: ProxyModeName;
  minSyncPeriodMs: number;
  syncPeriodMs: number;
  masqueradeAll: boolean;
  /** CIDRs NodePorts answer on; empty = every local address except loopback. */
  nodePortAddresses: string[];
  /** One CIDR per family (from the daemon's clusterCIDR unless set here). */
  clusterCIDRs: string[];
  /** Service CIDRs (from the daemon's serviceCIDR). */
  serviceCIDRs: string[];
  /** `/healthz` + `/livez` listen address, kube-proxy's 0.0.0.0:10256; empty = off. */
  healthzBindAddress: string;
  /** Address the healthCheckNodePort servers bind to. */
  healthCheckBindAddress: string;
  /** fwmark bit for SNAT (kube-proxy: 14 = 0x4000). */
  masqueradeBit: number;
  /** nftables table name (family inet). */
  table: string;
  /** Services per transaction in a cold sync (the `default/kubernetes` Service always goes first). */
  coldChunk: number;
  /** iptables mode: which iptables binaries (auto = iptables-legacy when installed, else iptables-nft). */
  iptablesBackend: 'auto' | 'legacy' | 'nft';
  /** ipvs mode: the IPVS scheduler of every virtual server (kube-proxy's --ipvs-scheduler). */
  ipvsScheduler: string;
  /**
   * ipvs mode: net.ipv4.conf.all.arp_ignore=1 / arp_announce=2 in the node namespace, so the
   * VIPs bound on the VIP device are not answered for (nor announced) on the underlay
   * (kube-proxy's --ipvs-strict-arp). On by default, unlike kube-proxy: off, the sysctls are
   * left as they are (the kernel's default answers ARP for every local address on every link).
   */
  ipvsStrictARP: boolean;
}

export const PROXY_DEFAULTS = {
  minSyncPeriodMs: 0,
  syncPeriodMs: 30_000,
  healthzBindAddress: '0.0.0.0:10256',
  masqueradeBit: 14,
  table: 'podwire',
  coldChunk: 2500,
  ipvsScheduler: 'rr',
} as const;

/** The schedulers the kernel ships (ip_vs_<name>.ko). */
export const IPVS_SCHEDULERS = ['rr', 'wrr', 'lc', 'wlc', 'lblc', 'lblcr', 'dh', 'sh', 'sed', 'nq', 'fo', 'ovf', 'mh', 'twos'] as const;

function ipvsScheduler(v: string): string {
  if (!(IPVS_SCHEDULERS as readonly string[]).includes(v)) throw new InvalidInputError('proxy.ipvsScheduler', v, `expected one of ${IPVS_SCHEDULERS.join(', ')}`);
  return v;
}

function cidrs(field: string, list: string[]): string[] {
  return list.map((c) => {
    try {
      return Cidr.parse(c).toString();
    } catch {
      throw new InvalidInputError(field, c, 'expected a CIDR such as 10.244.0.0/16');
    }
  });
}

function hostPort(field: string, v: string): string {
  if (v === '') return v;
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(v);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!m || !host || isIP(host) === 0 || !(port >= 0 && port <= 65535)) throw new InvalidInputError(field, v, 'expected ADDR:PORT');
  return v;
}

function iptablesBackend(v: string): 'auto' | 'legacy' | 'nft' {
  if (v !== 'auto' && v !== 'legacy' && v !== 'nft') throw new InvalidInputError('proxy.iptablesBackend', v, 'expected auto | legacy | nft');
  return v;
}

/** Build a section from plain values (defaults for anything missing); used by the section and by tests. */
export function buildProxySection(values: Readonly<Record<string, unknown>>, config: Pick<DaemonConfig, 'proxyMode' | 'clusterCIDR' | 'serviceCIDR'>): ProxySection {
  const str = (k: string): string | undefined => (typeof values[k] === 'string' && values[k] !== '' ? (values[k] as string) : undefined);
  const list = (k: string): string[] | undefined => (Array.isArray(values[k]) ? (values[k] as string[]).filter((x) => x !== '') : undefined);
  const num = (k: string, d: number): number => (typeof values[k] === 'number' ? (values[k] as number) : d);
  // The mode is the daemon-wide --proxy-mode (file key proxyMode); the section does not repeat it.
  const mode = (str('mode') ?? config.proxyMode ?? 'nftables') as ProxyModeName;
  if (!['nftables', 'iptables', 'ipvs'].includes(mode)) throw new InvalidInputError('proxy.mode', mode, 'expected nftables | iptables | ipvs');
  const minSyncPeriodMs = num('minSyncPeriod', PROXY_DEFAULTS.minSyncPeriodMs);
  const syncPeriodMs = num('syncPeriod', PROXY_DEFAULTS.syncPeriodMs);
  if (!(minSyncPeriodMs >= 0)) throw new InvalidInputError('proxy.minSyncPeriod', minSyncPeriodMs, 'must be >= 0');
  if (!(syncPeriodMs >= Math.max(1, minSyncPeriodMs))) throw new InvalidInputError('proxy.syncPeriod', syncPeriodMs, 'must be >= minSyncPeriod and > 0');
  const bit = num('masqueradeBit', PROXY_DEFAULTS.masqueradeBit);
  if (!(Number.isInteger(bit) && bit >= 0 && bit <= 31)) throw new InvalidInputError('proxy.masqueradeBit', bit, 'expected 0..31');
  const table = str('table') ?? PROXY_DEFAULTS.table;
  if (!/^[A-Za-z][A-Za-z0-9_-]{0,30}$/.test(table)) throw new InvalidInputError('proxy.table', table, 'expected a short nft table name');
  const clusterCIDRs = cidrs('proxy.clusterCIDR', list('clusterCIDR') ?? (str('clusterCIDR') ?? config.clusterCIDR ?? '').split(',').filter((x) => x !== ''));
  const serviceCIDRs = cidrs('proxy.serviceCIDR', (config.serviceCIDR ?? '').split(',').filter((x) => x !== ''));
  return {
    mode,
    minSyncPeriodMs,
    syncPeriodMs,
    masqueradeAll: values.masqueradeAll === true,
    nodePortAddresses: cidrs('proxy.nodePortAddresses', list('nodePortAddresses') ?? []),
    clusterCIDRs,
    serviceCIDRs,
    healthzBindAddress: hostPort('proxy.healthzBindAddress', typeof values.healthzBindAddress === 'string' ? values.healthzBindAddress : PROXY_DEFAULTS.healthzBindAddress),
    healthCheckBindAddress: str('healthCheckBindAddress') ?? '0.0.0.0',
    masqueradeBit: bit,
    table,
    coldChunk: Math.max(1, num('coldChunk', PROXY_DEFAULTS.coldChunk)),
    iptablesBackend: iptablesBackend(str('iptablesBackend') ?? 'auto'),
    ipvsScheduler: ipvsScheduler(str('ipvsScheduler') ?? PROXY_DEFAULTS.ipvsScheduler),
    ipvsStrictARP: values.ipvsStrictARP !== false,
  };
}

export const proxySection: ConfigSection<ProxySection> = defineSection<ProxySection>({
  name: 'proxy',
  options: [
    { key: 'minSyncPeriod', flag: 'proxy-min-sync-period', env: 'PODWIRE_PROXY_MIN_SYNC_PERIOD', kind: 'duration', default: PROXY_DEFAULTS.minSyncPeriodMs, help: 'least time between two proxy syncs (0: every change at once; syncs are incremental)' },
    { key: 'syncPeriod', flag: 'proxy-sync-period', env: 'PODWIRE_PROXY_SYNC_PERIOD', kind: 'duration', default: PROXY_DEFAULTS.syncPeriodMs, help: 'periodic proxy resync interval' },
    { key: 'masqueradeAll', flag: 'proxy-masquerade-all', env: 'PODWIRE_PROXY_MASQUERADE_ALL', kind: 'bool', default: false, help: 'SNAT all Service traffic' },
    { key: 'nodePortAddresses', flag: 'proxy-nodeport-addresses', env: 'PODWIRE_PROXY_NODEPORT_ADDRESSES', kind: 'list', default: [], help: 'CIDRs NodePorts answer on (default: all local addresses but loopback)' },
    { key: 'clusterCIDR', flag: 'proxy-cluster-cidr', env: 'PODWIRE_PROXY_CLUSTER_CIDR', kind: 'string', default: '', help: 'pod CIDR(s) for masquerade decisions (default: --cluster-cidr)' },
    { key: 'healthzBindAddress', flag: 'proxy-healthz-bind-address', env: 'PODWIRE_PROXY_HEALTHZ_BIND_ADDRESS', kind: 'string', default: PROXY_DEFAULTS.healthzBindAddress, help: 'kube-proxy style /healthz and /livez ADDR:PORT (empty: off)' },
    { key: 'iptablesBackend', flag: 'proxy-iptables-backend', env: 'PODWIRE_PROXY_IPTABLES_BACKEND', kind: 'string', default: 'auto', help: 'iptables mode: auto (iptables-legacy when installed, else iptables-nft) | legacy | nft' },
    { key: 'ipvsScheduler', flag: 'proxy-ipvs-scheduler', env: 'PODWIRE_PROXY_IPVS_SCHEDULER', kind: 'string', default: PROXY_DEFAULTS.ipvsScheduler, help: 'ipvs mode: IPVS scheduler (rr, wrr, lc, wlc, sh, mh, ...)' },
    { key: 'ipvsStrictARP', flag: 'proxy-ipvs-strict-arp', env: 'PODWIRE_PROXY_IPVS_STRICT_ARP', kind: 'bool', default: true, help: 'ipvs mode: arp_ignore=1, arp_announce=2 in the node namespace, so the VIPs are not answered for by ARP on the underlay (kube-proxy --ipvs-strict-arp; off: the sysctls are left as they are)' },
    { key: 'masqueradeBit', flag: 'proxy-masquerade-bit', env: 'PODWIRE_PROXY_MASQUERADE_BIT', kind: 'int', default: PROXY_DEFAULTS.masqueradeBit, help: 'fwmark bit for SNAT (kube-proxy: 14 = 0x4000)' },
  ],
  build: (values, config) => buildProxySection(values, config),
});
