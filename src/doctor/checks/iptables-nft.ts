/**
 * iptables-nft's restore on Debian 12 (iptables 1.8.9) is quadratic in the chains of one
 * input (minutes for a kube-proxy-sized restore at 10,000 Services). podwired writes a large
 * sync there in restores of NFT_CHUNK_SERVICES Services (proxy/iptables/applier.ts), so this
 * is reported, not warned about. Only matters when proxyMode is iptables.
 */
import { finder, type Check } from '../types';
import { NFT_CHUNK_SERVICES } from '../../proxy/iptables/applier';

const f = finder('iptables-nft');

export const iptablesNft: Check = {
  id: 'iptables-nft',
  title: 'iptables-nft restore cost',
  async run(env) {
    const mode = env.status?.config.proxyMode;
    if (mode !== 'iptables') return [f.ok('iptables', `proxy mode is ${mode ?? 'unknown'}: iptables-restore cost does not apply`)];
    const v = await env.run(['iptables', '--version']);
    const text = v.stdout.trim();
    const nft = /nf_tables/.test(text);
    const ver = /v(\d+\.\d+\.\d+)/.exec(text)?.[1] ?? '?';
    const os = (await env.readFile('/etc/os-release')) ?? '';
    const debian12 = /^ID=debian$/m.test(os) && /^VERSION_ID="?12"?$/m.test(os);
    if (!nft) return [f.ok('iptables', `${text || 'iptables'}: the legacy backend restores in linear time`)];
    // podwired's `auto` iptables backend picks the legacy binaries whenever they are installed.
    const legacy = await env.run(['iptables-legacy-restore', '--version']);
    if (legacy.code === 0) return [f.ok('iptables', `${text} is the system default, but iptables-legacy is installed and podwired's auto backend uses it (linear restore)`)];
    if (debian12 || ver === '1.8.9') return [f.ok('iptables', `${text} on ${debian12 ? 'Debian 12' : 'this system'}: one iptables-nft restore is quadratic in its chains, so podwired writes a large sync in restores of ${NFT_CHUNK_SERVICES} Services`)];
    return [f.ok('iptables', `${text}`)];
  },
};
