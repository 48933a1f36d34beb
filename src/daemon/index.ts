/**
 * Public API of the daemon module. Components (overlay, proxy, dns) implement
 * `Component` and are listed in registry.ts; they import types only from here
 * (`import type { Component, ComponentContext } from '../daemon'`), so the runtime
 * dependency still points one way: daemon → components.
 */
export type { Component, ComponentContext, ComponentRegistration, ComponentStatus, ControlMount, SyncIntervals, SyncReport } from './component';
export { defineSection, type ConfigSection, type SectionOption, type SectionOptionKind } from './config-section';
export { BoundedFrequencyRunner, type RunnerOptions, type RunOutcome } from './runner';
export {
  loadConfig,
  validateConfig,
  renderConfig,
  helpText,
  parseHostPort,
  parseDuration,
  formatDuration,
  validateCidrList,
  buildSectionDefaults,
  sectionsOf,
  configDocsTables,
  OPTIONS,
  FEATURES,
  BACKENDS,
  PROXY_MODES,
  DEFAULT_CONFIG_FILE,
  type DaemonConfig,
  type Feature,
  type BackendName,
  type ProxyMode,
  type LoadedConfig,
  type LoadedSection,
} from './config';
export { Daemon, ComponentStartError, PODWIRE_VERSION, type DaemonOptions, type DaemonStatus, type ComponentSummary } from './daemon';
export { RouteServer, request, json, text, type ControlHandler, type ControlRequest, type ControlResponse, type RawHandler } from './route-server';
export { CniInstaller, cniRegistration, cniInstallerRegistration, CNI_SECTION, type CniSection, renderConflist, CONFLIST_NAME, CNI_TYPE, BRIDGE_NAME, VXLAN_OVERHEAD } from './cni-installer';
export { writeFileAtomic, copyFileAtomic } from './atomic-file';
export { defaultRegistrations } from './registry';
export { main } from './main';
