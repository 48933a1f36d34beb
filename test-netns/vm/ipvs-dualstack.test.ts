/**
 * The ipvs mode with IPv6 and a dual-stack Service against a kernel that has IPVS: Debian's
 * stock kernel under qemu (KERNEL_REQUIRES routes this file to `npm run test:vm`). The
 * proxier runs in this process against a lab node's real kernel (test-netns/proxy/helpers.ts).
 *
 * Covers: a dual-stack ClusterIP (an AF_INET and an AF_INET6 virtual server) reached from a
 * pod over both families, the pod source kept (the IPv6 cluster CIDR given); the IPv6 VIP on
 * the VIP device bound with nodad (not tentative); NodePort on the node's IPv6 address from
 * the underlay, masqueraded; the IPv6 ClusterIP from the node itself; a UDP IPv6 ClusterIP
 * (datagrams spread over both endpoints, source kept; an endpoint removed: its real server
 * deleted at once and the same client source port answered by the other endpoint, the IPv6
 * conntrack flush); ClientIP affinity over IPv6 (persistent AF_INET6 virtual server, one
 * endpoint for one client); an IPv6 Service without
 * endpoints refused (ip6tables REJECT); a restart that changes nothing (the kernel's IPv6
 * virtual servers, `ipset save`'s inet6 members and the /128 VIPs read back as rendered); the
 * mode-switch cleanup removing the AF_INET6 virtual servers, the ip6tables chains and the
 * inet6 sets.
 */
import { exec, labTest, type Lab } from '../harness';
import { notInVm } from './in-vm';
import { slice, svc } from '../../src/proxy/testing';
import { removeIpvsLeftovers } from '../../src/proxy/ipvs/leftovers';
import { silentLogger } from '../../src/common/log';
import { connectOutcome, ipvsHost } from '../proxy/helpers';

/** Seconds in the guest (scripts/vm/run-tests.js): one lab, five python starts, two proxier starts. */
export const KERNEL_VM_TIMEOUT = 360;

export const KERNEL_REQUIRES = ['ip_vs', 'ip_vs_rr', 'nf_conntrack', 'ip_set', 'ip_set_hash_ip', 'ip_set_hash_ipport', 'ip_set_hash_ipportip', 'ip_set_hash_ipportnet', 'ip_set_bitmap_port', 'xt_set'];

const skip = notInVm('ip_vs');

const WEB4 = '10.96.0.60';
const WEB6 = 'fd00:10:96::60';
const EMPTY6 = 'fd00:10:96::61';
const DNS6 = 'fd00:10:96::62';
const STICKY6 = 'fd00:10:96::63';
const NODE6 = 'fd00:198:18::1';
const OUTSIDE6 = 'fd00:198:18::2';
const PODS = [
  { name: 'p1', v4: '10.244.1.2', v6: 'fd00:10:244:1::2' },
  { name: 'p2', v4: '10.244.1.3', v6: 'fd00:10:244:1::3' },
];
const CLIENT = { v4: '10.244.1.10', v6: 'fd00:10:244:1::10' };

const T0 = Date.now();
function step(what: string): void {
  process.stderr.write(`[ipvs-dualstack +${((Date.now() - T0) / 1000).toFixed(1)}s] ${what}\n`);
}

/**
 * One python per pod (python starts slowly under TCG): HTTP on TCP 8080 and a UDP echo on 5353,
 * both over both families (dual-stack sockets), answering `<name> <client address>`.
 */
const SERVER = `
import socket, sys, threading
name = sys.argv[1]
def unmapped(a):
    return a[7:] if a.startswith('::ffff:') else a
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
u.bind(('::', 5353))
def udp():
    for _ in range(100000):
        d, a = u.recvfrom(2048)
        u.sendto((name + ' ' + unmapped(a[0])).encode(), a)
threading.Thread(target=udp, daemon=True).start()
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(('::', 8080)); s.listen(64); print('ready', flush=True)
for _ in range(100000):
    c, a = s.accept()
    try:
        c.settimeout(2); c.recv(4096)
        body = (name + ' ' + unmapped(a[0])).encode()
        c.sendall(b'HTTP/1.0 200 OK\\r\\nContent-Length: ' + str(len(body)).encode() + b'\\r\\nConnection: close\\r\\n\\r\\n' + body)
    except Exception:
        pass
    c.close()
`;

/** An IPv6 address with no DAD (usable at once) on `dev` of `ns`. */
async function addr6(lab: Lab, ns: string, cidr: string, dev: string): Promise<void> {
  await lab.ip(ns, ['-6', 'addr', 'add', cidr, 'dev', dev, 'nodad']);
}

async function curl(ns: string, family: 4 | 6, url: string): Promise<{ ok: boolean; body: string; err: string }> {
  const r = await exec(ns, ['curl', `-${family}`, '-g', '-sS', '--max-time', '3', url], { timeoutMs: 6000 });
  return { ok: r.exitCode === 0, body: r.stdout.trim(), err: r.stderr.trim() };
}

/**
 * UDP datagrams to [ip]:port over IPv6, one per source port (each a new IPVS connection, so
 * the scheduler picks again), from one python process: the reply per source port, '' for none.
 */
async function udp6(ns: string, ip: string, port: number, srcPorts: number[]): Promise<string[]> {
  const code = `
import socket
for sp in [${srcPorts.join(', ')}]:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('::', sp)); s.settimeout(2)
    s.sendto(b'hi', ('${ip}', ${port}))
    try:
        print(s.recv(2048).decode(), flush=True)
    except Exception:
        print('', flush=True)
    s.close()
`;
  const r = await exec(ns, ['python3', '-c', code], { timeoutMs: 5000 + 2500 * srcPorts.length });
  return r.stdout.split('\n').slice(0, srcPorts.length).map((l) => l.trim());
}

labTest('ipvs mode: dual-stack ClusterIP over both families, IPv6 NodePort, UDP and affinity over IPv6, IPv6 REJECT, IPv6 cleanup', { prefix: 'hi6', skip, timeout: 350_000 }, async (t, lab) => {
  const ul = await lab.addUnderlay();
  const node = await lab.addNode(ul);
  const outside = await lab.addNode(ul);
  await addr6(lab, node.ns, `${NODE6}/64`, node.ifname);
  await addr6(lab, outside.ns, `${OUTSIDE6}/64`, outside.ifname);
  // Pods: the v4 wiring of the lab, plus an IPv6 /128 routed the same way (gateway fd00:10:244:1::1 on the host veth).
  const servers = [];
  const wire6 = async (pod: string, hostIf: string, v6: string): Promise<void> => {
    await addr6(lab, node.ns, 'fd00:10:244:1::1/128', hostIf);
    await lab.ip(node.ns, ['-6', 'route', 'add', `${v6}/128`, 'dev', hostIf]);
    await addr6(lab, pod, `${v6}/128`, 'eth0');
    await lab.ip(pod, ['-6', 'route', 'add', 'fd00:10:244:1::1', 'dev', 'eth0']);
    await lab.ip(pod, ['-6', 'route', 'add', 'default', 'via', 'fd00:10:244:1::1', 'dev', 'eth0']);
  };
  for (const p of PODS) {
    const ns = await lab.addPod(p.name);
    const w = await lab.wirePod(ns, node, { address: p.v4, gateway: '10.244.1.1' });
    await wire6(ns, w.hostIfName, p.v6);
    servers.push(lab.spawn(ns, ['python3', '-c', SERVER, p.name]));
  }
  const client = await lab.addPod('pc');
  const cw = await lab.wirePod(client, node, { address: CLIENT.v4, gateway: '10.244.1.1' });
  await wire6(client, cw.hostIfName, CLIENT.v6);
  await Promise.all(servers.map((s) => s.waitForOutput(/ready/, 60_000)));

  step('ipvs proxier');
  const section = { clusterCIDR: '10.244.0.0/16,fd00:10:244::/56' };
  let h = await ipvsHost(node, section);
  let closed = false;
  t.teardown(() => (closed ? undefined : h.close()));
  const objects = [
    svc('ns/web', [WEB4, WEB6], { type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30060 }] }),
    slice('ns/web', PODS.map((p) => ({ ip: p.v4, node: 'node-a' })), [{ name: 'http', port: 8080 }], { name: 'web-v4' }),
    slice('ns/web', PODS.map((p) => ({ ip: p.v6, node: 'node-a' })), [{ name: 'http', port: 8080 }], { name: 'web-v6' }),
    svc('ns/empty', EMPTY6, { ports: [{ name: 'http', port: 80 }] }),
    svc('ns/dns', DNS6, { ports: [{ name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353 }] }),
    slice('ns/dns', PODS.map((p) => ({ ip: p.v6, node: 'node-a' })), [{ name: 'dns', port: 5353, protocol: 'UDP' }]),
    svc('ns/sticky', STICKY6, { sessionAffinity: 'ClientIP', affinityTimeout: 600, ports: [{ name: 'http', port: 80 }] }),
    slice('ns/sticky', PODS.map((p) => ({ ip: p.v6, node: 'node-a' })), [{ name: 'http', port: 8080 }]),
  ];
  await h.apply(...objects);
  const state = async (): Promise<string> => (await exec(node.ns, ['sh', '-c', 'ipvsadm -Ln; ip -6 addr show dev podwire-ipvs0; ipset list -t | grep -E "^Name|entries"; ip6tables-legacy-save; ip6tables-nft-save'])).stdout;

  // ---- the kernel state
  const vs = (await exec(node.ns, ['ipvsadm', '-Ln'])).stdout;
  t.match(vs, new RegExp(`TCP  \\[${WEB6}\\]:80 rr\\n\\s+-> \\[${PODS[0]!.v6}\\]:8080\\s+Masq\\s+1[\\s\\S]*-> \\[${PODS[1]!.v6}\\]:8080\\s+Masq\\s+1`), 'an AF_INET6 virtual server with both IPv6 real servers');
  t.match(vs, new RegExp(`TCP  ${WEB4.replace(/\./g, '\\.')}:80 rr`), 'and the AF_INET one of the same Service');
  t.match(vs, new RegExp(`TCP  \\[${NODE6}\\]:30060 rr`), 'a NodePort virtual server on the node IPv6 address');
  const vip = (await exec(node.ns, ['ip', '-6', 'addr', 'show', 'dev', 'podwire-ipvs0'])).stdout;
  t.match(vip, new RegExp(`inet6 ${WEB6}/128 `), 'the IPv6 ClusterIP is bound on the VIP device');
  t.notMatch(vip, /tentative/, 'not tentative (nodad)');

  // ---- ClusterIP over both families from a pod
  step('ClusterIP');
  const bodies6: string[] = [];
  for (let i = 0; i < 4; i++) {
    const r = await curl(client, 6, `http://[${WEB6}]/`);
    bodies6.push(r.ok ? r.body : `ERR ${r.err}`);
  }
  t.same([...new Set(bodies6.map((b) => b.split(' ')[0]))].sort(), ['p1', 'p2'], `curl -6 to the IPv6 ClusterIP spreads over both endpoints: ${bodies6.join(', ')}`);
  t.ok(bodies6.every((b) => b.endsWith(` ${CLIENT.v6}`)), 'pod-to-Service IPv6 traffic keeps the pod source (inside the IPv6 cluster CIDR)');
  if (!bodies6.every((b) => !b.startsWith('ERR'))) t.comment(await state());
  const r4 = await curl(client, 4, `http://${WEB4}/`);
  t.ok(r4.ok && /^p[12] 10\.244\.1\.10$/.test(r4.body), `and curl -4 to the IPv4 ClusterIP of the same Service (${r4.body || r4.err})`);
  const nc = await exec(client, ['sh', '-c', `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 3 nc -6 ${WEB6} 80 || printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 3 busybox nc ${WEB6} 80`], { timeoutMs: 8000 });
  t.match(nc.stdout, /200 OK[\s\S]*p[12] /, `nc -6 to the IPv6 ClusterIP (${nc.stdout.trim().split('\n').pop() ?? ''} ${nc.stderr.trim()})`);

  // ---- NodePort on the node's IPv6 address, from the underlay
  step('NodePort');
  const np = await curl(outside.ns, 6, `http://[${NODE6}]:30060/`);
  t.ok(np.ok && /^p[12] /.test(np.body), `NodePort on the node IPv6 address answers from the underlay (${np.body || np.err})`);
  t.not(np.body.split(' ')[1], OUTSIDE6, `NodePort IPv6 traffic is masqueraded (${np.body})`);
  if (!np.ok) t.comment(await state());

  // ---- from the node itself (IPVS's LOCAL_OUT hook)
  const fromNode = await curl(node.ns, 6, `http://[${WEB6}]/`);
  t.ok(fromNode.ok && /^p[12] /.test(fromNode.body), `the node itself reaches the IPv6 ClusterIP (${fromNode.body || fromNode.err})`);

  // ---- UDP ClusterIP over IPv6: a UDP AF_INET6 virtual server, spread, source kept
  step('UDP');
  t.match((await exec(node.ns, ['ipvsadm', '-Ln', '-u', `[${DNS6}]:53`])).stdout, new RegExp(`UDP  \\[${DNS6}\\]:53 rr`), 'a UDP AF_INET6 virtual server');
  const dns = await udp6(client, DNS6, 53, [40001, 40002, 40003, 40004]);
  t.same([...new Set(dns.map((b) => b.split(' ')[0]))].sort(), ['p1', 'p2'], `UDP datagrams to the IPv6 ClusterIP spread over both endpoints: ${dns.join(', ')}`);
  t.ok(dns.every((b) => b.endsWith(` ${CLIENT.v6}`)), 'and keep the pod source');

  // ---- ClientIP affinity over IPv6: persistence, one endpoint for one client
  step('affinity');
  t.match((await exec(node.ns, ['ipvsadm', '-Ln', '-t', `[${STICKY6}]:80`])).stdout, /rr persistent 600\n/, 'the AF_INET6 virtual server is persistent with the Service timeout (netmask /128: no mask shown)');
  const sticky: string[] = [];
  for (let i = 0; i < 4; i++) {
    const r = await curl(client, 6, `http://[${STICKY6}]/`);
    sticky.push(r.ok ? r.body.split(' ')[0]! : `ERR ${r.err}`);
  }
  t.equal(new Set(sticky).size, 1, `one endpoint for one IPv6 client (${sticky.join(', ')})`);
  t.ok(sticky.every((b) => /^p[12]$/.test(b)), 'answered by a pod');

  // ---- an IPv6 UDP endpoint goes: its real server is deleted at once (no drain), its conntrack
  // entries flushed, so the same client source port reaches the remaining endpoint.
  step('UDP endpoint removal');
  const gone = dns[0]!.split(' ')[0]!;
  const keep = PODS.find((p) => p.name !== gone)!;
  const goneIp = PODS.find((p) => p.name === gone)!.v6;
  await h.apply(slice('ns/dns', [{ ip: keep.v6, node: 'node-a' }], [{ name: 'dns', port: 5353, protocol: 'UDP' }]));
  const udpVs = (await exec(node.ns, ['ipvsadm', '-Ln', '-u', `[${DNS6}]:53`])).stdout;
  t.notMatch(udpVs, new RegExp(`\\[${goneIp}\\]:5353`), `the UDP real server of ${gone} is deleted at once`);
  t.match(udpVs, new RegExp(`\\[${keep.v6}\\]:5353\\s+Masq\\s+1`), `and ${keep.name}'s stays`);
  const again = await udp6(client, DNS6, 53, [40001]);
  t.equal(again[0]?.split(' ')[0], keep.name, `the same source port that reached ${gone} now reaches ${keep.name} (${again[0] ?? ''})`);

  // ---- no endpoints: ip6tables REJECT
  step('REJECT');
  const refused = await connectOutcome(client, EMPTY6, 80, 3);
  t.equal(refused.outcome, 'ConnectionRefusedError', `an IPv6 Service without endpoints refuses (${refused.outcome}, ${refused.ms} ms)`);

  // ---- restart: the IPv6 state adopted, the first sync changes nothing
  step('restart');
  await h.close();
  h = await ipvsHost(node, section);
  await h.apply(...objects.map((o) => (o.kind === 'EndpointSlice' && o.serviceName === 'dns' ? slice('ns/dns', [{ ip: keep.v6, node: 'node-a' }], [{ name: 'dns', port: 5353, protocol: 'UDP' }]) : o)));
  const st = h.proxier.lastSync;
  t.same(st && { ipvs: st.ipvsChanges, ipset: st.ipsetChanges, vips: st.vipChanges }, { ipvs: 0, ipset: 0, vips: 0 }, 'after a restart the first sync changes nothing (IPv6 virtual servers, inet6 members, /128 VIPs read back as rendered)');
  const r2 = await curl(client, 6, `http://[${WEB6}]/`);
  t.ok(r2.ok, `the IPv6 ClusterIP still answers (${r2.body || r2.err})`);

  // ---- cleanup (a switch to another mode): the IPv6 objects go too
  step('cleanup');
  const before = await state();
  t.match(before, /-A PODWIRE-IPVS-SERVICES ! -s fd00:10:244::\/56 -m set --match-set PODWIRE-6-CLUSTER-IP dst,dst/, 'before: the ip6tables rules on the IPv6 sets');
  t.match(before, /Name: PODWIRE-6-CLUSTER-IP/, 'before: the inet6 sets');
  await h.proxier.close();
  const r = await removeIpvsLeftovers(h.kernel, silentLogger);
  h.kernel.close();
  closed = true;
  t.ok(r.virtualServers >= 8, `virtual servers of both families removed (${r.virtualServers})`);
  const after = await state();
  t.notMatch(after, /fd00:/, 'no IPv6 virtual server or VIP left');
  t.notMatch(after, /PODWIRE/, 'no ipset (PODWIRE-6-* too) and no ip6tables chain of ours left');
});
