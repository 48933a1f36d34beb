/**
 * TX checksum offload on the VXLAN device, decided per kernel.
 *
 * Why there is a decision at all: before Linux 5.7, SNAT with `--random-fully` (our egress
 * masquerade) rewrote the source port of a VXLAN packet whose outer UDP checksum the NIC was
 * to fill in, and the packet left with a bad checksum (flannel #1279; fixed by the kernel's
 * "netfilter: nat: never update the UDP checksum when it's 0", in 5.7). flannel's answer was
 * to turn TX checksum offload off on flannel.1 everywhere, which costs 3–4× throughput on
 * kernels that never had the bug. So: `auto` turns it off only on a kernel older than 5.7
 * with masquerade on, and otherwise leaves the device as the kernel made it (on); `on`/`off`
 * force it. Applied with the SIOCETHTOOL ioctl through the native addon (no ethtool binary).
 */
import os from 'node:os';
import type { Logger } from '../common/log';
import type { Kernel } from '../kernel';

export type TxChecksumMode = 'auto' | 'on' | 'off';
export const TX_CHECKSUM_MODES: readonly TxChecksumMode[] = ['auto', 'on', 'off'];
/** The first kernel without the --random-fully checksum bug. */
export const FIXED_IN: readonly [number, number] = [5, 7];

export interface TxChecksumDecision {
  mode: TxChecksumMode;
  kernel: string;
  /** What to do: set it on, set it off, or leave the device alone. */
  action: 'on' | 'off' | 'leave';
  reason: string;
}

export interface TxChecksumState extends TxChecksumDecision {
  device: string;
  /** The device's TX checksum offload after the action (undefined: it could not be read). */
  enabled: boolean | undefined;
  error?: string;
}

/** `5.6.19-foo` → [5, 6]; undefined when it does not start with two numbers. */
export function kernelVersion(release: string): [number, number] | undefined {
  const m = /^(\d+)\.(\d+)/.exec(release);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

export function decideTxChecksum(mode: TxChecksumMode, release: string, masquerade: boolean): TxChecksumDecision {
  if (mode === 'on') return { mode, kernel: release, action: 'on', reason: 'overlay.vxlan.txChecksumOffload: on' };
  if (mode === 'off') return { mode, kernel: release, action: 'off', reason: 'overlay.vxlan.txChecksumOffload: off' };
  const v = kernelVersion(release);
  if (!v) return { mode, kernel: release, action: 'leave', reason: `kernel release ${JSON.stringify(release)} is not parseable: offload left as the kernel set it` };
  const old = v[0] < FIXED_IN[0] || (v[0] === FIXED_IN[0] && v[1] < FIXED_IN[1]);
  if (old && masquerade) {
    return { mode, kernel: release, action: 'off', reason: `kernel ${v.join('.')} < ${FIXED_IN.join('.')}: --random-fully masquerade corrupts offloaded VXLAN UDP checksums there, so TX checksum offload goes off on the VXLAN device` };
  }
  return {
    mode,
    kernel: release,
    action: 'leave',
    reason: old ? `kernel ${v.join('.')} < ${FIXED_IN.join('.')} but masquerade is off: the bug cannot trigger, offload left on` : `kernel ${v.join('.')} ≥ ${FIXED_IN.join('.')} has the --random-fully checksum fix: offload left on`,
  };
}

/** Decide, apply (when the decision says so) and read back the device's state. Never throws. */
export async function applyTxChecksum(
  kernel: Pick<Kernel, 'txChecksum'>,
  device: string,
  mode: TxChecksumMode,
  masquerade: boolean,
  logger: Logger,
  release: string = os.release(),
): Promise<TxChecksumState> {
  const d = decideTxChecksum(mode, release, masquerade);
  if (!kernel.txChecksum) return { ...d, device, enabled: undefined, error: 'this kernel handle cannot read offloads' };
  try {
    const enabled = await kernel.txChecksum(device, d.action === 'leave' ? undefined : d.action === 'on');
    logger.info({ device, txChecksumOffload: enabled ? 'on' : 'off', mode, kernel: release, action: d.action, reason: d.reason }, 'VXLAN TX checksum offload');
    return { ...d, device, enabled };
  } catch (err) {
    const error = err instanceof Error ? err.message : String(err);
    logger.warn({ device, mode, action: d.action, error }, 'VXLAN TX checksum offload: could not apply or read it');
    return { ...d, device, enabled: undefined, error };
  }
}
