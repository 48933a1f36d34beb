/** Shared by the Kubernetes source tests. */
import { rmSync } from 'node:fs';
import type { Test } from 'tap';
import { createKubernetesSource, type KubernetesSource, type KubernetesSourceOptions } from '../../src/k8s';
import type { ClusterEvent } from '../../src/k8s/types';
import type { FakeApiServer } from '../fixtures/apiserver/server';

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

/**
 * Creates and starts a source, recording its events as `describeEvent` lines. At teardown it
 * stops the source, then the fixture, then removes `dir` (where the kubeconfig lives).
 */
export async function startSource(
  t: Test,
  api: FakeApiServer,
  dir: string,
  options: KubernetesSourceOptions,
): Promise<{ src: KubernetesSource; events: string[]; ac: AbortController }> {
  const src = createKubernetesSource(options);
  const events: string[] = [];
  src.onEvent((e) => events.push(describeEvent(e)));
  const ac = new AbortController();
  t.teardown(async () => {
    ac.abort();
    await src.stopped();
    await api.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  await src.start(ac.signal);
  return { src, events, ac };
}
