/** In-memory IpamStore for unit tests: same semantics as the disk store, no files. */
import { IpAddress } from '../../common/ip';
import type { IpamStore, Reservation, StoreListing, StoreProblem } from './store';
import { ownerMatches } from './store';

export class FakeIpamStore implements IpamStore {
  readonly reserved = new Map<string, Reservation>();
  readonly last = new Map<string, IpAddress>();
  readonly problems: StoreProblem[] = [];
  private locked = false;
  private waiters: (() => void)[] = [];
  lockCount = 0;

  async lock(): Promise<() => void> {
    while (this.locked) await new Promise<void>((resolve) => this.waiters.push(resolve));
    this.locked = true;
    this.lockCount++;
    return () => {
      this.locked = false;
      this.waiters.shift()?.();
    };
  }

  get isLocked(): boolean {
    return this.locked;
  }

  async reserve(containerId: string, ifname: string, ip: IpAddress, rangeId: string): Promise<boolean> {
    const key = ip.toString();
    if (this.reserved.has(key)) return false;
    this.reserved.set(key, { ip, containerId, ifname });
    this.last.set(rangeId, ip);
    return true;
  }

  async lastReserved(rangeId: string): Promise<IpAddress | undefined> {
    return this.last.get(rangeId);
  }

  async releaseById(containerId: string, ifname: string): Promise<IpAddress[]> {
    const out: IpAddress[] = [];
    for (const [k, r] of this.reserved) {
      if (ownerMatches(r, containerId, ifname)) {
        this.reserved.delete(k);
        out.push(r.ip);
      }
    }
    return out;
  }

  async getById(containerId: string, ifname: string): Promise<IpAddress[]> {
    return [...this.reserved.values()].filter((r) => ownerMatches(r, containerId, ifname)).map((r) => r.ip);
  }

  async release(ip: IpAddress): Promise<void> {
    this.reserved.delete(ip.toString());
  }

  async list(): Promise<StoreListing> {
    return { reservations: [...this.reserved.values()], problems: [...this.problems] };
  }

  close(): void {}
}

export function ip(text: string): IpAddress {
  return IpAddress.parse(text);
}
