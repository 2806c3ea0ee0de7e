// `slim serve`: configuration from file, flags and environment; start; stop gracefully on
// SIGTERM or SIGINT. Returns the process exit code.
import cluster from 'node:cluster';
import { statSync } from 'node:fs';
import { CLUSTER_SECRET_ENV, ClusterPeer } from './cluster-peer.js';
import { ConfigError, configHelp, loadConfig } from './config.js';
import { RepositoryError } from './model-repository.js';
import { startServer } from './server.js';
import { superviseCluster } from './supervisor.js';

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
  // Before binding the port: a typo in --models should not leave a server that is never ready.
  const missing =
    notADirectory(config.models, 'model repository', '--models or SLIM_MODELS') ??
    (config.routingDir === null ? null : notADirectory(config.routingDir, 'routing directory', '--routing-dir or SLIM_ROUTING_DIR'));
  if (missing) {
    console.error(`slim serve: ${missing}`);
    return 2;
  }

  // --processes N: this process supervises N server processes (supervisor.ts) and serves nothing
  // itself. The checks above run once, here, before any process is forked.
  if (config.processes > 1 && cluster.isPrimary) return superviseCluster(config);
  const peer = ClusterPeer.current();
  if (peer) {
    // One HMAC key in every process, so a request_id from one is taken by all (none configured: the primary's).
    const secret = env[CLUSTER_SECRET_ENV];
    if (secret && config.feedbackSecret === null) config.feedbackSecret = secret;
    delete process.env[CLUSTER_SECRET_ENV];
  }

  let server;
  try {
    server = await startServer(config, { peer });
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
    // The primary's SIGTERM or SIGINT (a terminal's Ctrl-C also reaches this process itself: one stop).
    peer?.onStop(() => {
      if (!stopping) stop('SIGTERM');
    });
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
  peer?.ready(server.url);
  return stopped;
}

/** Why `dir` cannot be a directory to serve from, or null when it is one. */
function notADirectory(dir: string, what: string, setBy: string): string | null {
  let why: string;
  try {
    if (statSync(dir).isDirectory()) return null;
    why = 'is not a directory';
  } catch (err) {
    why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `cannot be read (${(err as Error).message})`;
  }
  return `${what} ${dir} ${why} (set by ${setBy})`;
}
