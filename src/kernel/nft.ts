/**
 * nftables inside a netns: the nft choke point. Two runners behind `NftRunner`:
 *
 * - `LibNftables` (backend 'libnftables', preferred): Debian's libnftables called
 *   in-process by the native addon native/nftables, on a helper thread that joined the
 *   netns (libnftables opens its netlink socket during the call), off the event loop.
 *   One script = one nft_run_cmd_from_filename = one atomic transaction, as `nft -f`.
 * - `NetnsNft` (backend 'nft', the fallback): one `nft -f -` process per apply.
 *
 * `openNftRunner(netns)` picks libnftables when its addon loads, else `nft`.
 *
 * Both only touch what the script names: scripts that would reach beyond their own
 * tables (`flush ruleset`, `include`, `list`/`monitor`/`reset`/`export`/`import`) are
 * refused before anything runs, and listings are restricted to one named table or an
 * object in it, never `list ruleset`: a mismatched or bundled nft segfaulting while
 * parsing other owners' sets is a known kube-proxy failure (kubernetes #136786).
 * Errors name the offending script line (`annotateNftError`).
 */
import { CommandError, InvalidInputError } from '../common/errors';
import { NFT_AS_FILE, NFT_JSON, loadNftablesAddon, nftRun } from './native';
import { runInNetns } from './netns';
import type { LazyNetlinkSocket } from './netlink/lazy-socket';
import { NftNetlink } from './nft-netlink';
import type { NetnsRef, NftGeneration, NftRunner, NftTableContent } from './types';

const WORD = /^[A-Za-z0-9_.\-]+$/;
const FAMILIES = new Set(['ip', 'ip6', 'inet', 'arp', 'bridge', 'netdev']);
/** Objects inside a table that may be listed: `<kind> <family> <table> <name>`. */
const HEADER_LISTINGS = new Set(['tables', 'chains']);
const TABLE_OBJECTS = new Set(['chain', 'set', 'map', 'flowtable', 'counter', 'quota', 'limit', 'meter']);

/**
 * Checks a listing request and returns its words: `table <family> <name>` or
 * `<chain|set|map|flowtable|counter|quota|limit|meter> <family> <table> <name>`, or the
 * header-only `tables` / `chains`.
 */
export function listArgs(what: string): string[] {
  const words = typeof what === 'string' ? what.trim().split(/\s+/).filter((w) => w !== '') : [];
  const bad = (why: string): never => {
    throw new InvalidInputError('what', what, `${why}; expected "table <family> <name>" or "<chain|set|map|...> <family> <table> <name>" (listing is restricted to one named table, or the header-only "tables" and "chains")`);
  };
  if (!words.every((w) => WORD.test(w))) bad('plain words only');
  // `list tables` and `list chains` print names and chain headers (hook, priority, policy) only,
  // never others' rules or set elements (what made mismatched nft binaries crash, kubernetes
  // #136786): enough to see that our table exists and whether another table drops forwarding.
  if (words.length === 1 && HEADER_LISTINGS.has(words[0]!)) return words;
  const [kind, family] = words;
  if (kind === 'table') {
    if (words.length !== 3) bad('table needs a family and a name');
  } else if (kind !== undefined && TABLE_OBJECTS.has(kind)) {
    if (words.length !== 4) bad(`${kind} needs a family, a table and a name`);
  } else {
    bad(`cannot list "${kind ?? ''}"`);
  }
  if (!FAMILIES.has(family!)) bad(`unknown family ${family}`);
  return words;
}

const FORBIDDEN: [RegExp, string][] = [
  [/^flush\s+ruleset\b/, 'flush ruleset would touch every table'],
  [/^include\b/, 'include reads files'],
  [/^(list|monitor|reset|export|import|describe)\b/, 'only changes belong in an apply script'],
];

/** Refuses script lines that reach beyond the script's own tables; names the line. */
export function checkNftScript(script: string): void {
  if (typeof script !== 'string') throw new InvalidInputError('script', script, 'expected nft script text');
  if (script.includes('\0')) throw new InvalidInputError('script', 'NUL', 'must not contain NUL');
  const lines = script.split('\n');
  for (let i = 0; i < lines.length; i++) {
    // Statements may be separated by ';' on one line too.
    for (const stmt of lines[i]!.replace(/"[^"]*"/g, '""').replace(/#.*$/, '').split(';')) {
      const s = stmt.trim();
      for (const [re, why] of FORBIDDEN) {
        if (re.test(s)) throw new InvalidInputError('script', `line ${i + 1}: ${lines[i]}`, why);
      }
    }
  }
}

/** Adds the script line nft complained about (`/dev/stdin:3:1-5: Error: ...`). */
export function annotateNftError(err: CommandError, script: string): CommandError {
  const lines = script.split('\n');
  const notes: string[] = [];
  for (const m of err.stderr.matchAll(/(?:stdin|-|<cmdline>):(\d+):/g)) {
    const n = Number(m[1]);
    const note = `script line ${n}: ${lines[n - 1]}`;
    if (n >= 1 && n <= lines.length && !notes.includes(note)) notes.push(note);
    if (notes.length >= 5) break;
  }
  if (notes.length === 0) return err;
  return new CommandError(String(err.value), err.exitCode, `${err.stderr.trim()}\n${notes.join('\n')}`);
}

/** The fallback: `nft -f -` / `nft list ...` processes in the netns. */
/**
 * What both runners read from nf_tables over netlink (nft-netlink.ts) rather than through
 * their listing, and the count of the transactions they committed (`committed()` after each).
 */
abstract class NftRunnerBase {
  private commits = 0;
  private readonly nl: NftNetlink;

  /** `netfilter`: a NETLINK_NETFILTER socket shared with others (openKernel's); by default one of its own. */
  constructor(
    readonly netns: NetnsRef | undefined,
    netfilter?: LazyNetlinkSocket,
  ) {
    this.nl = new NftNetlink(netns, netfilter);
  }

  protected committed(): void {
    this.commits++;
  }

  async generation(): Promise<NftGeneration> {
    const ownCommits = this.commits;
    return { generation: await this.nl.generation(), ownCommits };
  }

  rulePrints(family: string, table: string): Promise<Map<string, string[]>> {
    return this.nl.rulePrints(family, table);
  }

  readTable(table: string, skipElements: (name: string) => boolean): Promise<NftTableContent> {
    listArgs(`table inet ${table}`); // a plain name only, as for listings
    return this.nl.readTable(table, skipElements);
  }

  close(): void {
    this.nl.close();
  }
}

export class NetnsNft extends NftRunnerBase implements NftRunner {
  readonly backend = 'nft' as const;

  async apply(script: string): Promise<void> {
    checkNftScript(script);
    try {
      await runInNetns(this.netns, ['nft', '-f', '-'], { input: script });
    } catch (err) {
      throw err instanceof CommandError ? annotateNftError(err, script) : err;
    }
    this.committed();
  }

  async listJson(what: string): Promise<unknown> {
    const { stdout } = await runInNetns(this.netns, ['nft', '-j', 'list', ...listArgs(what)]);
    return JSON.parse(stdout) as unknown;
  }

  async list(what: string): Promise<string> {
    const { stdout } = await runInNetns(this.netns, ['nft', 'list', ...listArgs(what)]);
    return stdout;
  }
}

/** In-process libnftables (native/nftables). Throws PW_NATIVE_MISSING if the addon cannot load. */
export class LibNftables extends NftRunnerBase implements NftRunner {
  readonly backend = 'libnftables' as const;

  constructor(netns: NetnsRef | undefined, netfilter?: LazyNetlinkSocket) {
    super(netns, netfilter);
    loadNftablesAddon();
  }

  private async run(script: string, flags: number, command: string): Promise<string> {
    const r = await nftRun(this.netns, script, flags);
    if (r.rc !== 0) throw new CommandError(command, r.rc, r.error || 'libnftables failed without a message');
    return r.output;
  }

  async apply(script: string): Promise<void> {
    checkNftScript(script);
    try {
      await this.run(script, NFT_AS_FILE, 'libnftables');
    } catch (err) {
      throw err instanceof CommandError ? annotateNftError(err, script) : err;
    }
    this.committed();
  }

  async listJson(what: string): Promise<unknown> {
    return JSON.parse(await this.run(`list ${listArgs(what).join(' ')}`, NFT_JSON, 'libnftables -j list')) as unknown;
  }

  async list(what: string): Promise<string> {
    return this.run(`list ${listArgs(what).join(' ')}`, 0, 'libnftables list');
  }
}

export type NftBackendChoice = 'auto' | 'libnftables' | 'nft';

/**
 * The nft runner for `netns`: `auto` (default) is libnftables when its addon loads (the
 * library is present and the addon was built), else `nft -f -`. `libnftables` throws
 * PW_NATIVE_MISSING when it cannot load; `nft` always spawns. `netfilter`: the NETLINK_NETFILTER
 * socket for the generation and the table reads, when the caller shares one (openKernel).
 */
export function openNftRunner(netns: NetnsRef | undefined, backend: NftBackendChoice = 'auto', netfilter?: LazyNetlinkSocket): NftRunner {
  if (backend === 'nft') return new NetnsNft(netns, netfilter);
  if (backend === 'libnftables') return new LibNftables(netns, netfilter);
  try {
    return new LibNftables(netns, netfilter);
  } catch {
    return new NetnsNft(netns, netfilter);
  }
}
