/** Input checks for kernel objects; each failure names the field and the value. */
import { InvalidInputError } from '../common/errors';
import { Cidr, parseMac } from '../common/ip';

/** IFNAMSIZ-1 = 15 bytes, no '/', no whitespace, not '.' or '..' (dev_valid_name()). */
export function validateIfName(name: unknown, field = 'name'): string {
  if (typeof name !== 'string' || name.length === 0) throw new InvalidInputError(field, name, 'interface name must be a non-empty string');
  if (Buffer.byteLength(name) > 15) throw new InvalidInputError(field, name, 'interface name is at most 15 bytes');
  if (name === '.' || name === '..') throw new InvalidInputError(field, name, 'interface name cannot be "." or ".."');
  if (/[\s/:\0]/.test(name)) throw new InvalidInputError(field, name, 'interface name cannot contain "/", ":", NUL or whitespace');
  return name;
}

export function validateMtu(mtu: unknown, field = 'mtu'): number {
  if (typeof mtu !== 'number' || !Number.isInteger(mtu) || mtu < 68 || mtu > 65535) {
    throw new InvalidInputError(field, mtu, 'MTU must be an integer 68..65535');
  }
  return mtu;
}

export function validateVni(vni: unknown, field = 'vni'): number {
  if (typeof vni !== 'number' || !Number.isInteger(vni) || vni < 0 || vni > 0xffffff) {
    throw new InvalidInputError(field, vni, 'VNI must be an integer 0..16777215 (24 bits)');
  }
  return vni;
}

export function validatePort(port: unknown, field = 'port'): number {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new InvalidInputError(field, port, 'port must be an integer 1..65535');
  }
  return port;
}

export function validateU8(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 255) throw new InvalidInputError(field, v, 'must be an integer 0..255');
  return v;
}

export function validateU32(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) {
    throw new InvalidInputError(field, v, 'must be an integer 0..4294967295');
  }
  return v;
}

export function macBytes(mac: unknown, field = 'mac'): Buffer {
  return parseMac(mac as string, field);
}

/** Accepts a Cidr or its text; anything else is InvalidInputError. */
export function toCidr(v: unknown, field: string): Cidr {
  if (v instanceof Cidr) return v;
  return Cidr.parse(v as string, field);
}
