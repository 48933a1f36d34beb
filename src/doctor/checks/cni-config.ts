/** The CNI config: present, valid, and the first in its directory (the only one a runtime uses). */
import { cniFiles, CNI_TYPE, isOurs } from './cni-files';
import { finder, type Check, type Finding } from '../types';

const f = finder('cni-config');

export const cniConfig: Check = {
  id: 'cni-config',
  title: 'CNI config',
  async run(env) {
    const files = await cniFiles(env);
    const dir = env.cniConfDir;
    if (!files) return [f.fail(dir, 'the CNI config directory does not exist: the kubelet reports NetworkPluginNotReady and no pod starts', `start podwired (it writes ${dir}/10-podwire.conflist once the Node has a podCIDR), or pass --cni-conf-dir`)];
    const ours = files.find(isOurs);
    if (!ours) {
      const others = files.map((x) => x.name).join(', ');
      return [f.fail(`${dir}`, `no config with a "${CNI_TYPE}" plugin${others ? ` (found: ${others})` : ' (directory empty)'}`, 'check podwired is running and the Node has spec.podCIDRs (podwire status); its log says why it did not write the conflist')];
    }
    const out: Finding[] = [];
    const path = `${dir}/${ours.name}`;
    const problems: string[] = [];
    if (ours.error) problems.push(`not JSON: ${ours.error}`);
    const j = ours.json ?? {};
    if (typeof j.cniVersion !== 'string') problems.push('no cniVersion');
    if (typeof j.name !== 'string') problems.push('no name');
    const plugin = ours.plugins.find((p) => p.type === CNI_TYPE) ?? {};
    const ipam = plugin.ipam as { type?: unknown; ranges?: unknown } | undefined;
    if (!ipam || typeof ipam.type !== 'string') problems.push('the podwire plugin has no ipam');
    else if (!Array.isArray(ipam.ranges) || ipam.ranges.length === 0) problems.push('ipam has no ranges (no pod subnet)');
    if (problems.length) out.push(f.fail(path, `invalid: ${problems.join('; ')}`, 'delete the file; podwired rewrites it on its next sync'));
    else out.push(f.ok(path, `valid (cniVersion ${String(j.cniVersion)}, ${ours.plugins.map((p) => String(p.type)).join(' → ')})`));
    const before = files.slice(0, files.indexOf(ours));
    if (before.length > 0) {
      out.push(f.fail(`${dir}/${before[0]!.name}`, `sorts before ${ours.name}, so the runtime uses it instead of Podwire (${before.map((b) => b.name).join(', ')})`, `move ${before.map((b) => `${dir}/${b.name}`).join(' ')} out of ${dir} (a leftover of the previous CNI, e.g. 10-flannel.conflist)`));
    } else out.push(f.ok(`${dir}`, `${ours.name} is the first config file, the one the runtime uses`));
    return out;
  },
};
