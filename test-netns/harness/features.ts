/**
 * Kernel feature probes, so tests for features this kernel lacks (IPVS, WireGuard, IPIP, dummy
 * on this machine) skip with a clear reason instead of failing. Each probe runs once per process
 * inside a scratch lab namespace (never in the root namespace); results are cached.
 */
import { exec } from './exec';
import { Lab } from './lab';

export type KernelFeature =
  | 'veth'
  | 'bridge'
  | 'vxlan'
  | 'ifb'
  | 'dummy'
  | 'ipip'
  | 'wireguard'
  | 'ipvs'
  | 'nftables'
  | 'iptables'
  | 'iptables-legacy'
  | 'conntrack'
  | 'ipset';

const LINK_ARGS: Partial<Record<KernelFeature, string[]>> = {
  veth: ['type', 'veth', 'peer', 'name', 'pwprobe1'],
  bridge: ['type', 'bridge'],
  vxlan: ['type', 'vxlan', 'id', '1', 'dstport', '4789'],
  ifb: ['type', 'ifb'],
  dummy: ['type', 'dummy'],
  ipip: ['type', 'ipip'],
  wireguard: ['type', 'wireguard'],
};

const COMMAND_PROBES: Partial<Record<KernelFeature, string[]>> = {
  ipvs: ['cat', '/proc/net/ip_vs'],
  nftables: ['nft', 'add', 'table', 'inet', 'pwprobe'],
  iptables: ['iptables', '-w', '5', '-A', 'INPUT', '-j', 'ACCEPT'],
  'iptables-legacy': ['iptables-legacy', '-w', '5', '-A', 'INPUT', '-j', 'ACCEPT'],
  conntrack: ['conntrack', '-L'],
  ipset: ['ipset', 'create', 'pwprobe', 'hash:ip'],
};

const cache = new Map<KernelFeature, Promise<string | null>>();

/** null when the feature works, else a one-line reason why not. */
export function probeFeature(feature: KernelFeature): Promise<string | null> {
  let p = cache.get(feature);
  if (!p) {
    p = runProbe(feature);
    cache.set(feature, p);
  }
  return p;
}

async function runProbe(feature: KernelFeature): Promise<string | null> {
  if (process.getuid?.() !== 0) return 'needs root';
  const lab = await Lab.create('pwl-probe', { sweep: true });
  try {
    const ns = await lab.addNetns(feature.replace(/[^a-z0-9]/g, ''));
    const link = LINK_ARGS[feature];
    const argv = link ? ['ip', 'link', 'add', 'pwprobe0', ...link] : COMMAND_PROBES[feature]!;
    const r = await exec(ns, argv, { timeoutMs: 10_000 });
    if (r.exitCode === 0) return null;
    return `kernel lacks ${feature}: \`${argv.join(' ')}\` failed: ${(r.stderr.trim() || `exit ${String(r.exitCode)}`).split('\n')[0]}`;
  } finally {
    await lab.cleanup();
  }
}

/** null when all features work, else the reasons of the missing ones joined by '; '. */
export async function missingFeatures(features: readonly KernelFeature[]): Promise<string | null> {
  const reasons = (await Promise.all(features.map(probeFeature))).filter((r): r is string => r !== null);
  return reasons.length ? reasons.join('; ') : null;
}
