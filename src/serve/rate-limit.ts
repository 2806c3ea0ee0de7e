// Per-client, per-route request limits (@fastify/rate-limit), off unless configured -- except
// POST /feedback, limited by default (feedback.rateLimit): feedback decides A/B comparisons, so
// one client must not be able to flood it. Each route counts separately per client IP, so a
// burst on /classify does not lock a client out of /models. Health endpoints are exempt unless
// named: an orchestrator's probes must not be shed.
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ServeConfig } from './config.js';
import { CoreError } from './errors.js';

/** Limits that apply unless rateLimit.routes names the route: "METHOD /url" -> max. */
export type DefaultLimits = Record<string, number>;

/** The limit of the route a request matched: "METHOD /url" first, then "/url", then a default limit of the route, then rateLimit.max. */
export function routeLimit(config: ServeConfig['rateLimit'], method: string, url: string | undefined, defaults: DefaultLimits = {}): number {
  if (url === undefined) return 0;
  const byRoute = config.routes[`${method} ${url}`] ?? config.routes[url] ?? defaults[`${method} ${url}`];
  if (byRoute !== undefined) return byRoute;
  if (url.startsWith('/health/') || url.startsWith('/v2/health/')) return 0;
  return config.max;
}

/** Register before the routes: the plugin hooks every route added after it. */
export async function registerRateLimit(app: FastifyInstance, config: ServeConfig['rateLimit'], defaults: DefaultLimits = {}): Promise<void> {
  const anyLimit = config.max > 0 || [...Object.values(config.routes), ...Object.values(defaults)].some((n) => n > 0);
  if (!anyLimit) return;
  const limitOf = (req: FastifyRequest): number => routeLimit(config, req.method, req.routeOptions.url, defaults);
  // A route's limit depends on its method and pattern only: a route that no method of it limits
  // gets no rate-limit hook at all (the plugin skips config.rateLimit === false), instead of a
  // per-request key, allow-list check and three request.routeOptions objects (issue 17).
  // Before the plugin: its own onRoute hook runs after this one.
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (methods.every((m) => routeLimit(config, m, route.url, defaults) === 0)) route.config = { ...route.config, rateLimit: false };
  });
  await app.register(rateLimit, {
    global: true,
    timeWindow: config.windowMs,
    max: (req) => limitOf(req),
    allowList: (req) => limitOf(req) === 0,
    keyGenerator: (req) => `${req.method} ${req.routeOptions.url ?? ''} ${req.ip}`,
    errorResponseBuilder: (req, ctx) =>
      new CoreError(
        'RATE_LIMITED',
        `more than ${ctx.max} requests to ${req.method} ${req.routeOptions.url ?? ''} within ${config.windowMs} ms; retry in ${ctx.after}`,
        {
          retryAfterS: ctx.ttl / 1000,
        },
      ),
  });
}
