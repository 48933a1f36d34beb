/**
 * How rtnetlink/genetlink messages reach the kernel. The real implementation is the
 * native addon (src/kernel/native.ts); tests may use a fake.
 *
 * Messages are complete nlmsghdr-framed buffers. The transport owns nlmsg_seq and
 * nlmsg_pid: it overwrites them, so callers can build messages once and reuse them.
 */
export interface NetlinkTransport {
  /**
   * Send one request and collect the kernel's replies until NLMSG_DONE (dumps) or the
   * ACK. Rejects with KernelError (with `errno`) on a negative NLMSG_ERROR.
   */
  request(message: Buffer): Promise<Buffer[]>;
  /**
   * Send many messages, each with NLM_F_ACK, packed NLMSG_ALIGN-padded into as few
   * datagrams as possible. Resolves with one errno per message, in order (0 = ok),
   * correlated by sequence number. Never stops at the first error.
   */
  batch(messages: readonly Buffer[]): Promise<Int32Array>;
  close(): void;
}
