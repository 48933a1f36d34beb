import t from 'tap';
import { silentLogger } from '../common/log';
import { applyTxChecksum, decideTxChecksum, kernelVersion } from './offload';

t.test('kernelVersion', async (t) => {
  t.same(kernelVersion('6.18.44-fc-v1045'), [6, 18]);
  t.same(kernelVersion('5.4.0-150-generic'), [5, 4]);
  t.equal(kernelVersion('weird'), undefined);
});

t.test('auto: off only on a kernel < 5.7 with masquerade; left alone everywhere else', async (t) => {
  t.equal(decideTxChecksum('auto', '5.4.0-150-generic', true).action, 'off');
  t.match(decideTxChecksum('auto', '5.4.0', true).reason, /5\.4 < 5\.7/);
  t.equal(decideTxChecksum('auto', '5.6.19', true).action, 'off');
  t.equal(decideTxChecksum('auto', '5.7.0', true).action, 'leave', '5.7 has the fix');
  t.equal(decideTxChecksum('auto', '6.18.44', true).action, 'leave');
  t.equal(decideTxChecksum('auto', '4.19.0', false).action, 'leave', 'no masquerade: the bug cannot trigger');
  t.equal(decideTxChecksum('auto', '3.x', true).action, 'leave', 'unparseable: never guess');
  t.equal(decideTxChecksum('on', '4.19.0', true).action, 'on', 'on overrides');
  t.equal(decideTxChecksum('off', '6.18.0', true).action, 'off', 'off overrides');
});

t.test('applyTxChecksum asks the kernel handle only to read on a modern kernel, and reports a handle without it', async (t) => {
  const calls: [string, boolean | undefined][] = [];
  const kernel = { txChecksum: async (dev: string, on?: boolean) => (calls.push([dev, on]), on ?? true) };
  const st = await applyTxChecksum(kernel, 'pw.1', 'auto', true, silentLogger, '6.18.0');
  t.same(calls, [['pw.1', undefined]], 'read only');
  t.equal(st.enabled, true);
  const old = await applyTxChecksum(kernel, 'pw.1', 'auto', true, silentLogger, '5.4.0');
  t.same(calls[1], ['pw.1', false], 'old kernel: set off');
  t.equal(old.enabled, false);
  const none = await applyTxChecksum({}, 'pw.1', 'auto', true, silentLogger, '6.18.0');
  t.equal(none.enabled, undefined);
  t.match(none.error, /cannot read/);
  const failing = await applyTxChecksum({ txChecksum: async () => Promise.reject(new Error('ENODEV')) }, 'pw.1', 'off', true, silentLogger, '6.18.0');
  t.equal(failing.enabled, undefined);
  t.match(failing.error, /ENODEV/, 'a failure is reported, never thrown');
});
