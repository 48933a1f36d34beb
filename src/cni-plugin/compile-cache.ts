/**
 * Node's module compile cache (module.enableCompileCache) for the in-process path: V8's code
 * cache of every module, so a plugin start skips compiling them. The directory is
 * PODWIRE_CNI_COMPILE_CACHE, else /var/cache/podwire/compile-cache (root's, like the plugin:
 * never a world-writable place such as /tmp, whose cache another user could plant). When it
 * cannot be created or written, the plugin runs without a cache (status FAILED, no error).
 *
 * This is the path of the separate modules, used when the bundle (bundle.ts) is missing or
 * stale; the bundle has a code cache of its own. It compiles lazily: V8 caches only the
 * functions compiled when a module loads, and `--no-lazy` would need node:v8
 * (setFlagsFromString), whose heap utilities pull in the whole stream machinery.
 */
import * as nodeModule from 'node:module';

export const DEFAULT_COMPILE_CACHE_DIR = '/var/cache/podwire/compile-cache';

type CacheModule = {
  enableCompileCache?: (dir?: string) => { status: number; message?: string; directory?: string };
  flushCompileCache?: () => void;
};

/** Returns the directory in use, or undefined when there is no cache (unsupported, unwritable). */
export function enableCniCompileCache(dir: string = process.env.PODWIRE_CNI_COMPILE_CACHE || DEFAULT_COMPILE_CACHE_DIR): string | undefined {
  const m = nodeModule as unknown as CacheModule;
  if (typeof m.enableCompileCache !== 'function') return undefined;
  try {
    const r = m.enableCompileCache(dir);
    const { ENABLED, ALREADY_ENABLED } = (nodeModule as unknown as { constants: { compileCacheStatus: Record<string, number> } }).constants.compileCacheStatus;
    if (r.status !== ENABLED && r.status !== ALREADY_ENABLED) return undefined;
    return r.directory;
  } catch {
    return undefined;
  }
}

/** Write what this run added (Node also does at a normal exit; process.exit() is not one we rely on). */
export function flushCniCompileCache(): void {
  try {
    (nodeModule as unknown as CacheModule).flushCompileCache?.();
  } catch {
    /* a cache that cannot be written is no error */
  }
}
