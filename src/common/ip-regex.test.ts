import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import t from 'tap';
import { isIPv4, isIPv6 } from './ip';

t.test('isIPv4/isIPv6 agree with node:net', async (t) => {
  const samples = [
    '', '1.2.3.4', '255.255.255.255', '256.1.1.1', '01.2.3.4', '1.2.3', '1.2.3.4.5', '1.2.3.4 ', ' 1.2.3.4', '0.0.0.0', '10.244.1.0',
    '::', '::1', '1::', 'fd00:10:244:1::', 'fd00:10:244:1::/64', 'fe80::1%eth0', '::ffff:1.2.3.4', '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:1.2.3.4', ':::', 'g::1', '12345::', '1::2::3', 'fe80::1%', '::1.2.3.4', '1.2.3.4::',
  ];
  const hex = '0123456789abcdef:.%';
  for (let i = 0; i < 3000; i++) {
    const b = randomBytes(4 + (i % 20));
    samples.push([...b].map((x) => hex[x % hex.length]).join(''));
    samples.push([...randomBytes(4)].map((x) => String(x % 300)).join('.'));
  }
  let mismatches = 0;
  for (const s of samples) {
    if (isIPv4(s) !== net.isIPv4(s) || isIPv6(s) !== net.isIPv6(s)) {
      mismatches++;
      t.fail(`disagree on ${JSON.stringify(s)}: v4 ${isIPv4(s)}/${net.isIPv4(s)} v6 ${isIPv6(s)}/${net.isIPv6(s)}`);
    }
  }
  t.equal(mismatches, 0, `${samples.length} samples`);
});
