import { randomBytes, randomInt } from 'node:crypto';
import t from 'tap';
import { canonicalIP } from '../proxy/model';
import { formatIPv6, IpAddress, ipv6Bytes } from './ip';

const h = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

t.test('formatIPv6: RFC 5952 zero-run compression', async (t) => {
  const cases: [string, string, string][] = [
    ['0000 0000 0000 0000 0000 0000 0000 0000', '::', 'all zeros'],
    ['0000 0000 0000 0000 0000 0000 0000 0001', '::1', 'a leading run'],
    ['fe80 0000 0000 0000 0000 0000 0000 0000', 'fe80::', 'a trailing run'],
    ['2001 0db8 0001 0000 0000 0000 0000 0000', '2001:db8:1::', 'a trailing run after three groups'],
    ['2001 0db8 0000 0000 0001 0000 0000 0001', '2001:db8::1:0:0:1', 'two equal runs: the first'],
    ['2001 0000 0000 0001 0000 0000 0000 0001', '2001:0:0:1::1', 'the longer run, though second'],
    ['2001 0db8 0000 0001 0001 0001 0001 0001', '2001:db8:0:1:1:1:1:1', 'a single zero group is not compressed'],
    ['0000 0001 0002 0003 0004 0005 0006 0000', '0:1:2:3:4:5:6:0', 'single zero groups at both ends'],
    ['0001 0002 0003 0004 0005 0006 0007 0008', '1:2:3:4:5:6:7:8', 'no zero group'],
    ['0000 0000 0001 0000 0000 0001 0000 0000', '::1:0:0:1:0:0', 'three equal runs: the first'],
    ['fd00 abcd 0000 0000 0000 0000 0000 0001', 'fd00:abcd::1', 'lower-case, no leading zeros'],
    ['ABCD 00EF 0000 0000 0000 0000 0000 0000', 'abcd:ef::', 'upper-case input bytes print lower-case'],
  ];
  for (const [hex, want, what] of cases) {
    t.equal(formatIPv6(h(hex)), want, what);
    t.equal(formatIPv6(h(hex), 0, { inetNtop: true }), want, `${what} (inetNtop)`);
  }
  const padded = Buffer.concat([h('ffff'), h('20010db8000000000000000000000001')]);
  t.equal(formatIPv6(padded, 2), '2001:db8::1', 'at an offset');
});

t.test('formatIPv6: IPv4-mapped and -compatible forms only with inetNtop (glibc inet_ntop)', async (t) => {
  const cases: [string, string, string, string][] = [
    ['0000 0000 0000 0000 0000 ffff 0102 0304', '::ffff:102:304', '::ffff:1.2.3.4', 'mapped'],
    ['0000 0000 0000 0000 0000 ffff 0000 0000', '::ffff:0:0', '::ffff:0.0.0.0', 'mapped 0.0.0.0 (the longer run is the leading one)'],
    ['0000 0000 0000 0000 0000 0000 0102 0304', '::102:304', '::1.2.3.4', 'compatible'],
    ['0000 0000 0000 0000 0000 0000 0001 0000', '::1:0', '::0.1.0.0', 'compatible, low groups zero'],
    ['0000 0000 0000 0000 0000 0000 0000 0001', '::1', '::1', 'loopback is not compatible (a run of 7)'],
    ['0000 0000 0000 0000 0000 0000 0000 0000', '::', '::', 'all zeros is not compatible'],
    ['0000 0000 0000 0000 0000 fffe 0102 0304', '::fffe:102:304', '::fffe:102:304', 'not ffff: not mapped'],
    ['0000 0000 0000 0000 0001 ffff 0102 0304', '::1:ffff:102:304', '::1:ffff:102:304', 'a run of 4: not mapped'],
    ['0064 ff9b 0000 0000 0000 0000 0102 0304', '64:ff9b::102:304', '64:ff9b::102:304', 'NAT64 (not a leading run): hex'],
  ];
  for (const [hex, plain, ntop, what] of cases) {
    t.equal(formatIPv6(h(hex)), plain, `${what}: default`);
    t.equal(formatIPv6(h(hex), 0, { inetNtop: true }), ntop, `${what}: inetNtop`);
  }
});

t.test('ipv6Bytes parses what isIPv6 admits', async (t) => {
  const cases: [string, string][] = [
    ['::', '00000000000000000000000000000000'],
    ['::1', '00000000000000000000000000000001'],
    ['1::', '00010000000000000000000000000000'],
    ['fd00:10:244:1::5', 'fd000010024400010000000000000005'],
    ['FD00::ABCD', 'fd00000000000000000000000000abcd'],
    ['0001:0002:0003:0004:0005:0006:0007:0008', '00010002000300040005000600070008'],
    ['::ffff:1.2.3.4', '00000000000000000000ffff01020304'],
    ['1:2:3:4:5:6:1.2.3.4', '00010002000300040005000601020304'],
    ['::1.2.3.4', '00000000000000000000000001020304'],
    ['fe80::1%eth0', 'fe800000000000000000000000000001'],
  ];
  for (const [text, hex] of cases) t.equal(ipv6Bytes(text).toString('hex'), hex, text);
});

t.test('IpAddress round-trips IPv6 through ipv6Bytes and formatIPv6', async (t) => {
  for (let i = 0; i < 2000; i++) {
    const b = randomBytes(16);
    // Zero some groups so runs of every length occur.
    for (let g = 0; g < 8; g++) if (randomInt(3) === 0) b.writeUInt16BE(0, 2 * g);
    const ip = IpAddress.fromBytes(b);
    const text = ip.toString();
    if (!IpAddress.parse(text).equals(ip)) t.fail(`${b.toString('hex')} → ${text} does not parse back`);
    if (!ipv6Bytes(text).equals(b)) t.fail(`${text}: ipv6Bytes differs`);
  }
  t.equal(IpAddress.parse('::ffff:1.2.3.4').toString(), '::ffff:102:304', 'toString keeps the hex form');
});

t.test('canonicalIP agrees with the WHATWG URL serialiser it replaced', async (t) => {
  const viaUrl = (ip: string): string => new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  const samples = ['::', '::1', '1::', 'FD00::1', 'fd00:0:0:0:0:0:0:1', '0:0:1:0:0:1:0:0', '::ffff:1.2.3.4', '::1.2.3.4', '1:2:3:4:5:6:1.2.3.4', '2001:db8:0:1:1:1:1:1'];
  for (let i = 0; i < 2000; i++) {
    const b = randomBytes(16);
    for (let g = 0; g < 8; g++) if (randomInt(3) === 0) b.writeUInt16BE(0, 2 * g);
    // Spelled out with leading zeros and mixed case, so canonicalisation has work to do.
    const groups = Array.from({ length: 8 }, (_, g) => b.readUInt16BE(2 * g).toString(16).padStart(randomInt(1, 5), '0'));
    samples.push(groups.map((x) => (randomInt(2) === 0 ? x.toUpperCase() : x)).join(':'));
  }
  let mismatches = 0;
  for (const s of samples) {
    if (canonicalIP(s) !== viaUrl(s)) {
      mismatches++;
      t.fail(`${s}: ${canonicalIP(s)} vs URL ${viaUrl(s)}`);
    }
  }
  t.equal(mismatches, 0, `${samples.length} samples`);
  t.equal(canonicalIP('10.96.0.1'), '10.96.0.1');
  t.throws(() => canonicalIP('fe80::1%eth0'), 'a zone is refused (URL refused it too)');
  t.throws(() => canonicalIP('not-an-ip'));
});
