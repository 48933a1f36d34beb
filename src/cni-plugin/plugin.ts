/**
 * runCni: the whole plugin as one function of (env, stdin, deps). The in-process entry
 * (bin/podwire-cni) and the daemon's fast path both call exactly this.
 */
import { Cidr, IpAddress } from '../common/ip';
import { AlreadyExistsError, KernelError, errorMessage } from '../common/errors';
import type { AddressEntry, Link, NetnsRef, Route } from '../kernel/types';
import { decodeJson, isLocalIpam, parseNetConf, type NetConf } from './config';
import type { CniDeps } from './deps';
import { parseEnv, type CniEnv } from './env';
import { CniError, CniErrorCode, toCniErrorJson } from './errors';
import { delegate, ipamAdd, ipamDel, ipamUndo, withLockedStore, type IpamOutcome } from './ipam';
import { RangeAllocator } from './ipam/allocator';
import { ownerMatches } from './ipam/store';
import { removeChains, setupMasq, teardownMasq } from './masq';
import { MAX_STDIN_BYTES, requestTooLarge, sniffVersion } from './limits';
import { hostVethName, isHostVethName, masqChainName } from './names';
import { resultForVersion, type CniResult, type CniRoute } from './result';
import { configurePod, createVeth, ensureBridge, ensureGatewayAddress, randomMac, setHairpin } from './steps';
import { LATEST_VERSION, SUPPORTED_VERSIONS, compareVersions, isSupportedVersion, minimumVersionFor } from './version';

export interface CniOutput {
  exitCode: number;
  stdout: string;
}

export type EnvMap = Readonly<Record<string, string | undefined>>;

export async function runCni(envVars: EnvMap, stdin: Buffer, deps: CniDeps): Promise<CniOutput> {
  let version: string = LATEST_VERSION;
  try {
    if (stdin.length > MAX_STDIN_BYTES) {
      version = sniffVersion(stdin);
      throw requestTooLarge(stdin.length);
    }
    const env = parseEnv(envVars);
    if (env.command === 'VERSION') return ok(versionInfo(stdin));
    const conf = parseCached(stdin, deps, (v) => (version = v));
    if (compareVersions(conf.cniVersion, minimumVersionFor(env.command)) < 0) {
      throw new CniError(
        CniErrorCode.IncompatibleVersion,
        `config version ${conf.cniVersion} does not allow ${env.command}`,
        `${env.command} needs cniVersion >= ${minimumVersionFor(env.command)}`,
      );
    }
    // Only ADD/GC log along the way, and an ADD only when it rolls back: a child logger per
    // call is not free on the fast path, so it is made when first needed.
    let child: CniDeps['log'] | undefined;
    const log = (): CniDeps['log'] => (child ??= deps.log.child({ cmd: env.command, containerId: env.containerId, ifname: env.ifname }));
    switch (env.command) {
      case 'ADD':
        return ok(resultForVersion(await cmdAdd(conf, env, deps, stdin, log), conf.cniVersion));
      case 'DEL':
        await cmdDel(conf, env, deps, stdin);
        return { exitCode: 0, stdout: '' };
      case 'CHECK':
        await cmdCheck(conf, env, deps, stdin);
        return { exitCode: 0, stdout: '' };
      case 'GC':
        await cmdGc(conf, env, deps, stdin, log());
        return { exitCode: 0, stdout: '' };
      case 'STATUS':
        await cmdStatus(conf, env, deps, stdin);
        return { exitCode: 0, stdout: '' };
    }
  } catch (err) {
    const json = toCniErrorJson(err, version);
    deps.log.error({ code: json.code, err: errorMessage(err) }, 'CNI command failed');
    return { exitCode: 1, stdout: JSON.stringify(json) };
  }
}

/**
 * Decode + validate the config. A warm caller (the daemon) sees the same bytes for every
 * pod of a network, so the parsed config is reused by exact stdin text (NetConf is never
 * mutated). Failures are not cached.
 */
const PARSE_CACHE_MAX = 32;
function parseCached(stdin: Buffer, deps: CniDeps, onVersion: (v: string) => void): NetConf {
  const cache = deps.parsed;
  const key = cache ? stdin.toString('latin1') : '';
  const hit = cache?.get(key);
  if (hit) {
    onVersion(hit.cniVersion);
    return hit;
  }
  const raw = decodeJson(stdin);
  if (isSupportedVersion(raw.cniVersion)) onVersion(raw.cniVersion);
  const conf = parseNetConf(raw);
  if (cache) {
    if (cache.size >= PARSE_CACHE_MAX) cache.delete(cache.keys().next().value as string);
    cache.set(key, conf);
  }
  return conf;
}

function ok(body: unknown): CniOutput {
  return { exitCode: 0, stdout: JSON.stringify(body) };
}

function versionInfo(stdin: Buffer): unknown {
  let cniVersion: string = LATEST_VERSION;
  try {
    const v = (JSON.parse(stdin.toString('utf8')) as { cniVersion?: unknown }).cniVersion;
    if (isSupportedVersion(v)) cniVersion = v;
  } catch {
    /* VERSION may come with no stdin at all */
  }
  return { cniVersion, supportedVersions: [...SUPPORTED_VERSIONS] };
}

/**
 * CNI_NETNS as a netns reference, once it is known to be a network namespace: missing is
 * code 3 (the container is gone), anything else that is not a netns (a regular file, a
 * directory, /dev/null, a uts namespace, not openable) is code 4, invalid env.
 */
function podNetns(env: CniEnv, deps: CniDeps): NetnsRef {
  const check = deps.checkNetns({ path: env.netns });
  if (check.ok) return { path: env.netns };
  if (check.missing) throw new CniError(CniErrorCode.ContainerUnknown, `CNI_NETNS=${JSON.stringify(env.netns)} does not exist`);
  throw new CniError(CniErrorCode.InvalidEnv, `invalid CNI_NETNS=${JSON.stringify(env.netns)}: ${check.reason}`);
}

type Undo = () => Promise<unknown>;

/** The node side of an ADD: the bridge as found before, the host veth, the bridge after enslaving. */
interface NodeSide {
  bridge: Link;
  link: Link;
  bridgeNow: Link | undefined;
  /**
   * The node's addresses as the kernel has them now (isGateway: one RTM_GETADDR dump of the
   * gateways' family, in parallel with the hairpin and the bridge lookup). A gateway that is
   * there needs no RTM_NEWADDR, and a remembered "gateway ensured" never outlives the address.
   * Undefined: not listed (or the listing failed), then the gateway is added as before.
   */
  addrs: AddressEntry[] | undefined;
}

async function cmdAdd(conf: NetConf, env: CniEnv, deps: CniDeps, stdin: Buffer, log: () => CniDeps['log']): Promise<CniResult> {
  const podNs = podNetns(env, deps);
  // The pod's netlink socket is opened (on a thread that joins the netns) while the node
  // side is built and IPAM runs; the pod is then configured in one batch on it.
  const podOpen = deps.openPodKernel(podNs);
  podOpen.catch(() => undefined); // awaited below; never an unhandled rejection meanwhile
  const undo: Undo[] = [];
  const ensured = deps.ensured;
  const hostName = hostVethName(env.containerId, env.ifname);
  const plan = { hostName, podName: env.ifname, podNetns: podNs, mtu: conf.mtu, bridge: conf.bridge, hairpin: conf.hairpinMode, podMac: randomMac() };
  // The whole node side needs neither the IP nor the pod: bridge, then the veth pair
  // (pod end directly in the pod netns, host end up and enslaved, one round trip), then
  // hairpin and the bridge's MAC (it changes when a port joins) on two sockets. It runs
  // while IPAM does its file work.
  const host = await deps.hostKernel();
  let vethUndo = false;
  const attach = async (bridge: Link): Promise<NodeSide> => {
    let link: Link;
    try {
      link = await createVeth(host, plan, bridge.index);
    } catch (err) {
      // An existing CNI_IFNAME in the pod shows up here (EEXIST on the peer name), which
      // saves a lookup on every successful ADD.
      if (err instanceof AlreadyExistsError && err.value === env.ifname) {
        throw new CniError(CniErrorCode.AlreadyExists, `interface ${JSON.stringify(env.ifname)} already exists in ${env.netns}`);
      }
      throw err;
    }
    if (!vethUndo) undo.push(() => host.deleteLink(hostName));
    vethUndo = true;
    const other = await deps.hostKernel();
    const third = conf.isGateway ? await deps.hostKernel() : undefined;
    // One family: the kernel filters the dump (the IPv6 link-local of every pod's veth stays out).
    const families = new Set(conf.ipam.rangeSets.map((s) => s[0]?.subnet.family));
    const gwFamily = families.size === 1 ? [...families][0] : undefined;
    const [hairpin, now, addrs] = await Promise.allSettled([
      plan.hairpin ? setHairpin(host, link) : undefined,
      other.getLink(conf.bridge),
      third ? third.listAddresses(undefined, gwFamily) : undefined,
    ]);
    if (hairpin.status === 'rejected') throw hairpin.reason;
    if (now.status === 'rejected') throw now.reason;
    return { bridge, link, bridgeNow: now.value, addrs: addrs.status === 'fulfilled' ? addrs.value : undefined };
  };
  const nodeSide = (async (): Promise<NodeSide> => {
    // A warm caller remembers the bridge (name -> ifindex), saving the lookup before the
    // veth is created. The lookup after it (for the MAC) verifies the memory: if the
    // bridge is gone, was recreated or is down, the veth is removed and the ADD redone
    // the careful way.
    const known = conf.promiscMode ? undefined : deps.bridges?.get(conf.bridge);
    if (known) {
      let got: NodeSide | undefined;
      try {
        got = await attach(known);
      } catch (err) {
        // Only a kernel refusal can come from a stale ifindex (ENODEV, EOPNOTSUPP, ...);
        // anything else (e.g. the interface exists) fails the ADD as it would anyway.
        if (!(err instanceof KernelError)) throw err;
      }
      const now = got?.bridgeNow;
      if (got && now && now.index === known.index && now.up && now.kind === 'bridge') return got;
      deps.bridges?.delete(conf.bridge);
      if (vethUndo) await host.deleteLink(hostName); // ours, made just now: redo it on the right bridge
    }
    const bridge = await ensureBridge(host, conf.bridge, conf.mtu, conf.promiscMode);
    const got = await attach(bridge);
    if (got.bridgeNow && got.bridgeNow.index === bridge.index && got.bridgeNow.up) deps.bridges?.set(conf.bridge, got.bridgeNow);
    return got;
  })();
  nodeSide.catch(() => undefined);
  try {
    let ipam: IpamOutcome;
    try {
      ipam = await ipamAdd(conf, env, deps, stdin);
    } finally {
      await Promise.allSettled([nodeSide]); // nothing of ours may still be in flight
    }
    undo.push(() => ipamUndo(conf, env, deps, stdin, ipam));
    await deps.checkpoint?.('ipam');
    if (ipam.ips.length === 0) throw new CniError(CniErrorCode.InvalidNetworkConfig, 'IPAM returned no IP addresses');
    const { bridge, link: hostLink, bridgeNow, addrs: nodeAddrs } = await nodeSide;
    const bridgeMac = bridgeNow?.mac ?? bridge.mac;
    await deps.checkpoint?.('veth');
    if (conf.isGateway) {
      for (const ip of ipam.ips) {
        if (!ip.gateway) continue;
        const key = `gw ${conf.bridge}#${bridge.index} ${ip.gateway.toString()}/${ip.address.prefixLength}`;
        // Still there (the kernel's word, this ADD): nothing to do. A memory alone is not enough:
        // someone may have deleted the address since, and every later pod would come up
        // without a gateway. (Cold callers save the add, its EEXIST and the lookups behind it.)
        const gw = ip.gateway;
        const present = nodeAddrs?.some((a) => a.linkIndex === bridge.index && a.cidr.prefixLength === ip.address.prefixLength && a.cidr.ip.equals(gw));
        if (present) {
          ensured?.add(key);
          continue;
        }
        if (ip.gateway.family === 6) {
          // Without this the gateway stays "tentative" (unreachable) for the first second of DAD.
          await deps.sysctl.write(`net/ipv6/conf/${conf.bridge}/accept_dad`, '0');
        }
        await ensureGatewayAddress(host, conf.bridge, ip.gateway, ip.address);
        ensured?.add(key);
      }
      await enableForwarding(deps, ipam);
    }

    const routes = podRoutes(conf, ipam, env.ifname);
    const pod = await podOpen;
    if (ipam.ips.some((i) => i.address.family === 6)) {
      // Duplicate address detection would keep the address "tentative" (unusable) for ~1 s;
      // IPAM already guarantees uniqueness on the bridge (the reference disables it too).
      await deps.podSysctl(podNs).write(`net/ipv6/conf/${env.ifname}/accept_dad`, '0');
    }
    await configurePod(pod, env.ifname, hostLink.peerIndex, ipam.ips.map((i) => i.address), routes.kernel);

    if (conf.ipMasq) {
      for (const ip of ipam.ips) {
        const target = { network: conf.name, containerId: env.containerId, ifname: env.ifname, address: ip.address };
        undo.push(() => teardownMasq(deps.iptables(ip.address.family), conf.name, env.containerId, env.ifname));
        await setupMasq(deps.iptables(ip.address.family), target);
      }
    }
    return {
      cniVersion: conf.cniVersion,
      interfaces: [
        { name: conf.bridge, mac: bridgeMac ?? '' },
        { name: hostName, mac: hostLink.mac ?? '' },
        { name: env.ifname, mac: plan.podMac, sandbox: env.netns },
      ],
      ips: ipam.ips.map((i) => ({ interface: 2, address: i.address.toString(), ...(i.gateway ? { gateway: i.gateway.toString() } : {}) })),
      routes: routes.result,
      ...(ipam.dns && Object.keys(ipam.dns).length > 0 ? { dns: ipam.dns } : conf.dns ? { dns: conf.dns } : {}),
    };
  } catch (err) {
    // Roll back in reverse; every step is attempted, failures are logged, the original error wins.
    // (Deleting the host veth removes the pod end too.)
    ensured?.clear(); // re-verify bridge facts on the next ADD: one of them may be why we failed
    deps.bridges?.clear();
    await podOpen.catch(() => undefined); // no pod-side call may still be in flight
    for (const u of undo.reverse()) {
      await u().catch((e: unknown) => log().warn({ err: errorMessage(e) }, 'rollback step failed'));
    }
    throw err;
  } finally {
    void podOpen.then((pod) => pod.close(), () => undefined);
  }
}

async function enableForwarding(deps: CniDeps, ipam: IpamOutcome): Promise<void> {
  const keys = new Set(ipam.ips.map((i) => (i.address.family === 4 ? 'net.ipv4.ip_forward' : 'net.ipv6.conf.all.forwarding')));
  for (const key of keys) {
    if (deps.ensured?.has(`sysctl ${key}`)) continue;
    if ((await deps.sysctl.read(key)).trim() !== '1') await deps.sysctl.write(key, '1');
    deps.ensured?.add(`sysctl ${key}`);
  }
}

/** IPAM routes (gateway defaulted per family) plus the default route when isDefaultGateway. */
function podRoutes(conf: NetConf, ipam: IpamOutcome, ifname: string): { kernel: Route[]; result: CniRoute[] } {
  const gwFor = (family: 4 | 6): IpAddress | undefined => ipam.ips.find((i) => i.address.family === family && i.gateway)?.gateway;
  const result: CniRoute[] = [];
  const seen = new Set<string>();
  const add = (dst: Cidr, gw: IpAddress | undefined): void => {
    const key = dst.masked.toString();
    if (seen.has(key)) return;
    seen.add(key);
    result.push(gw ? { dst: key, gw: gw.toString() } : { dst: key });
  };
  if (conf.isDefaultGateway) {
    for (const fam of [4, 6] as const) {
      const gw = gwFor(fam);
      if (gw) add(Cidr.parse(fam === 4 ? '0.0.0.0/0' : '::/0'), gw);
    }
  }
  for (const r of ipam.routes) {
    const dst = Cidr.parse(r.dst);
    add(dst, r.gw ? IpAddress.parse(r.gw) : gwFor(dst.family));
  }
  const kernel: Route[] = result.map((r) => {
    const route: Route = { dst: Cidr.parse(r.dst), dev: ifname };
    if (r.gw) route.gateway = IpAddress.parse(r.gw);
    return route;
  });
  return { kernel, result };
}

async function cmdDel(conf: NetConf, env: CniEnv, deps: CniDeps, stdin: Buffer): Promise<void> {
  // The release and the veth delete are independent: run them together (the delete is
  // ~20 ms of kernel teardown). Both are always attempted, so a kernel error never leaks
  // the IP; the IPAM error wins when both fail. Deleting the host end removes the pair,
  // with or without the pod namespace.
  const host = await deps.hostKernel();
  const [released, deleted] = await Promise.allSettled([ipamDel(conf, env, deps, stdin), host.deleteLink(hostVethName(env.containerId, env.ifname))]);
  if (released.status === 'rejected') throw released.reason;
  if (deleted.status === 'rejected') throw deleted.reason;
  if (conf.ipMasq) {
    const families = new Set<4 | 6>(conf.ipam.rangeSets.map((s) => s[0]!.subnet.family));
    if (families.size === 0) families.add(4);
    for (const f of families) await teardownMasq(deps.iptables(f), conf.name, env.containerId, env.ifname);
  }
}

async function cmdCheck(conf: NetConf, env: CniEnv, deps: CniDeps, stdin: Buffer): Promise<void> {
  const prev = conf.prevResult;
  if (!prev) throw new CniError(CniErrorCode.InvalidNetworkConfig, 'CHECK needs prevResult in the network config');
  const fail = (msg: string): never => {
    throw new CniError(CniErrorCode.CheckFailed, msg);
  };
  const podNs = podNetns(env, deps);
  const expectedIps = (prev.ips ?? []).map((i) => ({ address: Cidr.parse(i.address), gateway: i.gateway }));
  if (isLocalIpam(conf.ipam.type)) {
    const store = deps.openStore(conf.ipam.dataDir, conf.name);
    const held = await store.getById(env.containerId, env.ifname);
    store.close();
    for (const ip of expectedIps) {
      if (!held.some((h) => h.equals(ip.address.ip))) fail(`IPAM has no reservation of ${ip.address.ip.toString()} for ${env.containerId}/${env.ifname}`);
    }
  } else {
    await delegate('CHECK', conf, env, deps, stdin);
  }
  const host = await deps.hostKernel();
  const hostName = hostVethName(env.containerId, env.ifname);
  const [bridge, hostLink] = await Promise.all([host.getLink(conf.bridge), host.getLink(hostName)]);
  if (!bridge) fail(`bridge ${conf.bridge} is missing`);
  if (!hostLink) fail(`host veth ${hostName} is missing`);
  if (hostLink!.masterIndex !== bridge!.index) fail(`host veth ${hostName} is not attached to bridge ${conf.bridge}`);
  if (conf.isGateway) {
    const bridgeAddrs = await host.listAddresses(conf.bridge);
    for (const ip of expectedIps) {
      if (ip.gateway && !bridgeAddrs.some((a) => a.cidr.ip.toString() === IpAddress.parse(ip.gateway!).toString())) {
        fail(`gateway ${ip.gateway} is missing on bridge ${conf.bridge}`);
      }
    }
  }
  const pod = await deps.openPodKernel(podNs);
  try {
    const link = await pod.getLink(env.ifname);
    if (!link) fail(`interface ${env.ifname} is missing in ${env.netns}`);
    if (!link!.up) fail(`interface ${env.ifname} is down in ${env.netns}`);
    const prevItf = prev.interfaces?.find((i) => i.name === env.ifname && i.sandbox !== undefined);
    if (prevItf?.mac && link!.mac && prevItf.mac.toLowerCase() !== link!.mac.toLowerCase()) {
      fail(`interface ${env.ifname} has MAC ${link!.mac}, prevResult says ${prevItf.mac}`);
    }
    const addrs = await pod.listAddresses(env.ifname);
    for (const ip of expectedIps) {
      if (!addrs.some((a) => a.cidr.ip.equals(ip.address.ip) && a.cidr.prefixLength === ip.address.prefixLength)) {
        fail(`address ${ip.address.toString()} is missing on ${env.ifname} in ${env.netns}`);
      }
    }
    const routes = await pod.listRoutes();
    for (const r of prev.routes ?? []) {
      const dst = Cidr.parse(r.dst).masked;
      const found = routes.some(
        (k) => k.dst.masked.toString() === dst.toString() && (r.gw === undefined || (k.gateway !== undefined && k.gateway.toString() === IpAddress.parse(r.gw).toString())),
      );
      if (!found) fail(`route ${r.dst}${r.gw ? ` via ${r.gw}` : ''} is missing in ${env.netns}`);
    }
  } finally {
    pod.close();
  }
}

async function cmdGc(conf: NetConf, env: CniEnv, deps: CniDeps, stdin: Buffer, log: CniDeps['log']): Promise<void> {
  const valid = conf.validAttachments ?? [];
  const errors: string[] = [];
  const validVeths = new Set(valid.map((a) => hostVethName(a.containerId, a.ifname)));
  if (!isLocalIpam(conf.ipam.type)) {
    await delegate('GC', conf, env, deps, stdin).catch((e: unknown) => errors.push(errorMessage(e)));
  } else {
    await withLockedStore(conf, deps, async (store) => {
      const { reservations, problems } = await store.list();
      for (const p of problems) log.warn({ file: p.file }, `GC skipped ${p.reason}`);
      for (const r of reservations) {
        if (valid.some((a) => ownerMatches(r, a.containerId, a.ifname))) continue;
        try {
          await store.release(r.ip);
          log.info({ ip: r.ip.toString(), owner: r.containerId }, 'GC released reservation');
        } catch (e) {
          errors.push(`release ${r.ip.toString()}: ${errorMessage(e)}`);
        }
      }
    });
  }
  // Leftover host veths (e.g. an ADD killed half-way): ours by name, on this network's
  // bridge (or on none), and not a valid attachment.
  try {
    const host = await deps.hostKernel();
    const bridge = await host.getLink(conf.bridge);
    for (const link of bridge ? await host.listLinks() : []) {
      // Unenslaved ones too: an ADD killed between creating the pair and enslaving it.
      const onBridge = link.masterIndex === bridge!.index || link.masterIndex === undefined;
      if (!isHostVethName(link.name) || !onBridge || validVeths.has(link.name)) continue;
      await host.deleteLink(link.name).catch((e: unknown) => errors.push(`delete ${link.name}: ${errorMessage(e)}`));
    }
  } catch (e) {
    errors.push(`list links: ${errorMessage(e)}`);
  }
  if (conf.ipMasq) {
    const validChains = new Set(valid.map((a) => masqChainName(conf.name, a.containerId, a.ifname)));
    const families = new Set<4 | 6>(conf.ipam.rangeSets.map((s) => s[0]!.subnet.family));
    for (const f of families) {
      await removeChains(deps.iptables(f), (c) => !validChains.has(c), conf.name).catch((e: unknown) => errors.push(`iptables: ${errorMessage(e)}`));
    }
  }
  if (errors.length > 0) throw new CniError(CniErrorCode.IoFailure, `GC finished with ${errors.length} error(s)`, errors.join('; '));
}

async function cmdStatus(conf: NetConf, env: CniEnv, deps: CniDeps, stdin: Buffer): Promise<void> {
  if (!isLocalIpam(conf.ipam.type)) {
    await delegate('STATUS', conf, env, deps, stdin);
    return;
  }
  if (conf.ipam.rangeSets.length === 0) throw new CniError(CniErrorCode.PluginNotAvailable, 'the node pod subnet is not known yet');
  const store = deps.openStore(conf.ipam.dataDir, conf.name);
  try {
    const { reservations, problems } = await store.list();
    const reserved = new Set([...reservations.map((r) => r.ip.toString()), ...problems.map((p) => p.file)]);
    conf.ipam.rangeSets.forEach((set, i) => {
      if (!new RangeAllocator(set, i, store).hasFree(reserved)) {
        throw new CniError(CniErrorCode.PluginNotAvailable, `IP pool exhausted: range set ${i} has no free address`);
      }
    });
  } finally {
    store.close();
  }
}
