/**
 * The CNI_* environment: which variables each verb needs, and validation of the two
 * that become names on the host (the container ID is part of file contents and of
 * the host veth name; the interface name becomes a link name).
 */
import { CniError, CniErrorCode } from './errors';

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'GC' | 'STATUS';
const COMMANDS: readonly CniCommand[] = ['ADD', 'DEL', 'CHECK', 'VERSION', 'GC', 'STATUS'];

export interface CniEnv {
  command: CniCommand;
  containerId: string;
  netns: string;
  ifname: string;
  args: Map<string, string>;
  path: string[];
}

const REQUIRED: Record<CniCommand, readonly string[]> = {
  ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
  CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
  DEL: ['CNI_CONTAINERID', 'CNI_IFNAME', 'CNI_PATH'],
  GC: ['CNI_PATH'],
  STATUS: ['CNI_PATH'],
  VERSION: [],
};

/** libcni's rule: starts alphanumeric, then alphanumerics, `_`, `.`, `-`. */
const CONTAINER_ID = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export function validateContainerId(id: string): void {
  if (!CONTAINER_ID.test(id) || id.length > 1024) {
    throw new CniError(
      CniErrorCode.InvalidEnv,
      `invalid CNI_CONTAINERID=${JSON.stringify(id)}: must match ${CONTAINER_ID.source} (at most 1024 characters)`,
    );
  }
}

/** Linux IFNAMSIZ-1, no `/`, `:` or whitespace, not `.`/`..` (libcni ValidateInterfaceName). */
export function validateInterfaceName(name: string, field = 'CNI_IFNAME'): void {
  let reason: string | undefined;
  if (name.length === 0) reason = 'empty';
  else if (Buffer.byteLength(name) > 15) reason = 'longer than 15 bytes';
  else if (name === '.' || name === '..') reason = 'not a valid name';
  else if (/[/:\s]/.test(name)) reason = 'contains "/", ":" or whitespace';
  if (reason !== undefined) {
    throw new CniError(CniErrorCode.InvalidEnv, `invalid ${field}=${JSON.stringify(name)}: ${reason}`);
  }
}

export function parseEnv(env: Readonly<Record<string, string | undefined>>): CniEnv {
  const raw = env.CNI_COMMAND ?? '';
  if (!(COMMANDS as readonly string[]).includes(raw)) {
    throw new CniError(
      CniErrorCode.InvalidEnv,
      raw === '' ? 'required env variable CNI_COMMAND is missing' : `unknown CNI_COMMAND=${JSON.stringify(raw)}`,
      `expected one of ${COMMANDS.join(', ')}`,
    );
  }
  const command = raw as CniCommand;
  const missing = REQUIRED[command].filter((k) => (env[k] ?? '') === '');
  if (missing.length > 0) {
    throw new CniError(CniErrorCode.InvalidEnv, `required env variables [${missing.join(',')}] missing`);
  }
  const containerId = env.CNI_CONTAINERID ?? '';
  const ifname = env.CNI_IFNAME ?? '';
  if (containerId !== '') validateContainerId(containerId);
  if (ifname !== '') validateInterfaceName(ifname);
  return {
    command,
    containerId,
    ifname,
    netns: env.CNI_NETNS ?? '',
    args: parseArgs(env.CNI_ARGS ?? ''),
    path: (env.CNI_PATH ?? '').split(':').filter((p) => p !== ''),
  };
}

/** `K=V;K2=V2` (CNI_ARGS). A pair without `=` is invalid env. */
export function parseArgs(text: string): Map<string, string> {
  const out = new Map<string, string>();
  if (text === '') return out;
  for (const pair of text.split(';')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new CniError(CniErrorCode.InvalidEnv, `invalid CNI_ARGS pair ${JSON.stringify(pair)}: expected KEY=VALUE`);
    out.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  return out;
}
