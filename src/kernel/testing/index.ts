/** Fakes of every kernel interface, for unit tests without root. */
export { FakeNetworkKernel, FakeNetnsWorld, type FakeCall } from './fake-network-kernel';
export { FakeSysctl } from './fake-sysctl';
export { FakeIptables, splitWords, type FakeChain, type FakeTable, type TracePacket, type TraceResult } from './fake-iptables';
export { FakeNft, tokenize as tokenizeNft, type NftTracePacket, type NftTraceResult, type NftHook, type NftModelTable, type NftModelChain, type NftModelSet } from './fake-nft';
export { KUBE_PROXY_STYLE_RULESET } from './fixtures';
export { FakeTransport } from './fake-transport';
export { FakeConntrack } from './fake-conntrack';
export { fakeKernel, type FakeKernel } from './fake-kernel';
export { FakeIpvs } from './fake-ipvs';
export { FakeIpset } from './fake-ipset';
