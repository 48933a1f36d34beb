import t from 'tap';
import { decodeRequest, encodeRequest } from './protocol';

t.test('round trip keeps CNI_* env and stdin bytes; other env is dropped', async (t) => {
  const stdin = Buffer.from([0x7b, 0x00, 0xff, 0x7d]);
  const body = encodeRequest({ env: { CNI_COMMAND: 'ADD', CNI_ARGS: 'A=1;B=2', HOME: '/root' }, stdin });
  const back = decodeRequest(body);
  t.same(back.env, { CNI_COMMAND: 'ADD', CNI_ARGS: 'A=1;B=2' });
  t.same([...back.stdin], [...stdin]);
});

t.test('malformed frames are rejected with code 4', async (t) => {
  t.throws(() => decodeRequest(Buffer.from('CNI_COMMAND=ADD')), /not NUL-terminated/);
  t.throws(() => decodeRequest(Buffer.from('NOEQUALS\0\0')), /has no "="/);
});
