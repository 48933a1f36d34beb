import t from 'tap';
import { IPCTNL_MSG_CT_DELETE, decodeCtMessage, encodeCtDelete, encodeCtDump, ctType } from './codec';
import { entryMatches, normaliseFilter } from '../conntrack';

const hex = (b: Buffer): string => b.toString('hex');

// Captured from Linux 6.18 (`IPCTNL_MSG_CT_GET` dump in a namespace): a UDP flow
// 10.96.0.10:54258 -> 10.96.0.10:53, DNATed by nft to 10.244.1.5:5353.
const CAPTURED_UDP =
  'a4000000000122006fcd8b33c97d12f9020000003400018014000180080001000a60000a080002000a60000a1c000280050001001100000006000200d3f2000006000300003500003400028014000180080001000af40105080002000a60000a1c00028005000100110000000600020014e9000006000300d3f2000008000300000001aa080008000000000008000c001c1aefa708000b0000000001080007000000001d';
// The TCP flow 10.96.0.10:60220 -> :80, DNATed to 10.244.1.5:8080 (with CTA_PROTOINFO).
const CAPTURED_TCP =
  'd4000000000122006fcd8b33c97d12f9020000003400018014000180080001000a60000a080002000a60000a1c000280050001000600000006000200eb3c000006000300005000003400028014000180080001000af40105080002000a60000a1c0002800500010006000000060002001f90000006000300eb3c000008000300000001ae080008000000000008000c00a5ed375208000b00000000010800070000000077300004802c0001800500010007000000050002000a000000050003000a00000006000400230000000600050027000000';

t.test('dump request: golden bytes', async (t) => {
  // len 20, type 0x0101 (CTNETLINK<<8 | CT_GET), flags REQUEST|DUMP (0x301), seq/pid 0, nfgenmsg AF_INET v0 res_id 0
  t.equal(hex(encodeCtDump(4)), '14000000010101030000000000000000' + '02000000');
  t.equal(hex(encodeCtDump(6)).slice(32), '0a000000');
  t.equal(hex(encodeCtDump()).slice(32), '00000000', 'AF_UNSPEC dumps both families');
});

t.test('delete request: golden bytes (big-endian ports, id; nested tuple)', async (t) => {
  const m = encodeCtDelete({ family: 4, src: '10.244.2.7', dst: '10.96.0.10', proto: 17, srcPort: 40000, dstPort: 53 }, { id: 0x01020304 });
  const want =
    '50000000' + '0201' + '0500' + '00000000' + '00000000' + // len 80, type 0x0102, REQUEST|ACK
    '02000000' + // nfgenmsg
    '34000180' + // CTA_TUPLE_ORIG, nested, len 52
    '14000180' + '08000100' + '0af40207' + '08000200' + '0a60000a' + // CTA_TUPLE_IP { v4 src, v4 dst }
    '1c000280' + '05000100' + '11000000' + '06000200' + '9c400000' + '06000300' + '00350000' + // PROTO { num 17, sport 40000 be, dport 53 be }
    '08000c00' + '01020304'; // CTA_ID be32
  t.equal(hex(m), want);
  t.equal(m.readUInt16LE(4), ctType(IPCTNL_MSG_CT_DELETE));
  const z = encodeCtDelete({ family: 6, src: 'fd00::1', dst: 'fd00::2', proto: 6, srcPort: 1, dstPort: 2 }, { zone: 7 });
  t.equal(z[16], 10, 'AF_INET6');
  t.ok(hex(z).includes('0600120000070000'), 'CTA_ZONE be16 7');
  t.ok(hex(z).includes('14000300fd000000000000000000000000000001'), 'CTA_IP_V6_SRC');
  const icmp = encodeCtDelete({ family: 4, src: '10.0.0.1', dst: '10.0.0.2', proto: 1, icmpId: 0x1234, icmpType: 8, icmpCode: 0 });
  t.ok(hex(icmp).includes('0600040012340000'), 'CTA_PROTO_ICMP_ID be16');
  t.ok(hex(icmp).includes('0500050008000000'), 'CTA_PROTO_ICMP_TYPE');
});

t.test('parser: captured kernel bytes', async (t) => {
  const udp = decodeCtMessage(Buffer.from(CAPTURED_UDP, 'hex'))!;
  t.same(udp.entry, { family: 4, protocol: 'udp', src: '10.96.0.10', dst: '10.96.0.10', srcPort: 54258, dstPort: 53, replySrc: '10.244.1.5', replySrcPort: 5353, mark: 0 });
  t.equal(udp.id, 0x1c1aefa7);
  t.same(udp.reply, { family: 4, src: '10.244.1.5', dst: '10.96.0.10', proto: 17, srcPort: 5353, dstPort: 54258 });
  const tcp = decodeCtMessage(Buffer.from(CAPTURED_TCP, 'hex'))!;
  t.match(tcp.entry, { protocol: 'tcp', dstPort: 80, replySrc: '10.244.1.5', replySrcPort: 8080 });
  // Re-encoding the parsed tuple gives back the kernel's own CTA_TUPLE_ORIG bytes.
  const del = encodeCtDelete(udp.orig, { id: udp.id });
  t.ok(hex(del).includes(CAPTURED_UDP.slice(40, 40 + 104)), 'same orig tuple bytes as the kernel sent');
  t.equal(decodeCtMessage(Buffer.from('14000000030002000000000000000000' + '00000000', 'hex')), undefined, 'NLMSG_DONE is not an entry');
  t.equal(decodeCtMessage(Buffer.from(CAPTURED_UDP, 'hex').subarray(0, 18)), undefined, 'short message');
});

t.test('filters: normalised, validated, matched', async (t) => {
  t.same(normaliseFilter({ dst: '10.096.0.10'.replace('096', '96'), dstPort: 53 }), { family: 4, dst: '10.96.0.10', dstPort: 53 });
  t.same(normaliseFilter({ replySrc: 'FD00:0::1' }), { family: 6, replySrc: 'fd00::1' });
  t.throws(() => normaliseFilter({ dst: 'nope' }), { name: 'InvalidInputError', field: 'filter.dst' });
  t.throws(() => normaliseFilter({ family: 6, dst: '10.0.0.1' }), { name: 'InvalidInputError' });
  t.throws(() => normaliseFilter({ protocol: 'icmp' as 'tcp' }), { name: 'InvalidInputError', field: 'filter.protocol' });
  t.throws(() => normaliseFilter({ dstPort: 70000 }), { name: 'InvalidInputError', field: 'filter.dstPort' });
  const e = decodeCtMessage(Buffer.from(CAPTURED_UDP, 'hex'))!.entry;
  t.ok(entryMatches(e, { protocol: 'udp', dst: '10.96.0.10', dstPort: 53 }));
  t.notOk(entryMatches(e, { protocol: 'tcp' }));
  t.ok(entryMatches(e, { replySrc: '10.244.1.5' }));
});
