/**
 * The reference host-local IPAM config shape: `ranges` (a list of range sets, each a
 * list of ranges of one family), or the legacy top-level `subnet`/`rangeStart`/
 * `rangeEnd`/`gateway`; plus `routes` and `dataDir`. Canonicalised the way host-local
 * does it: the subnet is masked, rangeStart defaults to network+1, rangeEnd to the
 * last usable address (the IPv4 broadcast is excluded), the gateway to network+1.
 */
import { Cidr, IpAddress } from '../../common/ip';
import { InvalidInputError } from '../../common/errors';
import type { CniRoute } from '../result';

export const DEFAULT_DATA_DIR = '/var/lib/cni/networks';

export interface IpRange {
  subnet: Cidr;
  start: IpAddress;
  end: IpAddress;
  gateway: IpAddress | undefined;
}

export type RangeSet = IpRange[];

export interface HostLocalConfig {
  type: string;
  rangeSets: RangeSet[];
  routes: CniRoute[];
  dataDir: string;
}

type Json = Record<string, unknown>;

export function parseHostLocal(ipam: Json, field = 'ipam'): HostLocalConfig {
  const type = typeof ipam.type === 'string' ? ipam.type : 'host-local';
  const rangeSets: RangeSet[] = [];
  if (ipam.subnet !== undefined) {
    rangeSets.push([parseRange(ipam, field)]);
  }
  if (ipam.ranges !== undefined) {
    if (!Array.isArray(ipam.ranges)) throw new InvalidInputError(`${field}.ranges`, ipam.ranges, 'expected a list of range sets');
    ipam.ranges.forEach((set, i) => {
      if (!Array.isArray(set) || set.length === 0) {
        throw new InvalidInputError(`${field}.ranges[${i}]`, set, 'expected a non-empty list of ranges');
      }
      const parsed = set.map((r, j) => parseRange(asObject(r, `${field}.ranges[${i}][${j}]`), `${field}.ranges[${i}][${j}]`));
      const fam = parsed[0]!.subnet.family;
      parsed.forEach((r, j) => {
        if (r.subnet.family !== fam) {
          throw new InvalidInputError(`${field}.ranges[${i}][${j}].subnet`, r.subnet.toString(), 'mixes address families in one range set');
        }
        for (let k = 0; k < j; k++) {
          if (overlapsRange(parsed[k]!, r)) {
            throw new InvalidInputError(`${field}.ranges[${i}][${j}]`, r.subnet.toString(), `overlaps range ${k}`);
          }
        }
      });
      rangeSets.push(parsed);
    });
  }
  for (let i = 0; i < rangeSets.length; i++) {
    for (let j = 0; j < i; j++) {
      for (const a of rangeSets[i]!) for (const b of rangeSets[j]!) {
        if (overlapsRange(a, b)) throw new InvalidInputError(`${field}.ranges[${i}]`, a.subnet.toString(), `overlaps range set ${j}`);
      }
    }
  }
  const routes: CniRoute[] = [];
  if (ipam.routes !== undefined) {
    if (!Array.isArray(ipam.routes)) throw new InvalidInputError(`${field}.routes`, ipam.routes, 'expected a list');
    ipam.routes.forEach((r, i) => {
      const o = asObject(r, `${field}.routes[${i}]`);
      const dst = Cidr.parse(o.dst as string, `${field}.routes[${i}].dst`).masked.toString();
      const route: CniRoute = { dst };
      if (o.gw !== undefined) route.gw = IpAddress.parse(o.gw as string, `${field}.routes[${i}].gw`).toString();
      routes.push(route);
    });
  }
  let dataDir = DEFAULT_DATA_DIR;
  if (ipam.dataDir !== undefined) {
    if (typeof ipam.dataDir !== 'string' || !ipam.dataDir.startsWith('/')) {
      throw new InvalidInputError(`${field}.dataDir`, ipam.dataDir, 'expected an absolute path');
    }
    dataDir = ipam.dataDir;
  }
  return { type, rangeSets, routes, dataDir };
}

function parseRange(o: Json, field: string): IpRange {
  const given = Cidr.parse(o.subnet as string, `${field}.subnet`);
  const subnet = given.masked;
  const family = subnet.family;
  const maxHost = family === 4 ? subnet.last.offset(-1) : subnet.last;
  if (subnet.size < (family === 4 ? 4n : 2n)) {
    throw new InvalidInputError(`${field}.subnet`, o.subnet, 'too small to hold any address');
  }
  const inSubnet = (key: string): IpAddress | undefined => {
    if (o[key] === undefined || o[key] === '') return undefined;
    const ip = IpAddress.parse(o[key] as string, `${field}.${key}`);
    if (!subnet.contains(ip)) throw new InvalidInputError(`${field}.${key}`, o[key], `not inside subnet ${subnet.toString()}`);
    return ip;
  };
  const start = inSubnet('rangeStart') ?? subnet.network.offset(1);
  const end = inSubnet('rangeEnd') ?? maxHost;
  if (start.compare(end) > 0) throw new InvalidInputError(`${field}.rangeStart`, o.rangeStart, `is after rangeEnd ${end.toString()}`);
  if (start.equals(subnet.network)) throw new InvalidInputError(`${field}.rangeStart`, o.rangeStart, 'is the network address');
  if (family === 4 && end.equals(subnet.last)) throw new InvalidInputError(`${field}.rangeEnd`, o.rangeEnd, 'is the broadcast address');
  const gateway = inSubnet('gateway') ?? subnet.network.offset(1);
  return { subnet, start, end, gateway };
}

function overlapsRange(a: IpRange, b: IpRange): boolean {
  return a.subnet.family === b.subnet.family && a.start.compare(b.end) <= 0 && b.start.compare(a.end) <= 0;
}

function asObject(v: unknown, field: string): Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new InvalidInputError(field, v, 'expected an object');
  return v as Json;
}

export function rangeContains(r: IpRange, ip: IpAddress): boolean {
  return ip.family === r.subnet.family && ip.compare(r.start) >= 0 && ip.compare(r.end) <= 0;
}

export function describeRangeSet(set: RangeSet): string {
  return set.map((r) => `${r.start.toString()}-${r.end.toString()}`).join(',');
}
