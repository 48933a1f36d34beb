import t from 'tap';
import { attr, frame, nested, u32 } from './rtnetlink/nlmsg';
import { decodeSetElems, encodeGetSetElems, formatValue, setTypesOf, type SetTypes } from './nft-elements';

const hex = (b: Buffer): string => b.toString('hex');
const h = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const be32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(v, 0);
  return b;
};
const value = (type: number, bytes: Buffer): Buffer => nested(type, [attr(1 /* NFTA_DATA_VALUE */, bytes)]);
const verdict = (code: number, chain?: string): Buffer =>
  nested(2 /* NFTA_SET_ELEM_DATA */, [nested(2 /* NFTA_DATA_VERDICT */, [attr(1, be32(code)), ...(chain ? [attr(2, Buffer.from(`${chain}\0`))] : [])])]);
/** One NFT_MSG_NEWSETELEM dump reply holding `elems` (each a list of element attributes). */
const reply = (elems: Buffer[][], flags = 0x2 /* NLM_F_MULTI */): Buffer =>
  frame((10 << 8) | 12, flags, [
    Buffer.from([1, 0, 0, 0]),
    attr(1, Buffer.from('podwire\0')),
    attr(2, Buffer.from('svc\0')),
    nested(3, elems.map((e) => nested(1 /* NFTA_LIST_ELEM */, e))),
  ]);
const hostU32 = (v: number): Buffer => u32(v);

// Register layouts as the kernel keeps them: 10.96.0.1 . tcp . 443 . 2 (proto and port padded to 4).
const EP_KEY = Buffer.concat([h('0a600001'), h('06000000'), h('01bb0000'), hostU32(2)]);
const EP_DATA = h('0af40102 1f900000'); // 10.244.1.2 . 8080
const EP: SetTypes = { key: ['ipv4_addr', 'inet_proto', 'inet_service', 'integer'], data: ['ipv4_addr', 'inet_service'], interval: false };

t.test('GETSETELEM dump request: golden bytes', async (t) => {
  t.equal(
    hex(encodeGetSetElems('podwire', 'services4')),
    '30000000' + '0d0a' + '0103' + '00000000' + '00000000' + // len 48, NFNL_SUBSYS_NFTABLES<<8 | GETSETELEM, REQUEST|DUMP
      '01000000' + // nfgenmsg: NFPROTO_INET, v0, res_id 0
      '0c000100' + hex(Buffer.from('podwire\0')) + // NFTA_SET_ELEM_LIST_TABLE
      '0e000200' + hex(Buffer.from('services4\0')) + '0000', // NFTA_SET_ELEM_LIST_SET, padded
  );
});

t.test('a value map: concatenated key with a host-endian integer, concatenated data', async (t) => {
  const m = decodeSetElems([reply([[value(1, EP_KEY), value(2, EP_DATA)]])], EP);
  t.same(m && [...m], [['10.96.0.1 . tcp . 443 . 2', '10.244.1.2 . 8080']]);
  const v6 = decodeSetElems(
    [reply([[value(1, Buffer.concat([h('fd000000000000000000000000000001'), h('11000000'), h('00350000'), hostU32(0)])), value(2, Buffer.concat([h('20010db8000000000001000000000001'), h('00350000')]))]])],
    { key: ['ipv6_addr', 'inet_proto', 'inet_service', 'integer'], data: ['ipv6_addr', 'inet_service'], interval: false },
  );
  t.same(v6 && [...v6], [['fd00::1 . udp . 53 . 0', '2001:db8::1:0:0:1 . 53']]);
  t.same(
    [...decodeSetElems([reply([[value(1, EP_KEY), value(2, EP_DATA)]]), reply([[value(1, Buffer.concat([EP_KEY.subarray(0, 12), hostU32(3)])), value(2, EP_DATA)]])], EP)!.keys()],
    ['10.96.0.1 . tcp . 443 . 2', '10.96.0.1 . tcp . 443 . 3'],
    'elements of every reply of the dump',
  );
});

t.test('verdict maps: goto, jump, drop, accept, return; others unreadable', async (t) => {
  const types: SetTypes = { key: ['ipv4_addr', 'inet_proto', 'inet_service'], data: ['verdict'], interval: false };
  const k = (last: number): Buffer => value(1, Buffer.concat([h('0a600001'), h('06000000'), Buffer.from([0, last, 0, 0])]));
  const m = decodeSetElems([reply([[k(1), verdict(-4, 'lb4c-tcp-2')], [k(2), verdict(-3, 'x')], [k(3), verdict(0)], [k(4), verdict(1)], [k(5), verdict(-5)]])], types);
  t.same(m && [...m.values()], ['goto lb4c-tcp-2', 'jump x', 'drop', 'accept', 'return']);
  t.equal(decodeSetElems([reply([[k(1), verdict(-1)]])], types), undefined, 'continue: not something we render');
  t.equal(decodeSetElems([reply([[k(1), verdict(-4)]])], types), undefined, 'goto without a chain');
  t.equal(decodeSetElems([reply([[k(1)]])], types), undefined, 'a map element without data');
});

t.test('sets: plain keys; proto names; elements with more than a value are unreadable', async (t) => {
  const hp: SetTypes = { key: ['ipv4_addr', 'ipv4_addr'], interval: false };
  t.same([...decodeSetElems([reply([[value(1, h('0af40102 0af40102'))]])], hp)!], [['10.244.1.2 . 10.244.1.2', '']]);
  const np: SetTypes = { key: ['inet_proto', 'inet_service'], interval: false };
  t.same([...decodeSetElems([reply([[value(1, h('84000000 7a690000'))]])], np)!.keys()], ['sctp . 31337']);
  t.equal(decodeSetElems([reply([[value(1, h('01000000 7a690000'))]])], np), undefined, 'icmp: a name we do not know libnftables prints');
  t.equal(decodeSetElems([reply([[value(1, h('0af40102 0af40102')), attr(4 /* TIMEOUT */, Buffer.alloc(8))]])], hp), undefined, 'timeout');
  t.equal(decodeSetElems([reply([[value(1, h('0af40102 0af40102')), attr(6 /* USERDATA */, h('0004616263'))]])], hp), undefined, 'comment');
  t.equal(decodeSetElems([reply([[attr(3, be32(2) /* CATCHALL */)]])], hp), undefined, 'catch-all');
  t.equal(decodeSetElems([reply([[value(1, h('0af40102'))]])], hp), undefined, 'key shorter than its types');
  t.equal(decodeSetElems([reply([[value(1, h('0af40102 0af40102')), value(2, h('00'))]])], hp), undefined, 'data in a set');
  t.equal(decodeSetElems([reply([[value(1, h('aabbccdd'))]])], { key: ['mark'], interval: false }), undefined, 'unknown type');
  t.same([...decodeSetElems([], hp)!], [], 'an empty set');
});

t.test('concatenated intervals: single values and prefixes as nft prints them, ranges unreadable', async (t) => {
  const fw: SetTypes = { key: ['ipv4_addr', 'inet_proto', 'inet_service', 'ipv4_addr'], interval: true };
  const head = h('0a60000a 06000000 00500000');
  const el = (start: string, end: string, flags?: number): Buffer[] => [
    value(1, Buffer.concat([head, h(start)])),
    value(10 /* KEY_END */, Buffer.concat([head, h(end)])),
    ...(flags === undefined ? [] : [attr(3, be32(flags))]),
  ];
  const m = decodeSetElems([reply([el('c6120000', 'c612ffff'), el('c6120909', 'c6120909', 0), el('00000000', 'ffffffff'), el('c6130080', 'c61300ff')])], fw);
  t.same(m && [...m.keys()], ['10.96.0.10 . tcp . 80 . 198.18.0.0/16', '10.96.0.10 . tcp . 80 . 198.18.9.9', '10.96.0.10 . tcp . 80 . 0.0.0.0/0', '10.96.0.10 . tcp . 80 . 198.19.0.128/25']);
  t.equal(decodeSetElems([reply([el('c6130001', 'c6130005')])], fw), undefined, '198.19.0.1-198.19.0.5 is a range');
  t.equal(decodeSetElems([reply([el('c6130001', 'c61300ff')])], fw), undefined, 'not aligned');
  t.equal(decodeSetElems([reply([el('c6120000', 'c612ffff', 1 /* INTERVAL_END */)])], fw), undefined, 'an interval end element');
  t.equal(decodeSetElems([reply([[value(1, h('0af40102'))]])], { key: ['ipv4_addr'], interval: true }), undefined, 'a plain interval set (start and end elements) is not decoded');
  t.equal(formatValue(['inet_service'], h('00500000'), h('00580000')), undefined, 'a port range is not decoded');
  t.equal(formatValue(['ipv6_addr'], h('20010db8000000000000000000000000'), h('20010db8ffffffffffffffffffffffff')), '2001:db8::/32');
});

t.test('a dump interrupted by a change is refused; other message types are skipped', async (t) => {
  t.throws(() => decodeSetElems([reply([[value(1, EP_KEY), value(2, EP_DATA)]], 0x2 | 0x10)], EP), /NLM_F_DUMP_INTR/);
  t.same([...decodeSetElems([frame(3, 2, [Buffer.alloc(4)])], EP)!], [], 'NLMSG_DONE');
});

t.test('IPv6 printed as glibc inet_ntop does (common/ip formatIPv6 with inetNtop; ip.test.ts has the edge cases)', async (t) => {
  const cases: [string, string][] = [
    ['00000000000000000000000000000000', '::'],
    ['00000000000000000000000000000001', '::1'],
    ['00000000000000000000ffff01020304', '::ffff:1.2.3.4'],
    ['00000000000000000000000001020304', '::1.2.3.4'],
    ['20010db8000000000001000000000001', '2001:db8::1:0:0:1'],
    ['20010db8000000010001000100010001', '2001:db8:0:1:1:1:1:1'],
    ['fe800000000000000000000000000000', 'fe80::'],
    ['20010db8000100000000000000000000', '2001:db8:1::'],
    ['fd00abcd000000000000000000000001', 'fd00:abcd::1'],
  ];
  for (const [b, want] of cases) t.equal(formatValue(['ipv6_addr'], h(b)), want, want);
});

t.test('types from a libnftables JSON definition', async (t) => {
  t.same(setTypesOf({ type: ['ipv4_addr', 'inet_proto'], map: 'ipv4_addr . inet_service' }), { key: ['ipv4_addr', 'inet_proto'], data: ['ipv4_addr', 'inet_service'], interval: false });
  t.same(setTypesOf({ type: 'ipv4_addr', flags: ['interval'] }), { key: ['ipv4_addr'], interval: true });
  t.same(setTypesOf({ type: 'ipv4_addr', map: 'verdict' }), { key: ['ipv4_addr'], data: ['verdict'], interval: false });
  t.equal(setTypesOf({ name: 'x' }), undefined);
});
