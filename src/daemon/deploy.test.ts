/**
 * Validates deploy/: every manifest parses, has the fields the API server requires,
 * and fits podwired (RBAC least privilege, the host mounts, the probes on the health
 * port, a ConfigMap whose config.yaml podwired accepts): Podwire's own invariants.
 * The Kubernetes OpenAPI schema of every kind is checked beside this, in
 * deploy-schema.test.ts (kubernetes-models).
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import YAML from 'yaml';
import { loadConfig, parseHostPort } from './config';

const DEPLOY = path.resolve(__dirname, '../../../deploy');
type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- parsed YAML, checked field by field

function docs(): { file: string; doc: Obj }[] {
  const out: { file: string; doc: Obj }[] = [];
  for (const file of readdirSync(DEPLOY).filter((f) => f.endsWith('.yaml')).sort()) {
    for (const d of YAML.parseAllDocuments(readFileSync(path.join(DEPLOY, file), 'utf8'))) {
      if (d.errors.length > 0) throw new Error(`${file}: ${d.errors[0]!.message}`);
      const doc = d.toJS() as Obj | null;
      if (doc) out.push({ file, doc });
    }
  }
  return out;
}

const all = docs();
const byKind = (kind: string): Obj[] => all.filter((d) => d.doc.kind === kind).map((d) => d.doc);
const one = (kind: string): Obj => {
  const list = byKind(kind);
  if (list.length !== 1) throw new Error(`expected exactly one ${kind}, found ${list.length}`);
  return list[0]!;
};

t.test('every manifest has apiVersion, kind and metadata.name', async (t) => {
  t.ok(all.length >= 6, 'manifests found');
  for (const { file, doc } of all) {
    t.type(doc.apiVersion, 'string', `${file}: apiVersion`);
    t.type(doc.kind, 'string', `${file}: kind`);
    if (doc.kind === 'Kustomization') continue;
    t.match(doc.metadata?.name, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, `${file}: metadata.name`);
  }
  const kust = one('Kustomization');
  const files = readdirSync(DEPLOY).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort();
  t.same([...kust.resources].sort(), files, 'kustomization lists every manifest');
});

t.test('ClusterRole is least privilege', async (t) => {
  const role = one('ClusterRole');
  const grants = new Map<string, Set<string>>();
  for (const rule of role.rules as Obj[]) {
    for (const g of rule.apiGroups as string[]) {
      for (const r of rule.resources as string[]) {
        t.not(r, '*', 'no wildcard resources');
        t.not(g, '*', 'no wildcard groups');
        const key = `${g}/${r}`;
        const set = grants.get(key) ?? new Set<string>();
        for (const v of rule.verbs as string[]) set.add(v);
        grants.set(key, set);
      }
    }
    t.notOk((rule.verbs as string[]).includes('*'), 'no wildcard verbs');
  }
  const read = ['get', 'list', 'watch'];
  for (const r of ['/services', '/pods', '/namespaces', '/configmaps', 'discovery.k8s.io/endpointslices']) {
    t.same([...(grants.get(r) ?? [])].sort(), read, `read-only on ${r}`);
  }
  // The node writer: merge patch of its Node's annotations, strategic merge patch of its conditions.
  t.same([...(grants.get('/nodes') ?? [])].sort(), [...read, 'patch'].sort(), 'read and patch (annotations) on nodes, nothing more');
  t.same([...(grants.get('/nodes/status') ?? [])], ['patch'], 'patch only on nodes/status (conditions)');
  for (const [r, verbs] of grants) {
    for (const v of ['create', 'update', 'delete', 'deletecollection', 'escalate', 'bind', 'impersonate']) t.notOk(verbs.has(v), `no ${v} on ${r}`);
    if (r !== '/nodes' && r !== '/nodes/status') t.notOk(verbs.has('patch'), `no patch on ${r}`);
  }
  t.same([...grants.keys()].sort(), ['/configmaps', '/namespaces', '/nodes', '/nodes/status', '/pods', '/services', 'discovery.k8s.io/endpointslices'], 'nothing else');
});

t.test('ServiceAccount and ClusterRoleBinding tie together', async (t) => {
  const sa = one('ServiceAccount');
  const crb = one('ClusterRoleBinding');
  const role = one('ClusterRole');
  t.same(crb.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata.name });
  t.same(crb.subjects, [{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: sa.metadata.namespace }]);
});

t.test('DaemonSet: host network, privileges, host mounts, probes, node name', async (t) => {
  const ds = one('DaemonSet');
  const sa = one('ServiceAccount');
  t.equal(ds.apiVersion, 'apps/v1');
  t.same(ds.spec.selector.matchLabels, ds.spec.template.metadata.labels, 'selector matches the template');
  const pod = ds.spec.template.spec;
  t.equal(pod.serviceAccountName, sa.metadata.name);
  t.equal(ds.metadata.namespace, sa.metadata.namespace);
  t.equal(pod.hostNetwork, true, 'hostNetwork');
  t.equal(pod.dnsPolicy, 'Default', 'does not depend on cluster DNS (itself)');
  t.ok((pod.tolerations as Obj[]).some((x) => x.operator === 'Exists'), 'tolerates NotReady nodes');
  const c = (pod.containers as Obj[])[0]!;
  t.type(c.image, 'string');
  t.ok(c.securityContext.privileged === true || (c.securityContext.capabilities?.add as string[]).includes('NET_ADMIN'), 'network privileges');
  const hostPaths = new Map<string, string>();
  for (const v of pod.volumes as Obj[]) if (v.hostPath) hostPaths.set(v.name, v.hostPath.path);
  for (const p of ['/run/netns', '/etc/cni/net.d', '/opt/cni/bin', '/var/lib/podwire', '/run/xtables.lock', '/run/podwire']) {
    t.ok([...hostPaths.values()].includes(p), `host mount ${p}`);
  }
  const volumes = new Set((pod.volumes as Obj[]).map((v) => v.name as string));
  const mounts = c.volumeMounts as Obj[];
  for (const m of mounts) t.ok(volumes.has(m.name), `volumeMount ${m.name} has a volume`);
  const mountOf = (host: string) => mounts.find((m) => hostPaths.get(m.name) === host)?.mountPath;
  t.equal(mountOf('/run/netns'), '/run/netns');
  t.equal(mounts.find((m) => m.mountPath === '/run/netns')?.mountPropagation, 'HostToContainer', 'new pod netns visible');
  const nodeEnv = (c.env as Obj[]).find((e) => e.name === 'PODWIRE_NODE_NAME');
  t.equal(nodeEnv?.valueFrom?.fieldRef?.fieldPath, 'spec.nodeName');

  // The container's command line plus the ConfigMap make a valid podwired config,
  // and every path it uses is mounted from the host.
  const cm = one('ConfigMap');
  const configMount = mounts.find((m) => m.name === 'config')!.mountPath as string;
  const env: Record<string, string> = { PODWIRE_NODE_NAME: 'node-a' };
  for (const e of c.env as Obj[]) if (typeof e.value === 'string') env[e.name] = e.value;
  const { config } = loadConfig({
    argv: c.args as string[],
    env,
    readFile: (f) => {
      if (f !== path.join(configMount, 'config.yaml')) throw Object.assign(new Error(`ENOENT ${f}`), { code: 'ENOENT' });
      return cm.data['config.yaml'] as string;
    },
  });
  t.equal(config.nodeName, 'node-a');
  for (const dir of [config.cniConfDir, config.cniBinDir, config.stateDir, path.dirname(config.controlSocket)]) {
    t.equal(mountOf(dir), dir, `${dir} is mounted from the host at the same path`);
  }
  const health = parseHostPort('healthListen', config.healthListen);
  for (const probe of [c.livenessProbe, c.readinessProbe] as Obj[]) {
    t.equal(probe.httpGet.port, health.port, 'probe on the health port');
    t.equal(probe.httpGet.host, health.host, 'probe on the health address (hostNetwork + localhost)');
  }
  t.equal(c.livenessProbe.httpGet.path, '/healthz');
  t.equal(c.readinessProbe.httpGet.path, '/readyz');
});

t.test('DaemonSet: the DNS socket keeper runs as a native sidecar from a binary the image ships', async (t) => {
  const ds = one('DaemonSet');
  const pod = ds.spec.template.spec;
  const keeper = ((pod.initContainers ?? []) as Obj[]).find((c) => c.name === 'dns-keeper');
  t.ok(keeper, 'an init container dns-keeper');
  if (!keeper) return;
  t.equal(keeper.restartPolicy, 'Always', 'a native sidecar: it keeps running beside podwired and outlives its restarts');
  t.equal(keeper.image, (pod.containers as Obj[])[0]!.image, 'the same image as podwired');
  const [bin, ...args] = keeper.command as string[];
  t.same(args, ['--persistent'], 'persistent: it waits for the name in a rolling update instead of exiting');
  const docker = readFileSync(path.join(DEPLOY, 'Dockerfile'), 'utf8');
  t.ok(docker.split('\n').some((l) => l.startsWith('COPY ') && l.trim().endsWith(` ./${path.relative('/opt/podwire', bin!)}`)) && /^WORKDIR \/opt\/podwire$/m.test(docker), `the image ships ${bin}`);
  t.notOk(keeper.securityContext?.privileged, 'it needs no privileges');
});

t.test('Dockerfile: Node 24 LTS base, runs podwired', async (t) => {
  const text = readFileSync(path.join(DEPLOY, 'Dockerfile'), 'utf8');
  const froms = [...text.matchAll(/^FROM\s+(\S+)/gm)].map((m) => m[1]!);
  t.ok(froms.length > 0);
  for (const f of froms) t.match(f, /^node:24[-.]/, `base ${f} is Node 24`);
  t.match(text, /^CMD \["podwired"/m);
  for (const pkg of ['iptables', 'nftables', 'iproute2']) t.match(text, new RegExp(`apt-get install[^\\n]*(\\\\\\n[^\\n]*)*${pkg}`), `image has ${pkg}`);
});
