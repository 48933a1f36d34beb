/**
 * The batched UDP socket of the DNS server (native/src/udp_batch.cc): recvmmsg a batch,
 * answer every query of it in one JS call, sendmmsg the answers.
 *
 * Why native: with Node's dgram every query costs a `message` event (a Buffer, an rinfo
 * object, a libuv callback into JS) and every answer a send request (an address lookup
 * on nextTick, a SendWrap, a completion callback). Profiled under dnsperf that machinery
 * was most of a query's CPU time, and capped podwire at about a third of Knot's queries
 * per CPU-second; Knot itself batches with recvmmsg/sendmmsg. Here a batch of up to
 * SLOTS queries costs one call into JS and two system calls, and the answers are written
 * into one preallocated buffer. Parsing and answering stay in TypeScript, unchanged;
 * the addon only moves bytes. Node's dgram remains the fallback (`dns.nativeUdp: false`,
 * or the addon not built).
 */
import { formatIPv6 } from '../common/ip';
import type { NativeUdpHandle } from '../kernel/native';
import { loadAddon, UDP_ADDR_LEN } from '../kernel/native';

/** Queries per batch. */
export const SLOTS = 64;
/** Bytes per received datagram (a larger query is dropped: no DNS client sends one over UDP to us). */
export const IN_SLOT = 4096;

export type UdpAnswer = (msg: Buffer, client: string, addr: Buffer, slot: number) => Buffer | null | undefined;

/** Text form of the IPv4/IPv6 source address in `a` (a sockaddr at `off`). */
export function sockaddrHost(a: Buffer, off: number): string {
  const family = a.readUInt16LE(off);
  if (family === 2) return `${a[off + 4]}.${a[off + 5]}.${a[off + 6]}.${a[off + 7]}`;
  // sockaddr_in6: address at +8. IPv4-mapped addresses are shown as IPv4 (we bind v6-only, but be safe).
  const p = off + 8;
  if (a.readUInt32BE(p) === 0 && a.readUInt32BE(p + 4) === 0 && a.readUInt32BE(p + 8) === 0xffff) return `${a[p + 12]}.${a[p + 13]}.${a[p + 14]}.${a[p + 15]}`;
  return formatIPv6(a, p);
}

/** Port of the sockaddr at `off`. */
export function sockaddrPort(a: Buffer, off: number): number {
  return a.readUInt16BE(off + 2);
}

export class NativeUdpSocket {
  private readonly fd: number;
  private handle: NativeUdpHandle | undefined;
  private readonly inBuf = Buffer.alloc(SLOTS * IN_SLOT);
  private readonly inLens = new Int32Array(SLOTS);
  private readonly addrs = Buffer.alloc(SLOTS * UDP_ADDR_LEN);
  private readonly outBuf: Buffer;
  private readonly outLens = new Int32Array(SLOTS);
  private readonly addon = loadAddon();

  /**
   * Bind `host:port` (SO_REUSEPORT), or serve `adopt`, a socket already bound there (one the
   * DNS socket keeper held across a crash; keeper.ts). `answer` gets each query (a view valid
   * only during the call), its client address text, and the source sockaddr (also a view); it
   * returns the answer to send now, or null/undefined for none (it may answer later with sendTo).
   */
  constructor(
    host: string,
    port: number,
    ipv6: boolean,
    private readonly outSlot: number,
    private readonly answer: UdpAnswer,
    private readonly onError: (err: unknown) => void,
    adopt?: number,
  ) {
    this.outBuf = Buffer.alloc(SLOTS * outSlot);
    this.fd = adopt ?? this.addon.udpOpen(host, port, ipv6, 4 << 20);
    try {
      this.handle = this.addon.udpServe(this.fd, this.inBuf, this.inLens, this.addrs, this.outBuf, this.outLens, IN_SLOT, outSlot, (n) => this.onBatch(n));
    } catch (err) {
      this.addon.closeFd(this.fd);
      throw err;
    }
  }

  private onBatch(n: number): void {
    const inBuf = this.inBuf;
    const addrs = this.addrs;
    for (let i = 0; i < n; i++) {
      const len = this.inLens[i]!;
      if (len < 0) continue;
      try {
        const start = i * IN_SLOT;
        const a = i * UDP_ADDR_LEN;
        const addr = addrs.subarray(a, a + UDP_ADDR_LEN);
        const r = this.answer(inBuf.subarray(start, start + len), sockaddrHost(addrs, a), addr, i);
        if (!r) continue;
        if (r.length <= this.outSlot) {
          r.copy(this.outBuf, i * this.outSlot);
          this.outLens[i] = r.length;
        } else this.sendTo(r, addr);
      } catch (err) {
        this.onError(err);
      }
    }
  }

  /** Send one answer outside a batch (a forwarded query's, or one larger than a slot). */
  sendTo(reply: Buffer, addr: Buffer): void {
    if (this.handle) this.addon.udpSendTo(this.fd, reply, addr);
  }

  /** The socket's fd (while open), for the socket keeper. */
  get socketFd(): number | undefined {
    return this.handle ? this.fd : undefined;
  }

  /** Answers the kernel refused to send (a full send buffer). */
  get sendErrors(): number {
    return this.handle ? this.addon.udpStats(this.handle) : 0;
  }

  close(): void {
    if (!this.handle) return;
    this.addon.udpClose(this.handle);
    this.handle = undefined;
  }
}
