/**
 * The ipvs mode's filters and the mode switch against a kernel that has IPVS: Debian's stock
 * kernel under qemu (KERNEL_REQUIRES routes this file to `npm run test:vm`). The proxier runs
 * in this process against a lab node's real kernel (test-netns/proxy/helpers.ts).
 *
 * Covers: loadBalancerSourceRanges (a client inside the ranges reaches the LB IP, one outside
 * is dropped, a pod outside too; the node itself only where a range holds its address; the
 * NodePort of the same Service is not filtered, as in kube-proxy); the VIP filter (a node-local
 * listener is refused through a ClusterIP or LB IP, answers on the node address, also when that
 * address is a Service's external IP); a restart
 * that rewrites nothing (the new ipset members read back as rendered); the switch ipvs →
 * nftables → ipvs removing the other mode's state, virtual servers included.
 */
import { exec, labTest } from '../harness';
import { notInVm } from './in-vm';
import { slice, svc } from '../../src/proxy/testing';
import { connectOutcome, get, ipvsHost, namedServer, proxyHost } from '../proxy/helpers';

/** Seconds in the guest (scripts/vm/run-tests.js): one lab, a few python starts, four proxier starts. */
export const KERNEL_VM_TIMEOUT = 300;

export const KERNEL_REQUIRES = ['ip_vs', 'ip_vs_rr', 'nf_conntrack', 'ip_set', 'ip_set_hash_ip', 'ip_set_hash_ipport', 'ip_set_hash_ipportip', 'ip_set_hash_ipportnet', 'ip_set_bitmap_port', 'xt_set'];

const skip = notInVm('ip_vs');

const LB_FW = '198.18.100.1'; // ranges: the first outside client only
const LB_NODE = '198.18.100.2'; // ranges: the underlay /24 (node and both clients)
const WEB = '10.96.0.52';

const T0 = Date.now();
function step(what: string): void {
  process.stderr.write(`[ipvs-firewall +${((Date.now() - T0) / 1000).toFixed(1)}s] ${what}\n`);
}

/** A listener of the node's own (sshd, the kubelet, ...): accepts and closes. */
const LISTENER = `
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 2222)); s.listen(16); print('ready', flush=True)
for _ in range(1000):
    c, a = s.accept(); c.close()
`;

labTest('ipvs mode: loadBalancerSourceRanges, the VIP filter, restart, mode switch ipvs → nftables → ipvs', { prefix: 'qvf', skip, timeout: 290_000 }, async (t, lab) => {
  const ul = await lab.addUnderlay();
  const node = await lab.addNode(ul);
  const inside = await lab.addNode(ul);
  const outside = await lab.addNode(ul);
  for (const n of [inside, outside]) await lab.ip(n.ns, ['route', 'add', '198.18.100.0/24', 'via', node.ip]);
  const p = await lab.addPod('p1');
  await lab.wirePod(p, node, { address: '10.244.1.2', gateway: '10.244.1.1' });
  await namedServer(lab, p, 'p1');
  const client = await lab.addPod('pc');
  await lab.wirePod(client, node, { address: '10.244.1.10', gateway: '10.244.1.1' });
  const listener = lab.spawn(node.ns, ['python3', '-c', LISTENER]);
  await listener.waitForOutput(/ready/, 60_000);
  const eps = [{ ip: '10.244.1.2', node: 'node-a' }];
  const objects = [
    svc('ns/fw', '10.96.0.50', { type: 'LoadBalancer', loadBalancerIPs: [LB_FW], loadBalancerSourceRanges: [`${inside.ip}/32`], ports: [{ name: 'http', port: 80, nodePort: 30050 }] }),
    slice('ns/fw', eps, [{ name: 'http', port: 8080 }]),
    svc('ns/fwn', '10.96.0.51', { type: 'LoadBalancer', loadBalancerIPs: [LB_NODE], loadBalancerSourceRanges: ['198.18.0.0/24'], ports: [{ name: 'http', port: 80, nodePort: 30051 }] }),
    slice('ns/fwn', eps, [{ name: 'http', port: 8080 }]),
    svc('ns/web', WEB, { ports: [{ name: 'http', port: 80 }] }),
    slice('ns/web', eps, [{ name: 'http', port: 8080 }]),
    // An external IP that is the node's own address: not bound again, not VIP-filtered.
    svc('ns/ext', '10.96.0.53', { externalIPs: [node.ip], ports: [{ name: 'http', port: 8088 }] }),
    slice('ns/ext', eps, [{ name: 'http', port: 8080 }]),
  ];
  step('ipvs proxier');
  let h = await ipvsHost(node);
  t.teardown(() => h.close());
  await h.apply(...objects);
  const state = async (): Promise<string> => (await exec(node.ns, ['sh', '-c', 'ipvsadm -Ln; ipset list -t | grep -E "^Name|entries"; iptables-legacy-save -t filter; iptables-legacy-save -t mangle'])).stdout;

  // ---- loadBalancerSourceRanges
  step('source ranges');
  const inOk = await get(inside.ns, `http://${LB_FW}/`);
  t.ok(inOk.ok && inOk.body.startsWith('p1'), `a client inside the ranges reaches the LB IP (${inOk.body || inOk.err})`);
  if (!inOk.ok) t.comment(await state());
  const outTry = await connectOutcome(outside.ns, LB_FW, 80, 2);
  t.equal(outTry.outcome, 'TimeoutError', `a client outside the ranges is dropped, not refused (${outTry.outcome})`);
  t.equal((await connectOutcome(client, LB_FW, 80, 2)).outcome, 'TimeoutError', 'a pod outside the ranges too');
  const other = await get(outside.ns, `http://${LB_NODE}/`);
  t.ok(other.ok, `the same client inside another Service's ranges reaches that LB IP (${other.body || other.err})`);
  const np = await get(outside.ns, `http://${node.ip}:30050/`);
  t.ok(np.ok, `the NodePort of the firewalled Service is not filtered, as in kube-proxy (${np.body || np.err})`);
  const fromNode = await get(node.ns, `http://${LB_NODE}/`);
  t.ok(fromNode.ok, `the node reaches an LB IP whose ranges hold its address (${fromNode.body || fromNode.err})`);
  t.equal((await connectOutcome(node.ns, LB_FW, 80, 2)).outcome, 'TimeoutError', 'and not one whose ranges do not (dropped in mangle OUTPUT, before IPVS)');

  // ---- VIP filter
  step('VIP filter');
  t.equal((await connectOutcome(client, '10.244.1.1', 2222)).outcome, 'connected', 'the node-local listener answers on a node address');
  t.equal((await connectOutcome(client, WEB, 2222)).outcome, 'ConnectionRefusedError', 'not through a ClusterIP');
  t.equal((await connectOutcome(inside.ns, LB_FW, 2222)).outcome, 'ConnectionRefusedError', 'nor through an LB IP');
  const web = await get(client, `http://${WEB}/`);
  t.ok(web.ok && web.body.startsWith('p1'), `the Service port of that ClusterIP still answers (${web.body || web.err})`);
  const ext = await get(outside.ns, `http://${node.ip}:8088/`);
  t.ok(ext.ok && ext.body.startsWith('p1'), `an external IP that is the node address answers its Service port (${ext.body || ext.err})`);
  t.equal((await connectOutcome(outside.ns, node.ip, 2222)).outcome, 'connected', 'and is no VIP: the node-local listener stays reachable on it');
  t.notMatch((await exec(node.ns, ['ip', '-4', 'addr', 'show', 'podwire-ipvs0'])).stdout, new RegExp(`inet ${node.ip.replace(/\./g, '\\.')}/`), 'the node address is not bound on the VIP device');

  // ---- restart: adopted, nothing rewritten (the new sets' members read back as rendered)
  step('restart');
  await h.close();
  h = await ipvsHost(node);
  await h.apply(...objects);
  t.same({ ipvs: h.proxier.lastSync?.ipvsChanges, ipset: h.proxier.lastSync?.ipsetChanges, vips: h.proxier.lastSync?.vipChanges }, { ipvs: 0, ipset: 0, vips: 0 }, 'the first sync after a restart changes nothing');

  // ---- mode switch ipvs → nftables: the ipvs mode's state goes, virtual servers included
  step('switch to nftables');
  await h.close();
  const n = await proxyHost(node);
  await n.apply(...objects);
  const vs = (await exec(node.ns, ['ipvsadm', '-Ln'])).stdout;
  t.notMatch(vs, /TCP\s/, `no virtual server left (${vs.split('\n').length} lines of ipvsadm -Ln)`);
  t.not((await exec(node.ns, ['ip', 'link', 'show', 'podwire-ipvs0'])).exitCode, 0, 'the VIP device is gone');
  t.notMatch((await exec(node.ns, ['ipset', 'list', '-n'])).stdout, /PODWIRE/, 'our ipsets are gone');
  const saved = (await exec(node.ns, ['sh', '-c', 'iptables-legacy-save; iptables-nft-save'])).stdout;
  t.notMatch(saved, /PODWIRE-IPVS/, 'our iptables chains and jumps are gone');
  const viaNft = await get(client, `http://${WEB}/`);
  t.ok(viaNft.ok && viaNft.body.startsWith('p1'), `the Service answers in nftables mode (${viaNft.body || viaNft.err})`);
  await n.close();

  // ---- and back: the nftables table goes
  step('switch back to ipvs');
  h = await ipvsHost(node);
  await h.apply(...objects);
  t.notMatch((await exec(node.ns, ['nft', 'list', 'tables'])).stdout, /table inet podwire\b/, 'starting in ipvs mode removed the nftables mode table');
  const back = await get(client, `http://${WEB}/`);
  t.ok(back.ok && back.body.startsWith('p1'), `the Service answers in ipvs mode again (${back.body || back.err})`);
  t.match((await exec(node.ns, ['ipvsadm', '-Ln', '-t', `${WEB}:80`])).stdout, /10\.244\.1\.2:8080/, 'through IPVS');
});
