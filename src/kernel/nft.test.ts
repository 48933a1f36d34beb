import t from 'tap';
import { CommandError } from '../common/errors';
import { annotateNftError, checkNftScript, listArgs } from './nft';

t.test('listings are restricted to one named table or an object in it, or the header-only tables/chains', async (t) => {
  t.same(listArgs('tables'), ['tables']);
  t.same(listArgs(' chains '), ['chains']);
  t.same(listArgs('table inet podwire'), ['table', 'inet', 'podwire']);
  t.same(listArgs(' map  ip podwire  svc '), ['map', 'ip', 'podwire', 'svc']);
  t.same(listArgs('chain inet podwire services'), ['chain', 'inet', 'podwire', 'services']);
  for (const bad of ['ruleset', 'sets', 'maps', 'tables inet', 'chains inet x', 'table inet', 'table foo x', 'set inet podwire', 'table inet x; list ruleset', 'table inet a b', '', 'chain inet t c extra']) {
    t.throws(() => listArgs(bad), { name: 'InvalidInputError', field: 'what' }, JSON.stringify(bad));
  }
});

t.test('scripts that reach beyond their own tables are refused, naming the line', async (t) => {
  checkNftScript('add table inet podwire\nflush table inet podwire\nadd rule inet podwire c meta l4proto tcp accept comment "list ruleset; include x"\n# flush ruleset in a comment\n');
  t.throws(() => checkNftScript('add table ip x\nflush ruleset\n'), { name: 'InvalidInputError', value: 'line 2: flush ruleset' });
  t.throws(() => checkNftScript('add table ip x; list ruleset\n'), { name: 'InvalidInputError', message: /only changes/ });
  t.throws(() => checkNftScript('include "/etc/nftables.conf"\n'), { name: 'InvalidInputError', message: /include/ });
  t.throws(() => checkNftScript('  monitor\n'), { name: 'InvalidInputError' });
  t.throws(() => checkNftScript('add table ip x\0'), { name: 'InvalidInputError' });
});

t.test('error annotation: nft -f and libnftables locations, each line once', async (t) => {
  const script = 'add table inet x\nadd chain inet x c\nbad line\n';
  const n = annotateNftError(new CommandError('libnftables', -1, '/dev/stdin:3:1-3: Error: syntax error\nbad line\n^^^\n/dev/stdin:3:5-8: Error: more\n'), script);
  t.match(n.stderr, /script line 3: bad line/);
  t.equal(n.stderr.match(/script line 3/g)?.length, 1, 'deduplicated');
  t.match(annotateNftError(new CommandError('libnftables', -1, '<cmdline>:2:1-3: Error: x\n'), script).stderr, /script line 2: add chain inet x c/);
  const none = new CommandError('nft', 1, 'Error: no location\n');
  t.equal(annotateNftError(none, script), none, 'unchanged without a location');
});
