/**
 * In-memory ipset with `ipset restore` semantics for the lines the proxy writes:
 * `create NAME TYPE ... -exist`, `add NAME MEMBER -exist`, `del NAME MEMBER -exist`,
 * `flush NAME`, `destroy NAME`. Without `-exist`, adding what is there or deleting what is
 * not fails the whole restore (as ipset does: it stops at the first error).
 */
import type { IpsetRunner } from '../ipset';

export class FakeIpset implements IpsetRunner {
  readonly sets = new Map<string, { create: string; members: Set<string> }>();
  /** Every restore text, in order. */
  readonly restores: string[] = [];
  failNext: Error | undefined;

  async save(name?: string): Promise<string> {
    const lines: string[] = [];
    for (const [n, s] of this.sets) {
      if (name !== undefined && n !== name) continue;
      lines.push(s.create);
      for (const m of s.members) lines.push(`add ${n} ${m}`);
    }
    return lines.length ? `${lines.join('\n')}\n` : '';
  }

  async restore(text: string): Promise<void> {
    if (this.failNext) {
      const e = this.failNext;
      this.failNext = undefined;
      throw e;
    }
    this.restores.push(text);
    for (const [i, line] of text.split('\n').entries()) {
      const w = line.trim().split(/\s+/).filter((x) => x !== '');
      if (w.length === 0 || w[0]!.startsWith('#')) continue;
      const exist = w.includes('-exist');
      const args = w.filter((x) => x !== '-exist');
      const [cmd, name, member] = args;
      const fail = (why: string): never => {
        throw new Error(`ipset v7.17: Error in line ${i + 1}: ${why}`);
      };
      if (!name) fail('missing set name');
      const s = this.sets.get(name!);
      if (cmd === 'create') {
        if (s && !exist) fail('Set cannot be created: set with the same name already exists');
        if (!s) this.sets.set(name!, { create: args.join(' '), members: new Set() });
      } else if (cmd === 'add' || cmd === 'del') {
        if (!s) fail('The set with the given name does not exist');
        if (!member) fail('missing element');
        if (cmd === 'add') {
          if (s!.members.has(member!) && !exist) fail("Element cannot be added to the set: it's already added");
          s!.members.add(member!);
        } else {
          if (!s!.members.has(member!) && !exist) fail("Element cannot be deleted from the set: it's not added");
          s!.members.delete(member!);
        }
      } else if (cmd === 'flush') s?.members.clear();
      else if (cmd === 'destroy') this.sets.delete(name!);
      else fail(`unknown command ${String(cmd)}`);
    }
  }
}
