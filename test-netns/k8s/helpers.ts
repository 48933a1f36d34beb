/** Shared by the Kubernetes source tests. */
import type { Test } from 'tap';
import type { ClusterEvent } from '../../src/k8s/types';

/** `add Service default/web`: one event as a short line, for comparing event sequences. */
export function describeEvent(e: ClusterEvent): string {
  const obj = e.type === 'delete' ? e.previous : e.current;
  return `${e.type} ${e.kind} ${obj.meta.key}`;
}

/** Bounded wait for a condition (not a timing assertion: it fails only if it never happens). */
export async function waitFor(t: Test, what: string, cond: () => boolean, maxMs = 15_000): Promise<void> {
  const step = 10;
  for (let i = 0; i < maxMs / step; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, step));
  }
  t.fail(`timed out waiting for: ${what}`);
  throw new Error(`timed out waiting for: ${what}`);
}
