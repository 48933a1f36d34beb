/**
 * SCTP Services against a kernel that has SCTP: Debian's stock kernel under qemu (the host
 * kernel has no sctp module; KERNEL_REQUIRES routes this file to `npm run test:vm`).
 *
 * For each proxy mode (nftables, iptables, ipvs) the proxier runs in this process against the
 * real kernel of a lab node (test-netns/proxy/helpers.ts). Two pods on the node run an SCTP
 * server (python: SOCK_STREAM + IPPROTO_SCTP) answering each message with
 * `<pod> <source address> <message>`; a client pod on the node and an "outside" namespace on
 * the underlay connect. Covers, per mode: a ClusterIP over 2 endpoints with two messages each
 * way per association, a NodePort from outside (masqueraded: eTP Cluster), a Service without
 * endpoints refused (ICMP port unreachable, which an SCTP socket reports as ECONNREFUSED with
 * IP_RECVERR; without it SCTP retries INIT until its own timeout, as with kube-proxy), and a restart of the proxier that adopts the kernel's state and rewrites nothing
 * (what the kernel prints back for SCTP rules, elements and ipset members equals what we render).
 */
import type { Test } from 'tap';
import { exec, labTest, type Lab, type LabNode } from '../harness';
import { notInVm } from './in-vm';
import { slice, svc } from '../../src/proxy/testing';
import { iptablesHost, ipvsHost, proxyHost, type ProxyHost } from '../proxy/helpers';

/** Seconds in the guest (scripts/vm/run-tests.js): three labs, ~10 python starts each under TCG. */
export const KERNEL_VM_TIMEOUT = 420;

export const KERNEL_REQUIRES = ['sctp', 'xt_sctp', 'nf_conntrack', 'ip_vs', 'ip_vs_rr', 'ip_set', 'ip_set_hash_ipport', 'ip_set_hash_ipportip', 'ip_set_bitmap_port', 'xt_set'];

const skip = notInVm('sctp module');

const VIP = '10.96.0.40';
const EMPTY = '10.96.0.41';
const CLIENT = '10.244.1.10';
const PODS = ['10.244.1.2', '10.244.1.3'];

/** One SCTP one-to-one server per pod: every message is answered with `<name> <source> <message>`. */
const SERVER = `
import socket, sys, threading
name, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', port)); s.listen(64)
def serve(c, a):
    try:
        c.settimeout(5)
        for _ in range(10):
            d = c.recv(1024)
            if not d: break
            c.sendall((name + ' ' + a[0] + ' ' + d.decode()).encode())
    except Exception:
        pass
    c.close()
print('ready', flush=True)
for _ in range(100000):
    c, a = s.accept()
    threading.Thread(target=serve, args=(c, a), daemon=True).start()
`;

/**
 * One python run making `n` SCTP associations to ip:port, each sending `one` and `two`:
 * prints one line per association, `ok <reply one>|<reply two>` or `err <exception> <ms>`.
 * IP_RECVERR so an ICMP error ends the connect at once (else SCTP only notes it and retries INIT).
 */
const CLIENT_CODE = `
import socket, sys, time
ip, port, n, tmo, recverr = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5] == '1'
for _ in range(n):
    t = time.time()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    if recverr: s.setsockopt(socket.SOL_IP, getattr(socket, 'IP_RECVERR', 11), 1)
    s.settimeout(tmo)
    try:
        s.connect((ip, port))
        r = []
        for m in ('one', 'two'):
            s.sendall(m.encode()); r.append(s.recv(1024).decode())
        print('ok ' + '|'.join(r), flush=True)
    except Exception as e:
        print('err ' + type(e).__name__ + ' ' + str(int((time.time() - t) * 1000)), flush=True)
    s.close()
`;

async function sctpClient(ns: string, ip: string, port: number, n: number, timeoutS = 4, recverr = true): Promise<string[]> {
  const r = await exec(ns, ['python3', '-c', CLIENT_CODE, ip, String(port), String(n), String(timeoutS), recverr ? '1' : '0'], { timeoutMs: (n * (timeoutS + 2) + 10) * 1000 });
  const lines = r.stdout.split('\n').filter((l) => l !== '');
  return lines.length > 0 ? lines : [`err no output (exit ${r.exitCode}) ${r.stderr.trim().slice(-300)}`];
}

const eps = (ips: string[]) => ips.map((ip) => ({ ip, node: 'node-a' }));
const objects = () => [
  svc('ns/sctp', VIP, { type: 'NodePort', ports: [{ name: 'assoc', port: 900, protocol: 'SCTP', targetPort: 9000, nodePort: 30900 }] }),
  slice('ns/sctp', eps(PODS), [{ name: 'assoc', port: 9000, protocol: 'SCTP' }]),
  svc('ns/empty', EMPTY, { type: 'NodePort', ports: [{ name: 'assoc', port: 900, protocol: 'SCTP', targetPort: 9000, nodePort: 30901 }] }),
];

type Mode = 'nftables' | 'iptables' | 'ipvs';

async function host(mode: Mode, node: LabNode): Promise<ProxyHost<{ close(): Promise<void> }> & { stats(): string; wrote(): number }> {
  if (mode === 'nftables') {
    const h = await proxyHost(node);
    return { ...h, stats: () => JSON.stringify(h.proxier.lastSync), wrote: () => h.proxier.lastSync?.elementChanges ?? -1 };
  }
  if (mode === 'iptables') {
    const h = await iptablesHost(node);
    return { ...h, stats: () => JSON.stringify(h.proxier.lastSync), wrote: () => h.proxier.lastSync?.restores ?? -1 };
  }
  const h = await ipvsHost(node);
  return { ...h, stats: () => JSON.stringify(h.proxier.lastSync), wrote: () => (h.proxier.lastSync ? h.proxier.lastSync.ipvsChanges + h.proxier.lastSync.ipsetChanges : -1) };
}

/** What the kernel holds for the Services, for a failure's diagnostics. */
async function kernelState(mode: Mode, ns: string): Promise<string> {
  const argv = mode === 'nftables' ? ['nft', 'list', 'table', 'inet', 'podwire'] : mode === 'iptables' ? ['sh', '-c', 'iptables-legacy-save -t nat; iptables-legacy-save -t filter'] : ['sh', '-c', 'ipvsadm -Ln; ipset list -t; ipset list PODWIRE-NODE-PORT-SCTP-IP; iptables-legacy-save -t nat'];
  const r = await exec(ns, argv);
  return (r.stdout + r.stderr).split('\n').filter((l) => /sctp|SCTP|900|10\.96\.0\.4|PODWIRE-NODE|Name:/.test(l)).join('\n');
}

async function scenario(t: Test, lab: Lab, mode: Mode): Promise<void> {
  const ul = await lab.addUnderlay();
  const node = await lab.addNode(ul);
  const outside = await lab.addNode(ul);
  const servers = [];
  for (const [i, ip] of PODS.entries()) {
    const p = await lab.addPod(`p${i + 1}`);
    await lab.wirePod(p, node, { address: ip, gateway: '10.244.1.1' });
    servers.push(lab.spawn(p, ['python3', '-c', SERVER, `p${i + 1}`, '9000']));
  }
  await Promise.all(servers.map((s) => s.waitForOutput(/ready/, 60_000)));
  const client = await lab.addPod('pc');
  await lab.wirePod(client, node, { address: CLIENT, gateway: '10.244.1.1' });
  // iptables REJECTs in filter FORWARD, after routing: a node needs a route for the Service
  // CIDR (a default route in real life), as in test-netns/proxy/iptables.test.ts.
  if (mode === 'iptables') await lab.ip(node.ns, ['route', 'add', '10.96.0.0/12', 'via', outside.ip]);

  let h = await host(mode, node);
  t.teardown(() => h.close());
  await h.apply(...objects());
  t.comment(`${mode}: first sync ${h.stats()}`);

  // ---- ClusterIP: both endpoints answer, two messages each way, the pod source kept
  const cluster = await sctpClient(client, VIP, 900, 6);
  const ok = cluster.filter((l) => l.startsWith('ok '));
  t.equal(ok.length, 6, `${mode}: 6 SCTP associations through the ClusterIP (${cluster.join(' / ')})`);
  if (ok.length !== 6) t.comment(await kernelState(mode, node.ns));
  const first = /^ok (p\d) (\S+) one\|(p\d) \S+ two$/.exec(ok[0] ?? '');
  t.ok(first && first[1] === first[3], `${mode}: both messages of one association reach the same endpoint (${ok[0]})`);
  t.equal(first?.[2], CLIENT, `${mode}: ClusterIP traffic from a pod keeps the pod source`);
  const answered = new Set(ok.map((l) => l.split(' ')[1]));
  t.same([...answered].sort(), ['p1', 'p2'], `${mode}: the associations spread over both endpoints (${[...answered].join(',')})`);

  // ---- NodePort from outside, masqueraded (eTP Cluster)
  const np = await sctpClient(outside.ns, node.ip, 30900, 1);
  const npm = /^ok (p\d) (\S+) one\|p\d \S+ two$/.exec(np[0] ?? '');
  t.ok(npm, `${mode}: NodePort from outside answers (${np[0]})`);
  if (!npm) t.comment(await kernelState(mode, node.ns));
  t.ok(npm && npm[2] !== outside.ip, `${mode}: NodePort traffic is masqueraded (the endpoint saw ${npm?.[2]}, the client is ${outside.ip})`);

  // ---- no endpoints: refused (ICMP port unreachable). Not at once here: the first ICMP comes
  // back while connect() still holds the socket (veth delivers it in the sending syscall), so
  // SCTP only notes it; the INIT retransmission at the 3 s initial RTO gets the refusal.
  const empty = await sctpClient(client, EMPTY, 900, 1, 10);
  t.match(empty[0], /^err ConnectionRefusedError /, `${mode}: an SCTP Service without endpoints is refused (${empty[0]})`);
  const emptyNp = await sctpClient(outside.ns, node.ip, 30901, 1, 10);
  t.match(emptyNp[0], /^err ConnectionRefusedError /, `${mode}: its NodePort is refused too (${emptyNp[0]})`);
  if (mode === 'nftables') {
    // Without IP_RECVERR the socket only notes the ICMP error and keeps retrying INIT (docs/proxy.md#sctp).
    const plain = await sctpClient(client, EMPTY, 900, 1, 8, false);
    t.match(plain[0], /^err TimeoutError /, `without IP_RECVERR the client times out instead (${plain[0]})`);
  }

  // ---- restart: the new proxier adopts what the kernel holds and writes nothing for it
  await h.close();
  h = await host(mode, node);
  await h.apply(...objects());
  t.equal(h.wrote(), 0, `${mode}: the first sync after a restart changes nothing (${h.stats()})`);
  const again = await sctpClient(client, VIP, 900, 1);
  t.match(again[0], /^ok p\d /, `${mode}: the ClusterIP still answers after the restart (${again[0]})`);
}

for (const mode of ['nftables', 'iptables', 'ipvs'] as const) {
  labTest(`SCTP Service in ${mode} mode: ClusterIP, NodePort, no endpoints, restart`, { prefix: 'qsct', skip, timeout: 200_000 }, async (t, lab) => {
    await scenario(t, lab, mode);
  });
}
