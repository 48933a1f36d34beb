/**
 * The pod MTU against the underlay: with vxlan every packet carries 50 bytes of headers, so a
 * pod MTU above underlay - 50 is silently fragmented or black-holed (large TCP transfers hang);
 * one far below it only wastes bandwidth.
 */
import { cniFiles, CNI_TYPE, isOurs } from './cni-files';
import { componentStatus, finder, type Check } from '../types';

const f = finder('mtu');
const VXLAN_OVERHEAD = 50;

export const mtu: Check = {
  id: 'mtu',
  title: 'MTU',
  async run(env) {
    const ov = componentStatus(env, 'overlay');
    // The overlay reports its underlay as "<dev> <cidr> mtu <n>"; without it, the default route's device.
    let dev = typeof ov?.underlay === 'string' ? ov.underlay.split(' ')[0] : undefined;
    if (!dev) {
      const routes = await env.kernel.net.listRoutes({ family: 4 }).catch(() => []);
      dev = routes.find((r) => String(r.dst) === '0.0.0.0/0')?.dev;
    }
    if (!dev) return [f.warn('underlay', 'no underlay device found (no overlay status, no default route)', 'give the node a default route, or check the overlay component (podwire status)')];
    const link = await env.kernel.net.getLink(dev).catch(() => undefined);
    if (!link) return [f.warn(`underlay ${dev}`, 'device not found', 'check the node addresses podwired uses (podwire status)')];
    const underlay = link.mtu;
    const files = (await cniFiles(env)) ?? [];
    const ours = files.find(isOurs);
    const plugin = ours?.plugins.find((p) => p.type === CNI_TYPE);
    const podMtu = typeof plugin?.mtu === 'number' ? plugin.mtu : undefined;
    if (podMtu === undefined) return [f.warn('pod MTU', `unknown (no mtu in the CNI config); underlay ${dev} mtu ${underlay}`, 'let podwired write the CNI config (cni-config check)')];
    const backend = env.status?.config.backend;
    const encap = backend === 'vxlan' ? VXLAN_OVERHEAD : 0;
    const max = underlay - encap;
    const subject = `pod MTU ${podMtu} (underlay ${dev} ${underlay}${encap ? `, vxlan -${encap}` : ''})`;
    if (podMtu > max) return [f.fail(subject, `pods send packets larger than the underlay carries${encap ? ' once encapsulated' : ''}: large transfers across nodes hang`, `set the pod MTU to ${max} (podwired derives it from the underlay: remove any mtu override and restart it)`)];
    if (podMtu < max - 100) return [f.warn(subject, `${max - podMtu} bytes below what the underlay allows`, `raise the pod MTU to ${max} for throughput`)];
    return [f.ok(subject, `fits (largest pod packet ${podMtu + encap} <= ${underlay})`)];
  },
};
