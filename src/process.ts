/**
 * zapwire as a process: its configuration from the environment, its exit codes (78 for a configuration it
 * refuses, 1 for a failure), its signals and its failure policy. main.ts runs it with what to start.
 */
import { ConfigError, loadConfig, type Config } from './config.ts';
import { createLogger, type Logger } from './logger.ts';
import { SessionKeyMismatchError } from './runtime/key-check.ts';
import { EmbeddedPostgresError } from './store/index.ts';

/** What a running server gives the process: how to stop it, and why it cannot go on when it cannot. */
export interface RunningServer {
  stop(): Promise<void>;
  readonly failed?: Promise<Error>;
}

/** Starts the server from the environment and installs the process policy; exits when it cannot start. */
export function runProcess(start: (config: Config, logger: Logger) => Promise<RunningServer>): void {
  const run = async (): Promise<void> => {
    let config: Config;
    try {
      config = loadConfig();
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      process.stderr.write(`zapwire: ${error.message}\nSee .env.example for every variable and its form.\n`);
      process.exit(78);
    }
    const logger = createLogger(config.logLevel);
    installProcessPolicy(await start(config, logger), logger);
  };
  run().catch((error: unknown) => {
    if (error instanceof SessionKeyMismatchError) {
      process.stderr.write(`zapwire: refusing to start: ${error.message}\n`);
      process.exit(78);
    }
    // A failure we can word (the embedded database would not start) gets one line, not a stack.
    const reason =
      error instanceof EmbeddedPostgresError
        ? error.message
        : error instanceof Error
          ? (error.stack ?? error.message)
          : String(error);
    process.stderr.write(`zapwire failed to start: ${reason}\n`);
    process.exit(1);
  });
}

/**
 * Signals and the failure policy of the process (runProcess installs it; test/integration/security tests
 * it on a child process). One tenant's failure must not stop every tenant: a promise nobody awaited (Baileys
 * rejects some internally) is logged and the process goes on. An uncaught exception may have left any
 * state half written, so the process stops cleanly instead (instances restore on the next start) and
 * exits with 1. SIGTERM and SIGINT stop it cleanly with 0; a stop that hangs is cut after 15 s.
 */
export function installProcessPolicy(zapwire: RunningServer, logger: Logger): void {
  let shuttingDown = false;
  const shutdown = (signal: string, exitCode = 0): void => {
    if (shuttingDown) return;
    shuttingDown = true;
    logger.info({ signal }, 'shutting down: finishing requests, closing connections');
    const force = setTimeout(() => process.exit(1), 15_000);
    force.unref();
    zapwire.stop().then(
      () => process.exit(exitCode),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('unhandledRejection', (reason) => {
    logger.error({ err: reason }, 'unhandled promise rejection; kept running');
  });
  process.on('uncaughtException', (error) => {
    logger.fatal({ err: error }, 'uncaught exception; shutting down');
    shutdown('uncaughtException', 1);
  });
  void zapwire.failed?.then((error) => {
    logger.fatal(
      { err: error },
      'the embedded PostgreSQL cannot be restarted; exiting with 1 so that a supervisor restarts zapwire',
    );
    shutdown('database lost', 1);
  });
}
