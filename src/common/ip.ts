import { InvalidInputError } from './errors';

// node:net's isIPv4/isIPv6 regular expressions (lib/internal/net.js), here so that parsing an
// address does not load node:net and the stream machinery (~5 ms of CPU of every in-process
// CNI plugin start). ip-regex.test.ts checks them against node:net.
const V4_SEG = '(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])';
const V4_STR = `(?:${V4_SEG}\\.){3}${V4_SEG}`;
const IPV4_RE = new RegExp(`^${V4_STR}$`);
const V6_SEG = '(?:[0-9a-fA-F]{1,4})';
const IPV6_RE = new RegExp(
  '^(?:' +
    `(?:${V6_SEG}:){7}(?:${V6_SEG}|:)|` +
    `(?:${V6_SEG}:){6}(?:${V4_STR}|:${V6_SEG}|:)|` +
    `(?:${V6_SEG}:){5}(?::${V4_STR}|(?::${V6_SEG}){1,2}|:)|` +
    `(?:${V6_SEG}:){4}(?:(?::${V6_SEG}){0,1}:${V4_STR}|(?::${V6_SEG}){1,3}|:)|` +
    `(?:${V6_SEG}:){3}(?:(?::${V6_SEG}){0,2}:${V4_STR}|(?::${V6_SEG}){1,4}|:)|` +
    `(?:${V6_SEG}:){2}(?:(?::${V6_SEG}){0,3}:${V4_STR}|(?::${V6_SEG}){1,5}|:)|` +
    `(?:${V6_SEG}:){1}(?:(?::${V6_SEG}){0,4}:${V4_STR}|(?::${V6_SEG}){1,6}|:)|` +
    `(?::(?:(?::${V6_SEG}){0,5}:${V4_STR}|(?::${V6_SEG}){1,7}|:))` +
    ')(?:%[0-9a-zA-Z-.:]{1,})?$',
);
export function isIPv4(text: string): boolean {
  return IPV4_RE.test(text);
}
export function isIPv6(text: string): boolean {
  return IPV6_RE.test(text);
}

export type IpFamily = 4 | 6;

/**
 * An IP address as a family plus a bigint, so arithmetic (next, offset, contains)
 * is the same code for v4 and v6.
 */
export class IpAddress {
  private constructor(
    readonly family: IpFamily,
    readonly value: bigint,
  ) {}

  static parse(text: string, field = 'ip'): IpAddress {
    if (typeof text !== 'string') throw new InvalidInputError(field, text, 'expected an IP address string');
    if (isIPv4(text)) {
      const v = text.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
      return new IpAddress(4, v);
    }
    if (isIPv6(text)) return new IpAddress(6, parseV6(text));
    throw new InvalidInputError(field, text, 'not an IPv4 or IPv6 address');
  }

  static tryParse(text: string): IpAddress | undefined {
    return isIPv4(text) || isIPv6(text) ? IpAddress.parse(text) : undefined;
  }

  static fromBigInt(family: IpFamily, value: bigint): IpAddress {
    return new IpAddress(family, value & maxOf(family));
  }

  static fromBytes(bytes: Uint8Array): IpAddress {
    if (bytes.length !== 4 && bytes.length !== 16) {
      throw new InvalidInputError('ip', Buffer.from(bytes).toString('hex'), 'expected 4 or 16 bytes');
    }
    let v = 0n;
    for (const b of bytes) v = (v << 8n) | BigInt(b);
    return new IpAddress(bytes.length === 4 ? 4 : 6, v);
  }

  get bits(): number {
    return this.family === 4 ? 32 : 128;
  }

  toBytes(): Buffer {
    const n = this.bits / 8;
    const out = Buffer.alloc(n);
    let v = this.value;
    for (let i = n - 1; i >= 0; i--) {
      out[i] = Number(v & 0xffn);
      v >>= 8n;
    }
    return out;
  }

  offset(delta: bigint | number): IpAddress {
    return IpAddress.fromBigInt(this.family, this.value + BigInt(delta));
  }

  equals(other: IpAddress): boolean {
    return this.family === other.family && this.value === other.value;
  }

  compare(other: IpAddress): number {
    if (this.family !== other.family) return this.family - other.family;
    return this.value < other.value ? -1 : this.value > other.value ? 1 : 0;
  }

  toString(): string {
    if (this.family === 4) return [...this.toBytes()].join('.');
    return formatIPv6(this.toBytes());
  }
}

/** A prefix: address plus length. `ip` keeps the host part as written (an interface address). */
export class Cidr {
  private constructor(
    readonly ip: IpAddress,
    readonly prefixLength: number,
  ) {}

  static parse(text: string, field = 'cidr'): Cidr {
    if (typeof text !== 'string') throw new InvalidInputError(field, text, 'expected a CIDR string like 10.244.0.0/24');
    const slash = text.indexOf('/');
    if (slash < 0) throw new InvalidInputError(field, text, 'missing "/prefix-length"');
    const addrText = text.slice(0, slash);
    const lenText = text.slice(slash + 1);
    const ip = IpAddress.tryParse(addrText);
    if (!ip) throw new InvalidInputError(field, text, `"${addrText}" is not an IP address`);
    if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > ip.bits) {
      throw new InvalidInputError(field, text, `prefix length must be 0..${ip.bits}`);
    }
    return new Cidr(ip, Number(lenText));
  }

  static of(ip: IpAddress, prefixLength: number): Cidr {
    if (prefixLength < 0 || prefixLength > ip.bits) {
      throw new InvalidInputError('prefixLength', prefixLength, `must be 0..${ip.bits}`);
    }
    return new Cidr(ip, prefixLength);
  }

  get family(): IpFamily {
    return this.ip.family;
  }

  private get hostMask(): bigint {
    return (1n << BigInt(this.ip.bits - this.prefixLength)) - 1n;
  }

  get network(): IpAddress {
    return IpAddress.fromBigInt(this.family, this.ip.value & ~this.hostMask);
  }

  /** Last address of the prefix (the IPv4 broadcast address). */
  get last(): IpAddress {
    return IpAddress.fromBigInt(this.family, this.network.value | this.hostMask);
  }

  get size(): bigint {
    return this.hostMask + 1n;
  }

  /** The same prefix with the host bits cleared. */
  get masked(): Cidr {
    return new Cidr(this.network, this.prefixLength);
  }

  isNetwork(): boolean {
    return this.ip.equals(this.network);
  }

  contains(addr: IpAddress): boolean {
    return addr.family === this.family && (addr.value & ~this.hostMask) === this.network.value;
  }

  containsCidr(other: Cidr): boolean {
    return other.family === this.family && other.prefixLength >= this.prefixLength && this.contains(other.network);
  }

  overlaps(other: Cidr): boolean {
    return this.containsCidr(other) || other.containsCidr(this);
  }

  /** The n-th address of the prefix, counted from the network address. */
  nth(n: bigint | number): IpAddress {
    return this.network.offset(n);
  }

  /** Same address with another prefix length, e.g. a gateway as `10.244.1.1/24`. */
  withIp(ip: IpAddress): Cidr {
    return new Cidr(ip, this.prefixLength);
  }

  toString(): string {
    return `${this.ip.toString()}/${this.prefixLength}`;
  }
}

function maxOf(family: IpFamily): bigint {
  return family === 4 ? 0xffffffffn : (1n << 128n) - 1n;
}

function parseV6(text: string): bigint {
  const b = ipv6Bytes(text);
  let v = 0n;
  for (let i = 0; i < 16; i += 4) v = (v << 32n) | BigInt(b.readUInt32BE(i));
  return v;
}

/**
 * The 16 bytes of an IPv6 address. `text` must pass isIPv6; a zone (`%eth0`) is dropped.
 * The one IPv6 parser of the code base (IpAddress, canonicalIP, the DNS records).
 */
export function ipv6Bytes(text: string): Buffer {
  const pct = text.indexOf('%');
  let head = pct < 0 ? text : text.slice(0, pct);
  const out = Buffer.alloc(16);
  let tail: number[] | undefined;
  const lastColon = head.lastIndexOf(':');
  if (head.includes('.', lastColon)) {
    // An embedded IPv4 tail (`::ffff:1.2.3.4`) stands for the last two groups.
    tail = head.slice(lastColon + 1).split('.').map(Number);
    head = `${head.slice(0, lastColon + 1)}0:0`;
  }
  const gap = head.indexOf('::');
  const left = gap < 0 ? head : head.slice(0, gap);
  const right = gap < 0 ? '' : head.slice(gap + 2);
  const leftParts = left === '' ? [] : left.split(':');
  const rightParts = right === '' ? [] : right.split(':');
  leftParts.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), 2 * i));
  rightParts.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), 2 * (8 - rightParts.length + i)));
  if (tail) out.set(tail, 12);
  return out;
}

/** How formatIPv6 prints. */
export interface Ipv6FormatOptions {
  /**
   * glibc inet_ntop's forms: an IPv4-compatible address (`::1.2.3.4`: the first six groups
   * zero and the seventh not, so `::1` stays `::1`) or an IPv4-mapped one (`::ffff:1.2.3.4`)
   * with its last 32 bits in dotted quad. libnftables prints addresses with inet_ntop, and the nftables set reader
   * (kernel/nft-elements.ts) must print what it prints. Default off: everything else
   * (IpAddress, the proxy's keys, the kernel codecs) prints those addresses in hex
   * (`::ffff:102:304`), as node's URL and the WHATWG serialiser do.
   */
  inetNtop?: boolean;
}

/** Group scratch for formatIPv6 (synchronous, so one is enough; it runs per nftables set element). */
const GROUPS = new Uint16Array(8);

/**
 * The IPv6 address at b[off..off+16) as text (RFC 5952 section 4): lowercase hex without
 * leading zeros, the longest run of two or more zero groups as `::` (the first of equal runs;
 * a single zero group stays `0`). The one IPv6 formatter of the code base.
 */
export function formatIPv6(b: Uint8Array, off = 0, opts?: Ipv6FormatOptions): string {
  const w = GROUPS;
  for (let i = 0; i < 8; i++) w[i] = (b[off + 2 * i]! << 8) | b[off + 2 * i + 1]!;
  let best = -1;
  let bestLen = 1; // a run must be longer than this to be compressed
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i + 1;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (opts?.inetNtop === true && best === 0 && (bestLen === 6 || (bestLen === 5 && w[5] === 0xffff))) {
    return `::${bestLen === 5 ? 'ffff:' : ''}${b[off + 12]}.${b[off + 13]}.${b[off + 14]}.${b[off + 15]}`;
  }
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (i === best) {
      out += '::';
      i += bestLen - 1;
      continue;
    }
    if (i > 0 && i !== best + bestLen) out += ':';
    out += w[i]!.toString(16);
  }
  return out;
}

/** A MAC address, validated and normalised to lower-case colon form. */
export function parseMac(text: string, field = 'mac'): Buffer {
  if (typeof text !== 'string' || !/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/.test(text)) {
    throw new InvalidInputError(field, text, 'expected a MAC address like 02:42:ac:11:00:02');
  }
  return Buffer.from(text.split(':').map((h) => parseInt(h, 16)));
}

export function formatMac(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
}
