/**
 * The real podwired in proxy mode ipvs (manifest source) against a kernel that has IPVS:
 * Debian's stock kernel under qemu (KERNEL_REQUIRES routes this file to `npm run test:vm`).
 *
 * One lab node runs podwired with only the proxy component; three pods on it answer with
 * their own name; a client pod and an "outside" namespace on the underlay connect with
 * curl / python sockets. Covers: ClusterIP spreading over 3 endpoints, NodePort (with
 * masquerade), ClientIP affinity, no-endpoint REJECT, the VIPs not answering ARP on the
 * underlay, graceful removal of an endpoint with a live connection, and a daemon restart
 * under a curl loop with 0 failed requests.
 */
import { renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { labTest, type Lab } from '../harness';
import { notInVm } from './in-vm';
import { createRunDir, writeNodeManifests, Podwired, type RunDir } from '../lab/podwired';
import { connectOutcome, get } from '../proxy/helpers';

/**
 * Seconds in the guest (scripts/vm/run-tests.js): podwired starts twice, 15-60 s each under TCG
 * depending on the host's load (~2.5 min in all on an idle host, up to ~7 min on a loaded one).
 */
export const KERNEL_VM_TIMEOUT = 480;

export const KERNEL_REQUIRES = ['ip_vs', 'ip_vs_rr', 'nf_conntrack', 'ip_set', 'ip_set_hash_ipport', 'ip_set_hash_ipportip', 'ip_set_bitmap_port', 'xt_set'];

const skip = notInVm('ip_vs');

const WEB = '10.96.0.10';
const STICKY = '10.96.0.11';
const EMPTY = '10.96.0.20';
const HOLD = '10.96.0.30';
const PODS = ['10.244.1.2', '10.244.1.3', '10.244.1.4'];

/**
 * One python per pod (python starts in ~1-3 s under TCG, so one, not two): HTTP on 8080
 * answering `<name> <client address>`, and on 9090 a line server answering every line with
 * its name, keeping the connection open. Threads, so a held connection blocks nothing.
 */
const POD_SERVER = `
import socket, sys, threading
name = sys.argv[1]
def listen(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('0.0.0.0', port)); s.listen(64); return s
def http(c, a):
    try:
        c.settimeout(3); c.recv(4096)
        body = (name + ' ' + a[0]).encode()
        c.sendall(b'HTTP/1.0 200 OK\\r\\nContent-Length: ' + str(len(body)).encode() + b'\\r\\nConnection: close\\r\\n\\r\\n' + body)
    except Exception:
        pass
    c.close()
def lines(c, a):
    f = c.makefile('rb')
    for _ in range(1000):
        l = f.readline()
        if not l: break
        c.sendall((name + '\\n').encode())
    c.close()
def serve(s, h):
    for _ in range(100000):
        c, a = s.accept()
        threading.Thread(target=h, args=(c, a), daemon=True).start()
h, l = listen(8080), listen(9090)
threading.Thread(target=serve, args=(l, lines), daemon=True).start()
print('ready', flush=True)
serve(h, http)
`;

/** Holds one connection to HOLD:90; steered by files: `ping` → one more exchange, `close` → RST. */
const HOLD_CLIENT = `
import os, socket, struct, sys, time
d = sys.argv[1]
c = socket.create_connection(('${HOLD}', 90), timeout=5)
f = c.makefile('rb')
c.sendall(b'hi\\n'); print('first', f.readline().decode().strip(), flush=True)
for _ in range(600):
    if os.path.exists(d + '/ping'):
        os.remove(d + '/ping')
        try:
            c.sendall(b'again\\n'); print('again', f.readline().decode().strip(), flush=True)
        except Exception as e:
            print('again-failed', type(e).__name__, flush=True)
    if os.path.exists(d + '/close'):
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        c.close(); print('closed', flush=True); sys.exit(0)
    time.sleep(0.1)
`;

/** HTTP GETs to WEB, one new connection each 0.1 s, until the stop file exists (at most 3000): prints the status or the error. */
const LOOP_CLIENT = `
import os, socket, sys, time
for _ in range(3000):
    if os.path.exists(sys.argv[1]): break
    try:
        c = socket.create_connection(('${WEB}', 80), timeout=2)
        c.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')
        print(c.makefile('rb').readline().decode().split(' ')[1], flush=True)
        c.close()
    except Exception as e:
        print(type(e).__name__, flush=True)
    time.sleep(0.1)
`;

type Doc = Record<string, unknown>;

const T0 = Date.now();
/** Progress on stderr: the guest runner shows its tail when a file times out (TAP of an unfinished test is lost). */
function step(what: string): void {
  process.stderr.write(`[ipvs-proxy +${((Date.now() - T0) / 1000).toFixed(1)}s] ${what}\n`);
}

function service(name: string, ip: string, spec: Doc = {}): Doc {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'qv', uid: `qv-${name}`, resourceVersion: '1' }, spec: { type: 'ClusterIP', clusterIP: ip, clusterIPs: [ip], ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }], ...spec } };
}

function endpoints(service: string, ips: string[], port = 8080, rv = '1'): Doc {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${service}-x`, namespace: 'qv', uid: `qv-${service}-x`, resourceVersion: rv, labels: { 'kubernetes.io/service-name': service } },
    addressType: 'IPv4',
    endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready: true, serving: true, terminating: false }, nodeName: 'node-a' })),
    ports: [{ name: 'http', port, protocol: 'TCP' }],
  };
}

/** Writes a manifest file atomically (rename), as an editor or a config tool does. */
function writeManifest(run: RunDir, file: string, docs: Doc[]): void {
  const tmp = path.join(run.dir, `.${file}.tmp`);
  writeFileSync(tmp, docs.map((d) => YAML.stringify(d)).join('---\n'));
  renameSync(tmp, path.join(run.manifests, file));
}

async function until(what: string, f: () => Promise<boolean>, tries = 100, ms = 200): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await f()) return;
    await new Promise((r) => setTimeout(r, ms));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function ipvsadm(lab: Lab, ns: string, vip: string, port: number): Promise<string> {
  return (await lab.exec(ns, ['ipvsadm', '-Ln', '-t', `${vip}:${port}`])).stdout;
}

labTest('ipvs proxy mode: real podwired, ClusterIP, NodePort, affinity, REJECT, graceful removal, restart', { prefix: 'qv', skip, timeout: 470_000 }, async (t, lab) => {
  const ul = await lab.addUnderlay();
  const node = await lab.addNode(ul);
  const outside = await lab.addNode(ul);
  step('const run = createRunDir');
  const run = createRunDir('qv-ipvs');
  t.teardown(() => run.remove());
  writeNodeManifests(run.manifests, [{ name: 'node-a', podCIDR: '10.244.1.0/24', internalIP: node.ip }]);
  writeManifest(run, 'services.yaml', [
    service('web', WEB, { type: 'NodePort', ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080, nodePort: 30080 }] }),
    endpoints('web', PODS),
    service('sticky', STICKY, { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } } }),
    endpoints('sticky', PODS),
    service('empty', EMPTY),
  ]);
  writeManifest(run, 'hold.yaml', [service('hold', HOLD, { ports: [{ name: 'http', port: 90, protocol: 'TCP', targetPort: 9090 }] }), endpoints('hold', PODS, 9090)]);
  const args = ['--enable', 'proxy', '--proxy-mode', 'ipvs'];
  // V8's compile cache in the run dir: the restarted daemon loads its code much faster under TCG.
  const env = { NODE_COMPILE_CACHE: path.join(run.dir, 'node-compile-cache') };
  let d = new Podwired(lab, node.ns, { nodeName: 'node-a', run, logLevel: 'info', extraArgs: args, env });
  const servers = [];
  for (const [i, ip] of PODS.entries()) {
    const p = await lab.addPod(`p${i + 1}`);
    await lab.wirePod(p, node, { address: ip, gateway: '10.244.1.1' });
    servers.push(lab.spawn(p, ['python3', '-c', POD_SERVER, `p${i + 1}`]));
  }
  await Promise.all(servers.map((s) => s.waitForOutput(/ready/, 60_000)));
  const client = await lab.addPod('pc');
  await lab.wirePod(client, node, { address: '10.244.1.10', gateway: '10.244.1.1' });

  const ready = await d.waitReady(600);
  t.ok(ready.ready, `podwired ready (${ready.last}, ${ready.polls} polls) ${ready.ready ? '' : d.tail()}`);
  step(`ready: ${JSON.stringify(ready)}`);
  if (!ready.ready) return;
  step("await until('the virtual servers'");
  await until('the virtual servers', async () => /10\.244\.1\.4:8080/.test(await ipvsadm(lab, node.ns, WEB, 80)), 100);

  step('// ---- ClusterIP over 3');
  // ---- ClusterIP over 3 endpoints, round-robin
  const bodies: string[] = [];
  for (let i = 0; i < 6; i++) bodies.push((await get(client, `http://${WEB}/`)).body.split(' ')[0] ?? '');
  t.same([...new Set(bodies)].sort(), ['p1', 'p2', 'p3'], `ClusterIP spreads over the 3 endpoints: ${bodies.join(',')}`);
  t.same(PODS.map((_, i) => bodies.filter((b) => b === `p${i + 1}`).length), [2, 2, 2], 'rr: 2 each of 6');
  const src = await get(client, `http://${WEB}/`);
  t.equal(src.body.split(' ')[1], '10.244.1.10', 'pod-to-Service traffic keeps the pod source');

  step('// ---- NodePort from outside');
  // ---- NodePort from outside, masqueraded (the endpoint sees the node, not the client)
  const np = await get(outside.ns, `http://${node.ip}:30080/`);
  t.ok(np.ok && /^p[123] /.test(np.body), `NodePort from outside answers: ${np.body} ${np.err}`);
  t.not(np.body.split(' ')[1], outside.ip, `NodePort traffic is masqueraded (${np.body})`);

  step('// ---- ClientIP affinity');
  // ---- ClientIP affinity
  const sticky = new Set<string>();
  for (let i = 0; i < 4; i++) sticky.add((await get(client, `http://${STICKY}/`)).body.split(' ')[0] ?? '');
  t.equal(sticky.size, 1, `affinity: one endpoint for one client (${[...sticky].join(',')})`);
  t.match(await ipvsadm(lab, node.ns, STICKY, 80), /rr persistent 600/, 'persistence with the Service timeout');

  step('// ---- no endpoints');
  // ---- no endpoints: REJECT at once
  const refused = await connectOutcome(client, EMPTY, 80, 5);
  t.equal(refused.outcome, 'ConnectionRefusedError', `no-endpoint Service refuses (${refused.outcome}, ${refused.ms} ms)`);

  step('// ---- the VIPs do not');
  // ---- the VIPs do not answer ARP on the underlay (arp_ignore=1): an on-link route from outside gets nothing
  await lab.execOk(outside.ns, ['ip', 'route', 'add', `${WEB}/32`, 'dev', outside.ifname]);
  const arp = await get(outside.ns, `http://${WEB}/`, 2);
  t.notOk(arp.ok, `a ClusterIP is not reachable by ARP from the underlay (${arp.err.trim() || arp.body})`);

  step('// ---- graceful removal');
  // ---- graceful removal: a live connection survives, new ones avoid the endpoint, then it is deleted
  const ctl = path.join(run.dir, 'hold');
  await lab.execOk(null, ['mkdir', '-p', ctl]);
  const holder = lab.spawn(client, ['python3', '-c', HOLD_CLIENT, ctl]);
  await holder.waitForOutput(/first (p\d)/, 10_000);
  const held = /first (p\d)/.exec(holder.stdout)![1]!;
  const heldIP = PODS[Number(held.slice(1)) - 1]!;
  writeManifest(run, 'hold.yaml', [service('hold', HOLD, { ports: [{ name: 'http', port: 90, protocol: 'TCP', targetPort: 9090 }] }), endpoints('hold', PODS.filter((p) => p !== heldIP), 9090, '2')]);
  const esc = heldIP.replace(/\./g, '\\.');
  await until('weight 0', async () => new RegExp(`${esc}:9090\\s+Masq\\s+0\\s+1\\s`).test(await ipvsadm(lab, node.ns, HOLD, 90)), 50);
  t.pass(`${held} kept with weight 0 and its active connection`);
  writeFileSync(path.join(ctl, 'ping'), '');
  await holder.waitForOutput(/again/, 10_000);
  t.match(holder.stdout, new RegExp(`again ${held}`), 'the held connection still works');
  step('const after = new Set');
  const after = new Set<string>();
  for (let i = 0; i < 3; i++) {
    const r = await lab.exec(client, ['sh', '-c', `echo x | timeout 3 busybox nc ${HOLD} 90`]);
    after.add(r.stdout.trim().split('\n')[0] ?? '');
  }
  t.notOk(after.has(held), `new connections avoid ${held} (${[...after].join(',')})`);
  step("writeFileSync(path.join(ctl, 'close')");
  writeFileSync(path.join(ctl, 'close'), '');
  await holder.exited;
  await until(`${held} deleted once its connection is gone`, async () => !(await ipvsadm(lab, node.ns, HOLD, 90)).includes(`${heldIP}:9090`), 150);
  t.pass(`${held} deleted after its connection ended`);

  step('// ---- restart under');
  // ---- restart under a curl loop: 0 failed requests
  const stop = path.join(run.dir, 'stop-loop');
  // One process making a new connection every 0.1 s (a shell loop spawning curl would eat the
  // guest's one vCPU under TCG and starve the restarting daemon).
  const loop = lab.spawn(client, ['python3', '-c', LOOP_CLIENT, stop]);
  await until('the loop to run', async () => loop.stdout.split('\n').length > 3, 50);
  const exit = await d.stop();
  t.same(exit, { exitCode: 0, signal: null }, 'podwired stopped cleanly');
  step('d = new Podwired(lab, node.ns');
  d = new Podwired(lab, node.ns, { nodeName: 'node-a', run, logLevel: 'info', extraArgs: args, env });
  const again = await d.waitReady(600);
  t.ok(again.ready, `restarted podwired ready (${again.last})`);
  step('const n0 =');
  const n0 = loop.stdout.split('\n').length;
  await until('requests after the restart', async () => loop.stdout.split('\n').length > n0 + 5, 50);
  writeFileSync(stop, '');
  await loop.exited;
  const codes = loop.stdout.split('\n').filter((l) => l !== '');
  const bad = codes.filter((c) => c !== '200');
  t.ok(codes.length > 10, `${codes.length} requests in the loop`);
  t.same(bad, [], `0 failed requests across the restart (${codes.length} requests)`);
  t.ok(d.logLines().some((l) => String(l.msg).includes('adopted the IPVS state')), 'the restarted daemon adopted the kernel state');
  t.match(await ipvsadm(lab, node.ns, WEB, 80), /10\.244\.1\.2:8080/, 'virtual servers intact after the restart');
  await d.stop();
});
