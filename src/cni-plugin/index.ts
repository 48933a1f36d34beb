/** Public API of the CNI plugin module (the daemon mounts the fast path from here). */
export { runCni, type CniOutput, type EnvMap } from './plugin';
export type { CniDeps, ExecResult } from './deps';
export { createRealDeps, type RealDeps } from './deps-real';
export { createCniFastPathHandler, createCniFastPathServer, type CniHttpHandler } from './fastpath/handler';
export {
  FAST_PATH_ROUTE,
  EXIT_CODE_HEADER,
  DEFAULT_CONTROL_SOCKET,
  encodeRequest,
  decodeRequest,
  type CniRequest,
} from './fastpath/protocol';
export { CniErrorCode, CniError } from './errors';
export { SUPPORTED_VERSIONS, LATEST_VERSION } from './version';
export { reattachPods, type ReattachReport } from './reattach';
export { ensureBridge, ensureGatewayAddress } from './steps';
export { hostVethName } from './names';
export { decodeJson, parseNetConf, type NetConf } from './config';
export { DiskIpamStore } from './ipam/disk-store';
export {
  CNI_CONF_NAME,
  FALLBACK_FILE,
  FallbackReader,
  parseShimConf,
  renderShimConf,
  recordFallbackFromEnv,
  type FallbackRecord,
  type FallbackSummary,
} from './fallback';
