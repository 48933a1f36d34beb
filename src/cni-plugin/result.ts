/**
 * CNI result types (the 1.x shape is the internal one) and conversion to and from
 * the version the runtime asked for. 0.3.x/0.4.0 results differ from 1.x only in
 * the per-IP `version` field; 1.1.0 is 1.0.0's shape.
 */
import { Cidr, IpAddress } from '../common/ip';
import { CniError, CniErrorCode } from './errors';
import { compareVersions } from './version';

export interface CniInterface {
  name: string;
  mac?: string;
  mtu?: number;
  sandbox?: string;
  socketPath?: string;
}

export interface CniIpConfig {
  /** Address with the subnet's prefix length, e.g. 10.244.0.5/24. */
  address: string;
  gateway?: string;
  interface?: number;
}

export interface CniRoute {
  dst: string;
  gw?: string;
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

export interface CniDns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

export interface CniResult {
  cniVersion: string;
  interfaces?: CniInterface[];
  ips?: CniIpConfig[];
  routes?: CniRoute[];
  dns?: CniDns;
}

/** Render a result for the requested version. */
export function resultForVersion(result: CniResult, version: string): Record<string, unknown> {
  const out: Record<string, unknown> = { cniVersion: version };
  if (result.interfaces && result.interfaces.length > 0) out.interfaces = result.interfaces.map((i) => ({ ...i }));
  const legacy = compareVersions(version, '1.0.0') < 0;
  if (result.ips && result.ips.length > 0) {
    out.ips = result.ips.map((ip) => {
      const o: Record<string, unknown> = {};
      if (legacy) o.version = Cidr.parse(ip.address).family === 4 ? '4' : '6';
      if (ip.interface !== undefined) o.interface = ip.interface;
      o.address = ip.address;
      if (ip.gateway !== undefined) o.gateway = ip.gateway;
      return o;
    });
  }
  if (result.routes && result.routes.length > 0) out.routes = result.routes.map((r) => ({ ...r }));
  out.dns = result.dns ?? {};
  return out;
}

/** Parse a result of any supported version (a prevResult, a delegated IPAM's output). */
export function parseResult(raw: unknown, field = 'prevResult'): CniResult {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new CniError(CniErrorCode.DecodeFailure, `${field}: expected a JSON object`);
  }
  const r = raw as Record<string, unknown>;
  const cniVersion = typeof r.cniVersion === 'string' ? r.cniVersion : '1.0.0';
  const out: CniResult = { cniVersion };
  if (Array.isArray(r.interfaces)) {
    out.interfaces = r.interfaces.map((i, n) => {
      const o = obj(i, `${field}.interfaces[${n}]`);
      const itf: CniInterface = { name: str(o.name, `${field}.interfaces[${n}].name`) };
      if (typeof o.mac === 'string') itf.mac = o.mac;
      if (typeof o.mtu === 'number') itf.mtu = o.mtu;
      if (typeof o.sandbox === 'string') itf.sandbox = o.sandbox;
      if (typeof o.socketPath === 'string') itf.socketPath = o.socketPath;
      return itf;
    });
  }
  if (Array.isArray(r.ips)) {
    out.ips = r.ips.map((i, n) => {
      const o = obj(i, `${field}.ips[${n}]`);
      const address = str(o.address, `${field}.ips[${n}].address`);
      Cidr.parse(address, `${field}.ips[${n}].address`);
      const ip: CniIpConfig = { address };
      if (typeof o.gateway === 'string') ip.gateway = IpAddress.parse(o.gateway, `${field}.ips[${n}].gateway`).toString();
      if (typeof o.interface === 'number') ip.interface = o.interface;
      return ip;
    });
  }
  if (Array.isArray(r.routes)) {
    out.routes = r.routes.map((i, n) => {
      const o = obj(i, `${field}.routes[${n}]`);
      const route: CniRoute = { dst: str(o.dst, `${field}.routes[${n}].dst`) };
      if (typeof o.gw === 'string') route.gw = o.gw;
      for (const k of ['mtu', 'advmss', 'priority', 'table', 'scope'] as const) {
        if (typeof o[k] === 'number') route[k] = o[k] as number;
      }
      return route;
    });
  }
  if (typeof r.dns === 'object' && r.dns !== null) out.dns = r.dns as CniDns;
  return out;
}

function obj(v: unknown, field: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new CniError(CniErrorCode.DecodeFailure, `${field}: expected a JSON object`);
  }
  return v as Record<string, unknown>;
}

function str(v: unknown, field: string): string {
  if (typeof v !== 'string') throw new CniError(CniErrorCode.DecodeFailure, `${field}: expected a string`);
  return v;
}
