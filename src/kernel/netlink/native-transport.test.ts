// Pure parts of the native transport and its addon wrapper (no root, no namespace).
import t from 'tap';
import { InvalidInputError } from '../../common/errors';
import { errnoName, errnoText, sysctlPath } from '../native';
import { describeErrno, messageTypeName } from './native-transport';

t.test('errno names and text', async (t) => {
  t.equal(errnoName(17), 'EEXIST');
  t.equal(errnoName(101), 'ENETUNREACH');
  t.equal(errnoName(4242), 'E4242');
  t.match(errnoText(17), /^EEXIST \(.+\)$/);
  t.match(describeErrno(101, 'Nexthop has invalid gateway'), /^ENETUNREACH \(.+\): Nexthop has invalid gateway$/);
  t.equal(describeErrno(4242, ''), 'E4242');
});

t.test('message type names for rtnetlink, numbers otherwise', async (t) => {
  t.equal(messageTypeName(0, 24), 'RTM_NEWROUTE');
  t.equal(messageTypeName(0, 29), 'RTM_DELNEIGH');
  t.equal(messageTypeName(16, 24), 'netlink message type 24');
});

t.test('sysctl keys map to /proc/sys paths and refuse escapes', async (t) => {
  t.equal(sysctlPath('net.ipv4.ip_forward'), 'net/ipv4/ip_forward');
  t.equal(sysctlPath('net/ipv4/conf/eth0.100/forwarding'), 'net/ipv4/conf/eth0.100/forwarding');
  t.equal(sysctlPath('/proc/sys/net/core/somaxconn'), 'net/core/somaxconn');
  for (const bad of ['', '../etc/passwd', 'net/../../etc', 'net/./x', 'net ipv4', 'net//x', '/etc/passwd']) {
    t.throws(() => sysctlPath(bad), InvalidInputError, `refuses ${JSON.stringify(bad)}`);
  }
});
