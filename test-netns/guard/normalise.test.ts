import t from 'tap';
import { normaliseSave } from '../harness/guard';

t.test('an empty table at policy ACCEPT counts as no table', async (t) => {
  const inert = ['# Generated', '*filter', ':INPUT ACCEPT [5:10]', ':FORWARD ACCEPT [0:0]', ':OUTPUT ACCEPT [1:2]', 'COMMIT', ''];
  t.same(normaliseSave(inert.join('\n')), []);
});

t.test('a table with a rule, a user chain or a DROP policy is kept, counters dropped', async (t) => {
  const withRule = ['*filter', ':INPUT ACCEPT [5:10]', '-A INPUT -j ACCEPT', 'COMMIT'].join('\n');
  t.same(normaliseSave(withRule), ['*filter', ':INPUT ACCEPT [-]', '-A INPUT -j ACCEPT', 'COMMIT']);
  const userChain = ['*nat', ':PREROUTING ACCEPT [0:0]', ':KUBE-X - [0:0]', 'COMMIT'].join('\n');
  t.same(normaliseSave(userChain), ['*nat', ':PREROUTING ACCEPT [-]', ':KUBE-X - [-]', 'COMMIT']);
  const dropPolicy = ['*filter', ':FORWARD DROP [3:4]', 'COMMIT'].join('\n');
  t.same(normaliseSave(dropPolicy), ['*filter', ':FORWARD DROP [-]', 'COMMIT']);
});
