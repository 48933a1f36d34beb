/**
 * Kernel features: which of the modules and tools Podwire's data paths need are present,
 * and so which proxy modes and backends this node can run. A missing feature is FAIL only
 * when the configured backend or proxy mode needs it.
 */
import { finder, type Check, type DoctorEnv, type Finding } from '../types';

const f = finder('kernel-features');

interface Feature {
  name: string;
  /** Kernel module names, any of which provides it (loaded, built in, or loadable). */
  modules: string[];
  /** A command that works only when the feature is usable from userspace. */
  probe?: readonly string[];
  /** What needs it, in words, and which config values. */
  neededBy: { what: string; backend?: string[]; proxyMode?: string[]; always?: boolean };
  load: string;
}

const FEATURES: readonly Feature[] = [
  { name: 'nftables', modules: ['nf_tables'], probe: ['nft', 'list', 'tables'], neededBy: { what: 'proxy mode nftables, nftables egress masquerade', proxyMode: ['nftables'] }, load: 'modprobe nf_tables; apt-get install nftables' },
  { name: 'iptables', modules: ['ip_tables', 'nf_tables'], probe: ['iptables', '-t', 'filter', '-S', 'INPUT'], neededBy: { what: 'proxy mode iptables', proxyMode: ['iptables'] }, load: 'apt-get install iptables (iptables-legacy needs modprobe ip_tables)' },
  { name: 'ipset', modules: ['ip_set'], probe: ['ipset', 'list', '-n'], neededBy: { what: 'proxy mode ipvs (kube-proxy style sets)', proxyMode: ['ipvs'] }, load: 'modprobe ip_set; apt-get install ipset' },
  { name: 'conntrack', modules: ['nf_conntrack'], neededBy: { what: 'every proxy mode (DNAT, masquerade)', always: true }, load: 'modprobe nf_conntrack' },
  { name: 'bridge', modules: ['bridge'], neededBy: { what: 'the CNI plugin (pods sit on bridge pw0)', always: true }, load: 'modprobe bridge' },
  { name: 'vxlan', modules: ['vxlan'], neededBy: { what: 'backend vxlan (and DirectRouting)', backend: ['vxlan'] }, load: 'modprobe vxlan' },
  { name: 'ipvs', modules: ['ip_vs'], neededBy: { what: 'proxy mode ipvs', proxyMode: ['ipvs'] }, load: 'modprobe ip_vs ip_vs_rr; or use proxyMode nftables' },
  { name: 'wireguard', modules: ['wireguard'], neededBy: { what: 'encrypted backends (none in Podwire yet)' }, load: 'modprobe wireguard (kernel >= 5.6)' },
];

export async function moduleAvailable(env: DoctorEnv, name: string): Promise<boolean> {
  if (await env.exists(`/sys/module/${name}`)) return true;
  const dir = `/lib/modules/${env.kernelRelease}`;
  // modules.dep paths end in /<name>.ko[.xz|.zst|.gz]; module names use _ where files may use -.
  const re = new RegExp(`/${name.replace(/_/g, '[_-]')}\\.ko(\\.[a-z]+)?[:\\s]`, 'm');
  for (const file of ['modules.builtin', 'modules.dep']) {
    const text = await env.readFile(`${dir}/${file}`);
    if (text !== undefined && re.test(text + '\n')) return true;
  }
  return false;
}

async function present(env: DoctorEnv, feat: Feature): Promise<{ ok: boolean; why: string }> {
  let mod = false;
  for (const m of feat.modules) if (await moduleAvailable(env, m)) mod = true;
  if (feat.probe) {
    const r = await env.run(feat.probe);
    if (r.code === 0) return { ok: true, why: `${feat.probe.join(' ')} works` };
    if (r.code === 127) return { ok: false, why: `${feat.probe[0]} is not installed` };
    return { ok: false, why: `${feat.probe.join(' ')} failed: ${(r.stderr || r.stdout).trim().split('\n')[0] ?? ''}` };
  }
  return mod ? { ok: true, why: `module ${feat.modules.join('/')} available` } : { ok: false, why: `module ${feat.modules.join('/')} not loaded, built in or installed for ${env.kernelRelease}` };
}

export const kernelFeatures: Check = {
  id: 'kernel-features',
  title: 'kernel features',
  async run(env) {
    const out: Finding[] = [];
    const backend = env.status?.config.backend;
    const proxyMode = env.status?.config.proxyMode;
    const have = new Map<string, boolean>();
    for (const feat of FEATURES) {
      const p = await present(env, feat);
      have.set(feat.name, p.ok);
      const needed = feat.neededBy.always || (backend !== undefined && feat.neededBy.backend?.includes(backend)) || (proxyMode !== undefined && feat.neededBy.proxyMode?.includes(proxyMode));
      if (p.ok) out.push(f.ok(feat.name, `present (${p.why}): ${feat.neededBy.what}`));
      else if (needed) out.push(f.fail(feat.name, `missing (${p.why}), and this node's config needs it: ${feat.neededBy.what}`, feat.load));
      else out.push(f.ok(feat.name, `absent (${p.why}), not needed by this config: no ${feat.neededBy.what}`));
    }
    if (have.get('iptables')) {
      // Both backends keep separate rulesets; podwired's `auto` picks legacy when it is installed.
      const legacy = (await env.run(['iptables-legacy', '-t', 'filter', '-S', 'INPUT'])).code === 0;
      const nft = (await env.run(['iptables-nft', '-t', 'filter', '-S', 'INPUT'])).code === 0;
      const i = out.findIndex((x) => x.subject === 'iptables');
      const which = `backends: legacy ${legacy ? 'yes' : 'no'}, nft ${nft ? 'yes' : 'no'}; podwired's auto uses ${legacy ? 'legacy' : nft ? 'nft' : 'the plain iptables binaries'}`;
      out[i] = { ...out[i]!, detail: `${out[i]!.detail} (${which})` };
    }
    const modes = ['nftables', 'iptables', 'ipvs'].filter((m) => have.get(m) && have.get('conntrack') && (m !== 'ipvs' || have.get('ipset')));
    const backends = ['host-gw', ...(have.get('vxlan') ? ['vxlan', 'vxlan+DirectRouting'] : [])];
    out.push(f.ok('allows', `proxy modes: ${modes.join(', ') || 'none'}; backends: ${backends.join(', ')}`));
    return out;
  },
};
