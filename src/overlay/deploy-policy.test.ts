/**
 * deploy/node-self-policy.yaml: structure and wiring (no API server here, so the CEL is not
 * evaluated; what is checked is that it applies to the podwire service account's Node
 * updates, keys on the bound token's node-name claim and is bound with Deny).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import YAML from 'yaml';

const DEPLOY = path.resolve(__dirname, '../../../deploy');
type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- parsed YAML

t.test('the node-self ValidatingAdmissionPolicy guards Node updates by the podwire service account', async (t) => {
  const docs = YAML.parseAllDocuments(readFileSync(path.join(DEPLOY, 'node-self-policy.yaml'), 'utf8')).map((d) => d.toJS() as Obj);
  const policy = docs.find((d) => d.kind === 'ValidatingAdmissionPolicy')!;
  const binding = docs.find((d) => d.kind === 'ValidatingAdmissionPolicyBinding')!;
  t.ok(policy && binding, 'policy and binding');
  t.equal(policy.apiVersion, 'admissionregistration.k8s.io/v1');
  t.equal(binding.spec.policyName, policy.metadata.name, 'the binding names the policy');
  t.same(binding.spec.validationActions, ['Deny']);
  t.equal(policy.spec.failurePolicy, 'Fail');
  const rule = policy.spec.matchConstraints.resourceRules[0];
  t.same(rule.resources, ['nodes', 'nodes/status'], 'annotations (nodes) and conditions (nodes/status)');
  t.same(rule.operations, ['UPDATE'], 'PATCH is an UPDATE in admission');
  const sa = YAML.parse(readFileSync(path.join(DEPLOY, 'serviceaccount.yaml'), 'utf8')) as Obj;
  t.equal(policy.spec.matchConditions[0].expression, `request.userInfo.username == 'system:serviceaccount:${sa.metadata.namespace}:${sa.metadata.name}'`, 'only the podwire service account');
  const vars = Object.fromEntries((policy.spec.variables as Obj[]).map((v) => [v.name, v.expression as string]));
  t.match(vars.nodeClaim, /authentication\.kubernetes\.io\/node-name/, 'keys on the bound token node-name claim');
  t.match(vars.ownNode, /n == object\.metadata\.name/);
  t.match(vars.onlyAssignsPodCIDRs, /size\(oldObject\.spec\.podCIDRs\) == 0/, 'the allocator may only fill an empty podCIDRs');
  t.equal(policy.spec.validations[0].expression, 'variables.ownNode || variables.onlyAssignsPodCIDRs');
  const kust = YAML.parse(readFileSync(path.join(DEPLOY, 'kustomization.yaml'), 'utf8')) as Obj;
  t.ok((kust.resources as string[]).includes('node-self-policy.yaml'), 'shipped in the kustomization');
});

t.test('deploy/optional/node-cidr-allocator.yaml: patch nodes, leases only in its namespace, not in the default kustomization', async (t) => {
  const docs = YAML.parseAllDocuments(readFileSync(path.join(DEPLOY, 'optional', 'node-cidr-allocator.yaml'), 'utf8')).map((d) => d.toJS() as Obj);
  const sa = YAML.parse(readFileSync(path.join(DEPLOY, 'serviceaccount.yaml'), 'utf8')) as Obj;
  const of = (kind: string) => docs.filter((d) => d.kind === kind);
  t.equal(docs.length, 4, 'ClusterRole, ClusterRoleBinding, Role, RoleBinding');
  const cr = of('ClusterRole')[0]!;
  t.same(cr.rules, [{ apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list', 'watch', 'patch'] }], 'cluster-wide: nodes only, no create/update/delete');
  const role = of('Role')[0]!;
  t.equal(role.metadata.namespace, sa.metadata.namespace, 'the Lease grant is namespaced to podwire\'s own namespace');
  t.same(role.rules, [{ apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'create', 'update'] }]);
  for (const b of [...of('ClusterRoleBinding'), ...of('RoleBinding')]) {
    t.same(b.subjects, [{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: sa.metadata.namespace }], `${b.kind} binds the podwire service account`);
    t.equal(b.roleRef.name, 'podwire-node-cidr-allocator');
  }
  const kust = YAML.parse(readFileSync(path.join(DEPLOY, 'kustomization.yaml'), 'utf8')) as Obj;
  t.notOk((kust.resources as string[]).some((r) => r.includes('node-cidr-allocator')), 'opt-in: not applied by default');
});
