/**
 * The Kubernetes source end to end for the overlay: node A's overlay PATCHes flannel's
 * annotations (plus podwire.io/underlay-cidr) to the fixture API server, node B's overlay
 * reads them through its own list/watch and programs A as a peer in B's namespace.
 *
 * The topology makes the annotation observable: A is 198.18.0.1/24, B is 198.18.1.2/16 on one
 * bridge, DirectRouting on. Without A's underlay-cidr annotation B must assume A shares its
 * /16 and routes A directly; with it, B knows A's subnet (/24) does not hold B, so both
 * ends agree on vxlan. B is synced once before A publishes (direct), then after (vxlan).
 * The overlay components run in this process on real kernels (netlink in the lab's
 * namespaces) with real KubernetesSources over HTTP to the fixture on 127.0.0.1.
 */
import type { NodeObject } from '../../src/k8s/types';
import { ANNOTATIONS } from '../../src/overlay';
import * as o from '../fixtures/apiserver/objects';
import { fixtureApi, k8sOverlayMember } from './helpers';
import { execOk, ip, labTest, ping } from '../harness';

labTest('annotations round trip through the API: A publishes, B reads them and programs A', { prefix: 'qo-ann', requires: ['veth', 'bridge', 'vxlan', 'nftables'], timeout: 60_000 }, async (t, lab) => {
  const ul = await lab.addUnderlay({ role: 'ul' });
  const na = await lab.addNode(ul, { role: 'na', address: '198.18.0.1/24' });
  const nb = await lab.addNode(ul, { role: 'nb', address: '198.18.1.2/16' });
  await ip(na.ns, ['route', 'add', '198.18.1.0/24', 'dev', 'eth0']); // same bridge: B is on-link for A too

  const fx = await fixtureApi(t, 'qo-ann-');
  const { api, signal } = fx;
  api.put('nodes', o.node('na', na.ip, '10.244.1.0/24'));
  api.put('nodes', o.node('nb', nb.ip, '10.244.2.0/24'));


  const member = (name: string, ns: string) => k8sOverlayMember(fx, name, ns, { clusterCIDR: '10.244.0.0/16', section: (s) => ({ ...s, directRouting: true }) });
  const a = await member('na', na.ns);
  const b = await member('nb', nb.ns);
  const peerMode = (m: typeof b, peer: string) => ((m.comp.status().peers as { node: string; mode: string }[]).find((p) => p.node === peer))?.mode;
  const seenBy = (m: typeof b, node: string): NodeObject | undefined => [...m.state.values('Node')].find((n) => n.meta.name === node) as NodeObject | undefined;
  const until = async (what: string, cond: () => boolean): Promise<boolean> => {
    for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 50));
    const ok = cond();
    t.ok(ok, what);
    return ok;
  };

  // Control: before A has published, B cannot know A's subnet and assumes its own /16.
  await b.comp.sync(signal);
  t.equal(peerMode(b, 'na'), 'direct', 'without A\'s annotations, B routes A directly (it assumes A shares its /16)');

  // A publishes.
  await a.comp.sync(signal);
  const patch = api.requests.find((r) => r.method === 'PATCH' && r.path === '/api/v1/nodes/na');
  t.ok(patch, 'A PATCHed its own Node');
  t.equal(patch?.contentType, 'application/merge-patch+json', 'as a JSON merge patch');
  const ann = (api.get('nodes', 'na')?.metadata.annotations ?? {}) as Record<string, string>;
  t.equal(ann[ANNOTATIONS.backendType], 'vxlan', 'backend-type on the server');
  const data = JSON.parse(ann[ANNOTATIONS.backendData] ?? '{}') as { VNI?: number; VtepMAC?: string };
  t.equal(data.VNI, 1, 'backend-data VNI');
  t.match(data.VtepMAC, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/, 'backend-data VtepMAC');
  t.equal(ann[ANNOTATIONS.publicIp], na.ip, 'public-ip');
  t.equal(ann[ANNOTATIONS.underlayCidr], '198.18.0.1/24', 'podwire.io/underlay-cidr');

  // B reads them back through its own watch and programs A.
  await until('B\'s source sees A\'s annotations', () => seenBy(b, 'na')?.meta.annotations[ANNOTATIONS.underlayCidr] === '198.18.0.1/24');
  await b.comp.sync(signal);
  t.equal(peerMode(b, 'na'), 'vxlan', 'with A\'s underlay-cidr annotation, B encapsulates to A (A\'s /24 does not hold B)');
  const fdb = await execOk(nb.ns, ['bridge', 'fdb', 'show', 'dev', 'pw.1']);
  t.ok(fdb.includes(`${data.VtepMAC} dst ${na.ip} self permanent`), 'B: FDB entry A\'s VtepMAC (from the annotation) -> A\'s public-ip', { fdb });
  const neigh = await execOk(nb.ns, ['ip', 'neigh', 'show', 'dev', 'pw.1']);
  t.match(neigh, new RegExp(`10\\.244\\.1\\.0 lladdr ${data.VtepMAC} PERMANENT`), 'B: neighbour A\'s VTEP IP -> A\'s VtepMAC');
  const routes = await execOk(nb.ns, ['ip', 'route', 'show', 'proto', '77']);
  t.match(routes, /10\.244\.1\.0\/24 via 10\.244\.1\.0 dev pw\.1 .*onlink/, 'B: route to A\'s pod CIDR through pw.1');

  // And the other way, then traffic over the tunnel, both ends agreeing.
  await until('A\'s source sees B\'s annotations', () => seenBy(a, 'nb')?.meta.annotations[ANNOTATIONS.backendData] !== undefined);
  await a.comp.sync(signal);
  t.equal(peerMode(a, 'nb'), 'vxlan', 'A agrees: vxlan to B');
  const p = await ping(nb.ns, '10.244.1.0', { count: 2 });
  t.ok(p.ok, 'B -> A\'s VTEP address across the VXLAN tunnel', { output: p.output });
});
