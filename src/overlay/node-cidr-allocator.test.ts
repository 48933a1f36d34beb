import t from 'tap';
import { Cidr } from '../common/ip';
import { planAllocations, SubnetPool } from './node-cidr-allocator';

const pool4 = new SubnetPool(Cidr.parse('10.244.0.0/16'), 24);
const node = (name: string, podCIDRs: string[] = []) => ({ name, resourceVersion: '1', podCIDRs });

t.test('lowest free subnet, in name order; set CIDRs are never touched', async (t) => {
  const plan = planAllocations([pool4], [node('b'), node('a'), node('c', ['10.244.0.0/24'])], []);
  t.same('error' in plan ? plan : plan.map((p) => [p.node.name, p.cidrs]), [['a', ['10.244.1.0/24']], ['b', ['10.244.2.0/24']]]);
});

t.test('a wider or narrower used CIDR blocks every /24 it overlaps; held (in grace) ones too', async (t) => {
  const plan = planAllocations([pool4], [node('x', ['10.244.0.0/23']), node('y', ['10.244.2.128/25']), node('z')], ['10.244.3.0/24']);
  t.same('error' in plan ? plan : plan.map((p) => p.cidrs[0]), ['10.244.4.0/24']);
});

t.test('dual-stack: one per family; a full pool is an error naming the node', async (t) => {
  const pool6 = new SubnetPool(Cidr.parse('fd00:10:244::/56'), 64);
  const plan = planAllocations([pool4, pool6], [node('a')], []);
  t.same('error' in plan ? plan : plan[0]!.cidrs, ['10.244.0.0/24', 'fd00:10:244::/64']);
  const tiny = new SubnetPool(Cidr.parse('10.244.0.0/23'), 24);
  const full = planAllocations([tiny], [node('a'), node('b'), node('c')], []);
  t.match(full, { error: /no free \/24 left for node c/ });
  t.throws(() => new SubnetPool(Cidr.parse('10.244.0.0/16'), 8), /nodeCidrMaskSize/);
});
