/**
 * The fast path's warm "gateway already ensured" memory must not outlive the address: two
 * ADDs through the real podwired, then `ip addr del` of the gateway from pw0, then another
 * ADD: the new pod reaches its gateway (the ADD saw the address gone and put it back).
 */
import { exec, labTest, ping } from '../harness';
import { resultIpv4 } from '../lab/cni-client';
import { startDaemonNode } from './daemon-node';

labTest('gateway deleted from pw0 behind podwired: the next ADD restores it', { prefix: 'pwc2-gw', requires: ['veth', 'bridge'], timeout: 120_000 }, async (t, lab) => {
  const dn = await startDaemonNode(lab, { runPrefix: 'pwc2-gw', logLevel: 'debug' }); // debug: podwired logs each fast-path request
  t.teardown(() => dn.run.remove());
  const pods = [await lab.addPod(), await lab.addPod(), await lab.addPod()];
  for (const [i, id] of ['gw-a', 'gw-b'].entries()) {
    const r = await dn.cni('ADD', id, pods[i]!);
    t.ok(r.ok, `ADD ${id}: ${r.summary}`);
  }
  t.ok((await ping(pods[1]!, '10.244.1.1')).ok, 'second pod pings its gateway');
  const served = dn.daemon.fastPathRequests().filter((q) => q.command === 'ADD');
  t.ok(served.length >= 2, `the ADDs went through podwired's fast path (${served.length} served)`);

  await exec(dn.node.ns, ['ip', 'addr', 'del', '10.244.1.1/24', 'dev', 'pw0']);
  t.notMatch((await exec(dn.node.ns, ['ip', '-4', 'addr', 'show', 'dev', 'pw0'])).stdout, /10\.244\.1\.1\//, 'gateway address gone from pw0');

  const r = await dn.cni('ADD', 'gw-c', pods[2]!);
  t.ok(r.ok, `third ADD: ${r.summary}`);
  t.equal(resultIpv4(r.json)?.gateway, '10.244.1.1');
  t.match((await exec(dn.node.ns, ['ip', '-4', 'addr', 'show', 'dev', 'pw0'])).stdout, /10\.244\.1\.1\/24/, 'gateway back on pw0');
  const p = await ping(pods[2]!, '10.244.1.1');
  t.ok(p.ok, 'the new pod pings its gateway', { output: p.output });
  for (const [i, id] of ['gw-a', 'gw-b', 'gw-c'].entries()) t.ok((await dn.cni('DEL', id, pods[i]!)).ok, `DEL ${id}`);
});
