/**
 * What the nft runners read from nf_tables over netlink rather than through libnftables:
 * the ruleset generation (nft-generation.ts), one table's rule prints (nft-rules.ts) and a
 * whole table with its elements (nft-table.ts), on a NETLINK_NETFILTER socket opened inside
 * the netns on first use: in a kernel handle (openKernel) the one conntrack uses too
 * (netlink/lazy-socket.ts says why sharing it is safe).
 */
import { KernelError } from '../common/errors';
import { NETLINK_NETFILTER } from './native';
import { socketFor, type LazyNetlinkSocket } from './netlink/lazy-socket';
import type { NetlinkTransport } from './netlink/transport';
import { decodeNewGen, encodeGetGen } from './nft-generation';
import { decodeRules, encodeGetRules } from './nft-rules';
import { readNftTable } from './nft-table';
import type { NetnsRef, NftTableContent } from './types';

export class NftNetlink {
  private readonly sock: LazyNetlinkSocket;
  /** false when the socket is shared (the kernel handle's): its owner closes it. */
  private readonly ownsSocket: boolean;

  /** `socket`: a shared NETLINK_NETFILTER socket, or for tests a fake or an already open transport; by default one of its own. */
  constructor(netns: NetnsRef | undefined, socket?: NetlinkTransport | LazyNetlinkSocket) {
    const own = socketFor(socket, 'nftables', netns, NETLINK_NETFILTER);
    this.sock = own.sock;
    this.ownsSocket = own.owned;
  }

  async generation(): Promise<number> {
    const t = await this.sock.get('nftables');
    const id = decodeNewGen(await t.request(encodeGetGen()));
    if (id === undefined) throw new KernelError(`nftables generation${this.sock.where()}`, 'the kernel answered GETGEN without a generation id');
    return id;
  }

  async rulePrints(family: string, table: string): Promise<Map<string, string[]>> {
    const t = await this.sock.get('nftables');
    try {
      return decodeRules(await t.request(encodeGetRules(family, table))).rules;
    } catch (err) {
      if (err instanceof KernelError) throw new KernelError(`dump the rules of table ${family} ${table}${this.sock.where()}`, err.message, { errno: err.errno, cause: err });
      throw err;
    }
  }

  /** Our whole `inet` table, elements decoded (nft-table.ts), without libnftables. */
  async readTable(table: string, skipElements: (name: string) => boolean): Promise<NftTableContent> {
    return readNftTable(await this.sock.get('nftables'), this.sock.where(), table, skipElements);
  }

  close(): void {
    if (this.ownsSocket) this.sock.close();
  }
}
