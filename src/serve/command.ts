// `slim serve`: configuration from file, flags and environment; start; stop gracefully on
// SIGTERM or SIGINT. Returns the process exit code.
import { ConfigError, configHelp, loadConfig } from './config.js';
import { RepositoryError } from './model-repository.js';
import { startServer } from './server.js';

export async function serveCommand(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(configHelp());
    return 0;
  }
  let config;
  try {
    config = loadConfig({ argv, env });
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      return 2;
    }
    throw err;
  }

  let server;
  try {
    server = await startServer(config);
  } catch (err) {
    console.error(`slim serve: could not listen on ${config.host}:${config.port}: ${(err as Error).message}`);
    return 1;
  }
  let stopping = false;
  const stopped = new Promise<number>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) {
        // A second signal: the operator wants out now.
        server.app.log.warn({ signal }, 'second signal: exiting without waiting');
        resolve(130);
        return;
      }
      stopping = true;
      server.app.log.info({ signal, inFlight: server.core.inFlight }, 'shutting down: readiness off, answering accepted requests');
      server.close().then(
        () => {
          server.app.log.info('stopped');
          resolve(0);
        },
        (err: unknown) => {
          server.app.log.error({ err }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });

  try {
    await server.ready;
  } catch (err) {
    const what = err instanceof RepositoryError ? 'the model repository is not usable' : 'could not load the models';
    console.error(`slim serve: ${what}: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
  // Ready: log the address in one plain line too, for scripts that wait for it.
  server.app.log.info({ url: server.url }, `ready on ${server.url}`);
  return stopped;
}
