/**
 * The network configuration on stdin (one plugin's entry of 10-podwire.conflist as the
 * runtime hands it over). Options mirror the reference `bridge` plugin; IPAM mirrors
 * `host-local` or names another IPAM plugin to delegate to.
 */
import { IpAddress } from '../common/ip';
import { InvalidInputError } from '../common/errors';
import { CniError, CniErrorCode } from './errors';
import { parseHostLocal, type HostLocalConfig } from './ipam/config';
import { parseResult, type CniResult, type CniDns } from './result';
import { requireVersion, type CniVersion } from './version';
import { validateInterfaceName } from './env';

export const DEFAULT_BRIDGE = 'pw0';

export interface Attachment {
  containerId: string;
  ifname: string;
}

export interface NetConf {
  cniVersion: CniVersion;
  name: string;
  type: string;
  bridge: string;
  mtu: number | undefined;
  isGateway: boolean;
  isDefaultGateway: boolean;
  ipMasq: boolean;
  hairpinMode: boolean;
  promiscMode: boolean;
  dns: CniDns | undefined;
  /** host-local shape (also used for STATUS/GC when IPAM is delegated: empty range sets then). */
  ipam: HostLocalConfig;
  /** The raw `ipam` object, passed through verbatim to a delegated IPAM plugin. */
  ipamRaw: Record<string, unknown>;
  /** `runtimeConfig.ips` / `args.cni.ips`: addresses the runtime asks for. */
  requestedIps: IpAddress[];
  prevResult: CniResult | undefined;
  validAttachments: Attachment[] | undefined;
  /** The whole decoded config (for delegation and chaining). */
  raw: Record<string, unknown>;
}

/** Fields of the reference bridge we do not implement; setting them is code 2. */
const UNSUPPORTED: Record<string, (v: unknown) => boolean> = {
  vlan: (v) => v !== undefined && v !== 0,
  vlanTrunk: (v) => Array.isArray(v) && v.length > 0,
  macspoofchk: (v) => v === true,
  enabledad: (v) => v === true,
  disableContainerInterface: (v) => v === true,
};

export function decodeJson(stdin: Buffer | string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(typeof stdin === 'string' ? stdin : stdin.toString('utf8'));
  } catch (err) {
    throw new CniError(CniErrorCode.DecodeFailure, `failed to decode network config from stdin: ${(err as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new CniError(CniErrorCode.DecodeFailure, 'network config on stdin is not a JSON object');
  }
  return v as Record<string, unknown>;
}

export function parseNetConf(raw: Record<string, unknown>): NetConf {
  const cniVersion = requireVersion(raw.cniVersion);
  try {
    return parseAfterVersion(raw, cniVersion);
  } catch (err) {
    if (err instanceof InvalidInputError) throw new CniError(CniErrorCode.InvalidNetworkConfig, err.message, undefined, err);
    throw err;
  }
}

function parseAfterVersion(raw: Record<string, unknown>, cniVersion: CniVersion): NetConf {
  if (typeof raw.name !== 'string' || raw.name === '') throw new InvalidInputError('name', raw.name, 'required non-empty string');
  // The name is a directory under dataDir: no path tricks.
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(raw.name)) {
    throw new InvalidInputError('name', raw.name, 'must be alphanumeric with "_", "." or "-"');
  }
  for (const [k, bad] of Object.entries(UNSUPPORTED)) {
    if (bad(raw[k])) {
      throw new CniError(CniErrorCode.UnsupportedField, `unsupported field ${k}=${JSON.stringify(raw[k])}`);
    }
  }
  const bridge = raw.bridge === undefined || raw.bridge === '' ? DEFAULT_BRIDGE : raw.bridge;
  if (typeof bridge !== 'string') throw new InvalidInputError('bridge', bridge, 'expected a string');
  try {
    validateInterfaceName(bridge, 'bridge');
  } catch (err) {
    throw new InvalidInputError('bridge', bridge, (err as Error).message);
  }
  let mtu: number | undefined;
  if (raw.mtu !== undefined && raw.mtu !== 0) {
    if (typeof raw.mtu !== 'number' || !Number.isInteger(raw.mtu) || raw.mtu < 68 || raw.mtu > 65535) {
      throw new InvalidInputError('mtu', raw.mtu, 'expected an integer 68..65535');
    }
    mtu = raw.mtu;
  }
  const bool = (k: string, dflt: boolean): boolean => {
    const v = raw[k];
    if (v === undefined) return dflt;
    if (typeof v !== 'boolean') throw new InvalidInputError(k, v, 'expected true or false');
    return v;
  };
  const isDefaultGateway = bool('isDefaultGateway', true);
  // As in the reference: a default gateway implies the bridge holds the gateway address.
  const isGateway = bool('isGateway', true) || isDefaultGateway;
  const ipamRaw = raw.ipam;
  if (typeof ipamRaw !== 'object' || ipamRaw === null || Array.isArray(ipamRaw)) {
    throw new InvalidInputError('ipam', ipamRaw, 'required object');
  }
  const ipamObj = ipamRaw as Record<string, unknown>;
  const ipamType = typeof ipamObj.type === 'string' ? ipamObj.type : 'host-local';
  if (ipamType.includes('/') || ipamType === '' || ipamType === '.' || ipamType === '..') {
    throw new InvalidInputError('ipam.type', ipamType, 'must be a plugin file name');
  }
  const ipam = parseHostLocal(isLocalIpam(ipamType) ? ipamObj : { type: ipamType, dataDir: ipamObj.dataDir }, 'ipam');
  // No range at all is legal here: the node's pod subnet may not be known yet. STATUS
  // reports it (50) and ADD answers "try again later" (11).
  const requestedIps: IpAddress[] = [];
  const rc = raw.runtimeConfig as Record<string, unknown> | undefined;
  const addIps = (list: unknown, field: string): void => {
    if (list === undefined) return;
    if (!Array.isArray(list)) throw new InvalidInputError(field, list, 'expected a list of IPs');
    list.forEach((v, i) => {
      const text = typeof v === 'string' ? v.split('/')[0]! : v;
      requestedIps.push(IpAddress.parse(text as string, `${field}[${i}]`));
    });
  };
  if (rc && typeof rc === 'object') addIps(rc.ips, 'runtimeConfig.ips');
  const args = raw.args as { cni?: { ips?: unknown } } | undefined;
  if (args && typeof args === 'object' && args.cni && typeof args.cni === 'object') addIps(args.cni.ips, 'args.cni.ips');

  let validAttachments: Attachment[] | undefined;
  const va = raw['cni.dev/valid-attachments'];
  if (va !== undefined) {
    if (!Array.isArray(va)) throw new InvalidInputError('cni.dev/valid-attachments', va, 'expected a list');
    validAttachments = va.map((a, i) => {
      const o = a as Record<string, unknown>;
      if (typeof o !== 'object' || o === null || typeof o.containerID !== 'string' || typeof o.ifname !== 'string') {
        throw new InvalidInputError(`cni.dev/valid-attachments[${i}]`, a, 'expected {containerID, ifname}');
      }
      return { containerId: o.containerID, ifname: o.ifname };
    });
  }
  return {
    cniVersion,
    name: raw.name,
    type: typeof raw.type === 'string' ? raw.type : 'podwire',
    bridge,
    mtu,
    isGateway,
    isDefaultGateway,
    ipMasq: bool('ipMasq', false),
    hairpinMode: bool('hairpinMode', true),
    promiscMode: bool('promiscMode', false),
    dns: typeof raw.dns === 'object' && raw.dns !== null ? (raw.dns as CniDns) : undefined,
    ipam,
    ipamRaw: ipamObj,
    requestedIps,
    prevResult: raw.prevResult === undefined ? undefined : parseResult(raw.prevResult),
    validAttachments,
    raw,
  };
}

/** IPAM types handled in-process; anything else is executed from CNI_PATH. */
export function isLocalIpam(type: string): boolean {
  return type === 'host-local' || type === 'podwire';
}
