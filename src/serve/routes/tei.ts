// Text Embeddings Inference (TEI) classifier routes, so that a TEI client or a gateway configured
// for TEI can point at us: POST /predict, GET /info, GET /health. Shapes follow TEI's
// router/src/http/types.rs: `inputs` is a text, ["text"], a pair ["a", "b"], or a batch
// [["text"], ["a", "b"], ...] (an array of arrays); the answer is [{score, label}] sorted by
// score, or one such list per input for a batch. raw_scores: true answers the logits (what the
// ONNX variants output; the probabilities are their softmax). Errors answer TEI's ErrorResponse
// {error, error_type}. Not served: text pairs and left truncation (both 400, never a silent
// right cut).
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { FromSchema } from 'json-schema-to-ts';
import type { ServeCore } from '../core.js';
import { CoreError } from '../errors.js';
import { precisionOf } from '../../manifest.js';
import { errorResponses, teiErrorRef } from './schemas.js';
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
    raw_scores: { type: 'boolean', description: 'true: the logits; false (default): their softmax, the probabilities /classify answers' },
    truncate: { type: 'boolean', description: 'Cut texts longer than maxLength (default false: 422 TEXT_TOO_LONG)' },
    truncation_direction: {
      type: 'string',
      enum: ['Right', 'Left', 'right', 'left'],
      description: 'Only Right (the default) is served: Left with truncate: true answers 400',
    },
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

type TeiPredictBody = FromSchema<typeof teiPredictRequestSchema>;
type TeiPredictAnswer = FromSchema<typeof teiPredictResponseSchema>;

/** TEI's Info (router/src/lib.rs), for a classifier. */
const teiInfoSchema = {
  type: 'object',
  additionalProperties: false,
  required: [
    'model_id',
    'model_sha',
    'model_dtype',
    'model_type',
    'max_concurrent_requests',
    'max_input_length',
    'max_batch_tokens',
    'max_batch_requests',
    'max_client_batch_size',
    'auto_truncate',
    'tokenization_workers',
    'version',
    'sha',
    'docker_label',
  ],
  properties: {
    model_id: { type: 'string', description: "The served model's name" },
    model_sha: { type: ['string', 'null'] },
    model_dtype: { type: 'string', description: "float32, float16 or int8: the default variant's precision" },
    model_type: {
      type: 'object',
      additionalProperties: false,
      required: ['classifier'],
      properties: {
        classifier: {
          type: 'object',
          additionalProperties: false,
          required: ['id2label', 'label2id'],
          properties: {
            id2label: { type: 'object', additionalProperties: { type: 'string' } },
            label2id: { type: 'object', additionalProperties: { type: 'integer' } },
          },
        },
      },
    },
    max_concurrent_requests: { type: 'integer', description: 'Inputs a variant queues before 429 (batching.maxQueued)' },
    max_input_length: { type: 'integer', description: "The default variant's maxLength, in tokens" },
    max_batch_tokens: { type: 'integer' },
    max_batch_requests: { type: ['integer', 'null'] },
    max_client_batch_size: { type: 'integer', description: 'Inputs per request (maxInputs)' },
    auto_truncate: { type: 'boolean', description: 'false: /predict truncates only when asked (truncate: true)' },
    tokenization_workers: { type: 'integer' },
    version: { type: 'string', description: "slimserve's version" },
    sha: { type: ['string', 'null'] },
    docker_label: { type: ['string', 'null'] },
  },
} as const;
type TeiInfo = FromSchema<typeof teiInfoSchema>;

/** TEI's dtype names for a variant's precision. */
const TEI_DTYPE = { fp32: 'float32', fp16: 'float16', int8: 'int8' } as const;

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
  const items: readonly (string | readonly string[])[] = inputs;
  if (items.every((s): s is string => typeof s === 'string')) return { texts: [textOf(items)], batch: false };
  return { texts: (items as readonly (readonly string[])[]).map(textOf), batch: true };
}

export function teiRoutes(app: FastifyInstance, core: ServeCore, version: string): void {
  app.post<{ Body: TeiPredictBody }>(
    '/predict',
    {
      config: { inference: true, errorShape: 'tei' },
      schema: {
        tags: ['inference'],
        summary: 'Classify, Text Embeddings Inference (TEI) shape',
        description:
          'TEI request {inputs, raw_scores, truncate} and answer [{score, label}] (a list of those per input for a batch): probabilities, or the logits with raw_scores: true. ' +
          "Text pairs and truncation_direction Left (with truncate: true) answer 400. Errors are TEI's {error, error_type}.",
        body: teiPredictRequestSchema,
        response: { 200: teiPredictResponseSchema, ...errorResponses([400, 404, 413, 415, 422, 429, 500, 503, 504], teiErrorRef) },
      },
    },
    async (request: FastifyRequest<{ Body: TeiPredictBody }>, reply: FastifyReply): Promise<TeiPredictAnswer> => {
      const body = request.body;
      if (body.truncate === true && body.truncation_direction?.toLowerCase() === 'left') {
        throw new CoreError('INVALID_REQUEST', 'truncation_direction "Left" is not served: texts longer than maxLength are cut on the right');
      }
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
      const scores = body.raw_scores === true ? outcome.logits : outcome.probabilities;
      const lists = scores.map((p) => labels.map((label, i) => ({ score: p[i]!, label })).sort((a, b) => b.score - a.score));
      return batch ? lists : lists[0]!;
    },
  );

  app.get(
    '/info',
    {
      config: { errorShape: 'tei' },
      schema: {
        tags: ['models'],
        summary: 'TEI router info of the served model (its default variant)',
        response: { 200: teiInfoSchema, ...errorResponses([400, 503], teiErrorRef) },
      },
    },
    async (): Promise<TeiInfo> => {
      const model = core.model(undefined);
      const variant = model.variants.find((v) => v.name === model.defaultVariant) ?? model.variants[0]!;
      const id2label = Object.fromEntries(variant.labels.map((l, i) => [String(i), l]));
      const label2id = Object.fromEntries(variant.labels.map((l, i) => [l, i]));
      const cfg = core.config;
      return {
        model_id: model.name,
        model_sha: null,
        model_dtype: TEI_DTYPE[precisionOf(variant.manifest)],
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
      config: { errorShape: 'tei' },
      schema: {
        tags: ['health'],
        summary: 'TEI health: 200 once the models are loaded and warm, 503 otherwise',
        response: { 200: { description: 'Healthy', type: 'null' }, ...errorResponses([503], teiErrorRef) },
      },
    },
    async (_request, reply) => {
      const refused = core.unavailable();
      if (refused) throw refused;
      return reply.code(200).send();
    },
  );
}
