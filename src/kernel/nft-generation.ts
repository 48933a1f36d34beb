/**
 * The nftables ruleset generation of a netns (NFT_MSG_GETGEN over NETLINK_NETFILTER).
 *
 * The kernel increments it once per committed nftables transaction, whoever sends it
 * (another program, `nft`, iptables-nft), and not for listings, aborted batches or
 * element updates from the packet path. A runner that counts its own commits can so tell,
 * with one small request, whether anybody else changed any table since it last looked:
 * the proxy's periodic reconcile lists its table (seconds at 10,000 Services) only then.
 *
 * Why netlink and not libnftables: libnftables has no command that prints the generation.
 * Read through NftNetlink (nft-netlink.ts).
 */
import { NLM_F_REQUEST } from './rtnetlink/constants';
import { attrMap, frame, parseHeader, payloadOf } from './rtnetlink/nlmsg';

const NFNL_SUBSYS_NFTABLES = 10;
const NFT_MSG_NEWGEN = 15;
const NFT_MSG_GETGEN = 16;
const NFTA_GEN_ID = 1;
const NFNETLINK_V0 = 0;

/** GETGEN: nlmsghdr + nfgenmsg (AF_UNSPEC, version 0, res_id 0), no attributes. */
export function encodeGetGen(): Buffer {
  return frame((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN, NLM_F_REQUEST, [Buffer.from([0, NFNETLINK_V0, 0, 0])]);
}

/** The generation id from the kernel's NEWGEN reply, or undefined if the replies hold none. */
export function decodeNewGen(replies: readonly Buffer[]): number | undefined {
  for (const m of replies) {
    if (parseHeader(m).type !== ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN)) continue;
    const id = attrMap(payloadOf(m).subarray(4)).get(NFTA_GEN_ID);
    if (id && id.length >= 4) return id.readUInt32BE(0);
  }
  return undefined;
}
