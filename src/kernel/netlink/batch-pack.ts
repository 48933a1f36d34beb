/**
 * Packs netlink messages for one batched send: each message copied NLMSG_ALIGN-padded
 * (the kernel stops parsing a datagram at the first misaligned message and silently
 * drops the rest), flagged NLM_F_REQUEST|NLM_F_ACK, numbered with consecutive sequence
 * numbers, and split into datagrams bounded in bytes and in message count (the count
 * bound keeps one datagram's ACKs within the socket's receive buffer).
 *
 * Pure logic, no I/O: the native transport hands the result to the addon. The packer
 * keeps and reuses its buffers, so a steady stream of batches allocates nothing new.
 */
import { InvalidInputError } from '../../common/errors';

export const NLMSG_HDRLEN = 16;
export const NLM_F_REQUEST = 0x1;
export const NLM_F_ACK = 0x4;

export function nlmsgAlign(length: number): number {
  return (length + 3) & ~3;
}

export interface PackLimits {
  /** Largest datagram in bytes (a single larger message still gets its own datagram). */
  maxDatagramBytes: number;
  /** Most messages per datagram. */
  maxMessagesPerDatagram: number;
  /**
   * true (default): NLM_F_ACK on every message, each answered individually.
   * false: NLM_F_ACK only on each datagram's last message. The kernel still answers
   * every failure (it sends NLMSG_ERROR for errors whatever the flag) and processes a
   * datagram in order, so the last message's ACK proves the silent ones succeeded:
   * the same per-message result with one ACK per datagram instead of one per message.
   */
  ackEach?: boolean;
}

export interface PackedBatch {
  /** Packed bytes; valid until the next pack() call. */
  buffer: Buffer;
  /** Per datagram d: [2d] = byte end, [2d+1] = message end (exclusive). */
  datagrams: Uint32Array;
  datagramCount: number;
  messageCount: number;
  /** Sequence number of message 0; message i has (firstSeq + i) mod 2^32. */
  firstSeq: number;
}

/**
 * An estimate of the kernel's receive-queue charge per ACK (skb truesize of a small
 * nlmsgerr); used to size datagrams so their ACKs fit in SO_RCVBUF.
 */
export const ACK_TRUESIZE_ESTIMATE = 1280;

export function limitsForReceiveBuffer(rcvbuf: number, maxDatagramBytes = 128 * 1024): PackLimits {
  // Keep half the buffer free for anything else queued (late replies, a dump tail).
  const perDatagram = Math.max(1, Math.floor(rcvbuf / 2 / ACK_TRUESIZE_ESTIMATE));
  return { maxDatagramBytes, maxMessagesPerDatagram: perDatagram };
}

export class BatchPacker {
  private buffer = Buffer.alloc(0);
  private datagrams = new Uint32Array(0);

  constructor(private readonly limits: PackLimits) {
    if (!(limits.maxDatagramBytes >= NLMSG_HDRLEN)) {
      throw new InvalidInputError('maxDatagramBytes', limits.maxDatagramBytes, `must be at least ${NLMSG_HDRLEN}`);
    }
    if (!(limits.maxMessagesPerDatagram >= 1)) {
      throw new InvalidInputError('maxMessagesPerDatagram', limits.maxMessagesPerDatagram, 'must be at least 1');
    }
  }

  get ackEach(): boolean {
    return this.limits.ackEach !== false;
  }

  pack(messages: readonly Buffer[], firstSeq: number): PackedBatch {
    let total = 0;
    for (let i = 0; i < messages.length; i++) total += nlmsgAlign(messageLength(messages[i], i));
    if (this.buffer.length < total) this.buffer = Buffer.allocUnsafe(Math.max(total, this.buffer.length * 2));
    // Upper bound on datagrams: one per message.
    if (this.datagrams.length < 2 * messages.length) {
      this.datagrams = new Uint32Array(Math.max(2 * messages.length, this.datagrams.length * 2));
    }
    const out = this.buffer;
    const { maxDatagramBytes, maxMessagesPerDatagram } = this.limits;
    const ackEach = this.ackEach;
    const ackFlag = ackEach ? NLM_F_ACK : 0;
    let offset = 0;
    let lastOffset = 0;
    let datagramStart = 0;
    let datagramMessages = 0;
    let datagramCount = 0;
    for (let i = 0; i < messages.length; i++) {
      const msg = messages[i];
      const len = msg.readUInt32LE(0);
      const padded = nlmsgAlign(len);
      if (datagramMessages > 0 && (offset + padded - datagramStart > maxDatagramBytes || datagramMessages >= maxMessagesPerDatagram)) {
        this.datagrams[2 * datagramCount] = offset;
        this.datagrams[2 * datagramCount + 1] = i;
        if (!ackEach) setAck(out, lastOffset);
        datagramCount++;
        datagramStart = offset;
        datagramMessages = 0;
      }
      msg.copy(out, offset, 0, len);
      out.writeUInt16LE((out.readUInt16LE(offset + 6) & ~NLM_F_ACK) | NLM_F_REQUEST | ackFlag, offset + 6);
      out.writeUInt32LE((firstSeq + i) >>> 0, offset + 8);
      out.writeUInt32LE(0, offset + 12);
      for (let p = offset + len; p < offset + padded; p++) out[p] = 0;
      lastOffset = offset;
      offset += padded;
      datagramMessages++;
    }
    if (datagramMessages > 0) {
      this.datagrams[2 * datagramCount] = offset;
      this.datagrams[2 * datagramCount + 1] = messages.length;
      if (!ackEach) setAck(out, lastOffset);
      datagramCount++;
    }
    return {
      buffer: out.subarray(0, offset),
      datagrams: this.datagrams,
      datagramCount,
      messageCount: messages.length,
      firstSeq: firstSeq >>> 0,
    };
  }
}

function setAck(out: Buffer, offset: number): void {
  out.writeUInt16LE(out.readUInt16LE(offset + 6) | NLM_F_ACK, offset + 6);
}

/** nlmsg_len of message i, validated against its buffer. */
function messageLength(msg: Buffer, index: number): number {
  if (!Buffer.isBuffer(msg) || msg.length < NLMSG_HDRLEN) {
    throw new InvalidInputError(`messages[${index}]`, msg?.length, `a netlink message needs at least ${NLMSG_HDRLEN} bytes`);
  }
  const len = msg.readUInt32LE(0);
  if (len < NLMSG_HDRLEN || len > msg.length) {
    throw new InvalidInputError(`messages[${index}].nlmsg_len`, len, `must be between ${NLMSG_HDRLEN} and the buffer length ${msg.length}`);
  }
  return len;
}
