/**
 * Tests of the harness primitives: exec/execOk inside a namespace, timeouts, background
 * processes, kernel feature probes and the skip path for a missing feature.
 */
import { readlinkSync } from 'node:fs';
import { exec, execOk, ip, LabCommandError, labTest, probeFeature } from '../harness';

const PREFIX = 'pwl-harness';

labTest('exec runs argv inside the namespace, without a shell', { prefix: PREFIX }, async (t, lab) => {
  const ns = await lab.addNetns('x');
  await ip(ns, ['link', 'add', 'pwx0', 'type', 'bridge']);
  const inside = await exec(ns, ['ip', '-o', 'link', 'show']);
  t.equal(inside.exitCode, 0);
  t.match(inside.stdout, /pwx0/, 'sees the link that exists only in the namespace');
  const outside = await exec(null, ['ip', '-o', 'link', 'show']);
  t.notMatch(outside.stdout, /pwx0/, 'the root namespace does not have it');
  const nsInode = (await execOk(ns, ['readlink', '/proc/self/ns/net'])).trim();
  t.not(nsInode, readlinkSync('/proc/self/ns/net'), 'the command ran in another netns');

  const literal = await execOk(ns, ['echo', '$HOME;', '`id`']);
  t.equal(literal, '$HOME; `id`\n', 'arguments are passed literally (no shell)');
  const withInput = await execOk(ns, ['cat'], { input: 'hello\n' });
  t.equal(withInput, 'hello\n', 'stdin input is delivered');
});

labTest('exec reports failures, timeouts and missing binaries', { prefix: PREFIX }, async (t, lab) => {
  const ns = await lab.addNetns('f');
  const fail = await exec(ns, ['ip', 'link', 'del', 'nosuchlink']);
  t.not(fail.exitCode, 0, 'non-zero exit is reported, not thrown');
  t.match(fail.stderr, /Cannot find device|does not exist/i, 'stderr is captured');

  await t.rejects(execOk(ns, ['ip', 'link', 'del', 'nosuchlink']), LabCommandError, 'execOk throws LabCommandError');
  const err = await execOk(ns, ['false']).catch((e: unknown) => e);
  t.type(err, LabCommandError);
  t.equal((err as LabCommandError).result.exitCode, 1, 'the error carries the result');

  const slow = await exec(ns, ['sleep', '30'], { timeoutMs: 300 });
  t.equal(slow.timedOut, true, 'a command over its timeout is killed and flagged');
  t.equal(slow.signal, 'SIGKILL', 'killed with SIGKILL');

  const missing = await exec(ns, ['pw-no-such-binary']);
  t.not(missing.exitCode, 0, 'a missing binary is a failed command');
});

labTest('background processes run in the namespace and stop at cleanup', { prefix: PREFIX }, async (t, lab) => {
  const ul = await lab.addUnderlay();
  const a = await lab.addNode(ul);
  const b = await lab.addNode(ul);
  const server = lab.spawn(b.ns, ['nc', '-l', '-k', '-v', '-n', '-s', b.ip, '-p', '7000']);
  await server.waitForOutput(/Listening/i);
  t.equal(server.exit, null, 'the server is running');
  const reply = await exec(a.ns, ['nc', '-n', '-w', '2', '-N', b.ip, '7000'], { input: 'ping-from-a\n' });
  t.equal(reply.exitCode, 0, 'client connected across the underlay', { stderr: reply.stderr });
  await server.waitForOutput(/ping-from-a/);
  t.match(server.stdout, /ping-from-a/, 'the server received the bytes');

  const early = lab.spawn(a.ns, ['sh', '-c', 'echo started; exit 4']);
  const info = await early.exited;
  t.same(info, { exitCode: 4, signal: null }, 'exit status of a background process');
  await t.rejects(early.waitForOutput(/never printed/), /exited/, 'waitForOutput rejects when the process already exited');

  const stopped = await server.stop();
  t.ok(stopped.signal === 'SIGTERM' || stopped.exitCode !== null, 'stop() ends the server');
});

labTest('kernel feature probes', { prefix: PREFIX }, async (t) => {
  for (const f of ['veth', 'bridge', 'vxlan', 'nftables', 'iptables'] as const) {
    t.equal(await probeFeature(f), null, `${f} is available (the project needs it)`);
  }
  for (const f of ['ipvs', 'wireguard', 'ipip', 'dummy'] as const) {
    const r = await probeFeature(f);
    t.ok(r === null || r.includes(f), `${f}: ${r ?? 'available'}`);
  }
});

// Runs where the kernel has the dummy driver; on this machine (no dummy) it is skipped with the
// probe's reason, which the runner counts and lists.
labTest('a dummy link can be created and addressed', { prefix: PREFIX, requires: ['dummy'] }, async (t, lab) => {
  const ns = await lab.addNetns('d');
  await ip(ns, ['link', 'add', 'pwd0', 'type', 'dummy']);
  await ip(ns, ['addr', 'add', '198.18.5.5/32', 'dev', 'pwd0']);
  t.match(await ip(ns, ['addr', 'show', 'pwd0']), /198\.18\.5\.5\/32/);
});
