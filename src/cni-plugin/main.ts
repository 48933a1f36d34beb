/**
 * The in-process path: `podwire-cni` run as a plain CNI plugin (or the shim's fallback
 * when podwired is not there). stdout carries only the result or error JSON; logs go
 * to stderr.
 *
 * Every pod pays this start-up when podwired is down, so it loads as little as it can:
 * Node's compile cache (compile-cache.ts), modules required only once needed (VERSION
 * loads no kernel code), a small stderr logger instead of pino, and none of the daemon's
 * modules (prom-client, @kubernetes/client-node, yaml).
 */
import { fstatSync, readSync, writeSync } from 'node:fs';
import { freshBundle, loadBundle } from './bundle';
import { DEFAULT_COMPILE_CACHE_DIR, enableCniCompileCache, flushCniCompileCache } from './compile-cache';

/**
 * stdin, read with plain read(2) calls: a pipe as process.stdin is a net.Socket stream, and
 * loading and running that machinery is several ms of a plugin start. A non-blocking stdin
 * (EAGAIN) continues on the stream.
 */
async function readStdin(): Promise<Buffer> {
  if (stdinIsTty()) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  const buf = Buffer.allocUnsafe(1 << 16);
  for (;;) {
    let n: number;
    try {
      n = readSync(0, buf, 0, buf.length, null);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EOF' || code === 'EBADF') break;
      if (code !== 'EAGAIN') throw err;
      for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
      break;
    }
    if (n === 0) break;
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}

/** Without touching process.stdin (its getter builds the stream); node:tty only for a character device. */
function stdinIsTty(): boolean {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return fstatSync(0).isCharacterDevice() && (require('node:tty') as typeof import('node:tty')).isatty(0);
  } catch {
    return false;
  }
}

/**
 * Writes with write(2) on the fd: process.stdout/stderr on a pipe (how a runtime runs us) is
 * a net.Socket, whose creation loads node:net and the stream machinery. EAGAIN (a
 * non-blocking pipe) hands the rest to the stream.
 */
export function writeFd(fd: 1 | 2, text: string): void {
  const buf = Buffer.from(text, 'utf8');
  let off = 0;
  try {
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
    (fd === 1 ? process.stdout : process.stderr).write(buf.subarray(off));
  }
}

export async function main(): Promise<number> {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { createStderrLogger } = require('./stderr-log') as typeof import('./stderr-log');
  const { runCni } = require('./plugin') as typeof import('./plugin');
  const log = createStderrLogger(process.env.PODWIRE_LOG_LEVEL ?? 'warn', (line) => writeFd(2, line)).child({ component: 'cni' });
  const stdin = await readStdin();
  if (process.env.CNI_COMMAND === 'VERSION') {
    // Needs no kernel, store or iptables: runCni answers it from stdin alone (only `log` is used).
    const out = await runCni(process.env, stdin, { log } as unknown as import('./deps').CniDeps);
    writeFd(1, out.stdout + '\n');
    flushCniCompileCache();
    return out.exitCode;
  }
  const { createRealDeps } = require('./deps-real') as typeof import('./deps-real');
  const { recordFallbackFromEnv } = require('./fallback') as typeof import('./fallback');
  /* eslint-enable @typescript-eslint/no-require-imports */
  const deps = createRealDeps(log, { warm: false });
  // The shim fell back from a configured daemon: leave a record podwired counts (fallback.ts).
  if (recordFallbackFromEnv(process.env)) log.warn({ socket: process.env.PODWIRE_CNI_FALLBACK }, 'podwired did not answer; ran in-process (recorded)');
  try {
    const out = await runCni(process.env, stdin, deps);
    if (out.stdout !== '') writeFd(1, out.stdout + '\n');
    return out.exitCode;
  } finally {
    deps.close();
    flushCniCompileCache();
  }
}

/**
 * The program: bin/podwire-cni and the shim (`node main.js`) run this. The bundle with its
 * own code cache when it is fresh (bundle.ts), else this file's main() over the separate
 * modules with Node's compile cache (compile-cache.ts).
 */
export function run(): void {
  const bundle = freshBundle();
  let impl: { main: typeof main } = { main };
  let saveCache = (): void => undefined;
  if (bundle) {
    const loaded = loadBundle<typeof import('./main')>(bundle, process.env.PODWIRE_CNI_COMPILE_CACHE || DEFAULT_COMPILE_CACHE_DIR, process.env.CNI_COMMAND ?? '');
    impl = loaded.exports;
    saveCache = loaded.saveCache;
  } else {
    enableCniCompileCache();
  }
  impl.main().then(
    (code) => {
      saveCache();
      process.exitCode = code;
      // Sockets and timers must not keep a finished plugin alive.
      setImmediate(() => process.exit(code));
    },
    (err: unknown) => {
      writeFd(1, JSON.stringify({ cniVersion: '1.1.0', code: 107, msg: String(err) }) + '\n');
      process.exit(1);
    },
  );
}

// Not when tap loads every compiled file of the tree (it sets TAP=1), except when the
// shim execs us (it sets PODWIRE_CNI_MAIN=1, which also survives a test's inherited TAP).
// Inside the bundle `module` is the bundled copy's, never require.main: no second run.
if (require.main === module && (process.env.TAP === undefined || process.env.PODWIRE_CNI_MAIN === '1')) run();
