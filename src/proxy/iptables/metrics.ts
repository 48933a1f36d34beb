/** kube-proxy's iptables-mode metric names, next to the common ones of ../metrics.ts. */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface IptablesMetrics {
  rules: Gauge<'table'>;
  chains: Gauge<'table'>;
  restoreFailures: Counter;
  partialRestoreFailures: Counter;
  fullDuration: Histogram;
  partialDuration: Histogram;
}

export function createIptablesMetrics(registry: Registry): IptablesMetrics {
  const registers = [registry];
  const b = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300];
  return {
    rules: new Gauge({ name: 'kubeproxy_sync_proxy_rules_iptables_total', help: 'Total number of iptables rules owned by the proxy', labelNames: ['table'], registers }),
    chains: new Gauge({ name: 'podwire_proxy_iptables_chains', help: 'iptables chains owned by the proxy', labelNames: ['table'], registers }),
    restoreFailures: new Counter({ name: 'kubeproxy_sync_proxy_rules_iptables_restore_failures_total', help: 'Cumulative proxy iptables restore failures', registers }),
    partialRestoreFailures: new Counter({ name: 'kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total', help: 'Cumulative proxy iptables partial restore failures', registers }),
    fullDuration: new Histogram({ name: 'kubeproxy_sync_full_proxy_rules_duration_seconds', help: 'SyncProxyRules latency in seconds for full resyncs', buckets: b, registers }),
    partialDuration: new Histogram({ name: 'kubeproxy_sync_partial_proxy_rules_duration_seconds', help: 'SyncProxyRules latency in seconds for partial resyncs', buckets: b, registers }),
  };
}
