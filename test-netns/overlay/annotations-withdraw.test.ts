/**
 * Stale annotations withdrawn through the API (issue #8). The overlay components run in this
 * process on the lab's kernels, with real KubernetesSources over HTTP to the fixture API server:
 * - na and nb are dual-stack vxlan nodes (pw.1 over IPv4, pw-v6.1 over IPv6). na's IPv6
 *   InternalIP is then removed from its Node: na PATCHes backend-v6-data, public-ipv6 and
 *   podwire.io/underlay-ipv6-cidr to null (a JSON merge patch), its pw-v6.1 goes, and nb, reading
 *   the withdrawal through its watch, carries na's v6 pods inside pw.1 as na does (ping across).
 *   Its own stale public-ipv6 does not keep the family alive, and the withdrawal is sent once.
 * - nc is an IPv6-only node whose Node still holds IPv4 keys from before: they are withdrawn.
 */
import type { NodeObject } from '../../src/k8s/types';
import { ANNOTATIONS } from '../../src/overlay';
import * as o from '../fixtures/apiserver/objects';
import { fixtureApi, k8sOverlayMember } from './helpers';
import { exec, execOk, ip, labTest, ping } from '../harness';

const DS = '10.244.0.0/16,fd00:10:244::/56';
const V6KEYS = [ANNOTATIONS.backendV6Data, ANNOTATIONS.publicIpv6, ANNOTATIONS.underlayCidr6];
const V4KEYS = [ANNOTATIONS.backendData, ANNOTATIONS.publicIp, ANNOTATIONS.underlayCidr];

type KNode = ReturnType<typeof o.node>;

/** A Node with these pod CIDRs and InternalIPs (one per family, in this order). */
function nodeOf(name: string, podCIDRs: string[], ips: string[], annotations: Record<string, string> = {}): KNode {
  const n = o.node(name, ips[0]!, podCIDRs[0]!);
  return {
    ...n,
    metadata: { ...n.metadata, annotations: { ...(n.metadata.annotations as Record<string, string>), ...annotations } },
    spec: { podCIDR: podCIDRs[0], podCIDRs },
    status: { ...(n.status as object), addresses: [{ type: 'Hostname', address: name }, ...ips.map((address) => ({ type: 'InternalIP', address }))] },
  };
}

labTest('stale annotations are withdrawn from our Node through the API (v6 keys when the IPv6 node IP goes, v4 keys on an IPv6-only node)', { prefix: 'pwh1-annw', requires: ['veth', 'bridge', 'vxlan', 'nftables'], timeout: 90_000 }, async (t, lab) => {
  const ul = await lab.addUnderlay({ role: 'ul' });
  const na = await lab.addNode(ul, { role: 'na', address: '198.18.0.1/24' });
  const nb = await lab.addNode(ul, { role: 'nb', address: '198.18.0.2/24' });
  const nc = await lab.addNode(ul, { role: 'nc', address: '198.18.0.3/24' });
  for (const [n, a] of [[na, 'fd00:198:18::1'], [nb, 'fd00:198:18::2'], [nc, 'fd00:198:18::3']] as const) await ip(n.ns, ['addr', 'add', `${a}/64`, 'dev', 'eth0', 'nodad']);

  const fx = await fixtureApi(t, 'pwh1-annw-');
  const { api, signal } = fx;
  api.put('nodes', nodeOf('na', ['10.244.1.0/24', 'fd00:10:244:1::/64'], ['198.18.0.1', 'fd00:198:18::1']));
  api.put('nodes', nodeOf('nb', ['10.244.2.0/24', 'fd00:10:244:2::/64'], ['198.18.0.2', 'fd00:198:18::2']));
  // An IPv6-only node whose Node still carries the IPv4 keys an earlier run wrote.
  api.put('nodes', nodeOf('nc', ['fd00:10:244:3::/64'], ['fd00:198:18::3'], { [ANNOTATIONS.backendData]: '{"VNI":1,"VtepMAC":"0a:58:c6:12:00:03"}', [ANNOTATIONS.publicIp]: '198.18.0.3', [ANNOTATIONS.underlayCidr]: '198.18.0.3/24' }));


  const member = (name: string, ns: string, clusterCIDR: string) => k8sOverlayMember(fx, name, ns, { clusterCIDR });
  type Member = Awaited<ReturnType<typeof member>>;
  const seenBy = (m: Member, node: string): NodeObject | undefined => [...m.state.values('Node')].find((n) => n.meta.name === node) as NodeObject | undefined;
  const until = async (what: string, cond: () => boolean): Promise<boolean> => {
    for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 50));
    const ok = cond();
    t.ok(ok, what);
    return ok;
  };
  // Bounded retries: right after a sync the new device's /128 VTEP addresses may still be tentative (IPv6 DAD).
  const ping6 = async (ns: string, to: string): Promise<{ ok: boolean; output: string }> => {
    let r = await ping(ns, to, { count: 1, waitS: 1 });
    for (let i = 0; i < 40 && !r.ok; i++) r = await ping(ns, to, { count: 1, waitS: 1 });
    return r;
  };
  const onServer = (name: string): Record<string, string> => (api.get('nodes', name)?.metadata.annotations ?? {}) as Record<string, string>;
  const patches = (name: string) => api.requests.filter((r) => r.method === 'PATCH' && r.path === `/api/v1/nodes/${name}`);
  const via6 = (m: Member, peer: string): string | undefined => (m.comp.status().peers as { node: string; via6?: string }[]).find((p) => p.node === peer)?.via6;

  const a = await member('na', na.ns, DS);
  const b = await member('nb', nb.ns, DS);
  await a.comp.sync(signal);
  t.ok(V6KEYS.every((k) => onServer('na')[k] !== undefined), 'na published its v6 keys (backend-v6-data, public-ipv6, underlay-ipv6-cidr)', { annotations: onServer('na') });
  await until('nb sees na\'s backend-v6-data', () => seenBy(b, 'na')?.meta.annotations[ANNOTATIONS.backendV6Data] !== undefined);
  await b.comp.sync(signal);
  await until('na sees nb\'s backend-v6-data', () => seenBy(a, 'nb')?.meta.annotations[ANNOTATIONS.backendV6Data] !== undefined);
  await a.comp.sync(signal);
  t.match(via6(b, 'na'), /vxlan pw-v6\.1/, 'nb: na\'s v6 pods over pw-v6.1');
  const p1 = await ping6(nb.ns, 'fd00:10:244:1::');
  t.ok(p1.ok, 'nb -> na\'s v6 VTEP address over pw-v6.1', { output: p1.output });

  // na's IPv6 InternalIP goes (the address stays on eth0: only the Node says the family is gone).
  const cur = api.get('nodes', 'na')!;
  api.put('nodes', { ...cur, status: { ...(cur.status as object), addresses: [{ type: 'Hostname', address: 'na' }, { type: 'InternalIP', address: '198.18.0.1' }] } });
  await until('na sees its Node without the IPv6 InternalIP', () => seenBy(a, 'na')?.addresses.length === 2);
  const before = patches('na').length;
  await a.comp.sync(signal);
  const sent = patches('na').slice(before);
  t.equal(sent.length, 1, 'one PATCH of na\'s own Node');
  t.equal(sent[0]?.contentType, 'application/merge-patch+json', 'a JSON merge patch');
  const body = (sent[0]?.body as { metadata?: { annotations?: Record<string, string | null> } } | undefined)?.metadata?.annotations ?? {};
  t.same(V6KEYS.map((k) => body[k]), [null, null, null], 'backend-v6-data, public-ipv6 and underlay-ipv6-cidr set to null', { body });
  t.ok(V6KEYS.every((k) => !(k in onServer('na'))), 'the v6 keys are gone from na\'s Node on the server', { annotations: onServer('na') });
  t.equal(onServer('na')[ANNOTATIONS.publicIp], '198.18.0.1', 'the v4 keys stay');
  t.not((await exec(na.ns, ['ip', 'link', 'show', 'pw-v6.1'])).exitCode, 0, 'na: pw-v6.1 removed (its own stale public-ipv6 did not keep it)');

  // nb reads the withdrawal and carries na's v6 pods inside pw.1, as na now does.
  await until('nb sees the withdrawal', () => seenBy(b, 'na')?.meta.annotations[ANNOTATIONS.backendV6Data] === undefined);
  await b.comp.sync(signal);
  t.match(via6(b, 'na'), /vxlan pw\.1,/, 'nb: na\'s v6 pods inside pw.1');
  t.notMatch(await execOk(nb.ns, ['bridge', 'fdb', 'show', 'dev', 'pw-v6.1']), /fd00:198:18::1/, 'nb: no FDB entry toward na on pw-v6.1');
  const p2 = await ping6(nb.ns, 'fd00:10:244:1::');
  t.ok(p2.ok, 'nb -> na\'s v6 VTEP address, now inside pw.1', { output: p2.output });

  // Withdrawn once: not again while the watch catches up, nor after.
  await a.comp.sync(signal);
  await until('na sees its Node without the v6 keys', () => V6KEYS.every((k) => seenBy(a, 'na')?.meta.annotations[k] === undefined));
  await a.comp.sync(signal);
  t.equal(patches('na').length, before + 1, 'no further PATCH');

  // The IPv6-only node: its left-over IPv4 keys go.
  const c = await member('nc', nc.ns, 'fd00:10:244::/56');
  await c.comp.sync(signal);
  const cbody = (patches('nc').at(-1)?.body as { metadata?: { annotations?: Record<string, string | null> } } | undefined)?.metadata?.annotations ?? {};
  t.same(V4KEYS.map((k) => cbody[k]), [null, null, null], 'nc: backend-data, public-ip and underlay-cidr set to null', { cbody });
  t.ok(V4KEYS.every((k) => !(k in onServer('nc'))), 'gone from nc\'s Node on the server', { annotations: onServer('nc') });
  t.equal(onServer('nc')[ANNOTATIONS.publicIpv6], 'fd00:198:18::3', 'nc: public-ipv6 published');
  t.match(onServer('nc')[ANNOTATIONS.backendV6Data], /"VNI":1/, 'nc: backend-v6-data published');
});
