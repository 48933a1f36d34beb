/**
 * The overlay's configuration section (`overlay:` in the config file). The daemon-wide
 * `backend`, `mtu`, `clusterCIDR` and `serviceCIDR` stay in DaemonConfig; this section holds
 * what only the overlay needs.
 */
import path from 'node:path';
import { InvalidInputError } from '../common/errors';
import type { DaemonConfig } from '../daemon/config';
import { defineSection, type ConfigSection } from '../daemon/config-section';
import { TX_CHECKSUM_MODES, type TxChecksumMode } from './offload';

/** rtm_protocol of every route the overlay programs (`ip route show proto 77`). */
export const DEFAULT_ROUTE_PROTOCOL = 77;
export const DEFAULT_VNI = 1;
/** Linux's and flannel's VXLAN port (not IANA's 4789), so a flannel node interoperates. */
export const DEFAULT_VXLAN_PORT = 8472;

export interface OverlaySection {
  vxlan: {
    vni: number;
    port: number;
    /** Device name; default `pw.<VNI>`. */
    device: string;
    /**
     * The IPv6 VXLAN device of a dual-stack node with an IPv6 node IP (flannel's
     * `flannel-v6.<VNI>`); default `pw-v6.<VNI>`.
     */
    deviceV6: string;
    /**
     * Run `deviceV6` at all (default true). false: the IPv6 pod CIDRs ride inside `device` over
     * the IPv4 underlay even with an IPv6 node IP, and no backend-v6-data is published, so peers
     * do the same toward this node (for an IPv6 underlay that blocks the VXLAN port).
     */
    ipv6Device: boolean;
    /** TX checksum offload on the device: auto (off only on a kernel < 5.7 with masquerade), on, off. */
    txChecksumOffload: TxChecksumMode;
  };
  /** vxlan: a peer on the same underlay subnet gets a direct route (flannel's DirectRouting). */
  directRouting: boolean;
  /** Masquerade pod traffic leaving the cluster CIDR. */
  masquerade: boolean;
  /** Where the egress rules live: our own nftables table (default), or our own iptables chains. */
  egressMode: 'nftables' | 'iptables';
  /** Name of our own nftables table (family inet). */
  nftTable: string;
  /** rtm_protocol that marks our routes. */
  routeProtocol: number;
  /** flannel's subnet.env for tools that read it; default `<dir of the control socket>/subnet.env`. */
  subnetFile: string;
  /** Publish flannel's annotations on our Node (a no-op recorder in manifest mode). */
  publishAnnotations: boolean;
}

function positiveInt(key: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new InvalidInputError(`overlay.${key}`, v, `must be an integer ${min}..${max}`);
  }
  return v;
}

export const overlaySection: ConfigSection<OverlaySection> = defineSection<OverlaySection>({
  name: 'overlay',
  options: [
    { key: 'vxlan.vni', flag: 'vxlan-vni', env: 'PODWIRE_VXLAN_VNI', kind: 'int', default: DEFAULT_VNI, help: 'VXLAN network identifier (flannel: 1)' },
    { key: 'vxlan.port', flag: 'vxlan-port', env: 'PODWIRE_VXLAN_PORT', kind: 'int', default: DEFAULT_VXLAN_PORT, help: 'VXLAN UDP port (flannel and Linux: 8472)' },
    { key: 'vxlan.device', flag: 'vxlan-device', env: 'PODWIRE_VXLAN_DEVICE', kind: 'string', default: '', help: 'VXLAN device name (default pw.<VNI>)' },
    { key: 'vxlan.deviceV6', flag: 'vxlan-device-v6', env: 'PODWIRE_VXLAN_DEVICE_V6', kind: 'string', default: '', help: 'the IPv6 VXLAN device of a dual-stack node with an IPv6 node IP (flannel-v6.<VNI> in flannel; default pw-v6.<VNI>)' },
    { key: 'vxlan.ipv6Device', flag: 'vxlan-ipv6-device', env: 'PODWIRE_VXLAN_IPV6_DEVICE', kind: 'bool', default: true, help: 'dual-stack: carry the IPv6 pod CIDRs over the IPv6 underlay in the IPv6 VXLAN device (flannel-v6.<VNI>); false: inside the IPv4 device, and no backend-v6-data is published (peers then do the same)' },
    { key: 'vxlan.txChecksumOffload', flag: 'vxlan-tx-checksum-offload', env: 'PODWIRE_VXLAN_TX_CHECKSUM_OFFLOAD', kind: 'string', default: 'auto', help: 'TX checksum offload on the VXLAN device: auto (off only on kernels < 5.7 with masquerade, where --random-fully corrupts offloaded checksums) | on | off' },
    { key: 'directRouting', flag: 'direct-routing', env: 'PODWIRE_DIRECT_ROUTING', kind: 'bool', default: false, help: 'vxlan: route peers on the same underlay subnet directly, without encapsulation' },
    { key: 'masquerade', flag: 'masquerade', env: 'PODWIRE_MASQUERADE', kind: 'bool', default: true, help: 'masquerade pod traffic that leaves the cluster CIDR' },
    { key: 'egressMode', flag: 'egress-mode', env: 'PODWIRE_EGRESS_MODE', kind: 'string', default: 'nftables', help: 'egress masquerade and forward rules: nftables (table inet podwire-overlay) | iptables (chains PODWIRE-OVL-*)' },
    { key: 'nftTable', flag: 'overlay-nft-table', env: 'PODWIRE_OVERLAY_NFT_TABLE', kind: 'string', default: 'podwire-overlay', help: 'our nftables table (family inet)' },
    { key: 'routeProtocol', flag: 'route-protocol', env: 'PODWIRE_ROUTE_PROTOCOL', kind: 'int', default: DEFAULT_ROUTE_PROTOCOL, help: 'rtm_protocol marking the overlay\'s routes (reconcile removes stale ones of this protocol only)' },
    { key: 'subnetFile', flag: 'subnet-file', env: 'PODWIRE_SUBNET_FILE', kind: 'string', default: '', help: 'flannel-style subnet.env (default: subnet.env next to the control socket)' },
    { key: 'publishAnnotations', flag: 'publish-annotations', env: 'PODWIRE_PUBLISH_ANNOTATIONS', kind: 'bool', default: true, help: 'publish flannel\'s backend annotations on this Node' },
  ],
  build(values: Readonly<Record<string, unknown>>, config: DaemonConfig): OverlaySection {
    const vni = positiveInt('vxlan.vni', values['vxlan.vni'] ?? DEFAULT_VNI, 1, 0xffffff);
    const port = positiveInt('vxlan.port', values['vxlan.port'] ?? DEFAULT_VXLAN_PORT, 1, 65535);
    const device = String(values['vxlan.device'] ?? '') || `pw.${vni}`;
    if (!/^[A-Za-z0-9_.-]{1,15}$/.test(device)) throw new InvalidInputError('overlay.vxlan.device', device, 'must be a Linux interface name (1..15 chars)');
    const deviceV6 = String(values['vxlan.deviceV6'] ?? '') || `pw-v6.${vni}`;
    if (!/^[A-Za-z0-9_.-]{1,15}$/.test(deviceV6)) throw new InvalidInputError('overlay.vxlan.deviceV6', deviceV6, 'must be a Linux interface name (1..15 chars)');
    if (deviceV6 === device) throw new InvalidInputError('overlay.vxlan.deviceV6', deviceV6, 'must differ from overlay.vxlan.device');
    const txChecksumOffload = String(values['vxlan.txChecksumOffload'] ?? 'auto') as TxChecksumMode;
    if (!TX_CHECKSUM_MODES.includes(txChecksumOffload)) throw new InvalidInputError('overlay.vxlan.txChecksumOffload', txChecksumOffload, 'must be auto, on or off');
    const routeProtocol = positiveInt('routeProtocol', values.routeProtocol ?? DEFAULT_ROUTE_PROTOCOL, 5, 254);
    const nftTable = String(values.nftTable ?? 'podwire-overlay');
    if (!/^[A-Za-z][A-Za-z0-9_-]{0,63}$/.test(nftTable)) throw new InvalidInputError('overlay.nftTable', nftTable, 'must be an nftables identifier');
    const egressMode = String(values.egressMode ?? 'nftables');
    if (egressMode !== 'nftables' && egressMode !== 'iptables') throw new InvalidInputError('overlay.egressMode', egressMode, 'must be nftables or iptables');
    let subnetFile = String(values.subnetFile ?? '');
    if (!subnetFile) subnetFile = path.join(path.dirname(config.controlSocket), 'subnet.env');
    if (!path.isAbsolute(subnetFile)) throw new InvalidInputError('overlay.subnetFile', subnetFile, 'must be an absolute path');
    return {
      vxlan: { vni, port, device, deviceV6, ipv6Device: values['vxlan.ipv6Device'] !== false, txChecksumOffload },
      directRouting: values.directRouting === true,
      masquerade: values.masquerade !== false,
      egressMode,
      nftTable,
      routeProtocol,
      subnetFile,
      publishAnnotations: values.publishAnnotations !== false,
    };
  },
});

/**
 * The section from its defaults and, when given, its environment variables (PODWIRE_VXLAN_VNI,
 * PODWIRE_DIRECT_ROUTING, ...). Used until the daemon's loader hands every component its
 * built `ctx.section` (flags > env > file > defaults); then this is only the defaults.
 */
export function defaultOverlaySection(config: DaemonConfig, env: Readonly<Record<string, string | undefined>> = {}): OverlaySection {
  const values: Record<string, unknown> = {};
  for (const o of overlaySection.options) {
    const raw = env[o.env];
    if (raw === undefined || raw === '') {
      values[o.key] = o.default;
      continue;
    }
    if (o.kind === 'int') {
      if (!/^\s*\d+\s*$/.test(raw)) throw new InvalidInputError(`overlay.${o.key}`, raw, `expected an integer (set by ${o.env})`);
      values[o.key] = Number(raw);
    } else if (o.kind === 'bool') {
      const v = raw.trim().toLowerCase();
      if (!['true', 'false', '1', '0', 'yes', 'no'].includes(v)) throw new InvalidInputError(`overlay.${o.key}`, raw, `expected true or false (set by ${o.env})`);
      values[o.key] = ['true', '1', 'yes'].includes(v);
    } else values[o.key] = raw.trim();
  }
  return overlaySection.build(values, config);
}
