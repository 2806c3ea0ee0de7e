// POST /feedback {request_id, label | labels}: the true label of an answered /classify request,
// joined with the prediction behind its request_id; counts toward the online accuracy of the
// variant that decided each input. 202: accepted (and counted unless it was a repeat).
import type { FastifyInstance } from 'fastify';
import { clientKey } from '../connection-limit.js';
import { CoreError } from '../errors.js';
import type { ServeCore } from '../core.js';
import { requireBearer } from './admin-auth.js';
import type { FeedbackRequestBody, FeedbackResponseBody } from './routing-schemas.js';
import { errorResponses, ok } from './schemas.js';

export function feedbackRoutes(app: FastifyInstance, core: ServeCore): void {
  app.post<{ Body: FeedbackRequestBody; Reply: FeedbackResponseBody }>(
    '/feedback',
    {
      schema: {
        tags: ['routing'],
        summary: 'Report the true label of an answered request',
        description:
          'request_id is the one a /classify answer carried. "label" for a one-input request; "labels" (one per input, null to skip) for a list. ' +
          'Each input counts once toward the online accuracy of the variant that decided it; a repeat is accepted and not counted again. ' +
          'With feedbackSecret set the id is signed and self-describing, so any replica takes it; without, only the replica that answered, within feedback.ttlMs. ' +
          'With feedbackToken set, Authorization: Bearer <feedbackToken> is required. Limited per client address to feedback.rateLimit requests per rateLimit.windowMs (429 RATE_LIMITED).',
        body: { $ref: 'FeedbackRequest#' },
        response: { 202: ok('FeedbackResponse', 'Accepted'), ...errorResponses([400, 401, 403, 404, 422, 429]) },
      },
    },
    async (request, reply) => {
      const token = core.config.feedbackToken;
      if (token !== null) requireBearer(request, token, 'feedback');
      const { request_id: id, label, labels } = request.body;
      if ((label === undefined) === (labels === undefined))
        throw new CoreError('INVALID_REQUEST', 'send exactly one of "label" (one input) or "labels" (one per input)');
      const result = await core.feedback(id, labels ?? [label!], clientKey(request.ip));
      request.notes.model = result.model;
      const variants = new Set(result.results.map((r) => r.variant));
      if (variants.size === 1) request.notes.variant = [...variants][0]!;
      return reply.code(202).send(result);
    },
  );
}
