/**
 * The anchor: kube-proxy's nftables layout (pkg/proxy/nftables/proxier.go) for N
 * Services × E endpoints, as the `nft -f` text a kube-proxy full sync writes: base
 * chains, the service-ips / service-nodeports verdict maps, one `service-…` chain per
 * Service with `numgen random mod E vmap` into one `endpoint-…` chain per endpoint
 * (≈ 11 chains per Service). Written for this bench from kube-proxy's behaviour; the
 * addresses match bench/proxy/run.ts (Service i: 10.96.0.0 + i + 1, port 80/tcp;
 * endpoints from 10.244.0.0/14 port 8080).
 */
import { createHash } from 'node:crypto';
import type { ClusterObject } from '../../src/k8s/types';
import { slice, svc } from '../../src/proxy/testing';

const ip4 = (n: number): string => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
function h8(s: string): string {
  const b = createHash('sha256').update(s).digest();
  let out = '';
  let bits = 0;
  let val = 0;
  for (const x of b) {
    val = ((val << 8) | x) & 0xffff;
    bits += 8;
    while (bits >= 5 && out.length < 8) {
      out += B32[(val >>> (bits - 5)) & 31];
      bits -= 5;
    }
    if (out.length >= 8) break;
  }
  return out;
}

export function benchVip(i: number): string {
  return ip4(((10 << 24) | (96 << 16)) + i + 1);
}
export function benchEndpoint(i: number, j: number, e: number, generation = 0): string {
  return generation > 0 && j === 0 ? ip4(((10 << 24) | (250 << 16)) + i + 1 + generation * 65536) : ip4(((10 << 24) | (244 << 16)) + i * e + j + 1);
}

export function kubeProxyFull(n: number, e: number): string {
  const T = 'ip kube-proxy';
  const w: string[] = [];
  w.push(`add table ${T} { comment "rules for kube-proxy" ; }`);
  const base: [string, string, string, number][] = [
    ['filter-prerouting', 'filter', 'prerouting', -110],
    ['filter-input', 'filter', 'input', -110],
    ['filter-forward', 'filter', 'forward', -110],
    ['filter-output', 'filter', 'output', -110],
    ['filter-output-post-dnat', 'filter', 'output', -90],
    ['nat-prerouting', 'nat', 'prerouting', -100],
    ['nat-output', 'nat', 'output', -100],
    ['nat-postrouting', 'nat', 'postrouting', 100],
  ];
  for (const [c, t, h, p] of base) w.push(`add chain ${T} ${c} { type ${t} hook ${h} priority ${p} ; }`, `flush chain ${T} ${c}`);
  for (const c of ['services', 'masquerading', 'mark-for-masquerade', 'service-endpoints-check', 'nodeport-endpoints-check', 'firewall-check', 'cluster-ips-check', 'reject-chain']) w.push(`add chain ${T} ${c}`, `flush chain ${T} ${c}`);
  w.push(`add set ${T} cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }`);
  w.push(`add map ${T} service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }`);
  w.push(`add map ${T} service-nodeports { type inet_proto . inet_service : verdict ; }`);
  w.push(`add map ${T} no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; }`);
  w.push(`add map ${T} firewall-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }`);
  w.push(`flush set ${T} cluster-ips`);
  for (const m of ['service-ips', 'service-nodeports', 'no-endpoint-services', 'firewall-ips']) w.push(`flush map ${T} ${m}`);
  w.push(
    `add rule ${T} filter-input ct state new jump service-endpoints-check`,
    `add rule ${T} filter-forward ct state new jump service-endpoints-check`,
    `add rule ${T} filter-output ct state new jump service-endpoints-check`,
    `add rule ${T} filter-prerouting ct state new jump firewall-check`,
    `add rule ${T} filter-output ct state new jump firewall-check`,
    `add rule ${T} filter-forward ct state new jump cluster-ips-check`,
    `add rule ${T} filter-output-post-dnat ct state new jump cluster-ips-check`,
    `add rule ${T} nat-output jump services`,
    `add rule ${T} nat-prerouting jump services`,
    `add rule ${T} nat-postrouting jump masquerading`,
    `add rule ${T} mark-for-masquerade mark set mark or 0x4000`,
    `add rule ${T} masquerading mark and 0x4000 == 0 return`,
    `add rule ${T} masquerading mark set mark xor 0x4000`,
    `add rule ${T} masquerading masquerade fully-random`,
    `add rule ${T} reject-chain reject`,
    `add rule ${T} cluster-ips-check ip daddr @cluster-ips reject`,
    `add rule ${T} cluster-ips-check ip daddr { 10.96.0.0/12 } drop`,
    `add rule ${T} service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services`,
    `add rule ${T} firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips`,
    `add rule ${T} services ip daddr . meta l4proto . th dport vmap @service-ips`,
    `add rule ${T} services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports`,
  );
  for (let i = 0; i < n; i++) {
    const ns = `ns-${i % 50}`;
    const svcName = `ns-${i % 50}/svc-${i}/tcp/http`;
    const sc = `service-${h8(svcName)}-${svcName}`;
    const vip = benchVip(i);
    const ecs: string[] = [];
    for (let j = 0; j < e; j++) {
      const ep = benchEndpoint(i, j, e);
      const base = `${svcName}__${ep}/8080`;
      const ec = `endpoint-${h8(base)}-${base}`;
      ecs.push(ec);
      w.push(`add chain ${T} ${ec}`, `flush chain ${T} ${ec}`);
      w.push(`add rule ${T} ${ec} ip saddr ${ep} jump mark-for-masquerade`, `add rule ${T} ${ec} meta l4proto tcp dnat to ${ep}:8080`);
    }
    void ns;
    w.push(`add chain ${T} ${sc}`, `flush chain ${T} ${sc}`);
    w.push(`add rule ${T} ${sc} ip daddr ${vip} tcp dport 80 ip saddr != 10.244.0.0/14 jump mark-for-masquerade`);
    w.push(`add rule ${T} ${sc} numgen random mod ${e} vmap { ${ecs.map((c, k) => `${k} : goto ${c}`).join(' , ')} }`);
    w.push(`add element ${T} cluster-ips { ${vip} }`, `add element ${T} service-ips { ${vip} . tcp . 80 : goto ${sc} }`);
  }
  return w.join('\n') + '\n';
}

/** The benches' cluster: default/kubernetes plus n Services × e endpoints (benchVip, benchEndpoint). */
export function benchObjects(n: number, e: number): ClusterObject[] {
  const out: ClusterObject[] = [svc('default/kubernetes', '10.96.0.1', { ports: [{ name: 'https', port: 443 }] }), slice('default/kubernetes', ['198.18.0.1'], [{ name: 'https', port: 6443 }])];
  for (let i = 0; i < n; i++) {
    const key = `ns-${i % 50}/svc-${i}`;
    out.push(svc(key, benchVip(i + 1), { ports: [{ name: 'http', port: 80 }] }));
    out.push(slice(key, Array.from({ length: e }, (_, j) => benchEndpoint(i, j, e)), [{ name: 'http', port: 8080 }]));
  }
  return out;
}
