/**
 * A netlink socket of one protocol in one netns, opened on first use (a failed open is retried
 * on the next use) and closed once. The building block of conntrack and the nft reads
 * (NETLINK_NETFILTER) and IPVS (NETLINK_GENERIC).
 *
 * One socket may serve several users (openKernel gives conntrack and the nft reads one
 * NETLINK_NETFILTER socket): the transport runs one operation at a time, so a request or a
 * dump gets its whole answer before the next one is sent, each with sequence numbers of its
 * own (a late answer to an abandoned call is skipped by them), and the socket joins no
 * multicast group, so nothing arrives unasked. The user that is given a shared socket does not
 * close it; whoever made it does. Not for sharing: a socket that subscribes to events (those
 * would arrive amid the answers), and note that a dump abandoned half-way (30 s without an
 * answer) leaves the kernel's dump running, so the next dump on the socket, whoever asks,
 * fails once with EBUSY (docs/kernel.md, "One NETLINK_NETFILTER socket").
 */
import { KernelError } from '../../common/errors';
import { E } from '../errno';
import type { NetnsRef } from '../types';
import { openNetlinkTransport } from './native-transport';
import type { NetlinkTransport } from './transport';

/**
 * A user's socket: the shared one it was given (`owned` false: whoever made it closes it), or
 * one of its own, opened on first use, or over `given` when that is a transport (tests: a fake
 * or an already open socket).
 */
export function socketFor(given: NetlinkTransport | LazyNetlinkSocket | undefined, what: string, netns: NetnsRef | undefined, protocol: number): { sock: LazyNetlinkSocket; owned: boolean } {
  return given instanceof LazyNetlinkSocket ? { sock: given, owned: false } : { sock: new LazyNetlinkSocket(what, netns, protocol, given), owned: true };
}

export class LazyNetlinkSocket {
  private transport: Promise<NetlinkTransport> | undefined;
  private closed = false;

  /** `transport` is for tests (a fake or an already open socket). */
  constructor(
    private readonly what: string,
    readonly netns: NetnsRef | undefined,
    private readonly protocol: number,
    transport?: NetlinkTransport,
  ) {
    if (transport) this.transport = Promise.resolve(transport);
  }

  /** ` in /run/netns/x`, or nothing for our own netns: for error messages. */
  where(): string {
    return this.netns ? ` in ${this.netns.path}` : '';
  }

  /** `what` names the user in the error when the socket is closed (a shared socket has several). */
  get(what = this.what): Promise<NetlinkTransport> {
    if (this.closed) return Promise.reject(new KernelError(`${what}${this.where()}`, 'closed', { errno: E.EBADF }));
    this.transport ??= openNetlinkTransport(this.netns, this.protocol).catch((err: unknown) => {
      this.transport = undefined;
      throw err;
    });
    return this.transport;
  }

  close(): void {
    this.closed = true;
    const t = this.transport;
    this.transport = undefined;
    void t?.then((x) => x.close(), () => undefined);
  }
}
