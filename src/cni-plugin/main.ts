/**
 * The in-process path: `podwire-cni` run as a plain CNI plugin (or the shim's fallback
 * when podwired is not there). stdout carries only the result or error JSON; logs go
 * to stderr.
 */
import { createLogger } from '../common/log';
import { createRealDeps } from './deps-real';
import { recordFallbackFromEnv } from './fallback';
import { runCni } from './plugin';

async function readStdin(): Promise<Buffer> {
  if (process.stdin.isTTY) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export async function main(): Promise<number> {
  const log = createLogger({ destination: 'stderr', level: process.env.PODWIRE_LOG_LEVEL ?? 'warn' }).child({ component: 'cni' });
  const deps = createRealDeps(log, { warm: false });
  // The shim fell back from a configured daemon: leave a record podwired counts (fallback.ts).
  if (recordFallbackFromEnv(process.env)) log.warn({ socket: process.env.PODWIRE_CNI_FALLBACK }, 'podwired did not answer; ran in-process (recorded)');
  try {
    const stdin = process.env.CNI_COMMAND === 'VERSION' && process.stdin.isTTY ? Buffer.alloc(0) : await readStdin();
    const out = await runCni(process.env, stdin, deps);
    if (out.stdout !== '') process.stdout.write(out.stdout + '\n');
    return out.exitCode;
  } finally {
    deps.close();
  }
}

// Not when tap loads every compiled file of the tree (it sets TAP=1), except when the
// shim execs us (it sets PODWIRE_CNI_MAIN=1, which also survives a test's inherited TAP).
if (require.main === module && (process.env.TAP === undefined || process.env.PODWIRE_CNI_MAIN === '1')) {
  main().then(
    (code) => {
      process.exitCode = code;
      // Sockets and timers must not keep a finished plugin alive.
      setImmediate(() => process.exit(code));
    },
    (err: unknown) => {
      process.stdout.write(JSON.stringify({ cniVersion: '1.1.0', code: 107, msg: String(err) }) + '\n');
      process.exit(1);
    },
  );
}
