/** Builds the state source the configuration asks for. */
import type { Logger } from '../common/log';
import { createKubernetesSource, createManifestSource, type StateSource } from '../k8s';
import type { DaemonConfig } from './config';

export function createSourceFromConfig(config: DaemonConfig, logger: Logger): StateSource {
  const log = logger.child({ component: 'source' });
  if (config.manifests) return createManifestSource({ dir: config.manifests, logger: log });
  return createKubernetesSource({
    nodeName: config.nodeName,
    logger: log,
    ...(config.kubeconfig ? { kubeconfigPath: config.kubeconfig } : { inCluster: true }),
  });
}
