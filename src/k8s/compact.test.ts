import t from 'tap';
import { compact, InvalidObjectError, kindOfDocument, rawKey, sameContent } from './compact';
import { endpointAddresses, type ServiceObject } from './types';

function rawService(over: Record<string, unknown> = {}, spec: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    metadata: {
      name: 'web',
      namespace: 'shop',
      uid: 'u1',
      resourceVersion: '10',
      labels: { app: 'web' },
      annotations: { keep: 'me', 'kubectl.kubernetes.io/last-applied-configuration': '{"huge":1}' },
      managedFields: [{ manager: 'kubectl' }],
    },
    spec: {
      type: 'NodePort',
      clusterIP: '10.96.0.10',
      clusterIPs: ['10.96.0.10'],
      selector: { app: 'web' },
      ports: [
        { name: 'http', port: 80, targetPort: 'http-alt', nodePort: 30080 },
        { name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353 },
      ],
      ...spec,
    },
    ...over,
  };
}

function expectInvalid(fn: () => unknown, field: string, value: unknown): void {
  try {
    fn();
  } catch (err) {
    t.ok(err instanceof InvalidObjectError, 'an InvalidObjectError');
    const e = err as InvalidObjectError;
    t.equal(e.objectField, field, `field ${field}`);
    t.same(e.value, value, 'value');
    t.equal(e.code, 'PW_INVALID_INPUT');
    t.match(e.message, field);
    return;
  }
  t.fail(`expected ${field} to be rejected`);
}

t.test('Service compaction keeps only what Podwire uses', async (t) => {
  const s = compact('Service', rawService());
  t.equal(s.meta.key, 'shop/web');
  t.equal(s.meta.namespace, 'shop');
  t.equal(s.meta.resourceVersion, '10');
  t.same(s.meta.annotations, { keep: 'me' }, 'last-applied-configuration dropped');
  t.notOk('managedFields' in s.meta);
  t.equal(s.type, 'NodePort');
  t.same(s.clusterIPs, ['10.96.0.10']);
  t.same(s.ipFamilies, ['IPv4'], 'families derived from the IPs');
  t.same(s.ports, [
    { name: 'http', protocol: 'TCP', port: 80, targetPort: 'http-alt', nodePort: 30080, appProtocol: undefined },
    { name: 'dns', protocol: 'UDP', port: 53, targetPort: 5353, nodePort: undefined, appProtocol: undefined },
  ]);
  t.same(s.selector, { app: 'web' });
  t.equal(s.sessionAffinity, 'None');
  t.equal(s.externalTrafficPolicy, 'Cluster');
  t.equal(s.internalTrafficPolicy, 'Cluster');
});

t.test('Service defaults and special cases', async (t) => {
  const headless = compact('Service', rawService({}, { type: undefined, clusterIP: 'None', clusterIPs: ['None'] }));
  t.same(headless.clusterIPs, ['None']);
  t.same(headless.ipFamilies, []);
  t.equal(headless.type, 'ClusterIP');
  const aff = compact('Service', rawService({}, { sessionAffinity: 'ClientIP', externalTrafficPolicy: 'Global' }));
  t.equal(aff.sessionAffinityTimeoutSeconds, 10800, 'default ClientIP timeout');
  t.equal(aff.externalTrafficPolicy, 'Cluster', 'legacy Global means Cluster');
  const ext = compact('Service', rawService({}, { type: 'ExternalName', clusterIP: undefined, clusterIPs: undefined, externalName: 'db.example.org', ports: [] }));
  t.equal(ext.externalName, 'db.example.org');
  t.same(ext.clusterIPs, []);
  const numeric = compact('Service', rawService({}, { ports: [{ port: 443, targetPort: '8443' }] }));
  t.equal(numeric.ports[0]!.targetPort, 8443, 'numeric string targetPort becomes a number');
  t.equal(numeric.ports[0]!.targetPort === 8443 && numeric.ports[0]!.name, '');
  const nodefault = compact('Service', { metadata: { name: 'x' }, spec: { clusterIP: '10.96.0.1', ports: [{ port: 1 }] } });
  t.equal(nodefault.meta.key, 'default/x', 'missing namespace means default');
  t.equal(nodefault.ports[0]!.targetPort, 1, 'targetPort defaults to port');
  const lb = compact('Service', rawService({ status: { loadBalancer: { ingress: [{ ip: '198.18.5.5' }, { hostname: 'lb.example' }] } } }, { type: 'LoadBalancer', loadBalancerSourceRanges: [' 198.18.0.0/16 '] }));
  t.same(lb.loadBalancerIPs, ['198.18.5.5'], 'hostname-only ingress ignored');
  t.same(lb.loadBalancerSourceRanges, ['198.18.0.0/16']);
});

t.test('invalid Services name kind, key, field and value', async (t) => {
  expectInvalid(() => compact('Service', rawService({}, { clusterIP: '10.96.0.300', clusterIPs: undefined })), 'spec.clusterIP', '10.96.0.300');
  expectInvalid(() => compact('Service', rawService({}, { clusterIPs: ['10.96.0.10', 'bogus'] })), 'spec.clusterIPs[1]', 'bogus');
  expectInvalid(() => compact('Service', rawService({}, { ports: [{ port: 70000 }] })), 'spec.ports[0].port', 70000);
  expectInvalid(() => compact('Service', rawService({}, { ports: [{ port: 0 }] })), 'spec.ports[0].port', 0);
  expectInvalid(() => compact('Service', rawService({}, { ports: [{ port: 80, protocol: 'ICMP' }] })), 'spec.ports[0].protocol', 'ICMP');
  expectInvalid(() => compact('Service', rawService({}, { ports: [{ port: 80, targetPort: 'Not_A_Name' }] })), 'spec.ports[0].targetPort', 'Not_A_Name');
  expectInvalid(() => compact('Service', rawService({}, { ports: [{ port: 80 }, { port: 80 }] })), 'spec.ports[1]', '80/TCP');
  expectInvalid(() => compact('Service', rawService({}, { type: 'Weird' })), 'spec.type', 'Weird');
  expectInvalid(() => compact('Service', rawService({}, { externalIPs: ['1.2.3'] })), 'spec.externalIPs[0]', '1.2.3');
  expectInvalid(() => compact('Service', rawService({}, { loadBalancerSourceRanges: ['10.0.0.0/40'] })), 'spec.loadBalancerSourceRanges[0]', '10.0.0.0/40');
  expectInvalid(() => compact('Service', { metadata: { name: 'Bad_Name' } }), 'metadata.name', 'Bad_Name');
  expectInvalid(() => compact('Service', { metadata: {} }), 'metadata.name', undefined);
  try {
    compact('Service', rawService({}, { clusterIP: 'nope', clusterIPs: undefined }));
  } catch (err) {
    const e = err as InvalidObjectError;
    t.equal(e.kind, 'Service');
    t.equal(e.key, 'shop/web');
    t.match(e.message, /Service shop\/web spec\.clusterIP.*"nope"/);
  }
});

t.test('EndpointSlice compaction shares conditions and interns strings', async (t) => {
  const raw = (ready: boolean | undefined): Record<string, unknown> => ({
    metadata: { name: 'web-abc', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'web' } },
    addressType: 'IPv4',
    endpoints: [
      { addresses: ['10.244.1.2'], conditions: { ready }, nodeName: 'n1', zone: 'z', targetRef: { kind: 'Pod', namespace: 'shop', name: 'p1', uid: 'x' } },
      { addresses: ['10.244.1.3', '10.244.1.4'], conditions: { ready: false, serving: true, terminating: true }, hostname: 'h' },
    ],
    ports: [{ name: 'http', port: 8080 }, { name: 'all' }],
  });
  const s = compact('EndpointSlice', raw(undefined));
  t.equal(s.serviceName, 'web');
  t.equal(s.endpoints[0]!.address, '10.244.1.2');
  t.notOk('moreAddresses' in s.endpoints[0]!, 'one address: no array for the rest');
  t.same(endpointAddresses(s.endpoints[1]!), ['10.244.1.3', '10.244.1.4'], 'every address kept, in order');
  t.same(s.endpoints[0]!.conditions, { ready: true, serving: true, terminating: false }, 'nil ready means ready; nil serving follows ready');
  t.same(s.endpoints[1]!.conditions, { ready: false, serving: true, terminating: true });
  t.notOk('targetRef' in s.endpoints[0]!, 'targetRef is dropped (no component reads it)');
  t.same(s.ports, [{ name: 'http', port: 8080, protocol: 'TCP', appProtocol: undefined }], 'nil port (all ports) skipped');
  const again = compact('EndpointSlice', raw(true));
  t.equal(again.endpoints[0]!.conditions, s.endpoints[0]!.conditions, 'condition triples are shared objects');
  t.ok(Object.isFrozen(s.endpoints[0]!.conditions));
  expectInvalid(
    () => compact('EndpointSlice', { ...raw(true), endpoints: [{ addresses: ['fd00::1'] }] }),
    'endpoints[0].addresses[0]',
    'fd00::1',
  );
  expectInvalid(() => compact('EndpointSlice', { ...raw(true), endpoints: [{ addresses: [] }] }), 'endpoints[0].addresses', []);
  expectInvalid(() => compact('EndpointSlice', { ...raw(true), ports: [{ port: 65536 }] }), 'ports[0].port', 65536);
});

t.test('Node, Pod, Namespace, ConfigMap', async (t) => {
  const n = compact('Node', {
    metadata: { name: 'n1', namespace: 'ignored' },
    spec: { podCIDR: '10.244.3.0/24', unschedulable: true },
    status: { addresses: [{ type: 'Hostname', address: 'n1' }, { type: 'ExternalIP', address: '203.0.113.9' }, { type: 'InternalIP', address: '198.18.0.3' }] },
  });
  t.equal(n.meta.key, 'n1', 'cluster-scoped key has no namespace');
  t.equal(n.meta.namespace, undefined);
  t.same(n.podCIDRs, ['10.244.3.0/24'], 'podCIDR used when podCIDRs is absent');
  t.same(n.addresses.map((a) => a.type), ['InternalIP', 'ExternalIP', 'Hostname']);
  t.equal(n.unschedulable, true);
  expectInvalid(() => compact('Node', { metadata: { name: 'n1' }, spec: { podCIDRs: ['10.244.0.0/33'] } }), 'spec.podCIDRs[0]', '10.244.0.0/33');
  expectInvalid(() => compact('Node', { metadata: { name: 'n1' }, status: { addresses: [{ type: 'InternalIP', address: 'x' }] } }), 'status.addresses[0].address', 'x');

  const p = compact('Pod', { metadata: { name: 'p', namespace: 'a' }, spec: { nodeName: 'n1', hostname: 'h', subdomain: 's' }, status: { phase: 'Running', podIP: '10.244.1.9' } });
  t.same(p.podIPs, ['10.244.1.9']);
  t.equal(p.hostNetwork, false);
  t.equal(p.subdomain, 's');
  expectInvalid(() => compact('Pod', { metadata: { name: 'p' }, status: { podIPs: [{ ip: '10.244.1.999' }] } }), 'status.podIPs[0].ip', '10.244.1.999');

  t.same(compact('Namespace', { metadata: { name: 'kube-system' } }).meta.key, 'kube-system');
  const cm = compact('ConfigMap', { metadata: { name: 'c', namespace: 'kube-system' }, data: { a: 'b' }, binaryData: { x: 'AA==' } });
  t.same(cm.data, { a: 'b' });
  expectInvalid(() => compact('ConfigMap', { metadata: { name: 'c' }, data: { a: 1 } }), 'data.a', 1);
});

t.test('sameContent ignores resourceVersion only', async (t) => {
  const a = compact('Service', rawService());
  const b = compact('Service', rawService({ metadata: { ...(rawService().metadata as object), resourceVersion: '11' } }));
  t.ok(sameContent(a, b), 'a new resourceVersion alone is no change');
  const c = compact('Service', rawService({}, { ports: [{ port: 81 }] }));
  t.notOk(sameContent(a, c));
  const d: ServiceObject = { ...a, meta: { ...a.meta, labels: { app: 'other' } } };
  t.notOk(sameContent(a, d), 'label change is a change');
});

t.test('rawKey and kindOfDocument', async (t) => {
  t.equal(rawKey('Service', { metadata: { name: 'a' } }), 'default/a');
  t.equal(rawKey('Node', { metadata: { name: 'a', namespace: 'x' } }), 'a');
  t.equal(rawKey('Service', { metadata: {} }), undefined);
  t.equal(kindOfDocument({ apiVersion: 'v1', kind: 'Service' }), 'Service');
  t.equal(kindOfDocument({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice' }), 'EndpointSlice');
  t.equal(kindOfDocument({ apiVersion: 'discovery.k8s.io/v1beta1', kind: 'EndpointSlice' }), undefined);
  t.equal(kindOfDocument({ apiVersion: 'apps/v1', kind: 'Deployment' }), undefined);
});
