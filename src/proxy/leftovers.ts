/**
 * Removing our own leftovers of the other proxy mode (mode switch, `podwired --cleanup`):
 * the iptables mode's chains (names.ts `owned()`, in both the legacy and the nft iptables
 * backend) and the nftables mode's `inet <table>`. Nobody else's chains or tables are named.
 */
import { errorMessage } from '../common/errors';
import type { Logger } from '../common/log';
import type { Kernel } from '../kernel';
import { NetnsIptables } from '../kernel/iptables';
import type { IptablesRunner } from '../kernel/types';
import { removeOwnChains } from './iptables/applier';

/** The kernel's runner per family, plus the other backend's when the runner is a real one. */
export function runners(kernel: Kernel): IptablesRunner[] {
  const out: IptablesRunner[] = [];
  for (const f of [4, 6] as const) {
    const r = kernel.iptables(f);
    out.push(r);
    if (r instanceof NetnsIptables) {
      const isLegacy = r.binaries.restore.includes('-legacy-');
      const other = new NetnsIptables(f, kernel.netns, isLegacy ? 'nft' : 'legacy');
      if (other.binaries.restore !== r.binaries.restore && other.binaries.restore.includes(isLegacy ? '-nft-' : '-legacy-')) out.push(other);
    }
  }
  return out;
}

export async function removeIptablesLeftovers(kernel: Kernel, logger: Logger): Promise<number> {
  let n = 0;
  for (const r of runners(kernel)) {
    try {
      n += await removeOwnChains(r);
    } catch (err) {
      logger.warn({ err: errorMessage(err), family: r.family }, 'removing the iptables-mode proxy chains failed');
    }
  }
  if (n > 0) logger.info({ chains: n }, 'removed the iptables-mode proxy chains left from an earlier mode');
  return n;
}

export async function removeNftLeftovers(kernel: Kernel, table: string, logger: Logger): Promise<boolean> {
  // Listing is restricted to one named table (kernel/nft.ts): an error means there is none.
  const there = await kernel.nft.list(`table inet ${table}`).then(
    (text) => /^table inet /m.test(text),
    () => false,
  );
  if (!there) return false;
  try {
    await kernel.nft.apply(`add table inet ${table}\ndelete table inet ${table}\n`);
    logger.info({ table: `inet ${table}` }, 'removed the nftables-mode proxy table left from an earlier mode');
    return true;
  } catch (err) {
    logger.warn({ err: errorMessage(err), table: `inet ${table}` }, 'removing the nftables-mode proxy table failed');
    return false;
  }
}
