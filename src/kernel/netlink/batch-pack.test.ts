import t from 'tap';
import { InvalidInputError } from '../../common/errors';
import { BatchPacker, NLM_F_ACK, NLM_F_REQUEST, limitsForReceiveBuffer, nlmsgAlign } from './batch-pack';

/** A message of `len` bytes (nlmsg_len = len) filled with `fill` after the header. */
function msg(len: number, fill = 0xab, type = 24, flags = 0): Buffer {
  const b = Buffer.alloc(len, fill);
  b.writeUInt32LE(len, 0);
  b.writeUInt16LE(type, 4);
  b.writeUInt16LE(flags, 6);
  b.writeUInt32LE(0xdeadbeef, 8); // seq and pid the caller left behind: must be overwritten
  b.writeUInt32LE(0xcafef00d, 12);
  return b;
}

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

function headers(buf: Buffer): { offset: number; len: number; flags: number; seq: number; pid: number }[] {
  const out = [];
  for (let off = 0; off < buf.length; ) {
    const len = buf.readUInt32LE(off);
    out.push({ offset: off, len, flags: buf.readUInt16LE(off + 6), seq: buf.readUInt32LE(off + 8), pid: buf.readUInt32LE(off + 12) });
    off += nlmsgAlign(len);
  }
  return out;
}

t.test('nlmsgAlign rounds up to 4', async (t) => {
  t.same([16, 17, 18, 19, 20, 46].map(nlmsgAlign), [16, 20, 20, 20, 20, 48]);
});

t.test('every message lands on a 4-byte boundary with zeroed padding', async (t) => {
  const packer = new BatchPacker({ maxDatagramBytes: 1 << 20, maxMessagesPerDatagram: 1000 });
  const messages = [msg(46), msg(45), msg(52), msg(47)];
  const p = packer.pack(messages, 100);
  t.equal(p.buffer.length, 48 + 48 + 52 + 48);
  const hs = headers(p.buffer);
  t.same(hs.map((h) => h.offset), [0, 48, 96, 148]);
  t.same(hs.map((h) => h.len), [46, 45, 52, 47], 'nlmsg_len is kept unpadded');
  t.same([...p.buffer.subarray(46, 48)], [0, 0], 'pad after a 46-byte message is zero');
  t.same([...p.buffer.subarray(93, 96)], [0, 0, 0], 'pad after a 45-byte message is zero');
  t.equal(p.buffer[47 + 48 + 52 + 46], 0xab, 'payload bytes copied');
});

t.test('seq numbers are consecutive, pid cleared, REQUEST|ACK set, other flags kept', async (t) => {
  const packer = new BatchPacker({ maxDatagramBytes: 1 << 20, maxMessagesPerDatagram: 1000 });
  const p = packer.pack([msg(20, 1, 24, 0x600), msg(20), msg(20)], 0xfffffffe);
  const hs = headers(p.buffer);
  t.same(hs.map((h) => h.seq), [0xfffffffe, 0xffffffff, 0], 'seq wraps at 2^32');
  t.same(hs.map((h) => h.pid), [0, 0, 0]);
  t.equal(hs[0].flags, 0x600 | NLM_F_REQUEST | NLM_F_ACK);
  t.equal(hs[1].flags, NLM_F_REQUEST | NLM_F_ACK);
  t.equal(p.firstSeq, 0xfffffffe);
});

t.test('callers\' buffers are not modified', async (t) => {
  const packer = new BatchPacker({ maxDatagramBytes: 1 << 20, maxMessagesPerDatagram: 1000 });
  const m = msg(20);
  const copy = Buffer.from(m);
  packer.pack([m], 7);
  t.same(m, copy);
});

t.test('datagrams are bounded by bytes', async (t) => {
  const packer = new BatchPacker({ maxDatagramBytes: 100, maxMessagesPerDatagram: 1000 });
  // 48-byte slots: two fit in 100 bytes, a third would make 144.
  const p = packer.pack([msg(46), msg(46), msg(46), msg(46), msg(46)], 1);
  t.equal(p.datagramCount, 3);
  t.same([...p.datagrams.subarray(0, 6)], [96, 2, 192, 4, 240, 5]);
});

t.test('datagrams are bounded by message count', async (t) => {
  const packer = new BatchPacker({ maxDatagramBytes: 1 << 20, maxMessagesPerDatagram: 2 });
  const p = packer.pack([msg(16), msg(16), msg(16)], 1);
  t.equal(p.datagramCount, 2);
  t.same([...p.datagrams.subarray(0, 4)], [32, 2, 48, 3]);
});

t.test('a message larger than the datagram bound gets its own datagram', async (t) => {
  const packer = new BatchPacker({ maxDatagramBytes: 64, maxMessagesPerDatagram: 10 });
  const p = packer.pack([msg(20), msg(200), msg(20)], 1);
  t.same([...p.datagrams.subarray(0, 2 * p.datagramCount)], [20, 1, 220, 2, 240, 3]);
});

t.test('10k messages: counts and byte ends add up', async (t) => {
  const packer = new BatchPacker({ maxDatagramBytes: 128 * 1024, maxMessagesPerDatagram: 4096 });
  const messages = Array.from({ length: 10_000 }, (_, i) => msg(i % 2 ? 46 : 52));
  const p = packer.pack(messages, 5);
  t.equal(p.messageCount, 10_000);
  t.equal(p.datagrams[2 * (p.datagramCount - 1) + 1], 10_000, 'last datagram ends at the last message');
  t.equal(p.datagrams[2 * (p.datagramCount - 1)], p.buffer.length);
  for (let d = 0; d < p.datagramCount; d++) {
    const start = d === 0 ? 0 : p.datagrams[2 * d - 2];
    t.ok(p.datagrams[2 * d] - start <= 128 * 1024, `datagram ${d} within bound`);
    t.ok(p.datagrams[2 * d + 1] - (d === 0 ? 0 : p.datagrams[2 * d - 1]) <= 4096);
  }
  t.equal(headers(p.buffer).length, 10_000, 'walking the packed buffer finds every message');
});

t.test('buffers are reused between packs', async (t) => {
  const packer = new BatchPacker({ maxDatagramBytes: 1 << 20, maxMessagesPerDatagram: 1000 });
  const a = packer.pack([msg(20), msg(20)], 1);
  const b = packer.pack([msg(20)], 3);
  t.equal(a.buffer.buffer, b.buffer.buffer, 'same backing store');
  t.equal(a.datagrams, b.datagrams);
});

t.test('malformed messages are refused, naming the index', async (t) => {
  const packer = new BatchPacker({ maxDatagramBytes: 1 << 20, maxMessagesPerDatagram: 1000 });
  t.throws(() => packer.pack([msg(20), Buffer.alloc(8)], 1), InvalidInputError);
  const lying = msg(20);
  lying.writeUInt32LE(40, 0);
  const err = caught(() => packer.pack([msg(20), lying], 1));
  t.ok(err instanceof InvalidInputError);
  t.match(err, { field: 'messages[1].nlmsg_len', value: 40 });
  t.throws(() => new BatchPacker({ maxDatagramBytes: 8, maxMessagesPerDatagram: 1 }), InvalidInputError);
});

t.test('limitsForReceiveBuffer keeps one datagram of ACKs within half the buffer', async (t) => {
  t.same(limitsForReceiveBuffer(425984, 65536), { maxDatagramBytes: 65536, maxMessagesPerDatagram: 166 });
  t.equal(limitsForReceiveBuffer(100).maxMessagesPerDatagram, 1);
});

t.test('ackEach=false: NLM_F_ACK only on the last message of each datagram (and cleared elsewhere)', async (t) => {
  const packer = new BatchPacker({ maxDatagramBytes: 1 << 20, maxMessagesPerDatagram: 2, ackEach: false });
  t.equal(packer.ackEach, false);
  const p = packer.pack([msg(20, 0, 24, NLM_F_ACK), msg(20), msg(20), msg(20), msg(20)], 1);
  t.same(
    headers(p.buffer).map((h) => h.flags),
    [NLM_F_REQUEST, NLM_F_REQUEST | NLM_F_ACK, NLM_F_REQUEST, NLM_F_REQUEST | NLM_F_ACK, NLM_F_REQUEST | NLM_F_ACK],
  );
});
