/**
 * Demo checks for the Service proxy: a ClusterIP Service over a pod of the first node,
 * written to the manifest folder every podwired reads, reached with curl from another pod on
 * that node and from a pod on the next node (each node's own podwired DNATs); a Service with
 * no endpoints is refused at once.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { exec, type Lab } from '../harness';
import type { Checks, Log } from './checks';

export interface ProxyDemoPod {
  name: string;
  ns: string;
  ip: string;
  nodeName: string;
  nodeNs: string;
}

const VIP = '10.96.0.100';
const EMPTY_VIP = '10.96.0.101';

const SERVER = `
import socket, sys
name = sys.argv[1]
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 8080)); s.listen(16)
print('ready', flush=True)
for _ in range(1000):
    c, a = s.accept()
    try:
        c.settimeout(2); c.recv(4096)
        b = name.encode()
        c.sendall(b'HTTP/1.0 200 OK\\r\\nContent-Length: ' + str(len(b)).encode() + b'\\r\\n\\r\\n' + b)
    except Exception:
        pass
    c.close()
`;

function writeServices(dir: string, endpoint: ProxyDemoPod): void {
  const docs = [
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'demo', uid: 'demo-web', resourceVersion: '1' }, spec: { type: 'ClusterIP', clusterIP: VIP, clusterIPs: [VIP], ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }], selector: { app: 'web' } } },
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: 'web-1', namespace: 'demo', uid: 'demo-web-1', resourceVersion: '1', labels: { 'kubernetes.io/service-name': 'web' } },
      addressType: 'IPv4',
      endpoints: [{ addresses: [endpoint.ip], conditions: { ready: true }, nodeName: endpoint.nodeName }],
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    },
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'empty', namespace: 'demo', uid: 'demo-empty', resourceVersion: '1' }, spec: { type: 'ClusterIP', clusterIP: EMPTY_VIP, clusterIPs: [EMPTY_VIP], ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }], selector: { app: 'none' } } },
  ];
  writeFileSync(path.join(dir, 'proxy-demo.yaml'), docs.map((d) => YAML.stringify(d)).join('---\n'));
}

/** Poll (bounded) until the node's table has the VIP. */
async function waitForVip(nodeNs: string, vip: string, tries = 100): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    const r = await exec(nodeNs, ['nft', 'list', 'map', 'inet', 'podwire', 'services4']);
    if (r.exitCode === 0 && r.stdout.includes(`${vip} . tcp . 80`)) return true;
    await new Promise((res) => setTimeout(res, 100));
  }
  return false;
}

/** `pods`: at least two on the first node; optionally one on another node. */
export async function proxyDemo(lab: Lab, manifests: string, pods: ProxyDemoPod[], checks: Checks, log: Log): Promise<void> {
  const [server, client, remote] = pods;
  if (!server || !client) {
    log('proxy demo skipped: it needs two pods on the first node');
    return;
  }
  log(`proxy: Service demo/web ${VIP}:80 → ${server.name} ${server.ip}:8080, and demo/empty ${EMPTY_VIP} without endpoints`);
  const srv = lab.spawn(server.ns, ['python3', '-c', SERVER, server.name]);
  await srv.waitForOutput(/ready/, 10_000);
  writeServices(manifests, server);
  const nodes = [...new Map(pods.map((p) => [p.nodeNs, p])).values()];
  for (const n of nodes) {
    const ok = await waitForVip(n.nodeNs, VIP);
    checks.record({ kind: 'proxy rules programmed', from: n.nodeName, to: VIP, expect: 'VIP in services4', passed: ok, detail: ok ? 'nft map inet podwire services4 has demo/web' : 'not programmed within 10 s' });
  }
  for (const c of [client, remote].filter((p): p is ProxyDemoPod => p !== undefined)) {
    const r = await exec(c.ns, ['curl', '-sS', '--max-time', '3', `http://${VIP}/`], { timeoutMs: 6000 });
    const body = r.stdout.trim();
    checks.record({ kind: 'curl ClusterIP', from: c.name, to: `${VIP}:80`, expect: `body ${server.name}`, passed: r.exitCode === 0 && body === server.name, detail: r.exitCode === 0 ? `answered "${body}" (DNAT by ${c.nodeName}'s podwired)` : r.stderr.trim() });
  }
  const t0 = Date.now();
  const r = await exec(client.ns, ['curl', '-sS', '--max-time', '3', `http://${EMPTY_VIP}/`], { timeoutMs: 6000 });
  const ms = Date.now() - t0;
  const refused = r.exitCode === 7 && ms < 2500;
  checks.record({ kind: 'no endpoints: refused', from: client.name, to: `${EMPTY_VIP}:80`, expect: 'refused at once', passed: refused, detail: `curl exit ${String(r.exitCode)} after ${ms} ms: ${r.stderr.trim()}` });
}
