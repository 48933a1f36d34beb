/**
 * A component's own configuration section: its options (flag, env, file key, default,
 * help) and one `build` that validates them together, so validation never depends on
 * the order of a table. The daemon's loader merges every section the same way as the
 * daemon-wide options (flags > environment > config file > defaults) and hands each
 * component its built section in `ComponentContext.section`.
 *
 * In the config file a section is a mapping under its name, with dotted keys nested:
 *   proxy:
 *     mode: nftables
 *     minSyncPeriod: 1s
 *   overlay:
 *     vxlan: { vni: 1, port: 8472 }
 */
import type { DaemonConfig } from './config';

export type SectionOptionKind = 'string' | 'list' | 'int' | 'duration' | 'bool';

export interface SectionOption {
  /** Dotted key inside the section, e.g. `vxlan.vni` (file: `overlay: { vxlan: { vni } }`). */
  key: string;
  /** Flag without the dashes, e.g. `vxlan-vni`. Unique across the daemon. */
  flag: string;
  /** Environment variable, e.g. `PODWIRE_VXLAN_VNI`. */
  env: string;
  kind: SectionOptionKind;
  default: unknown;
  help: string;
}

export interface ConfigSection<S> {
  /** The section's name: its key in the config file and the prefix of its fields in errors. */
  name: string;
  options: readonly SectionOption[];
  /**
   * Build the typed section from every option's value (by `key`, already of its kind).
   * Throws InvalidInputError naming `<name>.<key>` and the value.
   */
  build(values: Readonly<Record<string, unknown>>, config: DaemonConfig): S;
}

export function defineSection<S>(section: ConfigSection<S>): ConfigSection<S> {
  return section;
}
