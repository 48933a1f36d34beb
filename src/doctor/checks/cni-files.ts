/** The CNI config directory as a container runtime reads it: the lexically first config file wins. */
import type { DoctorEnv } from '../types';

export const CNI_TYPE = 'podwire';

export interface CniFile {
  name: string;
  /** Parsed JSON, or the parse error. */
  json: Record<string, unknown> | undefined;
  error: string | undefined;
  /** The plugin list (a .conf file is one plugin). */
  plugins: Record<string, unknown>[];
}

/** Config files in runtime order (containerd/CRI-O: *.conf, *.conflist, *.json sorted by name), undefined if the dir is missing. */
export async function cniFiles(env: DoctorEnv): Promise<CniFile[] | undefined> {
  const names = await env.listDir(env.cniConfDir);
  if (!names) return undefined;
  const out: CniFile[] = [];
  for (const name of names.filter((n) => /\.(conf|conflist|json)$/.test(n)).sort()) {
    const text = (await env.readFile(`${env.cniConfDir}/${name}`)) ?? '';
    let json: Record<string, unknown> | undefined;
    let error: string | undefined;
    try {
      const v = JSON.parse(text) as unknown;
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not a JSON object');
      json = v as Record<string, unknown>;
    } catch (err) {
      error = err instanceof Error ? err.message : String(err);
    }
    const plugins = json ? (Array.isArray(json.plugins) ? (json.plugins as Record<string, unknown>[]) : name.endsWith('.conflist') ? [] : [json]) : [];
    out.push({ name, json, error, plugins });
  }
  return out;
}

export function isOurs(file: CniFile): boolean {
  return file.plugins.some((p) => p && p.type === CNI_TYPE);
}
