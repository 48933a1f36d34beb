/**
 * Forward-hook base chains with policy drop in `nft list chains` text. nftables runs every base
 * chain on a hook, so an accept in our table cannot override another table's drop (Docker's
 * `ip filter FORWARD`). Shared by the proxy's start-up check and `podwire doctor`.
 */

/** "family table chain" of every forward-hook chain with policy drop outside `ours` ("family table" names). */
export function dropForwardChains(text: string, ours: ReadonlySet<string>): string[] {
  const found: string[] = [];
  let table = '';
  let chain = '';
  for (const line of text.split('\n')) {
    const t = /^table (\S+ \S+) \{/.exec(line);
    if (t) table = t[1]!;
    const c = /^\s*chain (\S+) \{/.exec(line);
    if (c) chain = c[1]!;
    if (/hook forward/.test(line) && /policy drop/.test(line) && !ours.has(table)) found.push(`${table} ${chain}`);
  }
  return found;
}
