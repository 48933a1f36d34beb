/** kube-proxy's metric names (so existing dashboards work), plus Podwire's nftables counts. */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface ProxyMetrics {
  syncDuration: Histogram;
  lastTimestamp: Gauge;
  lastQueuedTimestamp: Gauge;
  networkProgramming: Histogram;
  endpointChanges: Counter;
  serviceChanges: Counter;
  endpointChangesPending: Gauge;
  serviceChangesPending: Gauge;
  syncFailures: Counter;
  invalidServices: Gauge;
  elements: Gauge;
  chains: Gauge;
  elementChanges: Counter;
  conntrackDeletes: Counter;
  foreignForwardDrop: Gauge;
}

export function createProxyMetrics(registry: Registry): ProxyMetrics {
  const registers = [registry];
  const b = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60];
  return {
    syncDuration: new Histogram({ name: 'kubeproxy_sync_proxy_rules_duration_seconds', help: 'SyncProxyRules latency in seconds', buckets: b, registers }),
    lastTimestamp: new Gauge({ name: 'kubeproxy_sync_proxy_rules_last_timestamp_seconds', help: 'The last time proxy rules were successfully synced', registers }),
    lastQueuedTimestamp: new Gauge({ name: 'kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds', help: 'The last time a sync of proxy rules was queued', registers }),
    networkProgramming: new Histogram({ name: 'kubeproxy_network_programming_duration_seconds', help: 'In-cluster network programming latency in seconds', buckets: b, registers }),
    endpointChanges: new Counter({ name: 'kubeproxy_sync_proxy_rules_endpoint_changes_total', help: 'Cumulative proxy rules EndpointSlice changes', registers }),
    serviceChanges: new Counter({ name: 'kubeproxy_sync_proxy_rules_service_changes_total', help: 'Cumulative proxy rules Service changes', registers }),
    endpointChangesPending: new Gauge({ name: 'kubeproxy_sync_proxy_rules_endpoint_changes_pending', help: 'Pending proxy rules EndpointSlice changes', registers }),
    serviceChangesPending: new Gauge({ name: 'kubeproxy_sync_proxy_rules_service_changes_pending', help: 'Pending proxy rules Service changes', registers }),
    syncFailures: new Counter({ name: 'kubeproxy_sync_proxy_rules_nftables_sync_failures_total', help: 'Failed nftables transactions', registers }),
    invalidServices: new Gauge({ name: 'podwire_proxy_invalid_services', help: 'Services skipped because they are invalid (bad IP, port or protocol)', registers }),
    elements: new Gauge({ name: 'podwire_proxy_nftables_elements', help: 'Map and set elements Podwire has in its nftables table', registers }),
    chains: new Gauge({ name: 'podwire_proxy_nftables_chains', help: 'Chains in Podwire\'s nftables table', registers }),
    elementChanges: new Counter({ name: 'podwire_proxy_nftables_element_changes_total', help: 'Element adds/deletes applied by incremental transactions', registers }),
    foreignForwardDrop: new Gauge({ name: 'podwire_proxy_foreign_forward_drop', help: '1 when another nftables/iptables table drops forwarded traffic by policy (e.g. Docker)', registers }),
    conntrackDeletes: new Counter({ name: 'podwire_proxy_conntrack_deletes_total', help: 'Stale UDP conntrack entries deleted', registers }),
  };
}
