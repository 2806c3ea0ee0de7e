// Liveness and readiness. Ready means every variant is loaded and warmed up in every worker,
// and the server is not shutting down: load balancers stop sending before the drain begins.
// The state -> answer rule is src/serve/lifecycle.ts.
import type { FastifyInstance } from 'fastify';
import type { ServeCore } from '../core.js';
import { errorResponses, ok, type HealthBody } from './schemas.js';

export function healthRoutes(app: FastifyInstance, core: ServeCore): void {
  app.get(
    '/health/live',
    {
      schema: {
        tags: ['health'],
        summary: 'Liveness: the process answers HTTP',
        response: { 200: ok('Health', 'Live') },
      },
    },
    async (): Promise<HealthBody> => ({ status: 'live' }),
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
    async (): Promise<HealthBody> => {
      const refused = core.unavailable();
      if (refused) throw refused;
      return { status: 'ready' };
    },
  );
}
