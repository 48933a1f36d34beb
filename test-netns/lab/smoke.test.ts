/**
 * Smoke test of the lab: two node namespaces on one underlay bridge can ping each other, and a
 * ping to an address nobody owns fails (negative control: proves the assertion can fail).
 */
import { labTest, ping } from '../harness';

labTest('two namespaces on an underlay ping each other', { prefix: 'pwl-smoke' }, async (t, lab) => {
  const ul = await lab.addUnderlay();
  const a = await lab.addNode(ul);
  const b = await lab.addNode(ul);
  t.equal(a.ip, '198.18.0.1');
  t.equal(b.ip, '198.18.0.2');

  const ab = await ping(a.ns, b.ip);
  t.ok(ab.ok, `ping ${a.ip} -> ${b.ip} succeeds`, { output: ab.output });
  t.match(ab.output, /1 packets transmitted, 1 received/, 'one echo reply came back');

  const ba = await ping(b.ns, a.ip);
  t.ok(ba.ok, `ping ${b.ip} -> ${a.ip} succeeds`, { output: ba.output });

  // Negative control: 198.18.0.99 is on the subnet but nobody owns it; ARP fails, ping fails.
  const none = await ping(a.ns, '198.18.0.99', { waitS: 1 });
  t.notOk(none.ok, 'ping to an address that is not there fails', { output: none.output });
  t.match(none.output, /0 received|Unreachable/, 'and it says no reply came back');
});
