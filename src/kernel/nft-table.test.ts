import t from 'tap';
import { attr, frame, nested } from './rtnetlink/nlmsg';
import { KernelError } from '../common/errors';
import type { NetlinkTransport } from './netlink/transport';
import { readNftTable, decodeChains, decodeSets, typeNames } from './nft-table';
import { decodeRules } from './nft-rules';

const be32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0, 0);
  return b;
};
const be64 = (v: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(v), 0);
  return b;
};
const str = (s: string): Buffer => Buffer.from(`${s}\0`);
const msg = (type: number, attrs: Buffer[], flags = 2): Buffer => frame((10 << 8) | type, flags, [Buffer.from([1, 0, 0, 0]), ...attrs]);
/** nft's concatenated type id: components 6 bits each, the first highest. */
const concat = (...ids: number[]): number => ids.reduce((a, b) => a * 64 + b, 0);

t.test('type ids as names', async (t) => {
  t.same(typeNames(concat(7, 12, 13, 4)), ['ipv4_addr', 'inet_proto', 'inet_service', 'integer'], 'the endpoint map key');
  t.same(typeNames(concat(8, 13)), ['ipv6_addr', 'inet_service']);
  t.same(typeNames(0xffffff00), ['verdict'], 'NFT_DATA_VERDICT');
  t.same(typeNames(concat(9, 7)), ['type-9', 'ipv4_addr'], 'ether_addr: named by id (nft-elements refuses it)');
});

t.test('sets of our table: maps, intervals, anonymous ones skipped', async (t) => {
  const set = (table: string, name: string, flags: number, key: number, data?: number): Buffer =>
    msg(9, [attr(1, str(table)), attr(2, str(name)), attr(3, be32(flags)), attr(4, be32(key)), ...(data === undefined ? [] : [attr(6, be32(data))])]);
  const sets = decodeSets(
    [
      set('podwire', 'services4', 0x8, concat(7, 12, 13), 0xffffff00),
      set('podwire', 'endpoints4-tcp', 0x8 | 0x80, concat(7, 12, 13, 4), concat(7, 13)),
      set('podwire', 'firewall-allow4', 0x4 | 0x80, concat(7, 12, 13, 7)),
      set('podwire', '__set0', 0x1 | 0x2 | 0x4, 7),
      set('other', 'x', 0, 7),
      set('podwire', 'counters', 0x40, 7),
    ],
    'podwire',
  );
  t.same(sets, [
    { name: 'services4', map: true, types: { key: ['ipv4_addr', 'inet_proto', 'inet_service'], interval: false, data: ['verdict'] } },
    { name: 'endpoints4-tcp', map: true, types: { key: ['ipv4_addr', 'inet_proto', 'inet_service', 'integer'], interval: false, data: ['ipv4_addr', 'inet_service'] } },
    { name: 'firewall-allow4', map: false, types: { key: ['ipv4_addr', 'inet_proto', 'inet_service', 'ipv4_addr'], interval: true } },
    { name: 'counters', map: true, types: { key: ['ipv4_addr'], interval: false, data: ['object'] } },
  ]);
  t.throws(() => decodeSets([msg(9, [attr(1, str('podwire')), attr(2, str('a'))], 2 | 0x10)], 'podwire'), /NLM_F_DUMP_INTR/, 'an interrupted dump');
});

t.test('chains and rules of our table: prints are the expressions and the comment, handles in order', async (t) => {
  t.same(decodeChains([msg(3, [attr(1, str('podwire')), attr(3, str('services'))]), msg(3, [attr(1, str('other')), attr(3, str('x'))])], 'podwire'), ['services']);
  const expr = attr(1, str('immediate'));
  const exprs = nested(4, [nested(1, [expr]), nested(1, [attr(1, str('counter')), attr(2, be64(7))])]);
  const rule = (chain: string, handle: number, comment?: Buffer): Buffer => msg(6, [attr(1, str('podwire')), attr(2, str(chain)), attr(3, be64(handle)), exprs, ...(comment ? [attr(7, comment)] : [])]);
  const r = decodeRules([rule('services', 4), rule('services', 9, Buffer.from('0003616200', 'hex')), rule('masquerading', 2)]);
  const e = `${expr.toString('base64')},counter`;
  t.same([...r.rules], [['services', [`${e}|`, `${e}|${Buffer.from('0003616200', 'hex').toString('base64')}`]], ['masquerading', [`${e}|`]]], "a counter's data is not printed");
  t.same([...r.handles], [['services', [4, 9]], ['masquerading', [2]]]);
});

t.test('the reader: ENOENT only when the table is missing, not when a set goes away during the read', async (t) => {
  const set = msg(9, [attr(1, str('podwire')), attr(2, str('cluster-ips4')), attr(3, be32(0)), attr(4, be32(7))]);
  let tableThere = true;
  const asked: number[] = [];
  const transport: NetlinkTransport = {
    request: async (m: Buffer) => {
      const type = m.readUInt16LE(4) & 0xff;
      asked.push(type);
      const enoent = new KernelError('nft', 'ENOENT', { errno: 2 });
      if (type === 1) {
        if (!tableThere) throw enoent;
        return [];
      }
      if (type === 10) return [set];
      if (type === 13) throw enoent; // the set was deleted after the GETSET dump
      return [];
    },
    batch: async () => new Int32Array(0),
    close: () => undefined,
  };
  const read = (): Promise<unknown> => readNftTable(transport, '', 'podwire', () => false).catch((e: unknown) => e);
  const torn = (await read()) as KernelError;
  t.type(torn, KernelError);
  t.not(torn.errno, 2, 'a torn read is not "no table"');
  t.match(torn.message, /went away/);
  t.same(asked, [1, 10, 4, 7, 13], 'GETTABLE, GETSET, GETCHAIN, GETRULE, then GETSETELEM per set');
  tableThere = false;
  const gone = (await read()) as KernelError;
  t.equal(gone.errno, 2, 'no table: ENOENT');
});
