/**
 * The lab demo: `node dist/test-netns/lab/demo.js [--nodes N] [--pods-per-node M] [--keep-going]`
 * (root only). Builds an underlay + N nodes + hand-wired pods with host-gw routes, pings
 * node<->node and pod<->pod across nodes, prints a summary table, always cleans up (also on
 * failure and SIGINT), with the root-namespace guard around everything. Exit 0 only if every
 * check passed and the root namespace is unchanged.
 *
 * Library use: import { buildCluster, connectivityChecks, runChecks } from './cluster'
 * (re-exported here) to extend the lab with the CNI plugin, the overlay, DNS.
 */
import { RootNamespaceChangedError, withLab } from '../harness';
import { buildCluster, connectivityChecks, formatTable, runChecks, type CheckResult } from './cluster';

export * from './cluster';

const PREFIX = 'pwlab';

interface DemoArgs {
  nodes: number;
  podsPerNode: number;
}

function parseArgs(argv: string[]): DemoArgs {
  const args: DemoArgs = { nodes: 2, podsPerNode: 1 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const val = (): number => {
      const v = Number(argv[++i]);
      if (!Number.isInteger(v)) throw new Error(`${a} needs an integer, got ${JSON.stringify(argv[i])}`);
      return v;
    };
    if (a === '--nodes') args.nodes = val();
    else if (a === '--pods-per-node') args.podsPerNode = val();
    else if (a === '-h' || a === '--help') {
      process.stdout.write('usage: node dist/test-netns/lab/demo.js [--nodes N (2)] [--pods-per-node M (1)]\n');
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  return args;
}

const t0 = Date.now();
function log(msg: string): void {
  process.stdout.write(`[lab +${((Date.now() - t0) / 1000).toFixed(2)}s] ${msg}\n`);
}

export async function runDemo(args: DemoArgs): Promise<CheckResult[]> {
  return withLab(PREFIX, async (lab) => {
    log(`lab ${lab.id}: building ${args.nodes} node(s), ${args.podsPerNode} pod(s) per node`);
    const cluster = await buildCluster(lab, { nodes: args.nodes, podsPerNode: args.podsPerNode, log });
    log(`built ${lab.namespaces.length} namespaces; running connectivity checks`);
    const results = await runChecks(connectivityChecks(cluster), log);
    log('cleaning up');
    return results;
  });
}

async function main(): Promise<number> {
  let args: DemoArgs;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`demo: ${(e as Error).message}\n`);
    return 2;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('demo: needs root (it creates network namespaces)\n');
    return 2;
  }
  log('root-namespace guard: snapshot taken before and compared after');
  let results: CheckResult[];
  try {
    results = await runDemo(args);
  } catch (e) {
    if (e instanceof RootNamespaceChangedError) log(`FAIL: ${e.message}`);
    else log(`FAIL: ${(e as Error).stack ?? String(e)}`);
    return 1;
  }
  log('cleanup done; root namespace unchanged');
  const failed = results.filter((r) => !r.passed);
  process.stdout.write(`\n${formatTable(results)}\n\n`);
  for (const f of failed) process.stdout.write(`FAILED ${f.kind} ${f.from} -> ${f.to}:\n${f.output}\n`);
  process.stdout.write(`lab demo: ${results.length - failed.length}/${results.length} checks passed${failed.length ? ', FAILED' : ''}\n`);
  return failed.length ? 1 : 0;
}

if (require.main === module) {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`demo: ${String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
