/**
 * deploy/ checked the way an API server checks it: every manifest against the Kubernetes
 * OpenAPI schema of its kind, with `kubernetes-models` (JSON-schema validators generated
 * from the upstream OpenAPI for every built-in kind, ValidatingAdmissionPolicy included).
 * Podwire's own invariants (RBAC least privilege, host mounts, probes, the ConfigMap
 * podwired accepts) stay in deploy.test.ts and overlay/deploy-policy.test.ts.
 *
 * kubernetes-models 5.1 is generated from one (recent: 1.34+) Kubernetes OpenAPI. Our floor
 * is 1.32 (the node-self policy needs the node-name token claim), so the apiVersions are
 * also held to those served by 1.32: a field or version only a newer release knows would
 * otherwise pass here and be refused by an older cluster.
 *
 * Not `kubectl apply --dry-run=client`: Debian 12's kubectl (kubernetes-client) is 1.20, older
 * than admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy (1.30), and client dry-run
 * still asks an API server for discovery.
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import YAML from 'yaml';

const DEPLOY = path.resolve(__dirname, '../../../deploy');
// Its package.json exports only the `import` condition; a file path bypasses exports.
const MODELS = path.resolve(__dirname, '../../../node_modules/kubernetes-models');

interface Manifest {
  file: string;
  index: number;
  doc: Record<string, unknown>;
}
interface SchemaError {
  instancePath?: string;
  message?: string;
}
type ModelClass = new (data: unknown) => { validate(): void };

/** Group/version → kinds, as served by Kubernetes 1.32 (our floor) and every later release. */
const SERVED_SINCE_132: Readonly<Record<string, readonly string[]>> = {
  v1: ['ServiceAccount', 'ConfigMap', 'Service', 'Namespace', 'Secret'],
  'apps/v1': ['DaemonSet', 'Deployment'],
  'rbac.authorization.k8s.io/v1': ['ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding'],
  'admissionregistration.k8s.io/v1': ['ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding'],
};

function manifests(dir: string): Manifest[] {
  const out: Manifest[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort()) {
    YAML.parseAllDocuments(readFileSync(path.join(dir, file), 'utf8')).forEach((d, index) => {
      if (d.errors.length > 0) throw new Error(`${file} document ${index}: ${d.errors[0]!.message}`);
      const doc = d.toJS() as Record<string, unknown> | null;
      if (doc) out.push({ file, index, doc });
    });
  }
  return out;
}

/** The kubernetes-models class for apiVersion/kind, or undefined when it is not a built-in kind. */
function model(apiVersion: string, kind: string): ModelClass | undefined {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  const sub = group ? `${group}/${version}` : version;
  try {
    // kubernetes-models is ESM only; Node 24 require()s a synchronous ES module graph.
    const mod = require(path.join(MODELS, sub, `${kind}.js`)) as Record<string, ModelClass>; // eslint-disable-line @typescript-eslint/no-require-imports
    return mod[kind];
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND') return undefined;
    throw err;
  }
}

/** Every schema error of one manifest, as "file#doc kind/name path: message". */
export function validateManifest(m: Manifest): string[] {
  const { apiVersion, kind } = m.doc as { apiVersion?: unknown; kind?: unknown };
  const where = `${m.file}#${m.index} ${String(kind)}/${String((m.doc.metadata as { name?: unknown } | undefined)?.name)}`;
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') return [`${where}: apiVersion and kind must be strings`];
  // kustomize's own file, read by `kubectl apply -k`, never sent to the API server.
  if (apiVersion.startsWith('kustomize.config.k8s.io/')) return [];
  const errors: string[] = [];
  if (!SERVED_SINCE_132[apiVersion]?.includes(kind)) errors.push(`${where}: ${apiVersion} ${kind} is not served by Kubernetes 1.32 (the oldest release Podwire supports)`);
  const Model = model(apiVersion, kind);
  if (!Model) return [...errors, `${where}: no OpenAPI schema for ${apiVersion} ${kind}`];
  try {
    new Model(m.doc).validate();
  } catch (err) {
    const list = (err as { errors?: SchemaError[] }).errors;
    if (!Array.isArray(list)) throw err;
    for (const e of list) errors.push(`${where} ${e.instancePath || '/'}: ${e.message ?? 'invalid'}`);
  }
  return errors;
}

const all = manifests(DEPLOY);

t.test('every manifest in deploy/ validates against the Kubernetes OpenAPI schema of its kind', async (t) => {
  t.ok(all.length >= 8, `${all.length} documents found`);
  const kinds = new Set(all.map((m) => m.doc.kind));
  for (const k of ['DaemonSet', 'ClusterRole', 'ClusterRoleBinding', 'ServiceAccount', 'ConfigMap', 'ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding']) t.ok(kinds.has(k), `deploy/ has a ${k}`);
  for (const m of all) t.same(validateManifest(m), [], `${m.file}#${m.index} ${String(m.doc.kind)}`);
});

t.test('a deliberately broken copy of deploy/ fails, naming the file, the document and the field', async (t) => {
  const copy = (file: string, kind: string): Manifest => {
    const m = all.find((x) => x.file === file && x.doc.kind === kind);
    if (!m) throw new Error(`${file} ${kind} not found`);
    return { ...m, doc: structuredClone(m.doc) };
  };
  type Any = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- poking into parsed YAML

  const ds = copy('daemonset.yaml', 'DaemonSet');
  const container = ((ds.doc as Any).spec.template.spec.containers as Any[])[0]!;
  container.ports = [{ containerPort: '10266' }]; // a string where the schema wants an integer
  const dsErrors = validateManifest(ds);
  t.ok(
    dsErrors.some((e) => e.startsWith('daemonset.yaml#0 DaemonSet/podwire /spec/template/spec/containers/0/ports/0/containerPort')),
    `the port's path is named: ${dsErrors.join('; ')}`,
  );

  const noSelector = copy('daemonset.yaml', 'DaemonSet');
  delete (noSelector.doc as Any).spec.selector;
  t.match(validateManifest(noSelector).join('\n'), /DaemonSet\/podwire \/spec: must have required property selector/);

  const vap = copy('node-self-policy.yaml', 'ValidatingAdmissionPolicy');
  (vap.doc as Any).spec.failurePolicy = ['Fail'];
  t.match(validateManifest(vap).join('\n'), /node-self-policy\.yaml#0 ValidatingAdmissionPolicy\/podwire-node-self-only \/spec\/failurePolicy: must be string/);

  const role = copy('clusterrole.yaml', 'ClusterRole');
  (role.doc as Any).rules = [{ apiGroups: [''], resources: 'nodes', verbs: ['get'] }];
  t.match(validateManifest(role).join('\n'), /\/rules\/0\/resources: must be array/);

  const beta = copy('node-self-policy.yaml', 'ValidatingAdmissionPolicyBinding');
  beta.doc.apiVersion = 'admissionregistration.k8s.io/v1alpha1';
  t.match(validateManifest(beta).join('\n'), /v1alpha1 ValidatingAdmissionPolicyBinding is not served by Kubernetes 1\.32/);
});
