/**
 * What every part of NetlinkNetworkKernel shares: the transport, the netns, the one
 * request helper that turns a kernel errno into a KernelError naming the operation,
 * link lookups by name, and the ifindex cache the batch path resolves devices from.
 */
import { KernelError, NotFoundError } from '../../common/errors';
import { IpAddress } from '../../common/ip';
import { E, describeErrno } from '../errno';
import type { NetlinkTransport } from '../netlink/transport';
import { decodeLink, encodeDumpLinks, encodeGetLinkByName } from '../rtnetlink/link';
import type { Link, NetnsRef } from '../types';
import { validateIfName } from '../validate';

export function errnoOf(err: unknown): number | undefined {
  return err instanceof KernelError && err.errno !== undefined ? Math.abs(err.errno) : undefined;
}

/** The transport's text (it carries the kernel's extended ACK) or the errno's name. */
export function kernelText(err: unknown, errno: number): string {
  return err instanceof Error && err.message !== '' ? err.message : describeErrno(errno);
}

export function toIp(v: unknown, field: string): IpAddress {
  return v instanceof IpAddress ? v : IpAddress.parse(v as string, field);
}

export class NetContext {
  /** name → ifindex, for batches; see LinkIndexCache. */
  readonly linkIndex: LinkIndexCache;

  constructor(
    readonly transport: NetlinkTransport,
    readonly netns: NetnsRef | undefined,
  ) {
    this.linkIndex = new LinkIndexCache(this);
  }

  where(): string {
    return this.netns ? ` in ${this.netns.path}` : '';
  }

  /** One request; a kernel errno becomes KernelError naming the operation. */
  async call(operation: string, msg: Buffer, field?: string, value?: unknown): Promise<Buffer[]> {
    try {
      return await this.transport.request(msg);
    } catch (err) {
      const errno = errnoOf(err);
      if (errno === undefined) throw err;
      throw new KernelError(`${operation}${this.where()}`, kernelText(err, errno), { errno, field, value, cause: err });
    }
  }

  async listLinks(): Promise<Link[]> {
    const replies = await this.call('list links', encodeDumpLinks());
    const links = replies.map(decodeLink);
    this.linkIndex.fill(links);
    return links;
  }

  async getLink(name: string): Promise<Link | undefined> {
    validateIfName(name);
    try {
      const replies = await this.transport.request(encodeGetLinkByName(name));
      return replies.length > 0 ? decodeLink(replies[0]!) : undefined;
    } catch (err) {
      if (errnoOf(err) === E.ENODEV) return undefined;
      const errno = errnoOf(err);
      if (errno === undefined) throw err;
      throw new KernelError(`get link${this.where()}`, kernelText(err, errno), { errno, field: 'link', value: name, cause: err });
    }
  }

  /** A fresh lookup (one round trip): single operations never act on a stale index. */
  async indexOf(name: string, field = 'link'): Promise<number> {
    validateIfName(name, field);
    const link = await this.getLink(name);
    if (!link) throw new NotFoundError('link', name);
    return link.index;
  }

  async indexNames(): Promise<Map<number, string>> {
    return new Map((await this.listLinks()).map((l) => [l.index, l.name]));
  }
}

/**
 * name → ifindex for the batch path, so a batch of routes/neighbours/FDB entries costs
 * no link dump when its devices are known. Filled by every link dump, updated by this
 * kernel's own create/delete/move, refreshed (one dump) on a miss. A stale entry (a
 * link deleted and re-created by someone else) shows up as ENODEV for the messages that
 * used it; the batch then refreshes and retries those once.
 */
export class LinkIndexCache {
  private readonly byName = new Map<string, number>();
  /** Bumped on every refresh, so a batch knows whether its lookups predate one. */
  generation = 0;

  constructor(private readonly ctx: NetContext) {}

  fill(links: readonly Link[]): void {
    this.byName.clear();
    for (const l of links) this.byName.set(l.name, l.index);
    this.generation++;
  }

  set(name: string, index: number): void {
    this.byName.set(name, index);
  }

  forget(name: string): void {
    this.byName.delete(name);
  }

  peek(name: string): number | undefined {
    return this.byName.get(name);
  }

  /** One link dump; updates the cache. */
  async refresh(): Promise<void> {
    await this.ctx.listLinks();
  }
}
