/**
 * Standalone fast-path server: `node dist/src/cni-plugin/fastpath/serve.js [socket]`.
 * Serves only POST /v1/cni on a unix socket with warm real deps. podwired mounts the
 * same handler on its control server; this entry exists for tests, the bench, and
 * nodes that run the CNI plugin without the rest of the daemon.
 */
import { chmodSync, mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { createLogger } from '../../common/log';
import { createRealDeps } from '../deps-real';
import { createCniFastPathServer } from './handler';
import { DEFAULT_CONTROL_SOCKET } from './protocol';

export function serve(socketPath: string): Promise<() => Promise<void>> {
  const log = createLogger({ destination: 'stderr', level: process.env.PODWIRE_LOG_LEVEL ?? 'warn' }).child({ component: 'cni-fastpath' });
  const deps = createRealDeps(log);
  const hangAfter = process.env.PODWIRE_CNI_TEST_HANG_AFTER;
  if (hangAfter) {
    // Fault injection for test-netns: never finish an ADD after this step (the test kills us).
    deps.checkpoint = async (step) => {
      if (step !== hangAfter) return;
      process.stderr.write(`hanging after ${step}\n`);
      await new Promise<never>(() => undefined);
    };
  }
  const server = createCniFastPathServer(deps);
  mkdirSync(dirname(socketPath), { recursive: true });
  try {
    unlinkSync(socketPath);
  } catch {
    /* not there */
  }
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      chmodSync(socketPath, 0o600);
      resolve(
        () =>
          new Promise<void>((done) => {
            server.close(() => {
              deps.close();
              done();
            });
            server.closeAllConnections();
          }),
      );
    });
  });
}

// Not when tap loads every compiled file of the tree (it sets TAP=1).
if (require.main === module && (!process.env.TAP || process.env.PODWIRE_CNI_MAIN === '1')) {
  const socketPath = process.argv[2] ?? process.env.PODWIRE_CONTROL_SOCKET ?? DEFAULT_CONTROL_SOCKET;
  serve(socketPath).then(
    (stop) => {
      process.stdout.write(`listening ${socketPath}\n`);
      const shutdown = (): void => void stop().then(() => process.exit(0));
      process.once('SIGTERM', shutdown);
      process.once('SIGINT', shutdown);
    },
    (err: unknown) => {
      process.stderr.write(`cannot listen on ${socketPath}: ${String(err)}\n`);
      process.exit(1);
    },
  );
}
