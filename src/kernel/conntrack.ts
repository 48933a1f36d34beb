/**
 * ConntrackKernel over ctnetlink: a NETLINK_NETFILTER socket opened inside the netns by
 * the native addon (on its netns helper thread), used from libuv pool threads.
 *
 * list(filter): one IPCTNL_MSG_CT_GET dump (of the filter's family, else both), parsed
 * and filtered here (every field of the filter must match).
 * delete(filter): the same dump, then one IPCTNL_MSG_CT_DELETE per matching entry by
 * its original tuple, zone and CTA_ID, all in one batched send. ENOENT (the entry
 * expired or was deleted meanwhile, or its tuple now belongs to a newer entry with
 * another id) is not an error; the count is what the kernel actually deleted.
 */
import { InvalidInputError, KernelError } from '../common/errors';
import { IpAddress } from '../common/ip';
import { NETLINK_NETFILTER, decodeCtMessage, encodeCtDelete, encodeCtDump, type CtRecord } from './ctnetlink/codec';
import { E, describeErrno } from './errno';
import { socketFor, type LazyNetlinkSocket } from './netlink/lazy-socket';
import type { NetlinkTransport } from './netlink/transport';
import type { ConntrackEntry, ConntrackFilter, ConntrackKernel, NetnsRef } from './types';

/** Normalises and checks a filter (addresses compared in canonical text form). */
export function normaliseFilter(f: ConntrackFilter): ConntrackFilter {
  if (typeof f !== 'object' || f === null) throw new InvalidInputError('filter', f, 'expected an object');
  const out: ConntrackFilter = {};
  if (f.family !== undefined) {
    if (f.family !== 4 && f.family !== 6) throw new InvalidInputError('filter.family', f.family, 'expected 4 or 6');
    out.family = f.family;
  }
  if (f.protocol !== undefined) {
    if (!['tcp', 'udp', 'sctp'].includes(f.protocol)) throw new InvalidInputError('filter.protocol', f.protocol, 'expected tcp, udp or sctp');
    out.protocol = f.protocol;
  }
  if (f.dstPort !== undefined) {
    if (!Number.isInteger(f.dstPort) || f.dstPort < 0 || f.dstPort > 65535) throw new InvalidInputError('filter.dstPort', f.dstPort, 'expected 0..65535');
    out.dstPort = f.dstPort;
  }
  for (const key of ['dst', 'replySrc'] as const) {
    const v = f[key];
    if (v === undefined) continue;
    const ip = IpAddress.parse(String(v), `filter.${key}`);
    if (out.family !== undefined && ip.family !== out.family) throw new InvalidInputError(`filter.${key}`, v, `not an IPv${out.family} address`);
    out.family ??= ip.family;
    out[key] = ip.toString();
  }
  return out;
}

export function entryMatches(e: ConntrackEntry, f: ConntrackFilter): boolean {
  return (
    (f.family === undefined || e.family === f.family) &&
    (f.protocol === undefined || e.protocol === f.protocol) &&
    (f.dst === undefined || e.dst === f.dst) &&
    (f.dstPort === undefined || e.dstPort === f.dstPort) &&
    (f.replySrc === undefined || e.replySrc === f.replySrc)
  );
}

export class NetlinkConntrack implements ConntrackKernel {
  private readonly sock: LazyNetlinkSocket;
  /** false when the socket is shared (openKernel's, also the nft reads'): its owner closes it. */
  private readonly ownsSocket: boolean;

  /**
   * `socket`: the kernel handle's NETLINK_NETFILTER socket, shared with the nft reads (see
   * netlink/lazy-socket.ts for why that is safe), or, for tests, a fake or an already open
   * transport; by default a socket of its own is opened in `netns` on first use.
   */
  constructor(
    readonly netns: NetnsRef | undefined,
    socket?: NetlinkTransport | LazyNetlinkSocket,
  ) {
    const own = socketFor(socket, 'conntrack', netns, NETLINK_NETFILTER);
    this.sock = own.sock;
    this.ownsSocket = own.owned;
  }

  private where(): string {
    return this.sock.where();
  }

  private socket(): Promise<NetlinkTransport> {
    return this.sock.get('conntrack');
  }

  /** The matching records (entry plus tuple/id/zone), from one dump. */
  async records(filter: ConntrackFilter = {}): Promise<CtRecord[]> {
    const f = normaliseFilter(filter);
    const t = await this.socket();
    let replies: Buffer[];
    try {
      replies = await t.request(encodeCtDump(f.family));
    } catch (err) {
      if (err instanceof KernelError) throw new KernelError(`list conntrack${this.where()}`, err.message, { errno: err.errno, cause: err });
      throw err;
    }
    const out: CtRecord[] = [];
    for (const m of replies) {
      const r = decodeCtMessage(m);
      if (r && entryMatches(r.entry, f)) out.push(r);
    }
    return out;
  }

  async list(filter: ConntrackFilter = {}): Promise<ConntrackEntry[]> {
    return (await this.records(filter)).map((r) => r.entry);
  }

  async delete(filter: ConntrackFilter): Promise<number> {
    const records = await this.records(filter);
    if (records.length === 0) return 0;
    const t = await this.socket();
    const msgs = records.map((r) => encodeCtDelete(r.orig, { id: r.id, zone: r.zone }));
    const errnos = await t.batch(msgs);
    let deleted = 0;
    const failures: string[] = [];
    let firstErrno = 0;
    for (let i = 0; i < errnos.length; i++) {
      const errno = Math.abs(errnos[i]!);
      if (errno === 0) deleted++;
      else if (errno !== E.ENOENT) {
        firstErrno ||= errno;
        if (failures.length < 5) {
          const e = records[i]!.entry;
          failures.push(`${e.protocol} ${e.src}:${e.srcPort ?? '-'} -> ${e.dst}:${e.dstPort ?? '-'}: ${describeErrno(errno)}`);
        }
      }
    }
    if (firstErrno !== 0) {
      throw new KernelError(`delete conntrack${this.where()}`, `${deleted} deleted, failed: ${failures.join('; ')}`, { errno: firstErrno });
    }
    return deleted;
  }

  close(): void {
    if (this.ownsSocket) this.sock.close();
  }
}

