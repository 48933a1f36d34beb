/**
 * A netlink socket of one protocol in one netns, opened on first use (a failed open is retried
 * on the next use) and closed once. conntrack (NETLINK_NETFILTER) and IPVS (NETLINK_GENERIC)
 * share it.
 */
import { KernelError } from '../../common/errors';
import { E } from '../errno';
import type { NetnsRef } from '../types';
import { openNetlinkTransport } from './native-transport';
import type { NetlinkTransport } from './transport';

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

  get(): Promise<NetlinkTransport> {
    if (this.closed) return Promise.reject(new KernelError(`${this.what}${this.where()}`, 'closed', { errno: E.EBADF }));
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
