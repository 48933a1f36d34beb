/**
 * IPAM for one ADD/DEL/CHECK/GC/STATUS: the in-process host-local implementation, or
 * a delegate plugin executed from CNI_PATH exactly as the reference bridge does it.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Cidr, IpAddress } from '../../common/ip';
import { CniError, CniErrorCode } from '../errors';
import { isLocalIpam, type NetConf } from '../config';
import type { CniDeps } from '../deps';
import type { CniEnv } from '../env';
import { parseResult, type CniResult } from '../result';
import { RangeAllocator } from './allocator';
import type { IpamStore } from './store';

export * from './store';
export { RangeAllocator } from './allocator';
export { DiskIpamStore } from './disk-store';
export { FakeIpamStore } from './fake-store';
export { parseHostLocal, type HostLocalConfig, type RangeSet, type IpRange } from './config';

export interface IpamOutcome {
  ips: { address: Cidr; gateway: IpAddress | undefined }[];
  routes: { dst: string; gw?: string }[];
  dns: CniResult['dns'];
}

/** Requested IPs from runtimeConfig/args and `CNI_ARGS IP=` (comma-separated). */
export function requestedIps(conf: NetConf, env: CniEnv): IpAddress[] {
  const out = [...conf.requestedIps];
  const fromArgs = env.args.get('IP');
  if (fromArgs) {
    fromArgs.split(',').forEach((t, i) => out.push(IpAddress.parse(t.trim().split('/')[0]!, `CNI_ARGS.IP[${i}]`)));
  }
  return out;
}

export async function ipamAdd(conf: NetConf, env: CniEnv, deps: CniDeps, stdin: Buffer): Promise<IpamOutcome> {
  if (!isLocalIpam(conf.ipam.type)) return delegate('ADD', conf, env, deps, stdin).then(fromDelegate);
  if (conf.ipam.rangeSets.length === 0) {
    throw new CniError(CniErrorCode.TryAgainLater, 'the node pod subnet is not known yet: no ipam.ranges/ipam.subnet in the config');
  }
  const store = deps.openStore(conf.ipam.dataDir, conf.name);
  const wanted = requestedIps(conf, env);
  const allocators = conf.ipam.rangeSets.map((set, i) => new RangeAllocator(set, i, store));
  const release = await store.lock();
  const ips: IpamOutcome['ips'] = [];
  try {
    const byAllocator = new Map<RangeAllocator, IpAddress>();
    for (const ip of wanted) {
      const a = allocators.find((al) => al.rangeFor(ip));
      if (!a) throw new CniError(CniErrorCode.AddressUnavailable, `requested IP ${ip.toString()} is not in any configured range`);
      if (byAllocator.has(a)) throw new CniError(CniErrorCode.AddressUnavailable, `more than one requested IP for range set ${a.rangeId}`);
      byAllocator.set(a, ip);
    }
    for (const a of allocators) {
      const got = await a.allocate(env.containerId, env.ifname, byAllocator.get(a));
      ips.push({ address: got.address, gateway: got.gateway });
    }
  } catch (err) {
    // Only what this call reserved: a duplicate ADD must not free the existing attachment's IP.
    for (const got of ips) await store.release(got.address.ip).catch(() => undefined);
    throw err;
  } finally {
    release();
    store.close();
  }
  return { ips, routes: conf.ipam.routes, dns: undefined };
}

export async function ipamDel(conf: NetConf, env: CniEnv, deps: CniDeps, stdin: Buffer): Promise<void> {
  if (!isLocalIpam(conf.ipam.type)) {
    await delegate('DEL', conf, env, deps, stdin);
    return;
  }
  await withLockedStore(conf, deps, (store) => store.releaseById(env.containerId, env.ifname));
}

/** Undo of a successful ipamAdd: exactly the IPs it reserved (local), or the delegate's DEL. */
export async function ipamUndo(conf: NetConf, env: CniEnv, deps: CniDeps, stdin: Buffer, got: IpamOutcome): Promise<void> {
  if (!isLocalIpam(conf.ipam.type)) {
    await delegate('DEL', conf, env, deps, stdin);
    return;
  }
  await withLockedStore(conf, deps, async (store) => {
    for (const ip of got.ips) await store.release(ip.address.ip);
  });
}

/** Runs a delegate IPAM plugin found on CNI_PATH; its error JSON is passed through. */
export async function delegate(command: string, conf: NetConf, env: CniEnv, deps: CniDeps, stdin: Buffer): Promise<Buffer> {
  const file = env.path.map((dir) => join(dir, conf.ipam.type)).find((p) => existsSync(p));
  if (!file) {
    throw new CniError(CniErrorCode.InvalidNetworkConfig, `IPAM plugin ${JSON.stringify(conf.ipam.type)} not found on CNI_PATH`, env.path.join(':'));
  }
  const childEnv: Record<string, string> = {
    CNI_COMMAND: command,
    CNI_CONTAINERID: env.containerId,
    CNI_NETNS: env.netns,
    CNI_IFNAME: env.ifname,
    CNI_ARGS: [...env.args].map(([k, v]) => `${k}=${v}`).join(';'),
    CNI_PATH: env.path.join(':'),
  };
  const { exitCode, stdout } = await deps.execPlugin(file, childEnv, stdin);
  if (exitCode !== 0) {
    let msg = stdout.toString('utf8').trim();
    let code: number = CniErrorCode.DelegateFailure;
    try {
      const e = JSON.parse(msg) as { code?: number; msg?: string; details?: string };
      if (typeof e.code === 'number') code = e.code;
      msg = [e.msg, e.details].filter(Boolean).join(': ');
    } catch {
      /* not JSON: keep the text */
    }
    throw new CniError(code, `IPAM plugin ${conf.ipam.type} ${command} failed: ${msg}`);
  }
  return stdout;
}

function fromDelegate(stdout: Buffer): IpamOutcome {
  let raw: unknown;
  try {
    raw = JSON.parse(stdout.toString('utf8'));
  } catch {
    throw new CniError(CniErrorCode.DecodeFailure, 'delegated IPAM plugin printed no JSON result');
  }
  const r = parseResult(raw, 'ipam result');
  return {
    ips: (r.ips ?? []).map((i) => ({
      address: Cidr.parse(i.address),
      gateway: i.gateway ? IpAddress.parse(i.gateway) : undefined,
    })),
    routes: r.routes ?? [],
    dns: r.dns,
  };
}

export function openLocalStore(conf: NetConf, deps: CniDeps): IpamStore {
  return deps.openStore(conf.ipam.dataDir, conf.name);
}

/** Runs `fn` on the network's store under its lock (the one ADD, DEL and GC share). */
export async function withLockedStore<T>(conf: NetConf, deps: CniDeps, fn: (store: IpamStore) => Promise<T>): Promise<T> {
  const store = openLocalStore(conf, deps);
  const release = await store.lock();
  try {
    return await fn(store);
  } finally {
    release();
    store.close();
  }
}
