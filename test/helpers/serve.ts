// Start an in-process server on loopback for a test: port 0 (the OS picks a free one), silent
// logs (unless the test passes a logStream to read them), one worker, no environment, and the
// facts of every batch recorded. One copy here instead of one per test file; each file keeps its
// own list of servers to close in its after() hook.
import { loadConfig } from '../../src/serve/config.js';
import type { BatchFact } from '../../src/serve/observer.js';
import { startServer, type BuildOptions, type RunningServer } from '../../src/serve/server.js';

export interface TestServer {
  server: RunningServer;
  /** Every batch the server ran, in order. */
  batches: BatchFact[];
  port: number;
}

/**
 * Start a server with the test defaults under `overrides` (which name the models directory) and
 * wait until it is ready. The server is pushed onto `track` (the file's list to close), if given.
 * Logs are off unless `opts.logStream` is given; then they go there at the config's logLevel
 * (pass `logLevel` in `overrides`: the default here is silent).
 */
export async function startTestServer(overrides: Record<string, unknown>, track: RunningServer[] = [], opts: BuildOptions = {}): Promise<TestServer> {
  const batches: BatchFact[] = [];
  const config = loadConfig({ env: {}, overrides: { port: 0, host: '127.0.0.1', logLevel: 'silent', workers: 1, ...overrides } });
  const server = await startServer(config, {
    logger: opts.logStream !== undefined,
    ...opts,
    observers: [...(opts.observers ?? []), { onBatch: (f) => batches.push(f) }],
  });
  track.push(server);
  await server.ready;
  return { server, batches, port: Number(new URL(server.url).port) };
}
