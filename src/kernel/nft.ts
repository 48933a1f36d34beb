/** `nft` inside a netns: one `nft -f -` transaction per apply; the nft choke point. */
import { CommandError, InvalidInputError } from '../common/errors';
import { runInNetns } from './netns';
import type { NetnsRef, NftRunner } from './types';

const TOKEN = /^[A-Za-z0-9_.\-{}:]+$/;

function listArgs(what: string): string[] {
  const words = what.trim().split(/\s+/).filter((w) => w !== '');
  if (words.length === 0 || words.length > 8 || !words.every((w) => TOKEN.test(w))) {
    throw new InvalidInputError('what', what, 'expected e.g. "ruleset" or "table inet podwire" (plain words only)');
  }
  return words;
}

/** Adds the script line nft complained about (`/dev/stdin:3:1-5: Error: ...`). */
export function annotateNftError(err: CommandError, script: string): CommandError {
  const lines = script.split('\n');
  const notes: string[] = [];
  for (const m of err.stderr.matchAll(/(?:stdin|-):(\d+):/g)) {
    const n = Number(m[1]);
    if (n >= 1 && n <= lines.length) notes.push(`script line ${n}: ${lines[n - 1]}`);
    if (notes.length >= 5) break;
  }
  if (notes.length === 0) return err;
  return new CommandError(String(err.value), err.exitCode, `${err.stderr.trim()}\n${notes.join('\n')}`);
}

export class NetnsNft implements NftRunner {
  constructor(readonly netns: NetnsRef | undefined) {}

  async apply(script: string): Promise<void> {
    try {
      await runInNetns(this.netns, ['nft', '-f', '-'], { input: script });
    } catch (err) {
      throw err instanceof CommandError ? annotateNftError(err, script) : err;
    }
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
