// GET /routing/{model}: the live routing table and what it did (served counts, online accuracy
// with intervals, shadow agreement, cascade escalations). PUT /routing/{model}: replace the
// table atomically (admin token). PUT is for single-node use: it rewrites routing.json where the
// model directory is writable, but with several replicas (a ConfigMap-mounted routing.json) it
// reaches only the replica that answered it; change the file instead, every replica re-reads it.
import type { FastifyInstance } from 'fastify';
import type { ServeCore } from '../core.js';
import { requireAdmin } from './admin-auth.js';
import type { RoutingStatusBody } from './routing-schemas.js';
import { errorResponses, ok } from './schemas.js';

const params = { type: 'object', required: ['model'], properties: { model: { type: 'string' } } } as const;

export function routingRoutes(app: FastifyInstance, core: ServeCore): void {
  app.get<{ Params: { model: string } }>(
    '/routing/:model',
    {
      schema: {
        tags: ['routing'],
        summary: 'The live routing table of a model and its statistics',
        description:
          'Per variant: weight and share, requests and inputs served, feedback counts, online accuracy over the last feedback.window outcomes with a 95% Wilson interval; ' +
          'the difference of online accuracy between variants with a 95% Newcombe interval; shadow agreement; cascade escalations.',
        params,
        response: { 200: ok('RoutingStatus', 'Routing of the model'), ...errorResponses([404, 503]) },
      },
    },
    async (request): Promise<RoutingStatusBody> => core.routingStatus(request.params.model),
  );

  app.put<{ Params: { model: string }; Body: unknown }>(
    '/routing/:model',
    {
      // The table is checked by the routing module (the same messages as a reloaded routing.json),
      // so the body schema documents it but does not refuse it first.
      attachValidation: true,
      schema: {
        tags: ['routing'],
        summary: 'Replace the routing table of a model (admin)',
        description:
          'Needs Authorization: Bearer <adminToken>. Applied atomically: a request sees the old table or the new one. Also written to routing.json when the model directory is ' +
          'writable (persisted). Single-node use: with several replicas, change the mounted routing.json instead; every replica re-reads it within routingReloadMs.',
        params,
        body: { $ref: 'RoutingTable#' },
        response: { 200: ok('RoutingStatus', 'The new routing'), ...errorResponses([400, 401, 403, 404, 503]) },
      },
    },
    async (request): Promise<RoutingStatusBody> => {
      requireAdmin(request, core.config.adminToken);
      return core.replaceRouting(request.params.model, request.body);
    },
  );
}
