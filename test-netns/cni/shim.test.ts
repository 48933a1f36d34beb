/**
 * The installed shim when neither podwired nor the in-process path is available, as on a
 * node without Node.js while the daemon restarts: CNI error 11 ("try again later"), in the
 * request's cniVersion, naming the socket, so the runtime retries instead of failing the pod.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { SHIM } from './helpers';

t.test('no daemon and no usable fallback: code 11, naming the socket', { skip: existsSync(SHIM) ? false : `shim not built: ${SHIM}` }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pwc-shim-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const socket = join(dir, 'absent "quoted".sock');
  const run = spawnSync(SHIM, [], {
    input: JSON.stringify({ cniVersion: '1.0.0', name: 'n', type: 'podwire' }),
    env: { CNI_COMMAND: 'ADD', PODWIRE_CONTROL_SOCKET: socket, PODWIRE_CNI_JS: join(dir, 'missing-main.js') },
    encoding: 'utf8',
    timeout: 20_000,
  });
  t.equal(run.status, 1, 'exit status 1');
  const answer = JSON.parse(run.stdout) as { cniVersion: string; code: number; msg: string };
  t.equal(answer.code, 11, 'try again later');
  t.equal(answer.cniVersion, '1.0.0', "in the request's version");
  t.ok(answer.msg.includes(socket), `names the socket: ${answer.msg}`);
  t.match(answer.msg, /PODWIRE_CNI_JS/, 'says what to set');
});
