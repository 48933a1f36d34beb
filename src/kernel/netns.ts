/**
 * THE one choke point for network-namespace switches (DESIGN.md §4.2), like the
 * reference plugins' ns.WithNetNSPath: everything that runs "inside" a netns either
 * gets an fd from here (IFLA_NET_NS_FD, the native addon's setns thread) or spawns a
 * process through `runInNetns` (`nsenter --net=PATH argv...`, never a shell).
 * The main thread never calls setns.
 */
// node:child_process is required where used: it loads net, dgram and the stream machinery,
// milliseconds of every in-process CNI plugin start that never spawns anything.
import { accessSync, closeSync, constants as fsConstants, openSync, promises as fs } from 'node:fs';
import { basename } from 'node:path';
import { CommandError, InvalidInputError, NotFoundError, errnoCode } from '../common/errors';
import type { NetnsRef } from './types';

export const NETNS_RUN_DIR = '/run/netns';
const NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;

/** `pwk-a` -> /run/netns/pwk-a; an absolute path is used as is. */
export function netnsRef(nameOrPath: string): NetnsRef {
  if (typeof nameOrPath !== 'string' || nameOrPath === '') {
    throw new InvalidInputError('netns', nameOrPath, 'expected a netns name or an absolute path');
  }
  if (nameOrPath.startsWith('/')) {
    if (nameOrPath.includes('\0')) throw new InvalidInputError('netns', nameOrPath, 'contains NUL');
    return { path: nameOrPath };
  }
  validateNetnsName(nameOrPath);
  return { path: `${NETNS_RUN_DIR}/${nameOrPath}` };
}

function validateNetnsName(name: string): void {
  if (!NAME_RE.test(name) || name === '.' || name === '..') {
    throw new InvalidInputError('netns', name, 'a netns name is 1-64 of [A-Za-z0-9_.-] and not "." or ".."');
  }
}

/** True when the path exists and is a namespace handle we can open. */
export async function netnsExists(netns: NetnsRef): Promise<boolean> {
  // Synchronous on purpose: an access(2) on /run/netns costs microseconds, a thread-pool
  // round trip (queue, wake a pool thread, wake the loop back) several times more CPU.
  try {
    accessSync(netns.path, fsConstants.R_OK);
    return true;
  } catch {
    return false;
  }
}

/** Throws NotFoundError('netns', path) if the netns handle is missing. */
export async function assertNetns(netns: NetnsRef): Promise<void> {
  if (!(await netnsExists(netns))) throw new NotFoundError('netns', netns.path);
}

/**
 * An open fd on the netns handle, for IFLA_NET_NS_FD. The caller must `close()` it
 * once the kernel has answered (the kernel takes its own reference).
 */
export async function openNetnsFd(netns: NetnsRef): Promise<fs.FileHandle> {
  try {
    return await fs.open(netns.path, 'r');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') throw new NotFoundError('netns', netns.path, err);
    throw err;
  }
}

/**
 * openNetnsFd without the thread pool: open(2) and close(2) of a netns handle cost
 * microseconds, while two pool round trips cost ~0.2 ms of CPU each on the CNI ADD path.
 * `close()` is idempotent.
 */
export function openNetnsFdSync(netns: NetnsRef): { fd: number; close(): Promise<void> } {
  let fd: number;
  try {
    fd = openSync(netns.path, 'r');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') throw new NotFoundError('netns', netns.path, err);
    throw err;
  }
  let open = true;
  return {
    fd,
    close: async () => {
      if (!open) return;
      open = false;
      closeSync(fd);
    },
  };
}

/** argv that runs `argv` inside `netns` (or in our own netns when undefined). */
export function nsenterArgv(netns: NetnsRef | undefined, argv: readonly string[]): string[] {
  return netns === undefined ? [...argv] : ['nsenter', `--net=${netns.path}`, '--', ...argv];
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  input?: string;
  /** Kill the command after this long (default 10 minutes). */
  timeoutMs?: number;
}

/**
 * Runs a command inside a netns (no shell; argv as given). Rejects with CommandError
 * (exit code + stderr) when it fails, NotFoundError when the netns does not exist.
 */
export async function runInNetns(netns: NetnsRef | undefined, argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  if (argv.length === 0) throw new InvalidInputError('argv', argv, 'empty command');
  if (netns !== undefined) await assertNetns(netns);
  const full = nsenterArgv(netns, argv);
  return runCommand(full, options, argv.join(' '));
}

export function runCommand(argv: readonly string[], options: RunOptions = {}, label = argv.join(' ')): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const child = (require('node:child_process') as typeof import('node:child_process')).spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], timeout: options.timeoutMs ?? 600_000 });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => reject(new CommandError(label, null, String(e))));
    child.on('close', (code) => {
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      if (code === 0) resolve({ stdout, stderr });
      else reject(new CommandError(label, code, stderr));
    });
    child.stdin.on('error', () => undefined); // the command may exit before reading all input
    child.stdin.end(options.input ?? '');
  });
}

/** `ip netns add NAME` (lab and tests). Fails if it exists. */
export async function createNetns(name: string): Promise<NetnsRef> {
  validateNetnsName(name);
  await runCommand(['ip', 'netns', 'add', name]);
  return netnsRef(name);
}

/** `ip netns del NAME`; succeeds if it is already gone. */
export async function deleteNetns(nameOrRef: string | NetnsRef): Promise<void> {
  const name = typeof nameOrRef === 'string' ? nameOrRef : basename(nameOrRef.path);
  validateNetnsName(name);
  if (!(await netnsExists(netnsRef(name)))) return;
  await runCommand(['ip', 'netns', 'del', name]);
}
