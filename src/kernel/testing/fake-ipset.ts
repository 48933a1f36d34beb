/**
 * In-memory ipset with `ipset restore` semantics for the lines the proxy writes:
 * `create NAME TYPE ... -exist`, `add NAME MEMBER -exist`, `del NAME MEMBER -exist`,
 * `flush NAME`, `destroy NAME`. Without `-exist`, adding what is there or deleting what is
 * not fails the whole restore (as ipset does: it stops at the first error). Like ipset, a
 * name longer than 31 characters and an address of the other family than the set's
 * (`family inet` / `inet6`, default inet) are refused.
 */
import { Cidr, IpAddress } from '../../common/ip';
import type { IpsetRunner } from '../ipset';

/** The fields of a packet `-m set --match-set NAME DIMS` looks at. */
export interface SetPacket {
  src?: string;
  dst?: string;
  protocol?: string;
  dport?: number;
}

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

  /**
   * Would `-m set --match-set name dims` match this packet? For the types the proxy creates:
   * bitmap:port, hash:ip, hash:ip,port, hash:ip,port,ip and hash:ip,port,net (only the
   * destination port is known: a `src` port dimension never matches).
   */
  test(name: string, dims: string, p: SetPacket): boolean {
    const s = this.sets.get(name);
    if (!s) return false;
    const type = s.create.split(/\s+/)[2] ?? '';
    const d = dims.split(',');
    const addr = (dim: string | undefined): string | undefined => (dim === 'src' ? p.src : dim === 'dst' ? p.dst : undefined);
    if (type === 'bitmap:port') return d[0] === 'dst' && p.dport !== undefined && s.members.has(String(p.dport));
    const ip = addr(d[0]);
    if (ip === undefined) return false;
    if (type === 'hash:ip') return s.members.has(ip);
    if (d[1] !== 'dst' || p.dport === undefined || p.protocol === undefined) return false;
    const ipPort = `${ip},${p.protocol}:${p.dport}`;
    if (type === 'hash:ip,port') return s.members.has(ipPort);
    const third = addr(d[2]);
    if (third === undefined) return false;
    if (type === 'hash:ip,port,ip') return s.members.has(`${ipPort},${third}`);
    if (type === 'hash:ip,port,net') {
      for (const m of s.members) {
        if (!m.startsWith(`${ipPort},`)) continue;
        const net = m.slice(ipPort.length + 1);
        if (Cidr.parse(net.includes('/') ? net : `${net}/${net.includes(':') ? 128 : 32}`).contains(IpAddress.parse(third))) return true;
      }
    }
    return false;
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
      if (name!.length > 31) fail(`Syntax error: setname '${name!}' is longer than 31 characters`);
      const s = this.sets.get(name!);
      if (cmd === 'create') {
        if (s && !exist) fail('Set cannot be created: set with the same name already exists');
        if (!s) this.sets.set(name!, { create: args.join(' '), members: new Set() });
      } else if (cmd === 'add' || cmd === 'del') {
        if (!s) fail('The set with the given name does not exist');
        if (!member) fail('missing element');
        if (!s!.create.split(/\s+/)[2]!.startsWith('bitmap:')) {
          const six = / family inet6\b/.test(s!.create);
          // The address parts of a member (`ip,proto:port,ip` / `,net`): each must be the set's family.
          for (const part of member!.split(',')) {
            const ip = IpAddress.tryParse(part.replace(/\/\d+$/, ''));
            if (ip !== undefined && (ip.family === 6) !== six) fail(`Syntax error: cannot parse ${member!}: resolving to IPv${six ? 4 : 6} address failed`);
          }
        }
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
