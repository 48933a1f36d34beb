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
    // Peers matter only to the overlay; without it, watch just this node's own Node.
    nodeScope: config.enable.includes('overlay') ? 'cluster' : 'own',
    ...(config.kubeconfig ? { kubeconfigPath: config.kubeconfig } : { inCluster: true }),
  });
}
