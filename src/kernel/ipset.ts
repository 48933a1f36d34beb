/**
 * ipset in one network namespace, through the `ipset` binary: `ipset save` to read and
 * one `ipset restore` (a single batch, one process, applied in order) to change.
 *
 * Why the binary and not NFNL_SUBSYS_IPSET netlink: the proxy changes ipsets only when a
 * Service's addresses change (not on endpoint changes), the restore format is already
 * the batch we need, and it keeps the protocol-version negotiation (ipset protocol 6/7)
 * in the tool that owns it. One spawn per sync that touches sets.
 */
import type { NetnsRef } from './types';
import { runInNetns } from './netns';

export interface IpsetRunner {
  /** `ipset save [NAME]`: `create ...` and `add NAME MEMBER` lines. */
  save(name?: string): Promise<string>;
  /** One `ipset restore` of the whole text (`-exist` on every line makes it idempotent). */
  restore(text: string): Promise<void>;
}

export class NetnsIpset implements IpsetRunner {
  constructor(readonly netns: NetnsRef | undefined) {}

  async save(name?: string): Promise<string> {
    const { stdout } = await runInNetns(this.netns, ['ipset', 'save', ...(name ? [name] : [])]);
    return stdout;
  }

  async restore(text: string): Promise<void> {
    if (text.trim() === '') return;
    await runInNetns(this.netns, ['ipset', 'restore'], { input: text.endsWith('\n') ? text : `${text}\n` });
  }
}

/** `ipset save` text → set name → {type line, members}. */
export function parseIpsetSave(text: string): Map<string, { create: string; members: Set<string> }> {
  const out = new Map<string, { create: string; members: Set<string> }>();
  for (const line of text.split('\n')) {
    const w = line.trim().split(/\s+/);
    if (w[0] === 'create' && w[1]) out.set(w[1], { create: line.trim(), members: new Set() });
    else if (w[0] === 'add' && w[1] && w[2]) {
      let s = out.get(w[1]);
      if (!s) out.set(w[1], (s = { create: '', members: new Set() }));
      s.members.add(w[2]);
    }
  }
  return out;
}
