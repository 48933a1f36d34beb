/**
 * An N-node lab "cluster" for the demo and for later integration work (CNI, overlay, DNS):
 *   underlay bridge; node i = 198.18.0.i/24 with pod CIDR 10.244.i.0/24;
 *   optional hand-wired pods (10.244.i.2, .3, ... via gateway 10.244.i.1);
 *   optional host-gw routes (10.244.j.0/24 via 198.18.0.j on every other node).
 * This is the hand-wired lab (no Podwire code involved), kept for tests that need plain
 * namespaces and routes. The demo (demo.ts) runs the real pieces instead: podwired per node
 * (podwired.ts) and pods wired by the installed CNI binary (cni-client.ts).
 */
import { ping, type Lab, type LabNode, type Underlay, type WiredPod } from '../harness';

export interface ClusterNode {
  node: LabNode;
  /** e.g. `10.244.1.0/24` */
  podCidr: string;
  /** first address of podCidr, owned by the node side of each pod veth, e.g. `10.244.1.1` */
  gateway: string;
  pods: WiredPod[];
}

export interface Cluster {
  lab: Lab;
  underlay: Underlay;
  nodes: ClusterNode[];
}

export interface ClusterOptions {
  /** number of nodes, 1..250 (default 2) */
  nodes?: number;
  /** hand-wired pods per node (default 1; 0 = bare nodes, e.g. for CNI tests) */
  podsPerNode?: number;
  /** install host-gw routes between nodes (default true) */
  hostGwRoutes?: boolean;
  /** progress callback */
  log?: (msg: string) => void;
}

export async function buildCluster(lab: Lab, opts: ClusterOptions = {}): Promise<Cluster> {
  const n = opts.nodes ?? 2;
  const podsPerNode = opts.podsPerNode ?? 1;
  const log = opts.log ?? (() => undefined);
  if (!Number.isInteger(n) || n < 1 || n > 250) throw new RangeError(`nodes=${n}: must be an integer 1..250`);
  if (!Number.isInteger(podsPerNode) || podsPerNode < 0 || podsPerNode > 250)
    throw new RangeError(`podsPerNode=${podsPerNode}: must be an integer 0..250`);

  const underlay = await lab.addUnderlay();
  log(`underlay ${underlay.ns}: bridge ${underlay.bridge}`);
  const nodes: ClusterNode[] = [];
  for (let i = 1; i <= n; i++) {
    const node = await lab.addNode(underlay);
    const cn: ClusterNode = { node, podCidr: `10.244.${i}.0/24`, gateway: `10.244.${i}.1`, pods: [] };
    log(`node ${node.ns}: ${node.ifname} ${node.cidr}, pod CIDR ${cn.podCidr}`);
    for (let p = 0; p < podsPerNode; p++) {
      const podNs = await lab.addPod(`n${i}p${p + 1}`);
      const pod = await lab.wirePod(podNs, node, { address: `10.244.${i}.${p + 2}`, gateway: cn.gateway });
      cn.pods.push(pod);
      log(`pod ${podNs}: eth0 ${pod.ip}/32 via ${pod.gateway} (node side ${pod.hostIfName})`);
    }
    nodes.push(cn);
  }
  const cluster = { lab, underlay, nodes };
  if (opts.hostGwRoutes ?? true) await installHostGwRoutes(cluster, log);
  return cluster;
}

/** On every node: `<other podCidr> via <other node IP>` (flannel host-gw's routes). */
export async function installHostGwRoutes(cluster: Cluster, log: (msg: string) => void = () => undefined): Promise<void> {
  for (const a of cluster.nodes)
    for (const b of cluster.nodes) {
      if (a === b) continue;
      await cluster.lab.ip(a.node.ns, ['route', 'add', b.podCidr, 'via', b.node.ip, 'dev', a.node.ifname]);
      log(`route on ${a.node.role}: ${b.podCidr} via ${b.node.ip}`);
    }
}

export interface Check {
  kind: string;
  fromNs: string;
  from: string;
  to: string;
  /** true = must get replies, false = must NOT (negative control) */
  expectReply: boolean;
}

export interface CheckResult extends Check {
  passed: boolean;
  rtt: string;
  output: string;
}

/** node↔node, pod↔pod (across nodes) pings, plus one negative control (an address nobody owns). */
export function connectivityChecks(cluster: Cluster): Check[] {
  const checks: Check[] = [];
  for (const a of cluster.nodes)
    for (const b of cluster.nodes) {
      if (a === b) continue;
      checks.push({ kind: 'node->node', fromNs: a.node.ns, from: a.node.ip, to: b.node.ip, expectReply: true });
      for (const pa of a.pods)
        for (const pb of b.pods) checks.push({ kind: 'pod->pod', fromNs: pa.ns, from: pa.ip, to: pb.ip, expectReply: true });
    }
  const first = cluster.nodes[0]!;
  const src = first.pods[0] ? { ns: first.pods[0].ns, ip: first.pods[0].ip } : { ns: first.node.ns, ip: first.node.ip };
  checks.push({ kind: 'negative', fromNs: src.ns, from: src.ip, to: '10.244.250.99', expectReply: false });
  return checks;
}

export async function runChecks(checks: Check[], log: (msg: string) => void = () => undefined): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  for (const c of checks) {
    const r = await ping(c.fromNs, c.to, { count: 2, waitS: c.expectReply ? 2 : 1 });
    const rtt = /= [\d.]+\/([\d.]+)\//.exec(r.output)?.[1];
    const passed = r.ok === c.expectReply;
    results.push({ ...c, passed, rtt: rtt ? `${rtt} ms` : '-', output: r.output });
    log(`${passed ? 'PASS' : 'FAIL'} ${c.kind} ${c.from} -> ${c.to}: ${r.ok ? 'replies' : 'no reply'}${c.expectReply ? '' : ' (expected none)'}`);
  }
  return results;
}

export function formatTable(results: CheckResult[]): string {
  const rows = [['check', 'from', 'to', 'expect', 'result', 'avg rtt'], ...results.map((r) => [
    r.kind,
    r.from,
    r.to,
    r.expectReply ? 'reply' : 'no reply',
    r.passed ? 'PASS' : 'FAIL',
    r.rtt,
  ])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  const fmt = (row: string[]): string => row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [fmt(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(fmt)].join('\n');
}
