/**
 * host-local's allocation algorithm over one range set: round-robin starting after
 * `last_reserved_ip.<set>`, wrapping once over every range of the set, never the
 * network, broadcast or a gateway address. Caller holds the store lock.
 */
import { IpAddress, Cidr } from '../../common/ip';
import { CniError, CniErrorCode } from '../errors';
import { describeRangeSet, rangeContains, type IpRange, type RangeSet } from './config';
import type { IpamStore } from './store';
import { ExhaustedError } from '../../common/errors';

export interface Allocation {
  /** Address with the subnet's prefix length. */
  address: Cidr;
  gateway: IpAddress | undefined;
  rangeSetIndex: number;
}

export class RangeAllocator {
  constructor(
    private readonly set: RangeSet,
    private readonly index: number,
    private readonly store: IpamStore,
  ) {}

  get rangeId(): string {
    return String(this.index);
  }

  rangeFor(ip: IpAddress): IpRange | undefined {
    return this.set.find((r) => rangeContains(r, ip));
  }

  async allocate(containerId: string, ifname: string, requested: IpAddress | undefined): Promise<Allocation> {
    if (requested) {
      const r = this.rangeFor(requested);
      if (!r) {
        throw new CniError(CniErrorCode.AddressUnavailable, `requested IP ${requested.toString()} is not in range set ${describeRangeSet(this.set)}`);
      }
      if (r.gateway && requested.equals(r.gateway)) {
        throw new CniError(CniErrorCode.AddressUnavailable, `requested IP ${requested.toString()} is the gateway of range ${r.subnet.toString()}`);
      }
      if (!(await this.store.reserve(containerId, ifname, requested, this.rangeId))) {
        throw new CniError(CniErrorCode.AddressUnavailable, `requested IP address ${requested.toString()} is not available in range set ${describeRangeSet(this.set)}`);
      }
      return { address: r.subnet.withIp(requested), gateway: r.gateway, rangeSetIndex: this.index };
    }
    for (const held of await this.store.getById(containerId, ifname)) {
      if (this.rangeFor(held)) {
        throw new CniError(
          CniErrorCode.AlreadyExists,
          `${held.toString()} has been allocated to ${containerId}/${ifname}, duplicate allocation is not allowed`,
        );
      }
    }
    const last = await this.store.lastReserved(this.rangeId);
    for (const candidate of this.iterate(last)) {
      if (await this.store.reserve(containerId, ifname, candidate.ip, this.rangeId)) {
        return { address: candidate.range.subnet.withIp(candidate.ip), gateway: candidate.range.gateway, rangeSetIndex: this.index };
      }
    }
    throw new ExhaustedError('IP range set', describeRangeSet(this.set));
  }

  /** Every candidate address once, starting after `last` when it is inside the set. */
  *iterate(last: IpAddress | undefined): Generator<{ ip: IpAddress; range: IpRange }> {
    let startRange = 0;
    let startIp = this.set[0]!.start;
    const lastRange = last ? this.set.findIndex((r) => rangeContains(r, last)) : -1;
    if (last && lastRange >= 0) {
      const r = this.set[lastRange]!;
      if (last.equals(r.end)) {
        startRange = (lastRange + 1) % this.set.length;
        startIp = this.set[startRange]!.start;
      } else {
        startRange = lastRange;
        startIp = last.offset(1);
      }
    }
    const n = this.set.length;
    // Walk start range from startIp, the other ranges whole, then the start range's head.
    for (let k = 0; k <= n; k++) {
      const r = this.set[(startRange + k) % n]!;
      const from = k === 0 ? startIp : r.start;
      const to = k === n ? startIp.offset(-1) : r.end;
      if (k === n && startIp.equals(r.start)) break;
      for (let v = from.value; v <= to.value; v++) {
        const ip = IpAddress.fromBigInt(r.subnet.family, v);
        if (r.gateway && ip.equals(r.gateway)) continue;
        yield { ip, range: r };
      }
    }
  }

  /** True when at least one address of the set is neither reserved nor a gateway. */
  hasFree(reserved: ReadonlySet<string>): boolean {
    for (const r of this.set) {
      const size = r.end.value - r.start.value + 1n;
      let used = 0n;
      for (const key of reserved) {
        const ip = IpAddress.tryParse(key);
        if (ip && rangeContains(r, ip)) used++;
      }
      if (r.gateway && rangeContains(r, r.gateway) && !reserved.has(r.gateway.toString())) used++;
      if (used < size) return true;
    }
    return false;
  }
}
