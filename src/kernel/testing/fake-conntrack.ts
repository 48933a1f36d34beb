import { entryMatches as matches } from '../conntrack';
import type { ConntrackEntry, ConntrackFilter, ConntrackKernel } from '../types';

/** An in-memory conntrack table; tests seed `entries` and assert on what is left and on `deletes`. */
export class FakeConntrack implements ConntrackKernel {
  entries: ConntrackEntry[] = [];
  readonly deletes: ConntrackFilter[] = [];

  async list(filter: ConntrackFilter = {}): Promise<ConntrackEntry[]> {
    return this.entries.filter((e) => matches(e, filter)).map((e) => ({ ...e }));
  }

  async delete(filter: ConntrackFilter): Promise<number> {
    this.deletes.push({ ...filter });
    const before = this.entries.length;
    this.entries = this.entries.filter((e) => !matches(e, filter));
    return before - this.entries.length;
  }
}

export { matches };
