/**
 * Method 3 of the netlink bench: the npm `netlink` package, one awaited request at a
 * time (the naive daemon loop). Runs inside the bench namespace (`ip netns exec`),
 * because that package opens its socket in the caller's namespace. Times only the
 * request loop and prints {"seconds": s, "errors": k} on stdout.
 *   node npm-netlink-child.js --kind route|fdb|neigh --op add|del --n N
 */
import { FlagsNew, createRtNetlink } from 'netlink';
import { type Kind, ipText, objectSet } from './objects';
import { arg, requiredArg } from '../args';

const AF_INET = 2;
const AF_BRIDGE = 7;
const RTNH_F_ONLINK = 4;

async function main(): Promise<void> {
  const kind = requiredArg('kind') as Kind;
  const add = requiredArg('op') === 'add';
  const n = Number(arg('n', '10000'));
  const set = objectSet(n);
  const sock = createRtNetlink();
  sock.socket.setRecvBufferSize(4 << 20);
  const links = await sock.getLinks();
  const index = (name: string): number => {
    const link = links.find((l) => l.attrs.ifname === name);
    if (!link?.data.index) throw new Error(`no ${name}`);
    return link.data.index;
  };
  const rt0 = index('rt0');
  const vxlan0 = index('vxlan0');
  const ip4 = (v: number): Buffer => Buffer.from(ipText(v).split('.').map(Number));
  const opts = { flags: add ? FlagsNew.CREATE | FlagsNew.EXCL : 0 };
  let errors = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const mac = set.macs.subarray(6 * i, 6 * i + 6);
    try {
      if (kind === 'route') {
        const data = { family: AF_INET, dstLen: 24, table: 254, protocol: 'STATIC' as const, scope: 'UNIVERSE' as const, type: 'UNICAST' as const, flags: { __unknown: RTNH_F_ONLINK } };
        const attrs = { dst: ip4(set.dsts[i]), gateway: ip4(0xc6120002), oif: rt0 };
        await (add ? sock.newRoute(data, attrs, opts) : sock.delRoute(data, attrs, opts));
      } else if (kind === 'fdb') {
        const data = { family: AF_BRIDGE, ifindex: vxlan0, state: { permanent: true as const }, flags: { self: true as const } };
        const attrs = { lladdr: mac, dst: ip4(set.vteps[i]) };
        await (add ? sock.newNeighbor(data, attrs, opts) : sock.delNeighbor(data, attrs, opts));
      } else {
        const data = { family: AF_INET, ifindex: vxlan0, state: { permanent: true as const } };
        const attrs = { dst: ip4(set.dsts[i]), lladdr: mac };
        await (add ? sock.newNeighbor(data, attrs, opts) : sock.delNeighbor(data, attrs, opts));
      }
    } catch {
      errors++;
    }
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  sock.socket.close();
  process.stdout.write(`${JSON.stringify({ seconds, errors })}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
