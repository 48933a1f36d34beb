import { createHash, randomBytes } from 'node:crypto';
import t from 'tap';
import { sha256Hex } from './sha256';
import { hostVethName, masqChainName } from './names';

t.test('sha256Hex equals node:crypto', async (t) => {
  const inputs = ['', 'abc', 'c1\0eth0', 'x'.repeat(55), 'x'.repeat(56), 'x'.repeat(63), 'x'.repeat(64), 'x'.repeat(1000), 'ünïcødé\0eth0'];
  for (let i = 0; i < 200; i++) inputs.push(randomBytes(i % 130).toString('base64'));
  for (const s of inputs) t.equal(sha256Hex(s), createHash('sha256').update(s, 'utf8').digest('hex'), JSON.stringify(s.slice(0, 20)));
});

t.test('names are unchanged (DEL and GC find veths and chains made by earlier versions)', async (t) => {
  t.equal(hostVethName('c1', 'eth0'), 'pwv' + createHash('sha256').update('c1\0eth0').digest('hex').slice(0, 12));
  t.equal(masqChainName('net', 'c1', 'eth0'), 'PW-MASQ-' + createHash('sha256').update('net\0c1\0eth0').digest('hex').slice(0, 20));
});
