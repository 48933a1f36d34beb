/**
 * Proxy integration helpers: the proxier built in this process with the real kernel
 * handle of a lab node namespace (nft and conntrack run inside it), and pod servers that
 * answer with their own name (TCP: HTTP; UDP: one datagram per datagram).
 */
import { openKernel, netnsRef, runInNetns, type ConntrackFilter, type ConntrackKernel, type Kernel } from '../../src/kernel';
import { CommandError } from '../../src/common/errors';
import { systemClock } from '../../src/common/clock';
import { IptablesProxier, IpvsProxier, NftProxier } from '../../src/proxy';
import { MemoryState, proxyContext, testConfig } from '../../src/proxy/testing';
import type { ClusterKind, ClusterObject } from '../../src/k8s/types';
import { createProxier, type ProxySection } from '../../src/proxy';
import type { ComponentContext } from '../../src/daemon/component';
import { exec, netnsPath, type Lab, type LabNode } from '../harness';

/**
 * conntrack through the `conntrack` tool inside the namespace: a stand-in for the kernel
 * module's ctnetlink implementation until it lands (same interface).
 */
export class CliConntrack implements ConntrackKernel {
  constructor(private readonly ns: string | undefined) {}
  async list(): Promise<never[]> {
    return [];
  }
  async delete(f: ConntrackFilter): Promise<number> {
    const argv = ['conntrack', '-D', '-f', f.family === 6 ? 'ipv6' : 'ipv4'];
    if (f.protocol) argv.push('-p', f.protocol);
    if (f.dst) argv.push('--orig-dst', f.dst);
    if (f.dstPort !== undefined) argv.push('--orig-port-dst', String(f.dstPort));
    if (f.replySrc) argv.push('--reply-src', f.replySrc);
    try {
      const r = await runInNetns(this.ns === undefined ? undefined : netnsRef(netnsPath(this.ns)), argv);
      return Number(/(\d+) flow entries/.exec(r.stderr + r.stdout)?.[1] ?? 0);
    } catch (err) {
      if (err instanceof CommandError && /0 flow entries/.test(err.message)) return 0;
      throw err;
    }
  }
}

export interface ProxyHost<P = NftProxier> {
  proxier: P;
  state: MemoryState;
  kernel: Kernel;
  /** Store objects, hand their events over, sync once. */
  apply(...objs: ClusterObject[]): Promise<void>;
  remove(kind: ClusterKind, key: string): Promise<void>;
  close(): Promise<void>;
}

export async function proxyHost(node: Pick<LabNode, 'ns'>, section: Record<string, unknown> = {}, nodeName = 'node-a'): Promise<ProxyHost> {
  return hostOf(node, section, nodeName, (ctx) => new NftProxier(ctx));
}

/** The same host in iptables mode (`section.iptablesBackend` picks legacy / nft). */
export async function iptablesHost(node: Pick<LabNode, 'ns'>, section: Record<string, unknown> = {}, nodeName = 'node-a', options: { nftChunkServices?: number } = {}): Promise<ProxyHost<IptablesProxier>> {
  return hostOf(node, section, nodeName, (ctx) => createProxier(ctx, 'iptables', options) as IptablesProxier);
}

/** The same host in ipvs mode (a kernel with ip_vs: the kernel VM, test-netns/vm/). */
export async function ipvsHost(node: Pick<LabNode, 'ns'>, section: Record<string, unknown> = {}, nodeName = 'node-a'): Promise<ProxyHost<IpvsProxier>> {
  return hostOf(node, { mode: 'ipvs', ...section }, nodeName, (ctx) => new IpvsProxier(ctx));
}

async function hostOf<P extends NftProxier | IptablesProxier | IpvsProxier>(node: Pick<LabNode, 'ns'>, section: Record<string, unknown>, nodeName: string, make: (ctx: ComponentContext<ProxySection>) => P): Promise<ProxyHost<P>> {
  const kernel = await openKernel(netnsRef(netnsPath(node.ns)));
  kernel.conntrack = new CliConntrack(node.ns);
  const config = testConfig({ nodeName });
  const state = new MemoryState();
  const proxier = make(proxyContext(kernel, state, config, section, systemClock));
  await proxier.reconcileOnStart(new AbortController().signal);
  const signal = new AbortController().signal;
  return {
    proxier,
    state,
    kernel,
    apply: async (...objs) => {
      for (const o of objs) proxier.handleEvent(state.apply(o));
      await proxier.sync(signal);
    },
    remove: async (kind, key) => {
      const ev = state.remove(kind, key);
      if (ev) proxier.handleEvent(ev);
      await proxier.sync(signal);
    },
    close: async () => {
      await proxier.close();
      kernel.close();
    },
  };
}

const SERVER = `
import socket, sys, threading
name, tcp, udp = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def serve_udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(('0.0.0.0', udp))
    for _ in range(100000):
        data, addr = u.recvfrom(2048)
        u.sendto(name.encode(), addr)
threading.Thread(target=serve_udp, daemon=True).start()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', tcp))
s.listen(64)
print('ready', flush=True)
for _ in range(100000):
    c, addr = s.accept()
    try:
        c.settimeout(2)
        c.recv(4096)
        body = (name + ' ' + addr[0]).encode()
        c.sendall(b'HTTP/1.0 200 OK\\r\\nContent-Length: ' + str(len(body)).encode() + b'\\r\\nConnection: close\\r\\n\\r\\n' + body)
    except Exception:
        pass
    c.close()
`;

/**
 * A node on an underlay with an "outside" node beside it, pods p1..p3 (10.244.1.2-4) running
 * namedServer, and a client pod (10.244.1.10).
 */
export async function servedNode(lab: Lab): Promise<{ node: LabNode; outside: LabNode; client: string }> {
  const ul = await lab.addUnderlay();
  const node = await lab.addNode(ul);
  const outside = await lab.addNode(ul);
  for (let i = 1; i <= 3; i++) {
    const p = await lab.addPod(`p${i}`);
    await lab.wirePod(p, node, { address: `10.244.1.${i + 1}`, gateway: '10.244.1.1' });
    await namedServer(lab, p, `p${i}`);
  }
  const client = await lab.addPod('pc');
  await lab.wirePod(client, node, { address: '10.244.1.10', gateway: '10.244.1.1' });
  return { node, outside, client };
}

/** A pod with a name-echoing server on TCP `tcp` and UDP `udp`. */
export async function namedServer(lab: Lab, pod: string, name: string, tcp = 8080, udp = 5353): Promise<void> {
  const p = lab.spawn(pod, ['python3', '-c', SERVER, name, String(tcp), String(udp)]);
  await p.waitForOutput(/ready/, 10_000);
}

/** One HTTP GET; `{ok, body}`; bounded by `maxS`. */
export async function get(ns: string, url: string, maxS = 3): Promise<{ ok: boolean; body: string; err: string; ms: number }> {
  const t0 = Date.now();
  const r = await exec(ns, ['curl', '-sS', '--max-time', String(maxS), url], { timeoutMs: (maxS + 2) * 1000 });
  return { ok: r.exitCode === 0, body: r.stdout.trim(), err: r.stderr.trim(), ms: Date.now() - t0 };
}

/** One UDP datagram from a fixed source port; the reply's text or ''. */
export async function udpAsk(ns: string, ip: string, port: number, srcPort: number): Promise<string> {
  const code = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', ${srcPort}))
s.settimeout(1.5)
s.sendto(b'hi', ('${ip}', ${port}))
try:
    print(s.recv(2048).decode())
except Exception:
    print('')
`;
  const r = await exec(ns, ['python3', '-c', code], { timeoutMs: 5000 });
  return r.stdout.trim();
}

/** TCP connect outcome: 'connected', or the error's name (ConnectionRefusedError, TimeoutError...). */
export async function connectOutcome(ns: string, ip: string, port: number, timeoutS = 3): Promise<{ outcome: string; ms: number }> {
  const code = `
import socket, time
t = time.time()
try:
    socket.create_connection(('${ip}', ${port}), timeout=${timeoutS}).close()
    r = 'connected'
except Exception as e:
    r = type(e).__name__ + ('' if type(e) is not OSError else ':' + str(e.errno))
print(r, int((time.time() - t) * 1000))
`;
  const r = await exec(ns, ['python3', '-c', code], { timeoutMs: (timeoutS + 3) * 1000 });
  const [outcome, ms] = r.stdout.trim().split(' ');
  return { outcome: outcome ?? r.stderr, ms: Number(ms) };
}
