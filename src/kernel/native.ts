/**
 * Typed access to the Node-API addon (native/, built to native/build/Release/podwire_native.node).
 *
 * The addon exists because Node cannot do these things itself: open a socket inside
 * another network namespace without moving the event-loop thread (setns moves only the
 * calling thread, so the addon does it on a short-lived helper thread), netlink I/O in
 * big batches off the event loop, sysctls under /proc/sys/net of another namespace, and
 * flock(2). Everything here is a thin, typed wrapper; errors become src/common/errors
 * classes naming the path or key involved. See docs/native.md.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { getSystemErrorMap } from 'node:util';
import { InvalidInputError, KernelError, NotFoundError, PodwireError } from '../common/errors';
import type { NetnsRef } from './types';

export const NETLINK_ROUTE = 0;
export const NETLINK_GENERIC = 16;
export const NETLINK_NETFILTER = 12;

/** Raw socket facts returned by the addon. */
export interface NetlinkSocketInfo {
  fd: number;
  /** Port id the kernel assigned (nl_pid). */
  portId: number;
  /** Effective SO_RCVBUF / SO_SNDBUF as the kernel reports them (already doubled). */
  rcvbuf: number;
  sndbuf: number;
}

export interface RawBatchResult {
  /** One positive errno per message (0 = ok), in message order. */
  errnos: Int32Array;
  /** Extended-ACK texts for failed messages that carried one. */
  errors: { index: number; message: string }[];
}

export interface RawRequestResult {
  /** Reply messages back to back; message i is data[offsets[i], offsets[i+1]). */
  data: Buffer;
  offsets: Uint32Array;
  /** Positive errno from the final NLMSG_ERROR/NLMSG_DONE, 0 on success. */
  errno: number;
  extack: string;
  /** A reply carried NLM_F_DUMP_INTR: the dump raced a change and may be inconsistent. */
  dumpInterrupted: boolean;
}

interface NativeAddon {
  openNetlink(netnsPath: string | null, protocol: number, rcvbuf: number, sndbuf: number): Promise<NetlinkSocketInfo>;
  closeFd(fd: number): void;
  netlinkBatch(
    fd: number,
    packed: Buffer,
    datagrams: Uint32Array,
    datagramCount: number,
    firstSeq: number,
    count: number,
    timeoutMs: number,
    ackEach: boolean,
  ): Promise<RawBatchResult>;
  netlinkRequest(fd: number, message: Buffer, seq: number, timeoutMs: number): Promise<RawRequestResult>;
  sysctl(netnsPath: string | null, relPath: string, value: string | null): Promise<string>;
  flockTry(fd: number, exclusive: boolean): boolean;
  flockWait(fd: number, exclusive: boolean, timeoutMs: number): Promise<boolean>;
  funlock(fd: number): void;
  udpOpen(host: string, port: number, ipv6: boolean, rcvbuf: number): number;
  udpServe(
    fd: number,
    inBuf: Buffer,
    inLens: Int32Array,
    addrs: Buffer,
    outBuf: Buffer,
    outLens: Int32Array,
    slotSize: number,
    outSlotSize: number,
    onBatch: (count: number) => void,
  ): NativeUdpHandle;
  udpSendTo(fd: number, buf: Buffer, addr: Buffer): number;
  udpStats(handle: NativeUdpHandle): number;
  udpClose(handle: NativeUdpHandle): void;
  ethtoolTxCsum(netnsPath: string | null, ifname: string, on: boolean | null): Promise<boolean>;
  seqpacketConnect(abstractName: string): number;
  seqpacketRequest(fd: number, text: string, fds: number[], timeoutMs: number): { text: string; fd: number }[];
  tcpListenOpen(host: string, port: number, ipv6: boolean, backlog: number): number;
}

/** Opaque handle of a batched UDP server socket (native/src/udp_batch.cc). */
export type NativeUdpHandle = { readonly __nativeUdp: unique symbol };
/** Bytes per source address in the batched UDP socket's address array (a sockaddr_in6). */
export const UDP_ADDR_LEN = 28;

const ADDON_RELATIVE = path.join('native', 'build', 'Release', 'podwire_native.node');
const NFTABLES_RELATIVE = path.join('native', 'nftables', 'build', 'Release', 'podwire_nftables.node');
let addon: NativeAddon | undefined;

export function packagePath(relative: string): string {
  // Works from src/kernel (ts tooling) and dist/src/kernel (compiled): walk up to the package root.
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'native'))) {
      return path.join(dir, relative);
    }
    dir = path.dirname(dir);
  }
  return path.resolve(__dirname, '..', '..', relative);
}

/** Where the addon is looked for: $PODWIRE_NATIVE_ADDON, else the package root above this file. */
export function addonPath(): string {
  return process.env.PODWIRE_NATIVE_ADDON || packagePath(ADDON_RELATIVE);
}

// ---- libnftables addon (native/nftables: a separate .node linked against libnftables.so.1) ----

export interface NftRunResult {
  /** libnftables' return code, 0 on success. */
  rc: number;
  /** Buffered output (listings). */
  output: string;
  /** Buffered error text, `/dev/stdin:3:1-5: Error: ...` for a script. */
  error: string;
}

interface NftablesAddon {
  run(netnsPath: string | null, script: string, flags: number): Promise<NftRunResult>;
}

/** Flags of `nftRun`. */
export const NFT_JSON = 1;
export const NFT_DRY_RUN = 2;
export const NFT_NUMERIC = 4;
export const NFT_STATELESS = 8;
/** Run the script as a file (errors then carry line numbers, like `nft -f`). */
export const NFT_AS_FILE = 16;

let nftAddon: NftablesAddon | undefined;
let nftAddonError: PodwireError | undefined;

/** $PODWIRE_NFTABLES_ADDON, else native/nftables/build/Release/podwire_nftables.node. */
export function nftablesAddonPath(): string {
  return process.env.PODWIRE_NFTABLES_ADDON || packagePath(NFTABLES_RELATIVE);
}

/**
 * Loads the libnftables addon once. Throws PodwireError PW_NATIVE_MISSING (remembered,
 * so later calls fail fast) if it was not built or libnftables.so.1 cannot be loaded.
 */
export function loadNftablesAddon(): NftablesAddon {
  if (nftAddon) return nftAddon;
  if (nftAddonError) throw nftAddonError;
  const file = nftablesAddonPath();
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    nftAddon = require(file) as NftablesAddon;
    return nftAddon;
  } catch (err) {
    nftAddonError = new PodwireError(
      'PW_NATIVE_MISSING',
      `libnftables addon ${file} cannot be loaded (needs libnftables.so.1; build with "npm run build:native" after installing libnftables-dev): ${
        err instanceof Error ? err.message : String(err)
      }`,
      { field: 'nftablesAddon', value: file, cause: err },
    );
    throw nftAddonError;
  }
}

/** True when the libnftables addon loads (then the in-process nft runner is used). */
export function nftablesAvailable(): boolean {
  try {
    loadNftablesAddon();
    return true;
  } catch {
    return false;
  }
}

// The addon serialises libnftables calls with a mutex; queueing here as well keeps
// concurrent callers from parking several libuv pool threads on that mutex (the pool is
// shared with fs, dns.lookup and crypto).
let nftTail: Promise<unknown> = Promise.resolve();

/** One libnftables run inside `netns`, on a helper thread (see native/nftables/src/nftables.cc). Calls run one at a time. */
export function nftRun(netns: NetnsRef | undefined, script: string, flags = 0): Promise<NftRunResult> {
  let native: NftablesAddon;
  try {
    native = loadNftablesAddon();
  } catch (err) {
    return Promise.reject(err);
  }
  const run = nftTail.then(async () => {
    try {
      return await native.run(netns?.path ?? null, script, flags);
    } catch (err) {
      throw netns ? netnsError(err, netns, 'libnftables') : kernelError('libnftables', err);
    }
  });
  nftTail = run.catch(() => undefined);
  return run;
}

/** Loads the addon once; a clear error (code PW_NATIVE_MISSING) if it was not built. */
export function loadAddon(): NativeAddon {
  if (addon) return addon;
  const file = addonPath();
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    addon = require(file) as NativeAddon;
  } catch (err) {
    throw new PodwireError(
      'PW_NATIVE_MISSING',
      `native addon ${file} cannot be loaded (build it with "npm run build:native"; see docs/native.md): ${
        err instanceof Error ? err.message : String(err)
      }`,
      { field: 'nativeAddon', value: file, cause: err },
    );
  }
  return addon;
}

interface NativeSysError {
  code?: string;
  errno?: number;
  syscall?: string;
  path?: string;
  message?: string;
}

function asSysError(err: unknown): NativeSysError {
  return typeof err === 'object' && err !== null ? (err as NativeSysError) : { message: String(err) };
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(os.constants.errno).map(([name, n]) => [n, name]));

/** `EEXIST`, `ENOENT`, ... for a positive errno; `E<n>` when unknown. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `E${errno}`;
}

/** `EEXIST (file already exists)` for a positive errno. */
export function errnoText(errno: number): string {
  const text = getSystemErrorMap().get(-errno)?.[1];
  return text ? `${errnoName(errno)} (${text})` : errnoName(errno);
}

/** Namespace failures: a missing path is NotFoundError, a non-netns file InvalidInputError. */
function netnsError(err: unknown, netns: NetnsRef, operation: string): Error {
  const e = asSysError(err);
  if (e.syscall === 'open netns' && e.code === 'ENOENT') return new NotFoundError('netns', netns.path, err);
  if (e.syscall === 'setns' && e.code === 'EINVAL') {
    return new InvalidInputError('netns', netns.path, 'not a network namespace handle', err);
  }
  return kernelError(operation, err);
}

function kernelError(operation: string, err: unknown): KernelError {
  const e = asSysError(err);
  return new KernelError(operation, e.message ?? 'failed', { errno: e.errno, cause: err });
}

export interface OpenNetlinkOptions {
  /** Receive buffer to ask for (SO_RCVBUFFORCE when root). Default 32 MiB. */
  rcvbuf?: number;
  /** Send buffer (bounds the largest datagram). Default 4 MiB. */
  sndbuf?: number;
}

/**
 * Opens a bound netlink socket of `protocol` inside `netns` (the current namespace when
 * undefined), with NETLINK_EXT_ACK and NETLINK_CAP_ACK. The fd works from any thread;
 * the caller owns it (closeFd).
 */
export async function openNetlinkSocket(
  netns: NetnsRef | undefined,
  protocol: number = NETLINK_ROUTE,
  options: OpenNetlinkOptions = {},
): Promise<NetlinkSocketInfo> {
  if (!Number.isInteger(protocol) || protocol < 0 || protocol > 31) {
    throw new InvalidInputError('protocol', protocol, 'expected a netlink protocol number 0..31');
  }
  const native = loadAddon();
  try {
    return await native.openNetlink(netns?.path ?? null, protocol, options.rcvbuf ?? 32 << 20, options.sndbuf ?? 4 << 20);
  } catch (err) {
    throw netns ? netnsError(err, netns, 'open netlink socket') : kernelError('open netlink socket', err);
  }
}

export function closeFd(fd: number): void {
  loadAddon().closeFd(fd);
}

/** Raw batch I/O; use NetlinkTransport.batch (native-transport.ts) instead. */
export function netlinkBatchRaw(
  fd: number,
  packed: Buffer,
  datagrams: Uint32Array,
  datagramCount: number,
  firstSeq: number,
  count: number,
  timeoutMs: number,
  ackEach: boolean,
): Promise<RawBatchResult> {
  return loadAddon().netlinkBatch(fd, packed, datagrams, datagramCount, firstSeq, count, timeoutMs, ackEach);
}

/** Raw request I/O; use NetlinkTransport.request (native-transport.ts) instead. */
export function netlinkRequestRaw(fd: number, message: Buffer, seq: number, timeoutMs: number): Promise<RawRequestResult> {
  return loadAddon().netlinkRequest(fd, message, seq, timeoutMs);
}

const SYSCTL_KEY = /^[A-Za-z0-9_][A-Za-z0-9_.:@+-]*(\/[A-Za-z0-9_][A-Za-z0-9_.:@+-]*)*$/;

/**
 * `net.ipv4.ip_forward` → `net/ipv4/ip_forward`. A key containing `/` is taken as a path
 * already, which is how to name interfaces with dots (`net/ipv4/conf/eth0.100/forwarding`),
 * as sysctl(8) does.
 */
export function sysctlPath(key: string): string {
  if (typeof key !== 'string' || key.length === 0 || key.length > 512) {
    throw new InvalidInputError('sysctl', key, 'expected a sysctl key such as net.ipv4.ip_forward');
  }
  const rel = key.includes('/') ? key.replace(/^\/proc\/sys\//, '') : key.replace(/\./g, '/');
  if (!SYSCTL_KEY.test(rel) || rel.split('/').some((part) => part === '.' || part === '..')) {
    throw new InvalidInputError('sysctl', key, 'not a valid sysctl key');
  }
  return rel;
}

function sysctlError(err: unknown, key: string, netns: NetnsRef | undefined, operation: string): Error {
  const e = asSysError(err);
  if (e.syscall === 'open' && e.code === 'ENOENT') return new NotFoundError('sysctl', key, err);
  return netns ? netnsError(err, netns, operation) : kernelError(operation, err);
}

/** Reads a sysctl as the namespace sees it; the trailing newline is removed. */
export async function readSysctl(netns: NetnsRef | undefined, key: string): Promise<string> {
  const rel = sysctlPath(key);
  try {
    const text = await loadAddon().sysctl(netns?.path ?? null, rel, null);
    return text.endsWith('\n') ? text.slice(0, -1) : text;
  } catch (err) {
    throw sysctlError(err, key, netns, `read sysctl ${key}`);
  }
}

/** Writes a sysctl in that namespace only (never the caller's, unless netns is undefined). */
export async function writeSysctl(netns: NetnsRef | undefined, key: string, value: string | number): Promise<void> {
  const rel = sysctlPath(key);
  const text = String(value);
  if (text.includes('\0')) throw new InvalidInputError('sysctl value', text, 'must not contain NUL');
  try {
    await loadAddon().sysctl(netns?.path ?? null, rel, text);
  } catch (err) {
    throw sysctlError(err, key, netns, `write sysctl ${key}=${text}`);
  }
}

/**
 * A device's TX checksum offload (`ethtool -K <dev> tx on|off`, every checksum feature bit)
 * in that namespace: sets it when `on` is a boolean, and returns the state afterwards.
 */
export async function ethtoolTxChecksum(netns: NetnsRef | undefined, ifname: string, on?: boolean): Promise<boolean> {
  if (typeof ifname !== 'string' || !/^[^\s/]{1,15}$/.test(ifname)) throw new InvalidInputError('ifname', ifname, 'must be a Linux interface name');
  try {
    return await loadAddon().ethtoolTxCsum(netns?.path ?? null, ifname, on === undefined ? null : on);
  } catch (err) {
    const op = `${on === undefined ? 'read' : 'set'} TX checksum offload of ${ifname}`;
    return Promise.reject(netns ? netnsError(err, netns, op) : kernelError(op, err));
  }
}

export interface FlockOptions {
  /** LOCK_EX when true, LOCK_SH when false. */
  exclusive: boolean;
  /** Block until the lock is free (off the event loop). When false, try once. */
  wait: boolean;
  /** With `wait`: give up after this long (resolves false). Default: wait forever. */
  timeoutMs?: number;
}

/**
 * flock(2) on an open file descriptor, compatible with other flock users of the same
 * file (the reference host-local IPAM plugin, `flock(1)`). Resolves true when held,
 * false when not (busy without `wait`, or timed out).
 */
export async function flock(fd: number, options: FlockOptions): Promise<boolean> {
  const native = loadAddon();
  try {
    if (!options.wait) return native.flockTry(fd, options.exclusive);
    return await native.flockWait(fd, options.exclusive, options.timeoutMs ?? -1);
  } catch (err) {
    throw kernelError(`flock fd ${fd}`, err);
  }
}

export function unlock(fd: number): void {
  try {
    loadAddon().funlock(fd);
  } catch (err) {
    throw kernelError(`flock unlock fd ${fd}`, err);
  }
}
