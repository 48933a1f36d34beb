/**
 * NetlinkTransport over the native addon: one netlink socket, created inside a network
 * namespace by the addon, used from libuv pool threads so no blocking I/O happens on
 * the event loop.
 *
 * Operations on one transport run one at a time (queued in call order): replies are
 * correlated by sequence number on a shared socket, and interleaving two receivers
 * would steal each other's answers. Open one transport per concurrent user instead.
 */
import { InvalidInputError, KernelError } from '../../common/errors';
import {
  NETLINK_ROUTE,
  closeFd,
  errnoText,
  netlinkBatchRaw,
  netlinkRequestRaw,
  openNetlinkSocket,
  type OpenNetlinkOptions,
} from '../native';
import type { NetnsRef } from '../types';
import { BatchPacker, NLMSG_HDRLEN, NLM_F_ACK, NLM_F_REQUEST, type PackLimits, limitsForReceiveBuffer } from './batch-pack';
import type { NetlinkTransport } from './transport';

const EBADF = 9;

export interface NativeTransportOptions extends OpenNetlinkOptions {
  /** How long to wait for the kernel without any progress before failing (ETIMEDOUT). Default 30 s. */
  timeoutMs?: number;
  /** Upper bound on one datagram of a batch. Default 16 KiB (measured faster on this machine than 64–256 KiB). */
  maxDatagramBytes?: number;
  /**
   * NLM_F_ACK on every batched message (default true), or only on each datagram's last
   * one (errors are answered either way; see batch-pack.ts). Results are identical.
   */
  ackEach?: boolean;
}

export interface NativeNetlinkTransport extends NetlinkTransport {
  readonly netns: NetnsRef | undefined;
  readonly protocol: number;
  readonly portId: number;
  /** Like batch(), plus the kernel's extended-ACK text for each failure that carried one. */
  batchDetailed(messages: readonly Buffer[]): Promise<BatchDetails>;
}

export interface BatchDetails {
  /** One positive errno per message (0 = ok), in message order. */
  errnos: Int32Array;
  errors: { index: number; message: string }[];
}

/** rtnetlink message type names, so errors read `RTM_NEWROUTE: EEXIST ...`. */
const RTM_NAMES: Record<number, string> = {
  16: 'RTM_NEWLINK', 17: 'RTM_DELLINK', 18: 'RTM_GETLINK', 19: 'RTM_SETLINK',
  20: 'RTM_NEWADDR', 21: 'RTM_DELADDR', 22: 'RTM_GETADDR',
  24: 'RTM_NEWROUTE', 25: 'RTM_DELROUTE', 26: 'RTM_GETROUTE',
  28: 'RTM_NEWNEIGH', 29: 'RTM_DELNEIGH', 30: 'RTM_GETNEIGH',
  32: 'RTM_NEWRULE', 33: 'RTM_DELRULE', 34: 'RTM_GETRULE',
  104: 'RTM_NEWNEXTHOP', 105: 'RTM_DELNEXTHOP', 106: 'RTM_GETNEXTHOP',
};

/** ctnetlink (NETLINK_NETFILTER, subsystem 1 in the high byte) message type names. */
const CT_NAMES: Record<number, string> = { 0x100: 'IPCTNL_MSG_CT_NEW', 0x101: 'IPCTNL_MSG_CT_GET', 0x102: 'IPCTNL_MSG_CT_DELETE' };
const NETLINK_NETFILTER = 12;

export function messageTypeName(protocol: number, type: number): string {
  const names = protocol === NETLINK_ROUTE ? RTM_NAMES : protocol === NETLINK_NETFILTER ? CT_NAMES : undefined;
  return names?.[type] ?? `netlink message type ${type}`;
}

/** `EEXIST (file already exists): <ext-ack text>` */
export function describeErrno(errno: number, extack: string | undefined): string {
  const text = errnoText(errno);
  return extack ? `${text}: ${extack}` : text;
}

export async function openNetlinkTransport(
  netns?: NetnsRef,
  protocol: number = NETLINK_ROUTE,
  options: NativeTransportOptions = {},
): Promise<NativeNetlinkTransport> {
  const info = await openNetlinkSocket(netns, protocol, options);
  // A datagram must fit the send buffer (the kernel refuses len > sndbuf - 32 with EMSGSIZE).
  const maxDatagramBytes = Math.max(4096, Math.min(options.maxDatagramBytes ?? 16 * 1024, Math.floor(info.sndbuf / 2)));
  const limits = { ...limitsForReceiveBuffer(info.rcvbuf, maxDatagramBytes), ackEach: options.ackEach !== false };
  return new Transport(netns, protocol, info.fd, info.portId, limits, options.timeoutMs ?? 30_000);
}

class Transport implements NativeNetlinkTransport {
  private seq: number;
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;
  private readonly packer: BatchPacker;

  constructor(
    readonly netns: NetnsRef | undefined,
    readonly protocol: number,
    private fd: number,
    readonly portId: number,
    limits: PackLimits,
    private readonly timeoutMs: number,
  ) {
    this.packer = new BatchPacker(limits);
    // Start somewhere arbitrary so a reused port id never matches a stale sequence number.
    this.seq = (Date.now() & 0x7fffffff) >>> 0;
  }

  /**
   * Sends `message` (NLM_F_REQUEST|NLM_F_ACK added; seq and pid overwritten in place) and
   * returns the replies. A dump that raced a change carries NLM_F_DUMP_INTR (0x10) in its
   * replies' flags; callers that need a consistent view check it and dump again.
   */
  request(message: Buffer): Promise<Buffer[]> {
    return this.exclusive(async () => {
      // One message: nlmsg_len covers the buffer, give or take its trailing alignment padding.
      const len = Buffer.isBuffer(message) && message.length >= NLMSG_HDRLEN ? message.readUInt32LE(0) : -1;
      if (len < NLMSG_HDRLEN || len > message.length || message.length - len > 3) {
        throw new InvalidInputError('message.nlmsg_len', len, `must describe the whole buffer (${message?.length ?? 0} bytes) as one message`);
      }
      const type = message.readUInt16LE(4);
      const seq = this.nextSeq(1);
      // Always ACK, so a non-dump request ends deterministically (reply, then ACK).
      message.writeUInt16LE(message.readUInt16LE(6) | NLM_F_REQUEST | NLM_F_ACK, 6);
      message.writeUInt32LE(seq, 8);
      message.writeUInt32LE(0, 12);
      const result = await this.io(() => netlinkRequestRaw(this.fd, message, seq, this.timeoutMs), type);
      if (result.errno !== 0) {
        throw new KernelError(messageTypeName(this.protocol, type), describeErrno(result.errno, result.extack), {
          errno: result.errno,
        });
      }
      const out: Buffer[] = [];
      for (let i = 0; i + 1 < result.offsets.length; i++) out.push(result.data.subarray(result.offsets[i], result.offsets[i + 1]));
      return out;
    });
  }

  batch(messages: readonly Buffer[]): Promise<Int32Array> {
    return this.batchDetailed(messages).then((r) => r.errnos);
  }

  batchDetailed(messages: readonly Buffer[]): Promise<BatchDetails> {
    return this.exclusive(async () => {
      if (messages.length === 0) return { errnos: new Int32Array(0), errors: [] };
      const packed = this.packer.pack(messages, this.nextSeq(messages.length));
      return this.io(
        () =>
          netlinkBatchRaw(
            this.fd,
            packed.buffer,
            packed.datagrams,
            packed.datagramCount,
            packed.firstSeq,
            packed.messageCount,
            this.timeoutMs,
            this.packer.ackEach,
          ),
        messages[0].readUInt16LE(4),
      );
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    // Close after queued work finishes, so an in-flight worker never sees a reused fd.
    void this.tail.then(() => {
      try {
        closeFd(this.fd);
      } catch {
        // already closed: nothing left to release
      }
      this.fd = -1;
    });
  }

  private nextSeq(count: number): number {
    const first = this.seq;
    this.seq = (this.seq + count) >>> 0;
    return first;
  }

  private async io<T>(call: () => Promise<T>, type: number): Promise<T> {
    try {
      return await call();
    } catch (err) {
      const e = err as { errno?: number; message?: string };
      throw new KernelError(messageTypeName(this.protocol, type), e.message ?? String(err), { errno: e.errno, cause: err });
    }
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closed) {
      return Promise.reject(new KernelError('netlink', 'transport is closed', { errno: EBADF }));
    }
    const run = this.tail.then(fn);
    this.tail = run.catch(() => undefined);
    return run;
  }
}
