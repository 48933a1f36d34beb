/**
 * nftables rendering, designed around this kernel's cost model (DESIGN.md §6): a
 * private `inet` table with a fixed handful of chains, and everything per Service
 * expressed as map and set elements:
 *
 *   nat-prerouting / nat-output → services:
 *     ip daddr . meta l4proto . th dport vmap @services4      (ClusterIP, externalIPs, LB IPs)
 *     <local address> meta l4proto . th dport vmap @nodeports4
 *   a vmap element → `goto lb4c-tcp-N` (shared by every Service with N endpoints; c = cluster,
 *     x = external, l = external with eTP Local, nx / nl = the NodePort variants), whose one
 *     rule is `dnat ip to ip daddr . meta l4proto . th dport . numgen random mod N map @endpoints4-tcp`
 *   so one endpoint change is a couple of element deletes and adds, no chain and no rule.
 *
 * Only Services with ClientIP affinity get a chain of their own (kube-proxy-style rules
 * with one dynamic timeout set per endpoint). No-endpoint Services are REJECTed from the
 * filter hooks through @no-endpoints4 / @no-endpoint-nodeports4; a Local policy with no
 * local endpoint DROPs there. Masquerade: mark 0x4000 for off-cluster sources and
 * external traffic, and `ct status dnat ip saddr . ip daddr @hairpin4` for hairpin.
 */
import { createHash } from 'node:crypto';
import type { Contribution, ObjectDef, Plan } from './ruleset';
import type { EndpointInfo, Family, L4, ServicePortInfo } from './model';
import type { EndpointOrder } from './programmed';
import { ipFamily } from './model';
import { Cidr, IpAddress } from '../common/ip';

export interface RenderOptions {
  table: string;
  clusterCIDRs: string[];
  serviceCIDRs: string[];
  masqueradeAll: boolean;
  nodePortAddresses: string[];
  /** e.g. 0x4000 */
  masqMark: number;
}

type Cls = 'c' | 'x' | 'l' | 'nx' | 'nl';

const FAMILIES: Family[] = [4, 6];
const PROTOS: L4[] = ['tcp', 'udp', 'sctp'];
const ipk = (f: Family): string => (f === 4 ? 'ip' : 'ip6');
const addrType = (f: Family): string => (f === 4 ? 'ipv4_addr' : 'ipv6_addr');
const hex = (n: number): string => `0x${n.toString(16)}`;

const B32 = 'abcdefghijklmnopqrstuvwxyz234567';
export function hash8(s: string): string {
  const buf = createHash('sha256').update(s).digest();
  let bits = 0;
  let val = 0;
  let out = '';
  for (const b of buf) {
    val = ((val << 8) | b) & 0xffff;
    bits += 8;
    while (bits >= 5 && out.length < 8) {
      out += B32[(val >>> (bits - 5)) & 31];
      bits -= 5;
    }
    if (out.length >= 8) break;
  }
  return out;
}

/**
 * A source range as nft prints it back (`198.18.9.9/32` → `198.18.9.9`, host bits cleared,
 * IPv6 compressed), so the periodic read-back and the restart adoption compare it equal to
 * what we render instead of "repairing" it every period. Unparseable text stays as it is
 * (nft then refuses it, as before).
 */
export function nftRange(r: string): string {
  try {
    const c = r.includes('/') ? Cidr.parse(r) : Cidr.of(IpAddress.parse(r), IpAddress.parse(r).bits);
    return c.prefixLength === c.ip.bits ? c.network.toString() : `${c.network.toString()}/${c.prefixLength}`;
  } catch {
    return r;
  }
}

function epAddr(f: Family, ep: EndpointInfo): string {
  return f === 4 ? `${ep.ip}:${ep.port}` : `[${ep.ip}]:${ep.port}`;
}

/** The table's fixed part: maps, sets and the few chains. Owner `#base`. */
export function renderSkeleton(o: RenderOptions): Contribution {
  const objects: [string, ObjectDef][] = [];
  const set = (name: string, spec: string, keyword: 'map' | 'set' = 'set'): void => {
    objects.push([name, { kind: 'set', keyword, spec }]);
  };
  const chain = (name: string, spec: string, rules: string[]): void => {
    objects.push([name, { kind: 'chain', spec, rules }]);
  };
  for (const f of FAMILIES) {
    const t = addrType(f);
    set(`services${f}`, `{ type ${t} . inet_proto . inet_service : verdict ; }`, 'map');
    set(`no-endpoints${f}`, `{ type ${t} . inet_proto . inet_service : verdict ; }`, 'map');
    set(`nodeports${f}`, `{ type inet_proto . inet_service : verdict ; }`, 'map');
    set(`no-endpoint-nodeports${f}`, `{ type inet_proto . inet_service : verdict ; }`, 'map');
    // One endpoint map per protocol: nft derives a `meta l4proto` dependency from the
    // data's `<proto> dport`, so a map shared by TCP and UDP would only ever match TCP.
    for (const pr of PROTOS) {
      set(`endpoints${f}-${pr}`, `{ typeof ${ipk(f)} daddr . meta l4proto . th dport . numgen random mod 1 : ${ipk(f)} daddr . ${pr} dport ; }`, 'map');
      set(`np-endpoints${f}-${pr}`, `{ typeof meta l4proto . th dport . numgen random mod 1 : ${ipk(f)} daddr . ${pr} dport ; }`, 'map');
    }
    set(`cluster-ips${f}`, `{ type ${t} ; }`);
    set(`hairpin${f}`, `{ type ${t} . ${t} ; }`);
    set(`firewall${f}`, `{ type ${t} . inet_proto . inet_service ; }`);
    set(`firewall-allow${f}`, `{ type ${t} . inet_proto . inet_service . ${t} ; flags interval ; }`);
  }
  const m = hex(o.masqMark);
  chain('nat-prerouting', '{ type nat hook prerouting priority dstnat ; }', ['jump services']);
  chain('nat-output', '{ type nat hook output priority -100 ; }', ['jump services']);
  chain('nat-postrouting', '{ type nat hook postrouting priority srcnat ; }', ['jump masquerading']);
  // The no-endpoint check runs before DNAT (prerouting/output at -110) so the REJECT does
  // not depend on the node having a route to the VIP.
  chain('filter-prerouting', '{ type filter hook prerouting priority -110 ; }', ['ct state new jump firewall-check', 'ct state new jump endpoints-check']);
  chain('filter-forward', '{ type filter hook forward priority -110 ; }', ['ct state invalid drop', 'ct state new jump cluster-ips-check']);
  chain('filter-output', '{ type filter hook output priority -110 ; }', ['ct state new jump endpoints-check', 'ct state new jump firewall-check']);
  chain('filter-output-post-dnat', '{ type filter hook output priority -90 ; }', ['ct state new jump cluster-ips-check']);
  const services: string[] = [];
  const endpointsCheck: string[] = [];
  const firewall: string[] = [];
  const clusterCheck: string[] = [];
  const masq: string[] = [];
  for (const f of FAMILIES) {
    const p = ipk(f);
    services.push(`${p} daddr . meta l4proto . th dport vmap @services${f}`);
    endpointsCheck.push(`${p} daddr . meta l4proto . th dport vmap @no-endpoints${f}`);
    const npCidrs = o.nodePortAddresses.filter((c) => ipFamily(c.split('/')[0] ?? '') === f);
    const local = o.nodePortAddresses.length === 0 ? `fib daddr type local ${p} daddr != ${f === 4 ? '127.0.0.0/8' : '::1'}` : npCidrs.length > 0 ? `${p} daddr { ${npCidrs.join(', ')} }` : undefined;
    if (local) {
      services.push(`meta nfproto ${f === 4 ? 'ipv4' : 'ipv6'} ${local} meta l4proto . th dport vmap @nodeports${f}`);
      endpointsCheck.push(`meta nfproto ${f === 4 ? 'ipv4' : 'ipv6'} ${local} meta l4proto . th dport vmap @no-endpoint-nodeports${f}`);
    }
    firewall.push(`${p} daddr . meta l4proto . th dport @firewall${f} ${p} daddr . meta l4proto . th dport . ${p} saddr != @firewall-allow${f} drop`);
    clusterCheck.push(`${p} daddr @cluster-ips${f} reject`);
    const svcCidrs = o.serviceCIDRs.filter((c) => ipFamily(c.split('/')[0] ?? '') === f);
    if (svcCidrs.length > 0) clusterCheck.push(`${p} daddr { ${svcCidrs.join(', ')} } drop`);
    masq.push(`ct status dnat ${p} saddr . ${p} daddr @hairpin${f} masquerade fully-random`);
  }
  masq.push(`meta mark & ${m} == 0 return`, `meta mark set meta mark ^ ${m}`, 'masquerade fully-random');
  chain('services', '', services);
  chain('endpoints-check', '', endpointsCheck);
  chain('firewall-check', '', firewall);
  chain('cluster-ips-check', '', clusterCheck);
  chain('masquerading', '', masq);
  chain('mark-for-masquerade', '', [`meta mark set meta mark | ${m}`]);
  chain('reject-chain', '', ['meta l4proto tcp reject with tcp reset', 'reject']);
  return { elements: [], objects };
}

function masqRule(o: RenderOptions, f: Family, cls: Cls): string | undefined {
  if (o.masqueradeAll || cls === 'x' || cls === 'nx') return 'jump mark-for-masquerade';
  if (cls === 'c') {
    const cidrs = o.clusterCIDRs.filter((c) => ipFamily(c.split('/')[0] ?? '') === f);
    if (cidrs.length === 0) return undefined;
    return `${ipk(f)} saddr != { ${cidrs.join(', ')} } jump mark-for-masquerade`;
  }
  return undefined;
}

/** The shared load-balancing chain for class `cls` and N endpoints. */
export function lbChain(o: RenderOptions, f: Family, cls: Cls, pr: L4, n: number): [string, ObjectDef] {
  const p = ipk(f);
  const rules: string[] = [];
  const mr = masqRule(o, f, cls);
  if (mr) rules.push(mr);
  if (cls === 'nx' || cls === 'nl') rules.push(`dnat ${p} to meta l4proto . th dport . numgen random mod ${n} map @np-endpoints${f}-${pr}`);
  else rules.push(`dnat ${p} to ${p} daddr . meta l4proto . th dport . numgen random mod ${n} map @endpoints${f}-${pr}`);
  return [`lb${f}${cls}-${pr}-${n}`, { kind: 'chain', spec: '', rules }];
}

const GOTO_REJECT = 'goto reject-chain';
const perProto = (fn: (pr: L4) => string): Record<L4, string> => ({ tcp: fn('tcp'), udp: fn('udp'), sctp: fn('sctp') });
const names = (f: Family) => ({
  services: `services${f}`,
  noEndpoints: `no-endpoints${f}`,
  nodeports: `nodeports${f}`,
  noEndpointNodeports: `no-endpoint-nodeports${f}`,
  clusterIPs: `cluster-ips${f}`,
  hairpin: `hairpin${f}`,
  endpoints: perProto((pr) => `endpoints${f}-${pr}`),
  npEndpoints: perProto((pr) => `np-endpoints${f}-${pr}`),
});
const NAMES = { 4: names(4), 6: names(6) } as const;
/**
 * `a . b` as a flat string. A template literal makes a V8 cons string, which the Ruleset's
 * maps then flatten into a second copy while keeping the cons: at 100k endpoint elements
 * that is ~6 MB of heap and the render's largest GC cost. Array join builds it flat.
 */
const flat = (a: string, b: string | number): string => [a, b].join(' . ');
/** The services map key of a port's ClusterIP, and the prefix of its endpoint slots' keys. */
const clusterKey = (sp: ServicePortInfo): string => [sp.clusterIP, sp.protocol, sp.port].join(' . ');
const gotoCache = new Map<string, string>();
function gotoLb(f: Family, cls: Cls, pr: L4, n: number): string {
  const k = `${f}${cls}${pr}${n}`;
  let v = gotoCache.get(k);
  if (v === undefined) gotoCache.set(k, (v = `goto lb${f}${cls}-${pr}-${n}`));
  return v;
}

/**
 * One Service's elements (and, for ClientIP affinity, its own chains and sets). A key
 * appears at most once per contribution (the Ruleset relies on it): the ClusterIP and
 * hairpin pairs shared by several ports, and an IP listed as both externalIP and LB IP,
 * are emitted once.
 */
export function renderService(ports: readonly ServicePortInfo[], o: RenderOptions): Contribution {
  const elements: string[] = [];
  const objects: [string, ObjectDef][] = [];
  let seen: Set<string> | undefined;
  // Map names and shared values are constants: one string each, not one per element.
  const once = (k: string): boolean => {
    if (ports.length === 1) return true;
    seen ??= new Set();
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  };
  for (const sp of ports) {
    const f = sp.family;
    const pr = sp.protocol;
    const vipKey = clusterKey(sp);
    const n = NAMES[f];
    if (once(`c|${sp.clusterIP}`)) elements.push(n.clusterIPs, sp.clusterIP, '');
    for (const ep of sp.all) if (ep.local && once(`h|${ep.ip}`)) elements.push(n.hairpin, flat(ep.ip, ep.ip), '');
    const noEndpoints = sp.cluster.length === 0;
    const internal = sp.internalLocal ? sp.local : sp.cluster;
    const external = sp.externalLocal ? sp.local : sp.cluster;
    const target = (cls: Cls, key: string, eps: EndpointInfo[]): string => {
      if (sp.affinityTimeout > 0) {
        const [name, def] = affinityChain(o, sp, cls, eps);
        objects.push([name, def]);
        for (const ep of eps) objects.push(affinitySet(sp, ep));
        return `goto ${name}`;
      }
      const epMap = cls === 'nx' || cls === 'nl' ? n.npEndpoints[pr] : n.endpoints[pr];
      for (let i = 0; i < eps.length; i++) {
        const ep = eps[i]!;
        elements.push(epMap, flat(key, i), flat(ep.ip, ep.port));
      }
      return gotoLb(f, cls, pr, eps.length);
    };
    const dest = (mapOk: string, mapNone: string, key: string, cls: Cls, eps: EndpointInfo[]): void => {
      if (noEndpoints) elements.push(mapNone, key, GOTO_REJECT);
      else if (eps.length === 0) elements.push(mapNone, key, 'drop');
      else elements.push(mapOk, key, target(cls, key, eps));
    };
    dest(n.services, n.noEndpoints, vipKey, 'c', internal);
    const externals = sp.loadBalancerIPs.length === 0 ? sp.externalIPs : sp.externalIPs.length === 0 ? sp.loadBalancerIPs : [...new Set([...sp.externalIPs, ...sp.loadBalancerIPs])];
    for (const ip of externals) {
      if (ip === sp.clusterIP) continue;
      dest(n.services, n.noEndpoints, `${ip} . ${pr} . ${sp.port}`, sp.externalLocal ? 'l' : 'x', external);
    }
    if (sp.loadBalancerSourceRanges.length > 0) {
      for (const ip of sp.loadBalancerIPs) {
        elements.push(`firewall${f}`, `${ip} . ${pr} . ${sp.port}`, '');
        for (const r of new Set(sp.loadBalancerSourceRanges.map(nftRange))) elements.push(`firewall-allow${f}`, `${ip} . ${pr} . ${sp.port} . ${r}`, '');
      }
    }
    if (sp.nodePort !== undefined) {
      dest(n.nodeports, n.noEndpointNodeports, `${pr} . ${sp.nodePort}`, sp.externalLocal ? 'nl' : 'nx', external);
    }
  }
  // Kept until the Service changes: a copy of exactly its length, not the push-grown array (~0.5 MB at 10k Services).
  return { elements: elements.slice(), objects };
}

/**
 * The slot order of a port's ClusterIP endpoints as the kernel holds them: the values of its
 * `<vip> . <proto> . <port> . <slot>` elements in the endpoints map, from slot 0 to the first
 * one missing (`applied`: the applied element value, e.g. Ruleset.appliedValue). After a restart
 * the first render keeps each surviving endpoint in its kernel slot (no element rewritten).
 * They are the `local` endpoints' order under `internalTrafficPolicy: Local`, else the
 * `cluster` ones'. Undefined when the kernel holds none (a new Service, affinity, no endpoints).
 */
export function kernelSlotOrder(sp: ServicePortInfo, applied: (map: string, key: string) => string | undefined): EndpointOrder | undefined {
  const epMap = NAMES[sp.family].endpoints[sp.protocol];
  const vipKey = clusterKey(sp);
  const ips: string[] = [];
  const ports: number[] = [];
  for (let i = 0; ; i++) {
    const v = applied(epMap, flat(vipKey, i));
    if (v === undefined) break;
    const sep = v.lastIndexOf(' . ');
    if (sep < 0) break;
    ips.push(v.slice(0, sep));
    ports.push(Number(v.slice(sep + 3)));
  }
  return ips.length === 0 ? undefined : { ips, ports };
}

/** The shared load-balancing chains a contribution's elements jump to (`goto lb…`), rendered. */
export function lbChainsOf(c: Contribution, o: RenderOptions, out: Map<string, ObjectDef>): boolean {
  let grew = false;
  const e = c.elements;
  for (let i = 2; i < e.length; i += 3) {
    const v = e[i]!;
    if (v.charCodeAt(0) !== 103 /* g */ || !v.startsWith('goto lb')) continue;
    const name = v.slice(5);
    if (out.has(name)) continue;
    const m = /^lb([46])(c|x|l|nx|nl)-(tcp|udp|sctp)-(\d+)$/.exec(name);
    if (!m) continue;
    out.set(name, lbChain(o, Number(m[1]) as Family, m[2] as Cls, m[3] as L4, Number(m[4]))[1]);
    grew = true;
  }
  return grew;
}

function affinitySetName(sp: ServicePortInfo, ep: EndpointInfo): string {
  return `affinity${sp.family}-${hash8(`${sp.id}|${ep.ip}|${ep.port}`)}`;
}

function affinitySet(sp: ServicePortInfo, ep: EndpointInfo): [string, ObjectDef] {
  return [affinitySetName(sp, ep), { kind: 'set', keyword: 'set', spec: `{ type ${addrType(sp.family)} ; flags dynamic,timeout ; timeout ${sp.affinityTimeout}s ; }` }];
}

function affinityChain(o: RenderOptions, sp: ServicePortInfo, cls: Cls, eps: EndpointInfo[]): [string, ObjectDef] {
  const f = sp.family;
  const p = ipk(f);
  const rules: string[] = [];
  const mr = masqRule(o, f, cls);
  if (mr) rules.push(mr);
  const dnat = (ep: EndpointInfo): string => `update @${affinitySetName(sp, ep)} { ${p} saddr } meta l4proto ${sp.protocol} dnat ${p} to ${epAddr(f, ep)}`;
  for (const ep of eps) rules.push(`${p} saddr @${affinitySetName(sp, ep)} ${dnat(ep)}`);
  eps.forEach((ep, i) => {
    const left = eps.length - i;
    rules.push(left > 1 ? `numgen random mod ${left} 0 ${dnat(ep)}` : dnat(ep));
  });
  return [`svc${f}${cls}-${hash8(sp.id)}`, { kind: 'chain', spec: '', rules }];
}

/** The nft script for a plan: objects, chain rules, element deletes, element adds, object deletes. */
export function renderScript(plan: Plan, table: string, opts: { createTable?: boolean } = {}): string {
  const T = `inet ${table}`;
  const out: string[] = [];
  if (opts.createTable) out.push(`add table ${T} { comment "podwire service proxy" ; }`);
  const sets = plan.addObjects.filter(([, d]) => d.kind === 'set');
  const chains = plan.addObjects.filter(([, d]) => d.kind === 'chain');
  // Recreated sets/maps (definition changed) are deleted first.
  for (const [name, d] of plan.deleteObjects) {
    if (d.kind === 'set' && plan.addObjects.some(([n]) => n === name)) out.push(`delete ${d.keyword ?? 'set'} ${T} ${name}`);
  }
  for (const [name, d] of sets) out.push(`add ${d.keyword ?? 'set'} ${T} ${name} ${d.spec}`);
  for (const [name, d] of chains) out.push(d.spec ? `add chain ${T} ${name} ${d.spec}` : `add chain ${T} ${name}`);
  for (const [name, d] of [...chains, ...plan.rewriteChains]) {
    if (plan.rewriteChains.some(([n]) => n === name) || plan.deleteObjects.some(([n]) => n === name)) out.push(`flush chain ${T} ${name}`);
    for (const r of d.rules ?? []) out.push(`add rule ${T} ${name} ${r}`);
  }
  for (const [m, d] of plan.flush) out.push(`flush ${d.keyword ?? 'set'} ${T} ${m}`);
  for (const [m, keys] of plan.deleteElements) {
    for (let i = 0; i < keys.length; i += 1000) out.push(`delete element ${T} ${m} { ${keys.slice(i, i + 1000).join(', ')} }`);
  }
  for (const [m, adds] of plan.addElements) {
    for (let i = 0; i < adds.length; i += 2000) {
      let line = `add element ${T} ${m} { `;
      for (let j = i; j < Math.min(adds.length, i + 2000); j += 2) {
        const v = adds[j + 1]!;
        line += (j > i ? ', ' : '') + (v === '' ? adds[j]! : `${adds[j]!} : ${v}`);
      }
      out.push(line + ' }');
    }
  }
  const recreated = new Set(plan.addObjects.map(([n]) => n));
  const dels = plan.deleteObjects.filter(([n]) => !recreated.has(n));
  for (const [name, d] of dels) if (d.kind === 'chain') out.push(`delete chain ${T} ${name}`);
  for (const [name, d] of dels) if (d.kind !== 'chain') out.push(`delete ${d.keyword ?? 'set'} ${T} ${name}`);
  return out.length === 0 ? '' : out.join('\n') + '\n';
}
