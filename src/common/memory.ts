/**
 * Give back the memory of the start-up peak. The initial list of a large cluster (the
 * manifests' YAML, the API's JSON, the first renders) leaves V8's heap at its peak size:
 * the garbage stays in old-space pages and the young generation stays grown until V8's
 * memory reducer happens to run, which a busy server may not let it do for a long time.
 * Measured with `podwired --enable dns` at 5,000 Services (bench/dns): 125 MB RSS before,
 * 99 MB after one last-resort collection.
 *
 * Node has no API to ask for a collection: this is the pattern jest's leak detector uses
 * (turn on `--expose-gc`, fetch `gc` from a fresh context, turn the flag off again). The
 * collection is V8's "last resort" one: full GCs until nothing more is freed, and the
 * freed pages unmapped. It pauses the event loop once (tens of ms at 5,000 Services).
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type GcFunction = (options?: { type?: 'major' | 'minor'; execution?: 'sync' | 'async'; flavor?: 'regular' | 'last-resort' }) => void;

let cached: GcFunction | null | undefined;

function gcFunction(): GcFunction | null {
  if (cached !== undefined) return cached;
  const exposed = (globalThis as { gc?: unknown }).gc;
  if (typeof exposed === 'function') return (cached = exposed as GcFunction);
  try {
    setFlagsFromString('--expose-gc');
    const fn: unknown = runInNewContext('gc');
    cached = typeof fn === 'function' ? (fn as GcFunction) : null;
  } catch {
    cached = null;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
  return cached;
}

export interface ReleasedMemory {
  rssBefore: number;
  rssAfter: number;
  heapUsedAfter: number;
  ms: number;
}

/** One last-resort full collection; null when this runtime cannot run one. */
export function releaseMemory(now: () => number = () => performance.now()): ReleasedMemory | null {
  const gc = gcFunction();
  if (!gc) return null;
  const rssBefore = process.memoryUsage.rss();
  const t0 = now();
  gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  const ms = now() - t0;
  const m = process.memoryUsage();
  return { rssBefore, rssAfter: m.rss, heapUsedAfter: m.heapUsed, ms };
}
