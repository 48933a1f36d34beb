/**
 * The lab demo's DNS part: every podwired runs its node-local DNS server (the `dns`
 * component, on 169.254.20.10:53, an address it puts on the node's `lo`), and a pod on each
 * node resolves through it with real `dig`:
 *   - A of a ClusterIP Service (`web.default.svc.cluster.local`), over UDP and over TCP;
 *   - SRV of its named port (`_http._tcp.web.default.svc.cluster.local`);
 *   - a name that does not exist gets NXDOMAIN (negative control).
 * Upstreams: an empty resolv.conf in the run dir, so nothing is ever forwarded outside the lab.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { exec } from '../harness';
import type { Checks, Log } from './checks';
import type { RunDir } from './podwired';

export const DNS_ADDRESS = '169.254.20.10';
const SERVICE = { name: 'web', namespace: 'default', clusterIP: '10.96.0.80', port: 80 };
const FQDN = `${SERVICE.name}.${SERVICE.namespace}.svc.cluster.local`;

/** The Service manifest (beside the Node manifests) and the podwired flags for DNS. */
export function prepareDns(run: RunDir): string[] {
  writeFileSync(
    path.join(run.manifests, 'service-web.yaml'),
    YAML.stringify({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: SERVICE.name, namespace: SERVICE.namespace, uid: 'pwlab-svc-web', resourceVersion: '1' },
      spec: { type: 'ClusterIP', clusterIP: SERVICE.clusterIP, clusterIPs: [SERVICE.clusterIP], ports: [{ name: 'http', port: SERVICE.port, protocol: 'TCP' }] },
    }),
  );
  const resolvConf = path.join(run.dir, 'upstream-resolv.conf');
  writeFileSync(resolvConf, '# no upstreams: the lab never forwards DNS outside its namespaces\n');
  return ['--dns-listen', `${DNS_ADDRESS}:53`, '--dns-bind-interface', 'lo', '--dns-resolv-conf', resolvConf];
}

interface Dig {
  status: string;
  answers: string[];
  raw: string;
}

async function dig(ns: string, name: string, type: string, tcp = false): Promise<Dig> {
  const r = await exec(ns, ['dig', `@${DNS_ADDRESS}`, '+tries=1', '+timeout=2', '+noall', '+comments', '+answer', ...(tcp ? ['+tcp'] : []), name, type]);
  const status = /status: ([A-Z]+)/.exec(r.stdout)?.[1] ?? `no answer (exit ${String(r.exitCode)})`;
  const answers = r.stdout
    .split('\n')
    .filter((l) => l && !l.startsWith(';'))
    .map((l) => l.split(/\s+/).slice(3).join(' '));
  return { status, answers, raw: `${r.stdout}${r.stderr}` };
}

/** One pod per node digs through its node's DNS server. */
export async function dnsChecks(nodes: readonly { name: string }[], pods: readonly { name: string; ns: string; node: { name: string } }[], checks: Checks, log: Log): Promise<void> {
  log(`DNS: a pod on each node digs the node-local server ${DNS_ADDRESS} (podwired's dns component)`);
  for (const n of nodes) {
    const p = pods.find((x) => x.node.name === n.name);
    if (!p) continue;
    // The first sync may still be running (cluster names get SERVFAIL until then): a bounded poll.
    let a = await dig(p.ns, FQDN, 'A');
    for (let i = 0; i < 50 && a.status !== 'NOERROR'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      a = await dig(p.ns, FQDN, 'A');
    }
    const wantA = `A ${SERVICE.clusterIP}`;
    checks.record({ kind: 'dig A (udp)', from: p.name, to: `${n.name} ${DNS_ADDRESS}`, expect: wantA, passed: a.status === 'NOERROR' && a.answers.join() === wantA, detail: `${FQDN}: ${a.status} ${a.answers.join(', ')}`, output: a.raw });
    const t = await dig(p.ns, FQDN, 'A', true);
    checks.record({ kind: 'dig A (tcp)', from: p.name, to: `${n.name} ${DNS_ADDRESS}`, expect: wantA, passed: t.status === 'NOERROR' && t.answers.join() === wantA, detail: `${t.status} ${t.answers.join(', ')}`, output: t.raw });
    const srvName = `_http._tcp.${FQDN}`;
    const wantSrv = `SRV 0 100 ${SERVICE.port} ${FQDN}.`;
    const s = await dig(p.ns, srvName, 'SRV');
    checks.record({ kind: 'dig SRV', from: p.name, to: `${n.name} ${DNS_ADDRESS}`, expect: wantSrv, passed: s.status === 'NOERROR' && s.answers.join() === wantSrv, detail: `${srvName}: ${s.status} ${s.answers.join(', ')}`, output: s.raw });
    const x = await dig(p.ns, `nope.${SERVICE.namespace}.svc.cluster.local`, 'A');
    checks.record({ kind: 'dig missing name (control)', from: p.name, to: `${n.name} ${DNS_ADDRESS}`, expect: 'NXDOMAIN', passed: x.status === 'NXDOMAIN' && x.answers.length === 0, detail: `nope.${SERVICE.namespace}.svc.cluster.local: ${x.status}`, output: x.raw });
  }
}
