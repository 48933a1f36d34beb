/** Fakes of every kernel interface, for unit tests without root. */
export { FakeNetworkKernel, FakeNetnsWorld, type FakeCall } from './fake-network-kernel';
export { FakeSysctl } from './fake-sysctl';
export { FakeIptables, splitWords, type FakeChain, type FakeTable, type TracePacket, type TraceResult } from './fake-iptables';
export { FakeNft } from './fake-nft';
export { FakeTransport } from './fake-transport';
export { FakeConntrack } from './fake-conntrack';
export { fakeKernel, type FakeKernel } from './fake-kernel';
