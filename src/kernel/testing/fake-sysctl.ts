import { NotFoundError } from '../../common/errors';
import { sysctlPath } from '../sysctl';
import type { SysctlKernel } from '../types';

/** In-memory sysctls. Keys are validated like the real one; unknown keys are NotFound unless `permissive`. */
export class FakeSysctl implements SysctlKernel {
  readonly values = new Map<string, string>();
  readonly writes: { key: string; value: string }[] = [];

  constructor(
    initial: Record<string, string> = { 'net.ipv4.ip_forward': '0', 'net.ipv6.conf.all.forwarding': '0', 'net.bridge.bridge-nf-call-iptables': '1' },
    private readonly permissive = true,
  ) {
    for (const [k, v] of Object.entries(initial)) this.values.set(sysctlPath(k), v);
  }

  async read(key: string): Promise<string> {
    const v = this.values.get(sysctlPath(key));
    if (v === undefined) {
      if (this.permissive) return '0';
      throw new NotFoundError('sysctl', key);
    }
    return v;
  }

  async write(key: string, value: string): Promise<void> {
    const path = sysctlPath(key);
    if (!this.permissive && !this.values.has(path)) throw new NotFoundError('sysctl', key);
    this.values.set(path, value.trim());
    this.writes.push({ key, value });
  }

  get(key: string): string | undefined {
    return this.values.get(sysctlPath(key));
  }
}
