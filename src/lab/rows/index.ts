/**
 * Every group of rows `podwire lab up` runs, in table order: the one place that order is
 * declared (like src/daemon/registry.ts for components). A group with `requires: '<feature>'`
 * runs only when every node's podwired reports that component. To add yours:
 *
 *   // src/lab/rows/proxy.ts
 *   export const serviceRows: RowGroup = { id: 'services', requires: 'proxy', rows: (ctx) => [
 *     { name: 'ClusterIP web.shop 10.96.0.11:80', command: ctx.execCommand(ctx.client, ['curl', '-s', 'http://10.96.0.11/']),
 *       run: async () => { const r = await ctx.execInPod(ctx.client, ['curl', '-s', '-m', '3', 'http://10.96.0.11/']);
 *                          return { ok: r.exitCode === 0, detail: r.stdout.trim() }; } },
 *   ] };
 *   // and here: [...CORE, serviceRows]
 */
import type { RowGroup } from '../rows';
import { nodeStatusRows, podToPodRows } from './core';
import { egressRows, externalNameRows, nodePortRows, stubDomainRows } from './outside';
import { dnsRows, serviceRows } from './services';

export const ROW_GROUPS: readonly RowGroup[] = [nodeStatusRows, podToPodRows, serviceRows, dnsRows, nodePortRows, stubDomainRows, externalNameRows, egressRows];
