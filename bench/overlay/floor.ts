/**
 * The kernel's own cost per entry, the floor under bench/overlay/run.ts: the same 3N entries
 * applied straight through the kernel handle's batch path (no overlay component, no diff,
 * no dump), one kind at a time, each kind timed apart, with one ACK per datagram. What is
 * left is the kernel's insert work plus the batch path's encoding.
 */
import { netnsRef, NetlinkNetworkKernel, type Change, type FdbEntry, type NeighborEntry, type Route } from '../../src/kernel';
import { openNetlinkTransport } from '../../src/kernel/netlink/native-transport';
import { Cidr, IpAddress } from '../../src/common/ip';
import { routeMetric, vtepMacFor } from '../../src/overlay';
import { exec, ip, netnsPath, type Lab } from '../../test-netns/harness';

const dotted = (v: number) => [(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.');

export interface FloorResult {
  neighS: number;
  fdbS: number;
  routeS: number;
  totalS: number;
  usPerEntry: number;
}

/** Entries exactly as bench/overlay/run.ts and the overlay's vxlan backend produce them. */
export async function floorRound(lab: Lab, n: number, round: number): Promise<FloorResult> {
  const ns = await lab.addNetns(`floor-${n}-${round}`);
  try {
    await ip(ns, ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1']);
    await ip(ns, ['addr', 'add', '198.18.0.1/15', 'dev', 'eth0']);
    await ip(ns, ['link', 'set', 'eth0', 'up']);
    await ip(ns, ['link', 'add', 'pw.1', 'type', 'vxlan', 'id', '1', 'dstport', '8472', 'nolearning', 'local', '198.18.0.1', 'dev', 'eth0']);
    await ip(ns, ['addr', 'add', '10.244.0.0/32', 'dev', 'pw.1']);
    await ip(ns, ['link', 'set', 'pw.1', 'up']);
    const ref = netnsRef(netnsPath(ns));
    // One ACK per datagram (ackEach: false): the fewest answers the kernel can send.
    const transport = await openNetlinkTransport(ref, undefined, { ackEach: false });
    const net = new NetlinkNetworkKernel(transport, ref);
    try {
      const neigh: Change<NeighborEntry>[] = [];
      const fdb: Change<FdbEntry>[] = [];
      const routes: Change<Route>[] = [];
      for (let i = 1; i <= n; i++) {
        const p = dotted((10 << 24) + (244 << 16) + 4 * i);
        const peer = IpAddress.parse(dotted((198 << 24) + (18 << 16) + 2 + i));
        const mac = vtepMacFor(peer);
        const vtep = IpAddress.parse(p);
        neigh.push({ op: 'replace', entry: { dev: 'pw.1', ip: vtep, mac, permanent: true } });
        fdb.push({ op: 'replace', entry: { dev: 'pw.1', mac, dst: peer, permanent: true } });
        const dst = Cidr.parse(`${p}/30`);
        routes.push({ op: 'replace', entry: { dst, gateway: vtep, dev: 'pw.1', onlink: true, protocol: 77, metric: routeMetric(dst) } });
      }
      await net.applyNeighbors([]); // resolves pw.1 into the link cache, untimed
      const times: number[] = [];
      for (const [name, apply] of [
        ['neigh', () => net.applyNeighbors(neigh)],
        ['fdb', () => net.applyFdb(fdb)],
        ['route', () => net.applyRoutes(routes)],
      ] as const) {
        const t0 = performance.now();
        const r = await apply();
        times.push((performance.now() - t0) / 1000);
        if (r.failed.length) throw new Error(`kernel floor ${name}: ${r.failed.length} failed, first: ${r.failed[0]!.message}`);
      }
      const [neighS, fdbS, routeS] = times as [number, number, number];
      const totalS = neighS + fdbS + routeS;
      return { neighS, fdbS, routeS, totalS, usPerEntry: Math.round(((totalS * 1e6) / (3 * n)) * 10) / 10 };
    } finally {
      transport.close();
    }
  } finally {
    await exec(null, ['ip', 'netns', 'del', ns]);
  }
}
