// A missing addon is a clear error, not a bare MODULE_NOT_FOUND. Runs in its own process
// (tap runs each file separately), so the addon is not loaded yet.
import t from 'tap';
import { PodwireError } from '../common/errors';

t.test('an addon that is not built gives PW_NATIVE_MISSING naming the file and the fix', async (t) => {
  process.env.PODWIRE_NATIVE_ADDON = '/nonexistent/pwn/podwire_native.node';
  const { openNetlinkSocket } = await import('./native');
  const err = await openNetlinkSocket(undefined).catch((e: unknown) => e);
  t.ok(err instanceof PodwireError);
  t.match(err, { code: 'PW_NATIVE_MISSING', value: '/nonexistent/pwn/podwire_native.node' });
  t.match((err as Error).message, /npm run build:native/);
});
