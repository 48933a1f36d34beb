/**
 * What every kernel-VM test file (test-netns/vm/*.test.ts) skips itself with on the host.
 *
 * The file itself still declares `export const KERNEL_REQUIRES = [...]` (and
 * `KERNEL_VM_TIMEOUT`) literally in its own source: scripts/vm/run-tests.js finds VM files by
 * reading the .ts text for those declarations, so they cannot come from here. This module is
 * not a test file (no `.test.ts`), so neither runner picks it up.
 */

/**
 * The skip reason for a labTest of a kernel-VM file: undefined inside the guest (the VM runner
 * sets PODWIRE_IN_VM=1), else why it does not run here. `missing`: what the host kernel lacks.
 */
export function notInVm(missing: string): string | undefined {
  return process.env.PODWIRE_IN_VM === '1' ? undefined : `runs inside the kernel VM: npm run test:vm (the host kernel has no ${missing})`;
}
