/**
 * What the allocator needs from persistent IPAM state. The disk implementation keeps
 * the reference host-local layout so a node can switch between the two plugins.
 */
import type { IpAddress } from '../../common/ip';

export interface Reservation {
  ip: IpAddress;
  containerId: string;
  /** Undefined for files written by pre-ifname host-local versions (container ID only). */
  ifname: string | undefined;
}

/** A file in the store's directory that is not ours or cannot be read; reported, skipped. */
export interface StoreProblem {
  file: string;
  reason: string;
}

export interface StoreListing {
  reservations: Reservation[];
  problems: StoreProblem[];
}

export interface IpamStore {
  /** Take the store's exclusive lock (interoperates with host-local's flock). Resolves to the release function. */
  lock(): Promise<() => void>;
  /** Reserve `ip` for (containerId, ifname). False if someone holds it already. Caller holds the lock. */
  reserve(containerId: string, ifname: string, ip: IpAddress, rangeId: string): Promise<boolean>;
  lastReserved(rangeId: string): Promise<IpAddress | undefined>;
  /** Release every IP held by (containerId, ifname); returns them. Tolerant: never throws for a missing file. */
  releaseById(containerId: string, ifname: string): Promise<IpAddress[]>;
  getById(containerId: string, ifname: string): Promise<IpAddress[]>;
  /** Release one IP regardless of owner. */
  release(ip: IpAddress): Promise<void>;
  list(): Promise<StoreListing>;
  close(): void;
}

/** host-local file content: `containerID\r\nifname` (or just `containerID` for old files). */
export function encodeOwner(containerId: string, ifname: string): string {
  return `${containerId.trim()}\r\n${ifname}`;
}

export function decodeOwner(text: string): { containerId: string; ifname: string | undefined } | undefined {
  const t = text.trim();
  if (t === '') return undefined;
  const lines = t.split('\r\n');
  if (lines.length > 2) return undefined;
  const containerId = lines[0]!;
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(containerId)) return undefined;
  if (lines.length === 1) return { containerId, ifname: undefined };
  const ifname = lines[1]!;
  if (ifname === '' || ifname.length > 15 || /[/:\s]/.test(ifname)) return undefined;
  return { containerId, ifname };
}

export function ownerMatches(r: { containerId: string; ifname: string | undefined }, containerId: string, ifname: string): boolean {
  return r.containerId === containerId.trim() && (r.ifname === undefined || r.ifname === ifname);
}
