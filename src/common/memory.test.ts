import t from 'tap';
import { releaseMemory } from './memory';

function makeGarbage(): WeakRef<object> {
  return new WeakRef({ big: new Array(10_000).fill(1) });
}

t.test('releaseMemory runs a full collection without --expose-gc and leaves no global gc', async (t) => {
  t.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined', 'tap runs without --expose-gc');
  // An object only a collection frees. A WeakRef's target survives the job that made it,
  // so the collection runs a turn later.
  const ref = makeGarbage();
  await new Promise((r) => setImmediate(r));
  const r = releaseMemory();
  t.ok(r, 'a collection ran');
  t.ok(r!.rssBefore > 0 && r!.rssAfter > 0 && r!.heapUsedAfter > 0, 'reports the process memory');
  t.equal(ref.deref(), undefined, 'the unreachable object was collected');
  t.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined', 'no gc on the main context afterwards');
  t.ok(releaseMemory(), 'and again (the function is kept)');
});
