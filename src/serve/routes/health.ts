// Liveness and readiness. Ready means every variant is loaded and warmed up in every worker,
// and the server is not shutting down: load balancers stop sending before the drain begins.
import type { FastifyInstance } from 'fastify';
import { SlimError } from '../errors.js';
import type { ServeRuntime } from '../runtime.js';
import { errorResponses, ok } from './schemas.js';

/** The error a not-ready server answers with, by state. */
export function notReadyError(runtime: ServeRuntime): SlimError {
  if (runtime.state === 'loading') return new SlimError('NOT_READY', 'the models are still loading and warming up');
  if (runtime.state === 'failed') return new SlimError('NOT_READY', 'loading the models failed');
  return new SlimError('SHUTTING_DOWN', 'the server is shutting down');
}

export function healthRoutes(app: FastifyInstance, runtime: ServeRuntime): void {
  app.get(
    '/health/live',
    {
      schema: {
        tags: ['health'],
        summary: 'Liveness: the process answers HTTP',
        response: { 200: ok('Health', 'Live') },
      },
    },
    async () => ({ status: 'live' }),
  );

  app.get(
    '/health/ready',
    {
      schema: {
        tags: ['health'],
        summary: 'Readiness: every variant loaded and warmed up, not shutting down',
        response: { 200: ok('Health', 'Ready'), ...errorResponses([503]) },
      },
    },
    async () => {
      if (!runtime.ready) throw notReadyError(runtime);
      return { status: 'ready' };
    },
  );
}
