/**
 * `podwired` entry point. Exit codes: 0 clean shutdown (SIGTERM/SIGINT) or action
 * done; 1 runtime failure; 2 invalid configuration or command line.
 */
import { createLogger, type Logger } from '../common/log';
import { errorMessage } from '../common/errors';
import { releaseMemory } from '../common/memory';
import type { StateSource } from '../k8s/types';
import type { ComponentRegistration } from './component';
import { helpText, isConfigError, loadConfig, renderConfig, sectionsOf, type LoadedConfig } from './config';
import { Daemon, PODWIRE_VERSION, type DaemonOptions } from './daemon';
import { defaultRegistrations } from './registry';
import { createSourceFromConfig } from './source';

export interface MainDeps {
  argv: readonly string[];
  env: Readonly<Record<string, string | undefined>>;
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  /** Injected in tests; defaults to process signals. */
  onShutdownSignal?: (fn: (signal: string) => void) => () => void;
  components?: readonly ComponentRegistration[];
  createSource?: (loaded: LoadedConfig, logger: Logger) => StateSource;
  /** The node's kernel handle (tests pass fakes); default: opened by the daemon. */
  kernel?: DaemonOptions['kernel'];
  /** Upper bound on the graceful stop after a signal. */
  stopTimeoutMs?: number;
}

export async function main(deps: MainDeps): Promise<number> {
  const registrations = deps.components ?? defaultRegistrations();
  const sections = sectionsOf(registrations);
  let loaded: LoadedConfig;
  try {
    loaded = loadConfig({ argv: deps.argv, env: deps.env, sections });
  } catch (err) {
    if (isConfigError(err)) {
      deps.stderr(`podwired: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const { config, actions } = loaded;
  if (actions.help) {
    deps.stdout(helpText(sections));
    return 0;
  }
  if (actions.version) {
    deps.stdout(`podwired ${PODWIRE_VERSION}\n`);
    return 0;
  }
  if (actions.printConfig) {
    deps.stdout(renderConfig(config, loaded.origins, loaded.sectionDetails));
    return 0;
  }

  const rootLogger = createLogger({ level: config.logLevel });
  const logger = rootLogger.child({ component: 'podwired' });
  const controller = new AbortController();
  const source = (deps.createSource ?? ((l, log) => createSourceFromConfig(l.config, log)))(loaded, rootLogger);
  const daemon = new Daemon({ config, source, components: registrations, logger: rootLogger, sections: loaded.sections, releaseMemoryWhenReady: releaseMemory, ...(deps.kernel ? { kernel: deps.kernel } : {}) });

  if (actions.cleanup) {
    const { failed } = await daemon.cleanup(controller.signal);
    if (failed.length > 0) {
      deps.stderr(`podwired: cleanup failed for ${failed.map((f) => `${f.component} (${f.error})`).join(', ')}\n`);
      return 1;
    }
    logger.info('cleanup done');
    return 0;
  }

  let received: string | undefined;
  const stopped = new Promise<void>((resolve) => {
    controller.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  const removeSignalHandlers = (deps.onShutdownSignal ?? processSignals)((sig) => {
    if (received) return;
    received = sig;
    logger.info({ signal: sig }, 'shutting down; leaving the data plane in place');
    controller.abort();
  });

  logger.info({ version: PODWIRE_VERSION, node: config.nodeName, configFile: loaded.configFile, enable: config.enable }, 'podwired starting');
  try {
    await daemon.start(controller.signal);
  } catch (err) {
    logger.fatal({ err }, 'start-up failed');
    deps.stderr(`podwired: start-up failed: ${errorMessage(err)}\n`);
    controller.abort();
    await daemon.stop().catch(() => undefined);
    removeSignalHandlers();
    return 1;
  }

  await stopped;
  const timeoutMs = deps.stopTimeoutMs ?? 20_000;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    daemon.stop().then(() => false),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs))),
  ]);
  clearTimeout(timer);
  removeSignalHandlers();
  if (timedOut) {
    logger.error({ timeoutMs }, 'graceful stop timed out');
    return 1;
  }
  logger.info({ signal: received }, 'exited cleanly');
  return 0;
}

function processSignals(fn: (signal: string) => void): () => void {
  const onTerm = () => fn('SIGTERM');
  const onInt = () => fn('SIGINT');
  process.on('SIGTERM', onTerm);
  process.on('SIGINT', onInt);
  return () => {
    process.off('SIGTERM', onTerm);
    process.off('SIGINT', onInt);
  };
}

if (require.main === module) {
  main({
    argv: process.argv.slice(2),
    env: process.env,
    stdout: (s) => process.stdout.write(s),
    stderr: (s) => process.stderr.write(s),
  }).then(
    (code) => {
      process.exitCode = code;
      // Sources or clients may hold sockets open; the daemon is done.
      setImmediate(() => process.exit(code));
    },
    (err: unknown) => {
      process.stderr.write(`podwired: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
