/** Public API of the overlay module (flannel's job): the component, its config section, backends and helpers. */
export { OverlayComponent, overlayRegistration, OVERLAY_CONDITION, type PeerStatus } from './overlay';
export { overlaySection, defaultOverlaySection, DEFAULT_ROUTE_PROTOCOL, DEFAULT_VNI, DEFAULT_VXLAN_PORT, type OverlaySection } from './config';
export {
  registerBackend,
  getBackend,
  backendNames,
  podMtu,
  routeMetric,
  hostGwBackend,
  vxlanBackend,
  wantsV6Device,
  VXLAN_OVERHEAD_V4,
  VXLAN_OVERHEAD_V6,
  type Backend,
  type BackendContext,
  type Network,
  type Lease,
  type PeerPlan,
  type PeerMode,
} from './backend';
export { ANNOTATIONS, vtepMacFor, collectPeers, parsePeer, isDirect, nodePublicIp, nodePublicIp6, nodeIpOfFamily, preferFamily, type NodeIpOptions, type PeerInfo, type PeerProblem, type PeerRules } from './peers';
export { diff, applyChangeSet, indexState, keyPlan, stateOfPlans, type ChangeSet, type KernelState, type IndexedState, type KeyedPlan, type ApplyOutcome } from './reconcile';
export { renderEgress, renderSubnetEnv } from './egress';
export { NodeCidrAllocator, planAllocations, SubnetPool, ALLOCATOR_LEASE_NAME, RELEASED_ANNOTATION, type NodeCidrAllocatorOptions } from './node-cidr-allocator';
export { applyTxChecksum, decideTxChecksum, kernelVersion, type TxChecksumMode, type TxChecksumState } from './offload';
