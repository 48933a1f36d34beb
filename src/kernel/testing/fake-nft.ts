import { CommandError } from '../../common/errors';
import type { NftRunner } from '../types';

/**
 * Stores every applied script. It does not interpret nft syntax; tests assert on the
 * scripts (golden text). `failNext` makes the next apply fail like `nft -f` would.
 */
export class FakeNft implements NftRunner {
  readonly scripts: string[] = [];
  private failure: { line: number; message: string } | undefined;
  /** What `list`/`listJson` return. */
  listText = '';
  listJsonValue: unknown = { nftables: [] };

  failNext(line: number, message = 'Error: syntax error'): void {
    this.failure = { line, message };
  }

  async apply(script: string): Promise<void> {
    if (this.failure) {
      const f = this.failure;
      this.failure = undefined;
      const text = script.split('\n')[f.line - 1] ?? '';
      throw new CommandError('nft -f -', 1, `/dev/stdin:${f.line}:1-1: ${f.message}\n${text}\nscript line ${f.line}: ${text}`);
    }
    this.scripts.push(script);
  }

  get last(): string | undefined {
    return this.scripts[this.scripts.length - 1];
  }

  async listJson(_what: string): Promise<unknown> {
    return this.listJsonValue;
  }

  async list(_what: string): Promise<string> {
    return this.listText;
  }
}
