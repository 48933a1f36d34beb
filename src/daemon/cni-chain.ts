/**
 * Which plugins the installed conflist chains after podwire, and at which cniVersion.
 *
 * A runtime hands the list's `cniVersion` to every plugin in it, and a plugin that does not
 * support it fails the whole ADD ("incompatible CNI versions"). Debian's portmap 1.1.1, for
 * one, stops at 1.0.0. So the version is the highest one that podwire and every chained plugin
 * all support, each plugin asked with the CNI VERSION verb; and a chained plugin that is not in
 * the CNI bin dir is left out of the list, since a missing binary would fail every pod.
 */
import { execFile } from 'node:child_process';
import { access, constants, stat } from 'node:fs/promises';
import path from 'node:path';
import { compareVersions, SUPPORTED_VERSIONS } from '../cni-plugin/version';

/** Plugins chained after podwire when they are installed: portmap gives hostPorts. */
export const CHAINED_PLUGINS = ['portmap'] as const;
export type ChainedPlugin = (typeof CHAINED_PLUGINS)[number];

export interface CniChain {
  cniVersion: string;
  plugins: ChainedPlugin[];
  /** Chained plugins left out, with the reason, for logs and status. */
  omitted: { plugin: ChainedPlugin; reason: string }[];
}

export type VersionProbe = (binary: string) => Promise<string[]>;

/** Runs `binary` with CNI_COMMAND=VERSION and returns its supportedVersions. */
export const probeSupportedVersions: VersionProbe = (binary) =>
  new Promise((resolve, reject) => {
    const child = execFile(
      binary,
      [],
      { env: { CNI_COMMAND: 'VERSION', PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' }, timeout: 10_000, maxBuffer: 64 * 1024 },
      (err, stdout) => {
        if (err) return reject(new Error(`${binary} VERSION failed: ${err.message}`));
        try {
          const answer = JSON.parse(stdout) as { supportedVersions?: unknown };
          const versions = answer.supportedVersions;
          if (!Array.isArray(versions) || !versions.every((v) => typeof v === 'string')) {
            return reject(new Error(`${binary} VERSION: no supportedVersions list in ${stdout.slice(0, 200)}`));
          }
          resolve(versions as string[]);
        } catch {
          reject(new Error(`${binary} VERSION: not JSON: ${stdout.slice(0, 200)}`));
        }
      },
    );
    // A plugin may answer VERSION without reading stdin and exit first: EPIPE here is no failure.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end('{"cniVersion":"0.4.0"}');
  });

/** The highest version in `ours` that every list in `theirs` contains. */
export function highestCommonVersion(ours: readonly string[], theirs: readonly (readonly string[])[]): string | undefined {
  const common = ours.filter((v) => theirs.every((list) => list.includes(v)));
  return common.sort(compareVersions).at(-1);
}

/** Decides the chain from what is installed in `binDir`; caches probe answers by path and mtime. */
export class CniChainResolver {
  private readonly cache = new Map<string, { mtimeMs: number; versions: string[] }>();

  constructor(private readonly probe: VersionProbe = probeSupportedVersions) {}

  async resolve(binDir: string): Promise<CniChain> {
    const ours = [...SUPPORTED_VERSIONS];
    const plugins: ChainedPlugin[] = [];
    const omitted: CniChain['omitted'] = [];
    const theirs: string[][] = [];
    for (const plugin of CHAINED_PLUGINS) {
      const binary = path.join(binDir, plugin);
      try {
        await access(binary, constants.X_OK);
      } catch {
        omitted.push({ plugin, reason: `${binary} is not installed` });
        continue;
      }
      let versions: string[];
      try {
        versions = await this.versionsOf(binary);
      } catch (err) {
        omitted.push({ plugin, reason: (err as Error).message });
        continue;
      }
      if (highestCommonVersion(ours, [...theirs, versions]) === undefined) {
        omitted.push({ plugin, reason: `${binary} supports none of ${ours.join(', ')} (it supports ${versions.join(', ')})` });
        continue;
      }
      plugins.push(plugin);
      theirs.push(versions);
    }
    return { cniVersion: highestCommonVersion(ours, theirs)!, plugins, omitted };
  }

  private async versionsOf(binary: string): Promise<string[]> {
    const { mtimeMs } = await stat(binary);
    const hit = this.cache.get(binary);
    if (hit && hit.mtimeMs === mtimeMs) return hit.versions;
    const versions = await this.probe(binary);
    this.cache.set(binary, { mtimeMs, versions });
    return versions;
  }
}
