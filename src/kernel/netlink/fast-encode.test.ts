import t from 'tap';
import { InvalidInputError } from '../../common/errors';
import {
  AF_BRIDGE,
  FdbEncoder,
  Ipv4NeighEncoder,
  Ipv4RouteEncoder,
  MessageSlab,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REQUEST,
  NTF_SELF,
  NUD_PERMANENT,
  RTM_DELROUTE,
  RTM_NEWNEIGH,
  RTM_NEWROUTE,
  RT_SCOPE_NOWHERE,
  ipv4ToU32,
} from './fast-encode';

/** Attributes of a rtnetlink message after a 12-byte family header: type -> value. */
function attrs(m: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let off = 28;
  const end = m.readUInt32LE(0);
  while (off + 4 <= end) {
    const len = m.readUInt16LE(off);
    out.set(m.readUInt16LE(off + 2), m.subarray(off + 4, off + len));
    off += (len + 3) & ~3;
  }
  return out;
}

t.test('ipv4ToU32', async (t) => {
  t.equal(ipv4ToU32('10.1.2.3'), 0x0a010203);
  t.equal(ipv4ToU32('255.255.255.255'), 0xffffffff);
  t.throws(() => ipv4ToU32('10.1.2'), InvalidInputError);
  try {
    ipv4ToU32('10.1.2.256', 'gateway');
    t.fail('expected a throw');
  } catch (err) {
    t.match(err, { field: 'gateway', value: '10.1.2.256' });
  }
});

t.test('route add: header, rtmsg and attributes as `ip route add X via G dev D onlink proto static`', async (t) => {
  const enc = new Ipv4RouteEncoder({ op: 'add', gateway: '198.18.0.2', oif: 7, onlink: true, protocol: 4 });
  const m = enc.encode('10.3.4.0', 24);
  t.equal(m.readUInt32LE(0), m.length);
  t.equal(m.length % 4, 0);
  t.equal(m.readUInt16LE(4), RTM_NEWROUTE);
  t.equal(m.readUInt16LE(6), NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL);
  t.same([...m.subarray(16, 24)], [2, 24, 0, 0, 254, 4, 0, 1], 'family dst_len src_len tos table protocol scope type');
  t.equal(m.readUInt32LE(24), 4, 'RTNH_F_ONLINK');
  const a = attrs(m);
  t.same([...a.get(1)!], [10, 3, 4, 0], 'RTA_DST');
  t.same([...a.get(5)!], [198, 18, 0, 2], 'RTA_GATEWAY');
  t.equal(a.get(4)!.readUInt32LE(0), 7, 'RTA_OIF');
  t.equal(a.get(15)!.readUInt32LE(0), 254, 'RTA_TABLE');
});

t.test('route delete uses RTM_DELROUTE, no create flags, scope nowhere', async (t) => {
  const m = new Ipv4RouteEncoder({ op: 'delete', gateway: '198.18.0.2', oif: 7 }).encode('10.0.0.0', 16);
  t.equal(m.readUInt16LE(4), RTM_DELROUTE);
  t.equal(m.readUInt16LE(6), NLM_F_REQUEST);
  t.equal(m[22], RT_SCOPE_NOWHERE);
  t.equal(m[17], 16);
});

t.test('encodeMany writes only the changing bytes and matches encode()', async (t) => {
  const enc = new Ipv4RouteEncoder({ op: 'add', gateway: '198.18.0.2', oif: 3, onlink: true });
  const dsts = new Uint32Array([ipv4ToU32('10.0.1.0'), ipv4ToU32('10.0.2.0'), ipv4ToU32('10.200.0.0')]);
  const many = enc.encodeMany(dsts, new Uint8Array([24, 24, 16]));
  t.same(many[0], enc.encode('10.0.1.0', 24));
  t.same(many[2], enc.encode('10.200.0.0', 16));
});

t.test('a kept MessageSlab reuses its buffer and views', async (t) => {
  const enc = new Ipv4RouteEncoder({ op: 'add', oif: 3 });
  const slab = new MessageSlab();
  const a = enc.encodeMany(new Uint32Array([1, 2]), 32, slab);
  const b = enc.encodeMany(new Uint32Array([3, 4]), 32, slab);
  t.equal(a, b, 'same views array');
  t.equal(a[0].buffer, slab.buffer.buffer);
  t.same([...attrs(b[1]).get(1)!], [0, 0, 0, 4]);
  const c = enc.encodeMany(new Uint32Array([5, 6, 7, 8, 9]), 32, slab);
  t.equal(c.length, 5, 'grows when needed');
  t.same([...attrs(c[4]).get(1)!], [0, 0, 0, 9]);
});

t.test('neighbour: 6-byte lladdr last, so nlmsg_len is 46 (unaligned), as iproute2 sends it', async (t) => {
  const enc = new Ipv4NeighEncoder({ op: 'add', ifindex: 9 });
  const [m] = enc.encodeMany(new Uint32Array([ipv4ToU32('10.0.5.0')]), Buffer.from([2, 0xcb, 0, 0, 5, 1]));
  t.equal(enc.length, 46);
  t.equal(m.length, 46);
  t.equal(m.readUInt32LE(0), 46);
  t.equal(m.readUInt16LE(4), RTM_NEWNEIGH);
  t.equal(m[16], 2, 'AF_INET');
  t.equal(m.readInt32LE(20), 9, 'ifindex');
  t.equal(m.readUInt16LE(24), NUD_PERMANENT);
  const a = attrs(m);
  t.same([...a.get(1)!], [10, 0, 5, 0], 'NDA_DST');
  t.same([...a.get(2)!], [2, 0xcb, 0, 0, 5, 1], 'NDA_LLADDR');
});

t.test('fdb: AF_BRIDGE, NTF_SELF, permanent, lladdr then dst', async (t) => {
  const enc = new FdbEncoder({ op: 'add', ifindex: 4 });
  const macs = Buffer.from([2, 0xcb, 0, 0, 0, 1, 2, 0xcb, 0, 0, 0, 2]);
  const ms = enc.encodeMany(macs, new Uint32Array([ipv4ToU32('198.19.0.1'), ipv4ToU32('198.19.0.2')]));
  t.equal(ms[1].readUInt32LE(0), 48);
  t.equal(ms[1][16], AF_BRIDGE);
  t.equal(ms[1][26], NTF_SELF);
  const a = attrs(ms[1]);
  t.same([...a.get(2)!], [2, 0xcb, 0, 0, 0, 2]);
  t.same([...a.get(1)!], [198, 19, 0, 2]);
  t.throws(() => enc.encodeMany(Buffer.alloc(6), new Uint32Array(2)), InvalidInputError);
});
