import type { Kernel } from '../index';
import type { NetnsRef } from '../types';
import { FakeConntrack } from './fake-conntrack';
import { FakeIptables } from './fake-iptables';
import { FakeNetworkKernel } from './fake-network-kernel';
import { FakeNft } from './fake-nft';
import { FakeSysctl } from './fake-sysctl';

/** A whole `Kernel` of fakes, the same door a component's real kernel handle comes through. */
export interface FakeKernel extends Kernel {
  net: FakeNetworkKernel;
  sysctl: FakeSysctl;
  nft: FakeNft;
  conntrack: FakeConntrack;
  iptables(family: 4 | 6): FakeIptables;
}

export function fakeKernel(netns?: NetnsRef): FakeKernel {
  const ipt = new Map<4 | 6, FakeIptables>([
    [4, new FakeIptables(4)],
    [6, new FakeIptables(6)],
  ]);
  const net = new FakeNetworkKernel(netns);
  return {
    netns,
    net,
    sysctl: new FakeSysctl(),
    nft: new FakeNft(),
    conntrack: new FakeConntrack(),
    iptables: (family) => ipt.get(family)!,
    close: () => net.close(),
  };
}
