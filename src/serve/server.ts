// The fastify app of `slim serve` and its lifecycle: build (routes, schemas, hooks, error
// mapping), start (listen, then load and warm every variant, then ready), and a graceful stop
// (readiness false first, stop accepting, answer everything accepted, then release workers).
import Fastify, { LogController, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ServeConfig } from './config.js';
import { CoreError, rootCause } from './errors.js';
import { errorBodyIn, errorHeaders, httpStatus, toCoreError } from './routes/error-replies.js';
import { answerUnknownExpectations, clientErrorHandler, frameworkErrorHandler, missingHostError } from './http-client-error.js';
import { registerRateLimit } from './rate-limit.js';
import { metricsRoutes, ServeMetrics } from './metrics.js';
import type { RequestFact, ServeObserver } from './observer.js';
import { registerOpenApi } from './openapi.js';
import { classifyRoutes } from './routes/classify.js';
import { feedbackRoutes } from './routes/feedback.js';
import { routingRoutes } from './routes/routing.js';
import { reloadRoutes } from './routes/reload.js';
import { healthRoutes } from './routes/health.js';
import { modelRoutes } from './routes/models.js';
import { completeErrorResponses, sharedSchemas } from './routes/schemas.js';
import { v2Routes } from './routes/v2.js';
import { hfRoutes } from './routes/hf.js';
import { teiRoutes } from './routes/tei.js';
import { ServeCore, type CoreOptions } from './core.js';
import { limitConnections } from './connection-limit.js';
import { ConnectionTracker, IDLE_GRACE_MS, stopListening } from './drain.js';
import { connectPeer } from './cluster-peer.js';

export interface BuildOptions extends CoreOptions {
  /** false: no logs; default: JSON lines at config.logLevel on stdout. */
  logger?: boolean;
  /** Where the JSON log lines go instead of stdout. */
  logStream?: { write(line: string): void };
  observers?: ServeObserver[];
  /** false: no Prometheus collection and no /metrics (only to measure what metrics cost). */
  metrics?: boolean;
}

export interface RunningServer {
  app: FastifyInstance;
  core: ServeCore;
  /** http://host:port actually bound. */
  url: string;
  /** Resolves when every variant is loaded and warmed up. */
  ready: Promise<void>;
  /** Graceful stop: see shutdown(). */
  close(): Promise<void>;
}

/** A client-supplied x-request-id is kept when it is short and plain; otherwise a fresh UUID. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** How often node looks for connections past receiveTimeoutMs: a quarter of it, within [100 ms, 1 s]. */
function receiveCheckMs(timeoutMs: number): number {
  return Math.max(100, Math.min(1000, Math.floor(timeoutMs / 4)));
}

/** Version of the slimserve package, found by walking up from this module. */
export function packageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'slimserve' && pkg.version) return pkg.version;
    }
    dir = dirname(dir);
  }
  return '0.0.0';
}

/** --log-format pretty: pino-pretty on stdout (colours only on a terminal); loaded only when asked for. */
async function prettyLogStream(): Promise<{ write(line: string): void }> {
  const { default: pretty } = await import('pino-pretty');
  return pretty({ colorize: process.stdout.isTTY === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', singleLine: true, sync: true });
}

/** Build the app and its core; nothing listens and no model is loaded yet. */
export async function buildApp(config: ServeConfig, opts: BuildOptions = {}): Promise<{ app: FastifyInstance; core: ServeCore }> {
  const app = Fastify({
    logger:
      opts.logger === false || config.logLevel === 'silent'
        ? false
        : {
            level: config.logLevel,
            ...(opts.logStream ? { stream: opts.logStream } : config.logFormat === 'pretty' ? { stream: await prettyLogStream() } : {}),
          },
    // Per-request log lines cost more than the inference of a small batch: off unless --access-log
    // (then one line per request from the onResponse hook, not fastify's two); failures are logged.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.bodyLimit,
    // A slow client (headers or body a byte at a time, or a body never finished) is cut after
    // receiveTimeoutMs with 408 (clientErrorHandler). Node checks its connections every
    // connectionsCheckingInterval (30 s by default), which would stretch a short timeout.
    requestTimeout: config.receiveTimeoutMs,
    http: {
      requestTimeout: config.receiveTimeoutMs,
      headersTimeout: config.receiveTimeoutMs,
      connectionsCheckingInterval: receiveCheckMs(config.receiveTimeoutMs),
    },
    // Requests the HTTP parser refuses (CR/LF in a header, oversized headers) get a catalogue body.
    clientErrorHandler,
    // The router's refusals (undecodable URL, over-long parameter) too.
    frameworkErrors: frameworkErrorHandler,
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    // While closing, requests on open keep-alive connections get our own 503 SHUTTING_DOWN body.
    return503OnClosing: false,
    // The drain closes connections itself (src/serve/drain.ts), never all idle ones at once.
    forceCloseConnections: false,
    routerOptions: { ignoreTrailingSlash: true },
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
  });
  const core = new ServeCore(config, app.log, opts);
  for (const o of opts.observers ?? []) core.observers.add(o);
  const metrics = opts.metrics === false ? null : new ServeMetrics(core);
  if (metrics) core.observers.add(metrics.observer);
  answerUnknownExpectations(app.server);
  // A missing Host gets our catalogue answer (onRequest hook), not node's bare 400.
  (app.server as { requireHostHeader?: boolean }).requireHostHeader = false;
  limitConnections(app.server, { max: config.maxConnections, perClient: config.maxConnectionsPerClient }, () => metrics?.connectionsRefused.inc());
  const version = packageVersion();

  for (const schema of sharedSchemas) app.addSchema(schema);
  // Before any route: the plugin hooks each route as it is added. Off unless configured.
  await registerRateLimit(app, config.rateLimit, { 'POST /feedback': config.feedback.rateLimit });
  // Bodies are JSON only: anything else is 415, not a string the schema then refuses.
  app.removeContentTypeParser('text/plain');
  app.decorateRequest('notes', null as never);

  // The per-request hooks take fastify's done callback instead of being async: an async hook
  // costs a promise and a microtask turn per request (main-thread profile, issue 17).
  app.addHook('onRequest', (request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) => {
    // request.routeOptions builds a new object on every read: read once, kept for onResponse.
    const route = request.routeOptions.config;
    request.notes = { endpoint: route.url };
    reply.header('x-request-id', request.id);
    const noHost = missingHostError(request);
    if (noHost) return done(noHost);
    if (route.inference) {
      const refused = core.unavailable();
      if (refused) return done(refused);
    }
    done();
  });

  // While draining, every answer closes its connection: a kept-alive socket would otherwise hold
  // the listener open (and the process alive) after the last accepted request is answered.
  app.addHook('onSend', (_request, reply, _payload, done) => {
    if (core.state === 'draining' || core.state === 'stopped') reply.header('connection', 'close');
    done();
  });

  app.addHook('onResponse', (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    const notes = request.notes ?? {};
    if (config.accessLog) {
      request.log.info(
        {
          method: request.method,
          url: request.url,
          statusCode: reply.statusCode,
          ms: Math.round(reply.elapsedTime * 10) / 10,
          model: notes.model,
          variant: notes.variant,
          inputs: notes.inputs,
          errorCode: notes.errorCode,
        },
        `${request.method} ${request.url} ${reply.statusCode} ${reply.elapsedTime.toFixed(1)} ms`,
      );
    }
    const fact: RequestFact = {
      endpoint: (notes.endpoint !== undefined ? notes.endpoint : request.routeOptions.url) ?? 'unmatched',
      method: request.method,
      code: reply.statusCode,
      durationMs: reply.elapsedTime,
    };
    // Only the facts noted (observers see no undefined-valued keys).
    if (notes.errorCode !== undefined) fact.errorCode = notes.errorCode;
    if (notes.model !== undefined) fact.model = notes.model;
    if (notes.variant !== undefined) fact.variant = notes.variant;
    if (notes.inputs !== undefined) fact.inputs = notes.inputs;
    core.observers.onRequest(fact);
    done();
  });

  const sendError = (err: CoreError, request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    if (request.notes) request.notes.errorCode = err.code;
    const status = httpStatus(err);
    if (status >= 500 && err.code !== 'NOT_READY' && err.code !== 'SHUTTING_DOWN' && err.code !== 'DEADLINE_EXCEEDED') {
      // The catalogue code and, next to it, the exception that caused it (message and stack).
      const cause = rootCause(err);
      request.log.error(
        { err, code: err.code, ...(cause ? { cause } : {}), requestId: request.id, model: request.notes?.model, variant: request.notes?.variant },
        err.message,
      );
    }
    const config = request.routeOptions.config;
    const shape = config?.errorShape ?? (config?.v2 === true || request.url.startsWith('/v2') ? 'v2' : 'slimserve');
    return reply.code(status).headers(errorHeaders(err)).send(errorBodyIn(shape, err));
  };
  app.setErrorHandler((error: FastifyError, request, reply) => sendError(toCoreError(error), request, reply));
  app.setNotFoundHandler((request, reply) => {
    sendError(new CoreError('ROUTE_NOT_FOUND', `no endpoint ${request.method} ${request.url.split('?')[0]}`), request, reply);
  });

  app.addHook('onRoute', completeErrorResponses);
  await registerOpenApi(app, version);
  healthRoutes(app, core);
  classifyRoutes(app, core);
  modelRoutes(app, core);
  v2Routes(app, core, version);
  hfRoutes(app, core);
  teiRoutes(app, core, version);
  routingRoutes(app, core);
  reloadRoutes(app, core);
  feedbackRoutes(app, core);
  if (metrics) metricsRoutes(app, metrics);
  if (opts.peer) connectPeer(opts.peer, core, metrics);
  return { app, core };
}

/**
 * Graceful stop: readiness goes false first; the listener closes once the connections the kernel
 * already queued are accepted; every accepted request is answered (served, or 503 SHUTTING_DOWN
 * for new inference on a kept-alive connection), each answer closing its connection, and quiet
 * connections are closed (src/serve/drain.ts); then the workers go. The whole stop takes at most
 * shutdownTimeoutMs: past it, requests still unanswered get SHUTTING_DOWN and every connection
 * left (a half-sent upload, say) is cut.
 */
export async function shutdown(app: FastifyInstance, core: ServeCore, connections: ConnectionTracker): Promise<void> {
  core.beginDrain();
  const timeoutMs = core.config.shutdownTimeoutMs;
  const deadline = performance.now() + timeoutMs;
  // What is left after the drain (answer the rest, cut the connections, close) gets this much.
  const finalMs = Math.min(500, Math.floor(timeoutMs / 4));
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs - finalMs);
  });
  const sweeper = setInterval(() => connections.closeQuiet(IDLE_GRACE_MS), 25);
  await stopListening(app.server, Math.min(1000, Math.floor(timeoutMs / 4)));
  const drained = Promise.all([connections.allClosed(), core.drained()]);
  const result = await Promise.race([drained.then(() => 'drained' as const), timedOut]);
  clearTimeout(timer);
  clearInterval(sweeper);
  if (result === 'timeout') {
    app.log.warn(
      { inFlight: core.inFlight, connections: connections.size, timeoutMs },
      'shutdown timeout: answering the rest with SHUTTING_DOWN, cutting the connections left',
    );
  }
  // What follows may take what is left of shutdownTimeoutMs (at least 50 ms), no more.
  // The timer is cleared when p settles first: a pending one kept `slim serve` (which lets the
  // event loop end rather than calling process.exit) alive for the rest of shutdownTimeoutMs.
  const bounded = async <T>(p: Promise<T>): Promise<void> => {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([p, new Promise((r) => (timer = setTimeout(r, Math.max(50, deadline - performance.now()))))]);
    } finally {
      clearTimeout(timer);
    }
  };
  await bounded(core.close());
  if (result === 'timeout') {
    await Promise.race([connections.allClosed(), new Promise((r) => setTimeout(r, 50))]); // the SHUTTING_DOWN answers go out first
    connections.destroyAll();
  }
  await bounded(app.close());
}

/**
 * Listen, then load and warm every variant in the background: liveness answers at once and
 * readiness says "not yet" while models load. `ready` resolves once every variant is warm
 * (it rejects, after closing the server, when loading fails).
 */
export async function startServer(config: ServeConfig, opts: BuildOptions = {}): Promise<RunningServer> {
  const { app, core } = await buildApp(config, opts);
  const connections = new ConnectionTracker(app.server);
  await app.listen({ port: config.port, host: config.host });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `http://${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${port}`;
  app.log.info({ url }, 'listening; loading models');
  const ready = core.load().catch(async (err: unknown) => {
    await app.close();
    await core.close();
    throw err;
  });
  ready.catch(() => {}); // the caller handles it; never an unhandled rejection
  let closing: Promise<void> | null = null;
  return { app, core, url, ready, close: () => (closing ??= shutdown(app, core, connections)) };
}
