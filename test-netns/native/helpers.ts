/**
 * Helpers for the native addon's integration tests: scratch namespaces named pwn-* that
 * are always deleted in teardown, and a root-namespace snapshot compared at the end.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import type { Test } from 'tap';
import type { NetnsRef } from '../../src/kernel/types';

export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export function ip(...args: string[]): string {
  return sh('ip', args);
}

/** Creates namespace `name` (deleting a leftover first) and deletes it in teardown. */
export function scratchNetns(t: Test, name: string): NetnsRef {
  if (!name.startsWith('pwn-')) throw new Error(`test namespaces must start with pwn-: ${name}`);
  deleteNetns(name);
  ip('netns', 'add', name);
  t.teardown(() => deleteNetns(name));
  ip('-n', name, 'link', 'set', 'lo', 'up');
  return { path: `/run/netns/${name}` };
}

export function deleteNetns(name: string): void {
  try {
    ip('netns', 'del', name);
  } catch {
    // already gone
  }
}

/** rt0/rt1 veth pair with 198.18.0.1/15 on rt0, and vxlan0 (VNI 1, 8472, nolearning) over rt0. */
export function underlay(name: string, withVxlan = false): { rt0: number; vxlan0: number } {
  ip('-n', name, 'link', 'add', 'rt0', 'type', 'veth', 'peer', 'name', 'rt1');
  ip('-n', name, 'addr', 'add', '198.18.0.1/15', 'dev', 'rt0');
  ip('-n', name, 'link', 'set', 'rt0', 'up');
  ip('-n', name, 'link', 'set', 'rt1', 'up');
  if (withVxlan) {
    ip('-n', name, 'link', 'add', 'vxlan0', 'type', 'vxlan', 'id', '1', 'dstport', '8472', 'nolearning', 'local', '198.18.0.1', 'dev', 'rt0');
    ip('-n', name, 'link', 'set', 'vxlan0', 'up');
  }
  return { rt0: ifindex(name, 'rt0'), vxlan0: withVxlan ? ifindex(name, 'vxlan0') : 0 };
}

export function ifindex(ns: string, dev: string): number {
  return Number(sh('ip', ['netns', 'exec', ns, 'cat', `/sys/class/net/${dev}/ifindex`]).trim());
}

export function countLines(text: string, pattern?: RegExp): number {
  return text.split('\n').filter((l) => l.trim() !== '' && (pattern === undefined || pattern.test(l))).length;
}

/** The root namespace's configuration, to compare before and after a test file. */
export function rootSnapshot(): string {
  return [
    ip('-o', 'link', 'show'),
    ip('-4', 'route', 'show', 'table', 'all'),
    ip('-6', 'route', 'show', 'table', 'all'),
    ip('-o', 'addr', 'show'),
    sh('cat', ['/proc/sys/net/ipv4/ip_forward']),
  ].join('\n');
}

/** Open file descriptors of this process as "fd -> target". */
export function openFds(): Set<string> {
  const out = new Set<string>();
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      out.add(`${fd} -> ${fs.readlinkSync(`/proc/self/fd/${fd}`)}`);
    } catch {
      // the fd readdir itself used, already closed
    }
  }
  return out;
}

/** Descriptors open now that were not open in `before`: a leak if non-empty. */
export function newFds(before: Set<string>): string[] {
  return [...openFds()].filter((fd) => !before.has(fd));
}
