import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { runCni } from '../plugin';
import { createFakeDeps } from '../testing';
import { createCniFastPathServer } from './handler';
import { encodeRequest } from './protocol';

function post(socketPath: string, body: Buffer): Promise<{ status: number; exit: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, agent: false, method: 'POST', path: '/v1/cni', headers: { 'content-length': body.length, connection: 'close' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, exit: res.headers['x-cni-exit-code'] as string | undefined, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

t.test('too-large requests: code 108 from the handler, the same answer as runCni (the in-process path)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pwc2-handler-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const deps = createFakeDeps();
  const server = createCniFastPathServer(deps);
  const socket = join(dir, 'cni.sock');
  await new Promise<void>((r) => server.listen(socket, r));
  t.teardown(() => new Promise<void>((r) => {
    server.close(() => r());
    server.closeAllConnections();
  }));
  const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/fake/pod-c1', CNI_IFNAME: 'eth0', CNI_PATH: '/x' };
  for (const mib of [4.5, 10]) {
    // 4.5 MiB fits the frame limit (runCni refuses it); 10 MiB is over it (the handler drains and refuses it).
    const stdin = Buffer.from(JSON.stringify({ cniVersion: '0.4.0', name: 'n', type: 'podwire', pad: 'x'.repeat(mib * (1 << 20)) }));
    const res = await post(socket, encodeRequest({ env, stdin }));
    t.equal(res.status, 200, `${mib} MiB: the CNI answer, not an HTTP error (the shim would turn that into 11)`);
    t.equal(res.exit, '1');
    const inProcess = await runCni(env, stdin, createFakeDeps());
    t.equal(res.body, inProcess.stdout + '\n', `${mib} MiB: byte for byte what the in-process path prints`);
    t.equal((JSON.parse(res.body) as { code: number }).code, 108);
  }
});
