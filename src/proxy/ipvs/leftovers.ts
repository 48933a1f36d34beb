/**
 * Removing the ipvs mode's state (a switch to the nftables or iptables mode, `podwired
 * --cleanup`): our virtual servers (AF_INET and AF_INET6), the iptables and ip6tables chains
 * and jumps of rules.ts (both backends), the VIP device with its addresses, and our ipsets
 * (both families) (after the rules: a set an
 * iptables rule references cannot be destroyed). Sysctls are left as they are.
 *
 * Ours, and nothing else: a virtual server on an address of the VIP device, or on a node
 * address with a port of our NodePort sets or as a member of our external / LB IP sets; chains and sets by their PODWIRE-IPVS-* /
 * render.ts names. kube-proxy's (KUBE-*, kube-ipvs0) and anybody else's stay.
 *
 * A kernel without IPVS (no "IPVS" genetlink family, like this project's CI host) has no
 * virtual servers to remove: that part is skipped, the rest is still removed.
 */
import { KernelError, errorMessage } from '../../common/errors';
import type { Logger } from '../../common/log';
import type { Kernel } from '../../kernel';
import type { IptablesRunner } from '../../kernel/types';
import { NetlinkIpvs, type IpvsKernel, type IpvsService } from '../../kernel/ipvs';
import { NetnsIpset, parseIpsetSave, type IpsetRunner } from '../../kernel/ipset';
import { runners } from '../leftovers';
import { LEGACY_SETS, SET_TYPES, setsOf, VIP_DEVICE } from './render';
import { renderCleanup } from './rules';

export interface IpvsLeftoverDeps {
  /** Default: a NetlinkIpvs on the kernel's netns, opened only when there is something of ours. */
  ipvs?: IpvsKernel;
  /** Default: the ipset binary in the kernel's netns, likewise. */
  ipset?: IpsetRunner;
  /** Look for ipsets and virtual servers even without our VIP device or chains (the ipvs mode's own --cleanup). */
  always?: boolean;
}

export interface IpvsLeftovers {
  virtualServers: number;
  chains: number;
  sets: number;
  vipDevice: boolean;
  /** false: the kernel has no IPVS, no virtual server was looked for. */
  ipvs: boolean;
}

/** The sets that name a node-address virtual server of ours, per family and protocol. */
function ourSets(family: 4 | 6, protocol: string): string[] {
  const S = setsOf(family);
  const np: Record<string, string[]> = { tcp: [S.nodePortTCP, S.nodePortLocalTCP], udp: [S.nodePortUDP, S.nodePortLocalUDP], sctp: [S.nodePortSCTP, S.nodePortLocalSCTP] };
  return [...(np[protocol] ?? []), S.externalIP, S.loadBalancer];
}

export async function removeIpvsLeftovers(kernel: Kernel, logger: Logger, deps: IpvsLeftoverDeps = {}): Promise<IpvsLeftovers> {
  const out: IpvsLeftovers = { virtualServers: 0, chains: 0, sets: 0, vipDevice: false, ipvs: true };
  const attempt = async <T>(what: string, f: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await f();
    } catch (err) {
      logger.warn({ err: errorMessage(err) }, `removing the ipvs mode's leftovers: ${what} failed`);
      return undefined;
    }
  };
  // The cheap checks first (one rtnetlink request, the iptables-save the other modes run anyway):
  // without our VIP device and chains there is nothing of ours, and no ipset / IPVS call is made.
  const link = await attempt('reading the VIP device', () => kernel.net.getLink(VIP_DEVICE));
  const cleanups: { run: IptablesRunner; text: string }[] = [];
  for (const r of runners(kernel)) {
    const text = await attempt('iptables-save', async () => renderCleanup(await r.save('nat').catch(() => ''), await r.save('filter').catch(() => ''), await r.save('mangle').catch(() => '')));
    if (text) cleanups.push({ run: r, text });
  }
  if (!link && cleanups.length === 0 && !deps.always) return out;

  const vips = new Set<string>();
  if (link) for (const a of (await attempt('listing the VIPs', () => kernel.net.listAddresses(VIP_DEVICE))) ?? []) vips.add(a.cidr.ip.toString());
  const ipset = deps.ipset ?? new NetnsIpset(kernel.netns);
  const saved = parseIpsetSave((await attempt('ipset save', () => ipset.save())) ?? '');

  // Virtual servers: on a VIP, or on a node address with one of our NodePorts.
  const ipvs = deps.ipvs ?? new NetlinkIpvs(kernel.netns);
  try {
    let services: IpvsService[] | undefined;
    try {
      services = await ipvs.listServices();
    } catch (err) {
      if (err instanceof KernelError && /IPVS is not available/.test(err.message)) {
        out.ipvs = false;
        logger.debug({ err: err.message }, 'no IPVS in this kernel: no virtual server to remove');
      } else logger.warn({ err: errorMessage(err) }, "removing the ipvs mode's leftovers: listing the IPVS virtual servers failed");
    }
    if (services && services.length > 0) {
      const nodeAddrs = new Set(((await attempt('listing the node addresses', () => kernel.net.listAddresses())) ?? []).map((a) => a.cidr.ip.toString()));
      // On a node address: a NodePort of ours, or an external / LB IP that is the node's own
      // address (not bound on the VIP device, render.ts), found in our sets.
      const inOurSets = (s: IpvsService): boolean =>
        ourSets(s.family, s.protocol ?? '').some((n) => {
          const m = saved.get(n)?.members;
          return m !== undefined && (m.has(String(s.port)) || m.has(`${s.address ?? ''},${s.protocol ?? ''}:${s.port ?? ''}`));
        });
      const ours = services.filter((s) => s.fwmark === undefined && s.address !== undefined && (vips.has(s.address) || (nodeAddrs.has(s.address) && inOurSets(s))));
      if (ours.length > 0) {
        const r = await attempt('deleting the IPVS virtual servers', () => ipvs.apply(ours.map((service) => ({ op: 'delete' as const, entry: { kind: 'service' as const, service } }))));
        if (r) {
          out.virtualServers = ours.length - r.failed.length;
          for (const f of r.failed.slice(0, 5)) logger.warn({ err: f.message }, 'deleting an IPVS virtual server failed');
        }
      }
    }
  } finally {
    if (!deps.ipvs) ipvs.close();
  }

  const done = (f: () => Promise<unknown>) => async (): Promise<true> => {
    await f();
    return true;
  };
  for (const { run, text } of cleanups) {
    if (await attempt('removing the iptables rules', done(() => run.restore(text, { noflush: true })))) out.chains += (text.match(/^-X /gm) ?? []).length;
  }
  if (link && (await attempt('deleting the VIP device', done(() => kernel.net.deleteLink(VIP_DEVICE))))) out.vipDevice = true;
  const sets = [...Object.keys(SET_TYPES), ...LEGACY_SETS].filter((n) => saved.has(n));
  if (sets.length > 0 && (await attempt('destroying the ipsets', done(() => ipset.restore(sets.map((n) => `destroy ${n}`).join('\n')))))) out.sets = sets.length;
  if (out.virtualServers + out.chains + out.sets > 0 || out.vipDevice) logger.info({ ...out }, 'removed the ipvs-mode proxy state left from an earlier mode');
  return out;
}
