// POST /classify: one text or a list, routed to a variant, batched, answered in input order.
import type { FastifyInstance } from 'fastify';
import type { ServeCore } from '../core.js';
import { argmax } from '../../probabilities.js';
import { errorResponses, ok, type ClassifyRequestBody, type ClassifyResponseBody } from './schemas.js';
import { clientGone, deadlineOf, routingKey, setInferenceHeaders } from './request-context.js';

export function classifyRoutes(app: FastifyInstance, core: ServeCore): void {
  app.post<{ Body: ClassifyRequestBody; Reply: ClassifyResponseBody }>(
    '/classify',
    {
      config: { inference: true },
      schema: {
        tags: ['inference'],
        summary: 'Classify one text or a list of texts',
        description:
          'Inputs are queued per variant and batched with other requests; a list may be split across batches and comes back in order. ' +
          'Headers: x-request-id, x-slim-variant, x-slim-queue-ms, x-slim-inference-ms, x-slim-total-ms, x-slim-truncated-inputs (how many inputs were cut to maxLength; results[].truncated says which).',
        body: { $ref: 'ClassifyRequest#' },
        response: { 200: ok('ClassifyResponse', 'One result per input, in input order'), ...errorResponses([400, 404, 413, 422, 429, 503, 504]) },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const inputs = typeof body.inputs === 'string' ? [body.inputs] : body.inputs;
      request.notes.inputs = inputs.length;
      const outcome = await core.classify({
        model: body.model,
        variant: body.variant,
        key: routingKey(request, body.key),
        inputs,
        truncate: body.truncate ?? true,
        requestId: request.id,
        deadline: deadlineOf(reply, core.config.requestTimeoutMs),
        signal: clientGone(reply),
      });
      setInferenceHeaders(request, reply, outcome);
      const labels = outcome.variant.labels;
      const cut = outcome.truncated.length > 0 ? new Set(outcome.truncated) : null;
      return {
        model: outcome.model.name,
        variant: outcome.variant.name,
        depth: outcome.variant.depth,
        request_id: outcome.requestId,
        routing: outcome.routing,
        results: outcome.probabilities.map((p, n) => {
          const best = argmax(p);
          // No prototype, so a label such as "__proto__" stays a plain key (as fromEntries would
          // make it, without its array of pairs per result).
          const scores: Record<string, number> = Object.create(null) as Record<string, number>;
          for (let i = 0; i < labels.length; i++) scores[labels[i]!] = p[i]!;
          const decidedBy = outcome.decidedBy[n]!;
          return { label: labels[best]!, score: p[best]!, scores, variant: decidedBy.name, depth: decidedBy.depth, truncated: cut !== null && cut.has(n) };
        }),
      };
    },
  );
}
