/**
 * Cross-node pod ↔ pod TCP throughput: Podwire's overlay against the same overlay built by
 * hand with `ip`/`bridge` (as /work/shared/anchors/cni/vxlan-tput.sh and flannel program it),
 * for each backend (vxlan, host-gw), in the same lab, alternating, several rounds.
 *
 *   flock /tmp/podwire-bench.lock node dist/bench/overlay/tput.js [--seconds 5] [--rounds 3] [--backends vxlan,host-gw]
 *
 * Per backend one lab: two node namespaces on one underlay bridge (MTU 1500), each running
 * the real podwired (manifest folder, `--backend <b>`), one pod per node created through the
 * CNI binary podwired installs. Everything but the overlay is shared by both sides:
 *   - podwire: podwired runs and programs the overlay (pw.1 + neigh/FDB/route, or the route).
 *   - by hand: podwired is stopped (SIGTERM; it leaves the data plane), its overlay entries are
 *     removed (pw.1 deleted, our proto-77 routes deleted) and the same overlay is programmed with
 *     `ip link add … type vxlan id 1 dstport 8472 nolearning`, `ip neigh/route`, `bridge fdb`
 *     (host-gw: `ip route add <podCIDR> via <node IP>`). Pods, their veths, MTU, the egress
 *     table and the sysctls stay as they are.
 * Each run: `iperf3 -s -1` in pod B, `iperf3 -c -t <seconds> -J` from pod A, one TCP stream.
 * Rounds alternate which side goes first. Median per side; ratio = podwire / by-hand.
 * Any failed iperf3 run or ping fails the bench (exit 1). Bounded: rounds ≤ 10, seconds ≤ 30.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { exec, execOk, ip, ping, withLab, type Lab } from '../../test-netns/harness';
import { createRunDir, Podwired } from '../../test-netns/lab/podwired';
import { addPod, until, writeNode, entries, type OCluster, type ONode, type OPod } from '../../test-netns/overlay/helpers';
import { vtepMacFor } from '../../src/overlay';
import { IpAddress } from '../../src/common/ip';
import { arg } from '../args';

const TARGET = 0.97;
type BackendName = 'vxlan' | 'host-gw';

interface Side {
  name: 'podwire' | 'by-hand';
  gbps: number[];
  retransmits: number[];
}

async function iperf(lab: Lab, server: OPod, client: OPod, seconds: number): Promise<{ gbps: number; retransmits: number }> {
  const srv = lab.spawn(server.ns, ['iperf3', '-s', '-1', '-B', server.ip, '-p', '5201']);
  try {
    for (let i = 0; i < 100; i++) {
      if ((await exec(server.ns, ['ss', '-Hltn', 'sport = :5201'])).stdout.trim() !== '') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const r = await exec(client.ns, ['iperf3', '-c', server.ip, '-p', '5201', '-t', String(seconds), '-J'], { timeoutMs: (seconds + 20) * 1000 });
    const j = JSON.parse(r.stdout || '{}') as { end?: { sum_received?: { bits_per_second?: number }; sum_sent?: { retransmits?: number } }; error?: string };
    const bps = j.end?.sum_received?.bits_per_second;
    if (r.exitCode !== 0 || !bps) throw new Error(`iperf3 ${client.ip} -> ${server.ip} failed: ${j.error ?? r.stderr.slice(0, 300)}`);
    return { gbps: bps / 1e9, retransmits: j.end?.sum_sent?.retransmits ?? 0 };
  } finally {
    await srv.stop(1_000);
  }
}

const OWN_ROUTES = (ns: string) => execOk(ns, ['ip', '-4', 'route', 'show', 'proto', '77']);

/** Remove podwired's overlay entries from a node (the daemon is stopped). */
async function clearPodwire(n: ONode): Promise<void> {
  await exec(n.lab.ns, ['ip', 'link', 'del', 'pw.1']);
  for (const line of (await OWN_ROUTES(n.lab.ns)).split('\n').filter(Boolean)) {
    const dst = line.trim().split(' ')[0]!;
    await exec(n.lab.ns, ['ip', 'route', 'del', dst, 'proto', '77']);
  }
}

/** The same overlay, by hand, flannel's way. */
async function buildByHand(backend: BackendName, self: ONode, peer: ONode): Promise<void> {
  const ns = self.lab.ns;
  if (backend === 'host-gw') {
    await ip(ns, ['route', 'add', peer.podCidr, 'via', peer.ip, 'dev', 'eth0']);
    return;
  }
  const ownVtep = self.podCidr.split('/')[0]!;
  const vtep = peer.podCidr.split('/')[0]!;
  const mac = vtepMacFor(IpAddress.parse(peer.ip));
  await ip(ns, ['link', 'add', 'hv.1', 'address', vtepMacFor(IpAddress.parse(self.ip)), 'type', 'vxlan', 'id', '1', 'dstport', '8472', 'nolearning', 'local', self.ip, 'dev', 'eth0']);
  await ip(ns, ['addr', 'add', `${ownVtep}/32`, 'dev', 'hv.1']);
  await ip(ns, ['link', 'set', 'hv.1', 'up']);
  await ip(ns, ['neigh', 'replace', vtep, 'lladdr', mac, 'dev', 'hv.1', 'nud', 'permanent']);
  await execOk(ns, ['bridge', 'fdb', 'replace', mac, 'dev', 'hv.1', 'dst', peer.ip, 'self', 'permanent']);
  await ip(ns, ['route', 'replace', peer.podCidr, 'via', vtep, 'dev', 'hv.1', 'onlink']);
}

async function clearByHand(backend: BackendName, self: ONode, peer: ONode): Promise<void> {
  if (backend === 'host-gw') await exec(self.lab.ns, ['ip', 'route', 'del', peer.podCidr, 'via', peer.ip]);
  else await exec(self.lab.ns, ['ip', 'link', 'del', 'hv.1']);
}

function startDaemon(lab: Lab, c: OCluster, n: ONode): Podwired {
  n.daemon = new Podwired(lab, n.lab.ns, { nodeName: n.name, run: c.run, extraArgs: n.extraArgs, logLevel: 'warn' });
  return n.daemon;
}

async function waitProgrammed(n: ONode, backend: BackendName): Promise<void> {
  const r = await until(
    () => entries(n.lab.ns),
    (e) => e.routes.length === 1 && (backend === 'host-gw' || (e.neigh.length === 1 && e.fdb.length >= 1)),
    150,
  );
  if (!r.ok) throw new Error(`${n.name}: podwired did not program its peer: ${JSON.stringify(r.value)}\n${n.daemon.tail()}`);
}

async function benchBackend(backend: BackendName, seconds: number, rounds: number): Promise<Record<string, unknown>> {
  return withLab(`qo-tput-${backend === 'vxlan' ? 'vx' : 'hg'}`, async (lab) => {
    const run = createRunDir('qo-tput');
    try {
      const ul = await lab.addUnderlay({ role: 'ul' });
      const ln = [await lab.addNode(ul, { role: 'n1', address: '198.18.0.1/24' }), await lab.addNode(ul, { role: 'n2', address: '198.18.0.2/24' })];
      const extraArgs = ['--backend', backend, '--enable', 'cni,overlay'];
      const nodes: ONode[] = ln.map((l, i) => ({ name: `n${i + 1}`, lab: l, ip: l.ip, podCidr: `10.244.${i + 1}.0/24`, extraArgs, env: undefined, daemon: undefined as unknown as Podwired }));
      for (const n of nodes) writeNode(run, n.name, n.podCidr, n.ip);
      const c: OCluster = { lab, run, nodes, pods: [], outside: '', router: '', ul1: ul };
      for (const n of nodes) {
        startDaemon(lab, c, n);
        const r = await n.daemon.waitReady();
        if (!r.ready) throw new Error(`${n.name}: podwired not ready: ${r.last}\n${n.daemon.tail()}`);
      }
      for (const n of nodes) c.pods.push(await addPod(c, n, `${n.name}p1`));
      const [a, b] = c.pods as [OPod, OPod];
      const [n1, n2] = nodes as [ONode, ONode];
      for (const n of nodes) await waitProgrammed(n, backend);
      const podMtu = (await execOk(a.ns, ['cat', '/sys/class/net/eth0/mtu'])).trim();

      const sides: Record<'podwire' | 'by-hand', Side> = {
        podwire: { name: 'podwire', gbps: [], retransmits: [] },
        'by-hand': { name: 'by-hand', gbps: [], retransmits: [] },
      };
      let running = true; // podwired up on both nodes
      const toPodwire = async (): Promise<void> => {
        if (running) return;
        await clearByHand(backend, n1, n2);
        await clearByHand(backend, n2, n1);
        for (const n of nodes) startDaemon(lab, c, n);
        for (const n of nodes) {
          const r = await n.daemon.waitReady();
          if (!r.ready) throw new Error(`${n.name}: podwired not ready again: ${r.last}`);
          await waitProgrammed(n, backend);
        }
        running = true;
      };
      const toHand = async (): Promise<void> => {
        if (!running) return;
        for (const n of nodes) await n.daemon.stop();
        for (const n of nodes) await clearPodwire(n);
        await buildByHand(backend, n1, n2);
        await buildByHand(backend, n2, n1);
        running = false;
      };
      const measure = async (s: Side): Promise<void> => {
        await (s.name === 'podwire' ? toPodwire() : toHand());
        const p = await ping(a.ns, b.ip, { count: 2 });
        if (!p.ok) throw new Error(`${backend} ${s.name}: pod ${a.ip} cannot ping ${b.ip}: ${p.output}`);
        const r = await iperf(lab, b, a, seconds);
        s.gbps.push(r.gbps);
        s.retransmits.push(r.retransmits);
        console.error(`  ${backend} ${s.name}: ${r.gbps.toFixed(2)} Gbit/s, ${r.retransmits} retransmits`);
      };
      for (let r = 0; r < rounds; r++) {
        const order = r % 2 === 0 ? [sides.podwire, sides['by-hand']] : [sides['by-hand'], sides.podwire];
        for (const s of order) await measure(s);
      }
      if (running) for (const n of nodes) await n.daemon.stop();
      const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
      const pw = med(sides.podwire.gbps);
      const hand = med(sides['by-hand'].gbps);
      return { backend, podMtu: Number(podMtu), podwireGbps: pw, byHandGbps: hand, ratio: Math.round((pw / hand) * 1000) / 1000, samples: { podwire: sides.podwire, byHand: sides['by-hand'] } };
    } finally {
      run.remove();
    }
  });
}

async function main(): Promise<void> {
  const seconds = Number(arg('seconds', '5'));
  const rounds = Number(arg('rounds', '3'));
  const backends = arg('backends', 'vxlan,host-gw').split(',') as BackendName[];
  const out = arg('out', path.join('bench', 'results', 'overlay-tput.json'));
  if (!(seconds >= 1 && seconds <= 30) || !(rounds >= 1 && rounds <= 10) || backends.some((b) => b !== 'vxlan' && b !== 'host-gw')) {
    throw new RangeError('--seconds 1..30, --rounds 1..10, --backends vxlan,host-gw');
  }
  const version = (await exec(null, ['iperf3', '--version'])).stdout.split('\n')[0] ?? 'iperf3 ?';
  const rows: Record<string, unknown>[] = [];
  for (const b of backends) rows.push(await benchBackend(b, seconds, rounds));
  const lines = [
    `overlay throughput: pod -> pod across nodes, 1 TCP stream, ${seconds} s per run, ${rounds} alternating rounds, median (${version.trim()})`,
    `${'backend'.padEnd(8)} ${'pod mtu'.padStart(7)} ${'podwire Gbit/s'.padStart(15)} ${'by hand Gbit/s'.padStart(15)} ${'ratio'.padStart(6)}`,
  ];
  let missed = false;
  for (const r of rows as { backend: string; podMtu: number; podwireGbps: number; byHandGbps: number; ratio: number }[]) {
    lines.push(`${r.backend.padEnd(8)} ${String(r.podMtu).padStart(7)} ${r.podwireGbps.toFixed(2).padStart(15)} ${r.byHandGbps.toFixed(2).padStart(15)} ${r.ratio.toFixed(3).padStart(6)}`);
    if (r.ratio < TARGET) {
      lines.push(`  MISSED target: ${r.backend} ratio ${r.ratio} < ${TARGET}`);
      missed = true;
    }
  }
  console.log(lines.join('\n'));
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify({ bench: 'overlay-tput', at: new Date().toISOString(), seconds, rounds, target: TARGET, iperf3: version.trim(), missed, rows }, null, 2) + '\n');
  console.log(`wrote ${out}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
