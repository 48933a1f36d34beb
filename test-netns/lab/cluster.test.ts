/**
 * The lab cluster library (what the demo runs): 3 nodes x 2 hand-wired pods, host-gw routes;
 * every node<->node and cross-node pod<->pod ping must succeed. Control: without the host-gw
 * routes, cross-node pod pings must fail (so the positive result depends on the routes).
 */
import { labTest, ping } from '../harness';
import { buildCluster, connectivityChecks, runChecks } from './cluster';


labTest('3-node cluster with host-gw routes: all pings pass', { prefix: 'pwl-cluster' }, async (t, lab) => {
  const cluster = await buildCluster(lab, { nodes: 3, podsPerNode: 2 });
  t.equal(cluster.nodes.length, 3);
  t.same(cluster.nodes.map((n) => n.pods.length), [2, 2, 2]);
  const results = await runChecks(connectivityChecks(cluster));
  // 6 ordered node pairs, each with 2x2 pod pairs, plus one negative control
  t.equal(results.length, 6 + 6 * 4 + 1, 'all checks generated');
  for (const r of results) t.ok(r.passed, `${r.kind} ${r.from} -> ${r.to}`, { output: r.output });
  // same-node pods reach each other through the node
  const n1 = cluster.nodes[0]!;
  const same = await ping(n1.pods[0]!.ns, n1.pods[1]!.ip);
  t.ok(same.ok, 'two pods on one node ping each other', { output: same.output });
});

labTest('without host-gw routes pods on different nodes cannot talk', { prefix: 'pwl-cluster' }, async (t, lab) => {
  const cluster = await buildCluster(lab, { nodes: 2, podsPerNode: 1, hostGwRoutes: false });
  const [a, b] = cluster.nodes;
  const nodes = await ping(a!.node.ns, b!.node.ip);
  t.ok(nodes.ok, 'nodes still reach each other on the underlay', { output: nodes.output });
  const pods = await ping(a!.pods[0]!.ns, b!.pods[0]!.ip, { waitS: 1 });
  t.notOk(pods.ok, 'pod -> pod across nodes fails without routes', { output: pods.output });
});
