// The addon opens netlink sockets inside a given namespace (setns on a helper thread),
// and that socket acts on that namespace only.
import * as fs from 'node:fs';
import t from 'tap';
import { InvalidInputError, KernelError, NotFoundError } from '../../src/common/errors';
import { NETLINK_GENERIC, closeFd, openNetlinkSocket } from '../../src/kernel/native';
import { Ipv4RouteEncoder } from '../../src/kernel/netlink/fast-encode';
import { openNetlinkTransport } from '../../src/kernel/netlink/native-transport';
import { countLines, ip, newFds, openFds, rootSnapshot, scratchNetns, underlay } from './helpers';

const rootBefore = rootSnapshot();
const mainThreadNetns = (): string => fs.readlinkSync('/proc/thread-self/ns/net');

function getLinkDump(): Buffer {
  const m = Buffer.alloc(32);
  m.writeUInt32LE(32, 0);
  m.writeUInt16LE(18, 4); // RTM_GETLINK
  m.writeUInt16LE(0x301, 6); // REQUEST | DUMP
  return m;
}

function linkNames(messages: Buffer[]): string[] {
  const names: string[] = [];
  for (const m of messages) {
    for (let off = 32; off + 4 <= m.length; ) {
      const len = m.readUInt16LE(off);
      if (len < 4) break;
      if (m.readUInt16LE(off + 2) === 3) names.push(m.toString('utf8', off + 4, off + len - 1)); // IFLA_IFNAME
      off += (len + 3) & ~3;
    }
  }
  return names.sort();
}

t.test('a route added through a socket opened in the namespace lands there and only there', async (t) => {
  const ns = scratchNetns(t, 'pwn-nt-route');
  const { rt0 } = underlay('pwn-nt-route');
  const before = mainThreadNetns();
  const transport = await openNetlinkTransport(ns);
  t.teardown(() => transport.close());
  t.equal(mainThreadNetns(), before, 'the event-loop thread did not change namespace');

  t.same(linkNames(await transport.request(getLinkDump())), ['lo', 'rt0', 'rt1'], 'a link dump sees the namespace\'s links');

  const enc = new Ipv4RouteEncoder({ op: 'add', gateway: '198.18.0.2', oif: rt0, onlink: true, protocol: 4 });
  t.same(await transport.request(enc.encode('10.244.77.0', 24)), [], 'ACKed, no reply messages');
  t.match(ip('-n', 'pwn-nt-route', 'route', 'show', '10.244.77.0/24'), /10\.244\.77\.0\/24 via 198\.18\.0\.2 dev rt0 proto static onlink/);
  t.equal(ip('route', 'show', '10.244.77.0/24').trim(), '', 'the root namespace has no such route');
});

t.test('a request the kernel refuses is a KernelError with errno and the ext-ack text', async (t) => {
  const ns = scratchNetns(t, 'pwn-nt-err');
  const { rt0 } = underlay('pwn-nt-err');
  const transport = await openNetlinkTransport(ns);
  t.teardown(() => transport.close());
  // Gateway off-link without `onlink`: the kernel says why in an extended ACK.
  const bad = new Ipv4RouteEncoder({ op: 'add', gateway: '203.0.113.1', oif: rt0 });
  const err = await transport.request(bad.encode('10.244.1.0', 24)).catch((e: unknown) => e);
  t.ok(err instanceof KernelError, 'KernelError');
  t.match(err, { errno: 101, code: 'PW_KERNEL' });
  t.match((err as Error).message, /RTM_NEWROUTE: ENETUNREACH .*Nexthop has invalid gateway/);

  const enc = new Ipv4RouteEncoder({ op: 'add', gateway: '198.18.0.2', oif: rt0, onlink: true });
  await transport.request(enc.encode('10.244.2.0', 24));
  const dup = await transport.request(enc.encode('10.244.2.0', 24)).catch((e: unknown) => e);
  t.match(dup, { errno: 17 }, 'EEXIST for a duplicate with NLM_F_EXCL');
  t.same(await transport.request(getLinkDump()).then((m) => m.length), 3, 'the transport still works after errors');
});

t.test('a netns path that does not exist: NotFoundError naming the path, no fd leaked', async (t) => {
  const fds = openFds();
  const path = '/run/netns/pwn-does-not-exist';
  for (let i = 0; i < 20; i++) {
    const err = await openNetlinkTransport({ path }).catch((e: unknown) => e);
    t.ok(err instanceof NotFoundError, 'NotFoundError');
    t.match(err, { code: 'PW_NOT_FOUND', field: 'netns', value: path });
    t.match((err as Error).message, path);
  }
  t.same(newFds(fds), [], 'no descriptor left open after 20 failures');
});

t.test('a path that is not a network namespace: InvalidInputError, no fd leaked', async (t) => {
  const fds = openFds();
  const err = await openNetlinkSocket({ path: '/proc/self/ns/uts' }).catch((e: unknown) => e);
  t.ok(err instanceof InvalidInputError);
  t.match(err, { field: 'netns', value: '/proc/self/ns/uts' });
  t.same(newFds(fds), [], 'no descriptor left open');
});

t.test('NETLINK_GENERIC sockets open in a namespace too', async (t) => {
  const ns = scratchNetns(t, 'pwn-nt-genl');
  const info = await openNetlinkSocket(ns, NETLINK_GENERIC);
  t.ok(info.fd > 2 && info.portId > 0);
  t.ok(info.rcvbuf >= 32 << 20, `SO_RCVBUFFORCE took effect (rcvbuf=${info.rcvbuf})`);
  closeFd(info.fd);
});

t.test('a non-dump GET returns its one reply (reply, then ACK)', async (t) => {
  const ns = scratchNetns(t, 'pwn-nt-get');
  const transport = await openNetlinkTransport(ns);
  t.teardown(() => transport.close());
  const get = Buffer.alloc(32);
  get.writeUInt32LE(32, 0);
  get.writeUInt16LE(18, 4); // RTM_GETLINK
  get.writeUInt16LE(0x1, 6); // REQUEST, no DUMP
  get.writeInt32LE(1, 20); // ifi_index 1: lo
  t.same(linkNames(await transport.request(get)), ['lo']);
  get.writeInt32LE(4242, 20);
  t.match(await transport.request(get).catch((e: unknown) => e), { errno: 19 }, 'ENODEV for a missing ifindex');
  const err = await transport.request(Buffer.alloc(8)).catch((e: unknown) => e);
  t.ok(err instanceof InvalidInputError, 'a buffer that is not one message is refused before the kernel sees it');
});

t.test('a closed transport refuses new work', async (t) => {
  const transport = await openNetlinkTransport();
  transport.close();
  const err = await transport.request(getLinkDump()).catch((e: unknown) => e);
  t.match(err, { errno: 9 });
});

t.test('the root namespace is unchanged', async (t) => {
  t.equal(rootSnapshot(), rootBefore);
  t.equal(countLines(ip('netns', 'list'), /^pwn-nt-/), 0, 'no pwn-nt-* namespaces left');
});
