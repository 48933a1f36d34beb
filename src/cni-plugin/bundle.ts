/**
 * What runs the in-process plugin: the one-file bundle (dist/cni/podwire-cni.js, made by
 * scripts/bundle-cni.js after tsc) while it is fresh, else the separate modules.
 *
 * Fresh means every input the bundler recorded (podwire-cni.inputs.json: path, size,
 * mtime) is unchanged, so a tsc run without the bundle step, or an edited file, falls back
 * to the modules instead of running stale code. The check is one small read and ~50
 * stat(2) calls (well under a millisecond). PODWIRE_CNI_BUNDLE=0 turns the bundle off.
 *
 * The bundle is compiled with V8's code cache of its own (vm.Script cachedData), one per
 * CNI command, written after the command ran: it then holds exactly the functions that
 * command compiled, lazily, so the next start deserializes those and compiles nothing.
 * Node's module compile cache (compile-cache.ts) can only cache what is compiled eagerly
 * when a module loads: either every function (`--no-lazy`, a cache twice the size to
 * deserialize) or almost none. Measured per ADD (CPU, this machine): modules + Node's cache
 * ~125 ms, bundle + Node's cache with --no-lazy ~107 ms, bundle + this cache ~85 ms, of
 * which ~45 ms is Node's own start.
 */
import { mkdirSync, readFileSync, readdirSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';

export const BUNDLE_DIR = resolve(__dirname, '..', '..', 'cni');
export const BUNDLE_INPUTS = 'podwire-cni.inputs.json';
const CACHE_PREFIX = 'podwire-cni-';

type Entry = [file: string, size: number, mtimeMs: number];

export interface FreshBundle {
  file: string;
  /** Identifies this build of the bundle (size and mtime): part of its code-cache file names. */
  key: string;
}

/** The bundle when it may be used, else undefined (missing, stale, unreadable, disabled). */
export function freshBundle(dir: string = BUNDLE_DIR, env: Readonly<Record<string, string | undefined>> = process.env): FreshBundle | undefined {
  if (env.PODWIRE_CNI_BUNDLE === '0') return undefined;
  let manifest: { bundle: Entry; inputs: Entry[] };
  try {
    manifest = JSON.parse(readFileSync(join(dir, BUNDLE_INPUTS), 'utf8')) as typeof manifest;
  } catch {
    return undefined;
  }
  if (!Array.isArray(manifest.bundle) || !Array.isArray(manifest.inputs) || manifest.inputs.length === 0) return undefined;
  for (const [file, size, mtimeMs] of [manifest.bundle, ...manifest.inputs]) {
    const st = statSync(join(dir, file), { throwIfNoEntry: false });
    if (!st || st.size !== size || st.mtimeMs !== mtimeMs) return undefined;
  }
  return { file: join(dir, manifest.bundle[0]), key: `${manifest.bundle[1]}-${Math.round(manifest.bundle[2])}` };
}

export interface LoadedBundle<T> {
  exports: T;
  /** Whether V8 used a code cache for it. */
  cached: boolean;
  /** Writes the code cache when there was none (or V8 rejected it). Never throws. */
  saveCache(): void;
}

/**
 * Compiles and runs the bundle as a CommonJS module, with the code cache for `command`
 * from `cacheDir` (none when undefined or unreadable: then it is compiled from source).
 */
export function loadBundle<T>(bundle: FreshBundle, cacheDir: string | undefined, command: string): LoadedBundle<T> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const vm = require('node:vm') as typeof import('node:vm');
  const name = `${CACHE_PREFIX}${bundle.key}-${process.version}-${process.arch}-${/^[A-Z]{1,16}$/.test(command) ? command : 'OTHER'}.v8cache`;
  const cacheFile = cacheDir ? join(cacheDir, name) : undefined;
  let cachedData: Buffer | undefined;
  try {
    if (cacheFile) cachedData = readFileSync(cacheFile);
  } catch {
    cachedData = undefined;
  }
  const source = readFileSync(bundle.file, 'utf8');
  // The wrapper of Node's CommonJS loader, so the bundle runs exactly as if required.
  const script = new vm.Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, { filename: bundle.file, cachedData });
  const mod = { exports: {} as T };
  (script.runInThisContext() as (e: T, r: NodeJS.Require, m: { exports: T }, f: string, d: string) => void)(mod.exports, createRequire(bundle.file), mod, bundle.file, dirname(bundle.file));
  const cached = cachedData !== undefined && !script.cachedDataRejected;
  return {
    exports: mod.exports,
    cached,
    saveCache(): void {
      if (cached || !cacheDir || !cacheFile) return;
      try {
        mkdirSync(cacheDir, { recursive: true, mode: 0o755 });
        // Concurrent plugins each write their own temp file; rename is atomic.
        const tmp = `${cacheFile}.${process.pid}.tmp`;
        writeFileSync(tmp, script.createCachedData(), { mode: 0o644 });
        renameSync(tmp, cacheFile);
        // Caches of earlier builds of the bundle or other Node versions are never read again.
        for (const f of readdirSync(cacheDir)) {
          if (f.startsWith(CACHE_PREFIX) && !f.startsWith(`${CACHE_PREFIX}${bundle.key}-${process.version}-`) && !f.endsWith('.tmp')) unlinkSync(join(cacheDir, f));
        }
      } catch {
        /* a cache that cannot be written is no error: the next start compiles again */
      }
    },
  };
}
