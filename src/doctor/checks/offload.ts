/**
 * TX checksum offload on the VXLAN device. Before Linux 5.7 a VXLAN packet that was SNATed
 * (a Service reached through a NodePort or masquerade) could leave with a bad UDP checksum when
 * tx-checksum offload was on, and the peer dropped it: the "63-second delay" flannel and Calico
 * users met (kubernetes/kubernetes#88986). flannel's fix turns offload off on flannel.1.
 */
import { componentStatus, finder, type Check } from '../types';

const f = finder('checksum-offload');

/** "5.4.0-100-generic" → [5, 4]. */
export function kernelVersion(release: string): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(release);
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

export const checksumOffload: Check = {
  id: 'checksum-offload',
  title: 'VXLAN checksum offload',
  async run(env) {
    const ov = componentStatus(env, 'overlay');
    const dev = typeof ov?.device === 'string' && ov.device ? ov.device : undefined;
    if (env.status?.config.backend !== 'vxlan' || !dev) return [f.ok('vxlan device', 'none (backend is not vxlan): nothing to check')];
    const r = await env.run(['ethtool', '-k', dev]);
    if (r.code === 127) return [f.warn(dev, 'ethtool is not installed, so TX checksum offload cannot be read', 'apt-get install ethtool')];
    if (r.code !== 0) return [f.warn(dev, `ethtool -k ${dev} failed: ${r.stderr.trim()}`, `check the device exists: ip -d link show ${dev}`)];
    const m = /^tx-checksumming:\s*(on|off)/m.exec(r.stdout);
    const on = m?.[1] === 'on';
    const [maj, min] = kernelVersion(env.kernelRelease);
    const buggy = maj < 5 || (maj === 5 && min < 7);
    if (!on) return [f.ok(dev, 'tx-checksumming off')];
    if (buggy) return [f.warn(dev, `tx-checksumming on with kernel ${env.kernelRelease} (< 5.7): SNATed VXLAN packets may leave with a bad checksum and be dropped`, `ethtool -K ${dev} tx-checksum-ip-generic off`)];
    return [f.ok(dev, `tx-checksumming on; kernel ${env.kernelRelease} computes the outer checksum correctly after SNAT`)];
  },
};
