/**
 * iptables-save / iptables-restore inside a netns: the one choke point for iptables.
 * The whole desired ruleset is applied with one `iptables-restore --noflush -w`.
 *
 * Backend: Debian 12's iptables-nft 1.8.9 restore is quadratic in the chains of one input
 * (>900 s for 10k Services in one restore, DESIGN.md §6; the proxy restores a large cold
 * start in chunks there, proxy/iptables/proxier.ts) while iptables-legacy takes 5-10 s, so
 * `auto` picks the legacy binaries when they exist. The two backends keep separate
 * rulesets: pick one per node and keep it.
 */
import { accessSync, constants as fsConstants } from 'node:fs';
import { CommandError, InvalidInputError } from '../common/errors';
import { runInNetns } from './netns';
import type { IptablesRunner, NetnsRef } from './types';

export type IptablesBackend = 'legacy' | 'nft' | 'auto';

const SBIN = ['/usr/sbin', '/sbin', '/usr/bin', '/bin', '/usr/local/sbin'];
const TABLES = new Set(['filter', 'nat', 'mangle', 'raw', 'security']);

function exists(bin: string): boolean {
  for (const dir of SBIN) {
    try {
      accessSync(`${dir}/${bin}`, fsConstants.X_OK);
      return true;
    } catch {
      // try next
    }
  }
  return false;
}

/** Binary names for a family and backend: `iptables-legacy-restore`, `ip6tables-nft-save`, ... */
export function iptablesBinaries(family: 4 | 6, backend: IptablesBackend = 'auto'): { save: string; restore: string } {
  const base = family === 4 ? 'iptables' : 'ip6tables';
  let chosen: 'legacy' | 'nft' | undefined = backend === 'auto' ? undefined : backend;
  if (chosen === undefined) chosen = exists(`${base}-legacy-restore`) ? 'legacy' : exists(`${base}-nft-restore`) ? 'nft' : undefined;
  if (chosen === undefined) return { save: `${base}-save`, restore: `${base}-restore` };
  return { save: `${base}-${chosen}-save`, restore: `${base}-${chosen}-restore` };
}

/** Adds the offending input line(s) to an iptables-restore error ("line 7 failed"). */
export function annotateRestoreError(err: CommandError, input: string): CommandError {
  const lines = input.split('\n');
  const notes: string[] = [];
  for (const m of err.stderr.matchAll(/line:? (\d+)/g)) {
    const n = Number(m[1]);
    if (n >= 1 && n <= lines.length) notes.push(`input line ${n}: ${lines[n - 1]}`);
    if (notes.length >= 5) break;
  }
  if (notes.length === 0) return err;
  const annotated = new CommandError(String(err.value), err.exitCode, `${err.stderr.trim()}\n${notes.join('\n')}`);
  return annotated;
}

export class NetnsIptables implements IptablesRunner {
  private readonly bins: { save: string; restore: string };

  constructor(
    readonly family: 4 | 6,
    readonly netns: NetnsRef | undefined,
    backend: IptablesBackend = 'auto',
  ) {
    this.bins = iptablesBinaries(family, backend);
  }

  get binaries(): { save: string; restore: string } {
    return this.bins;
  }

  get backend(): 'legacy' | 'nft' | undefined {
    return this.bins.restore.includes('-nft-') ? 'nft' : this.bins.restore.includes('-legacy-') ? 'legacy' : undefined;
  }

  async save(table: string): Promise<string> {
    if (!TABLES.has(table)) throw new InvalidInputError('table', table, `expected one of ${[...TABLES].join(', ')}`);
    const { stdout } = await runInNetns(this.netns, [this.bins.save, '-t', table]);
    return stdout;
  }

  async restore(text: string, options: { noflush?: boolean; counters?: boolean } = {}): Promise<void> {
    const argv = [this.bins.restore, '-w'];
    if (options.noflush ?? true) argv.push('--noflush');
    if (options.counters) argv.push('--counters');
    try {
      await runInNetns(this.netns, argv, { input: text.endsWith('\n') ? text : `${text}\n` });
    } catch (err) {
      throw err instanceof CommandError ? annotateRestoreError(err, text) : err;
    }
  }
}
