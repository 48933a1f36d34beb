/**
 * Switching from the ipvs mode to the nftables or iptables mode on this host's kernel, which
 * has no IPVS (no "IPVS" genetlink family) but has ipsets and xt_set: the ipvs mode's state
 * (our ipsets, its chains and jumps in nat/filter/mangle of both iptables backends, the VIP
 * device with its addresses) is laid down as the ipvs mode leaves it, then the other mode's
 * proxier starts and must remove all of it (skipping the virtual servers: there is no IPVS)
 * and nothing of anybody else's (kube-proxy's KUBE-* sets and chains). The switch on a
 * kernel with IPVS, virtual servers included, is test-netns/vm/ipvs-proxy.test.ts. Both
 * families: the IPv4 and the IPv6 (PODWIRE-6-*, family inet6) sets as the real ipset creates
 * them, iptables and ip6tables rules, a /32 and a nodad /128 VIP.
 */
import { exec, labTest, type LabNode } from '../harness';
import { renderRules, SET_TYPES, VIP_DEVICE } from '../../src/proxy/ipvs';
import { iptablesHost, proxyHost } from './helpers';

const BACKENDS = ['legacy', 'nft'] as const;

/** The ipvs mode's state, as its setup() and a sync with one Service leave it. */
async function layIpvsState(node: LabNode): Promise<void> {
  const ns = node.ns;
  await exec(ns, ['ip', 'link', 'add', VIP_DEVICE, 'type', 'bridge']);
  await exec(ns, ['ip', 'addr', 'add', '10.96.0.10/32', 'dev', VIP_DEVICE]);
  await exec(ns, ['ip', '-6', 'addr', 'add', 'fd00:10:96::a/128', 'dev', VIP_DEVICE, 'nodad']);
  const sets = Object.entries(SET_TYPES).map(([n, ty]) => `create ${n} ${ty} -exist`);
  const r = await exec(ns, ['ipset', 'restore'], { input: `${sets.join('\n')}\nadd PODWIRE-CLUSTER-IP 10.96.0.10,tcp:80\nadd PODWIRE-IPVS-IPS 10.96.0.10\nadd PODWIRE-6-CLUSTER-IP fd00:10:96::a,tcp:80\nadd PODWIRE-6-IPVS-IPS fd00:10:96::a\nadd PODWIRE-6-LOAD-BALANCER-SRCCIDR fd00:10:96::a,tcp:80,fd00:198:18::/64\ncreate KUBE-CLUSTER-IP hash:ip,port family inet -exist\n` });
  if (r.exitCode !== 0) throw new Error(`ipset restore: ${r.stderr}`);
  for (const f of [4, 6] as const) {
    const rules = renderRules({ clusterCIDRs: ['10.244.0.0/16', 'fd00:10:244::/56'], masqueradeAll: false, masqMark: 0x4000 }, undefined, f);
    for (const b of BACKENDS) {
      const x = await exec(ns, [`ip${f === 6 ? '6' : ''}tables-${b}-restore`, '--noflush'], { input: rules });
      if (x.exitCode !== 0) throw new Error(`ip${f === 6 ? '6' : ''}tables-${b}-restore: ${x.stderr}`);
    }
  }
  // kube-proxy's, which no mode of ours may touch.
  await exec(ns, ['iptables-legacy', '-t', 'filter', '-N', 'KUBE-IPVS-FILTER']);
  await exec(ns, ['iptables-legacy', '-t', 'filter', '-A', 'INPUT', '-j', 'KUBE-IPVS-FILTER']);
}

/** What is left: our chains and jumps per backend and table, our sets, the VIP device. */
async function ipvsLeftovers(node: LabNode): Promise<{ rules: string[]; sets: string[]; device: boolean }> {
  const rules: string[] = [];
  for (const v of ['', '6']) {
    for (const b of BACKENDS) {
      for (const table of ['nat', 'filter', 'mangle']) {
        const s = await exec(node.ns, [`ip${v}tables-${b}-save`, '-t', table]);
        for (const l of s.stdout.split('\n')) if (/PODWIRE-IPVS/.test(l)) rules.push(`ip${v}tables-${b} ${table} ${l}`);
      }
    }
  }
  const sets = (await exec(node.ns, ['ipset', 'list', '-n'])).stdout.split('\n').filter((l) => l !== '').sort();
  const device = (await exec(node.ns, ['ip', 'link', 'show', VIP_DEVICE])).exitCode === 0;
  return { rules, sets, device };
}

for (const mode of ['nftables', 'iptables'] as const) {
  labTest(`proxy mode switch ipvs → ${mode} on a kernel without IPVS removes the ipvs mode's ipsets, chains and VIP device`, { prefix: mode === 'nftables' ? 'hi2-ivn' : 'hi2-ivi', requires: ['veth', 'bridge', 'nftables', 'iptables-legacy', 'ipset'], timeout: 90_000 }, async (t, lab) => {
    const ul = await lab.addUnderlay();
    const node = await lab.addNode(ul);
    await layIpvsState(node);
    const before = await ipvsLeftovers(node);
    t.ok(before.rules.length >= 2 * 2 * 12 && before.rules.some((l) => l.startsWith('ip6tables-legacy ') && l.includes('PODWIRE-6-CLUSTER-IP')) && before.device && before.sets.length === Object.keys(SET_TYPES).length + 1, `the ipvs mode's state is there (${before.rules.length} rule lines, ${before.sets.length} sets)`);
    const ipvs = (await exec(node.ns, ['ipvsadm', '-Ln'])).exitCode;
    t.not(ipvs, 0, 'this kernel has no IPVS (ipvsadm -Ln fails)');

    const h = mode === 'nftables' ? await proxyHost(node) : await iptablesHost(node);
    t.teardown(() => h.close());
    const after = await ipvsLeftovers(node);
    t.same(after.rules, [], `starting in ${mode} mode removed every PODWIRE-IPVS chain and jump, in both backends and all three tables`);
    t.same(after.sets, ['KUBE-CLUSTER-IP'], 'our ipsets destroyed, kube-proxy\'s kept');
    t.equal(after.device, false, 'the VIP device (and 10.96.0.10 on it) removed');
    t.match((await exec(node.ns, ['iptables-legacy-save', '-t', 'filter'])).stdout, /-A INPUT -j KUBE-IPVS-FILTER/, "kube-proxy's chain and jump untouched");
    t.notMatch((await exec(node.ns, ['ip', '-4', 'addr'])).stdout, /10\.96\.0\.10\//, 'no VIP address is left on the node');
    t.notMatch((await exec(node.ns, ['ip', '-6', 'addr'])).stdout, /fd00:10:96::a\//, 'nor the IPv6 one');
  });
}
