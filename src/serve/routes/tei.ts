// Text Embeddings Inference (TEI) classifier routes, so that a TEI client or a gateway configured
// for TEI can point at us: POST /predict, GET /info, GET /health. Shapes follow TEI's
// router/src/http/types.rs: `inputs` is a text, ["text"], a pair ["a", "b"], or a batch
// [["text"], ["a", "b"], ...] (an array of arrays); the answer is [{score, label}] sorted by
// score, or one such list per input for a batch.
// Not served: text pairs and raw_scores (the models answer probabilities): both answer 400.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ServeCore } from '../core.js';
import { CoreError } from '../errors.js';
import { errorResponses } from './schemas.js';
import { clientGone, deadlineOf, routingKey, setInferenceHeaders } from './request-context.js';

const sequence = { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: 2 } as const;

const teiPredictRequestSchema = {
  type: 'object',
  required: ['inputs'],
  properties: {
    inputs: {
      description: 'A text, ["text"], a pair ["a", "b"] (refused), or a batch [["text"], ["text"], ...]',
      anyOf: [{ type: 'string' }, sequence, { type: 'array', items: sequence, minItems: 1 }],
    },
    raw_scores: { type: 'boolean', description: 'Only false is served (probabilities)' },
    truncate: { type: 'boolean', description: 'Cut texts longer than maxLength (default false: 422 TEXT_TOO_LONG)' },
    truncation_direction: { type: 'string', enum: ['Right', 'Left', 'right', 'left'] },
  },
} as const;

const prediction = {
  type: 'object',
  required: ['score', 'label'],
  properties: { score: { type: 'number' }, label: { type: 'string' } },
} as const;

const teiPredictResponseSchema = {
  description: 'One text: [{score, label}] sorted by score; a batch: one such list per input',
  anyOf: [
    { type: 'array', items: prediction },
    { type: 'array', items: { type: 'array', items: prediction } },
  ],
} as const;

interface TeiPredictBody {
  inputs: string | string[] | string[][];
  raw_scores?: boolean;
  truncate?: boolean;
  truncation_direction?: string;
}

/** One TEI sequence (["text"] or the pair ["a", "b"]) -> its text; pairs are refused. */
function textOf(sequence: readonly string[]): string {
  if (sequence.length !== 1) {
    throw new CoreError('INVALID_REQUEST', 'text pairs ["a", "b"] are not served: the models classify single texts (a batch is [["text"], ["text"], ...])');
  }
  return sequence[0]!;
}

/** TEI's reading of `inputs` (the schema has checked the types): a text, or a batch. */
export function teiTexts(inputs: TeiPredictBody['inputs']): { texts: string[]; batch: boolean } {
  if (typeof inputs === 'string') return { texts: [inputs], batch: false };
  if (inputs.every((s): s is string => typeof s === 'string')) return { texts: [textOf(inputs)], batch: false };
  return { texts: (inputs as string[][]).map(textOf), batch: true };
}

export function teiRoutes(app: FastifyInstance, core: ServeCore, version: string): void {
  app.post<{ Body: TeiPredictBody }>(
    '/predict',
    {
      config: { inference: true },
      schema: {
        tags: ['inference'],
        summary: 'Classify, Text Embeddings Inference (TEI) shape',
        description: 'TEI request {inputs, raw_scores, truncate} and answer [{score, label}] (a list of those per input for a batch). Text pairs and raw_scores: true answer 400.',
        body: teiPredictRequestSchema,
        response: { 200: teiPredictResponseSchema, ...errorResponses([400, 404, 413, 422, 429, 503, 504]) },
      },
    },
    async (request: FastifyRequest<{ Body: TeiPredictBody }>, reply: FastifyReply) => {
      const body = request.body;
      if (body.raw_scores === true) throw new CoreError('INVALID_REQUEST', 'raw_scores: true is not served: the models answer probabilities only');
      const { texts, batch } = teiTexts(body.inputs);
      request.notes.inputs = texts.length;
      const outcome = await core.classify({
        key: routingKey(request, undefined),
        inputs: texts,
        truncate: body.truncate ?? false,
        requestId: request.id,
        deadline: deadlineOf(reply, core.config.requestTimeoutMs),
        signal: clientGone(reply),
      });
      setInferenceHeaders(request, reply, outcome);
      const labels = outcome.variant.labels;
      const lists = outcome.probabilities.map((p) =>
        labels.map((label, i) => ({ score: p[i]!, label })).sort((a, b) => b.score - a.score),
      );
      return batch ? lists : lists[0];
    },
  );

  app.get(
    '/info',
    {
      schema: {
        tags: ['models'],
        summary: 'TEI router info of the served model (its default variant)',
        response: { 200: { type: 'object', additionalProperties: true }, ...errorResponses([400, 503]) },
      },
    },
    async () => {
      const model = core.model(undefined);
      const variant = model.variants.find((v) => v.name === model.defaultVariant) ?? model.variants[0]!;
      const id2label = Object.fromEntries(variant.labels.map((l, i) => [String(i), l]));
      const label2id = Object.fromEntries(variant.labels.map((l, i) => [l, i]));
      const cfg = core.config;
      return {
        model_id: model.name,
        model_sha: null,
        model_dtype: 'float32',
        model_type: { classifier: { id2label, label2id } },
        max_concurrent_requests: cfg.batching.maxQueued,
        max_input_length: variant.maxLength,
        max_batch_tokens: cfg.batching.maxBatchTokens,
        max_batch_requests: cfg.batching.maxBatchSize,
        max_client_batch_size: cfg.maxInputs,
        auto_truncate: false,
        tokenization_workers: 1,
        version,
        sha: null,
        docker_label: null,
      };
    },
  );

  app.get(
    '/health',
    {
      schema: {
        tags: ['health'],
        summary: 'TEI health: 200 once the models are loaded and warm, 503 otherwise',
        response: { 200: { description: 'Healthy', type: 'null' }, ...errorResponses([503]) },
      },
    },
    async (_request, reply) => {
      const refused = core.unavailable();
      if (refused) throw refused;
      return reply.code(200).send();
    },
  );
}
