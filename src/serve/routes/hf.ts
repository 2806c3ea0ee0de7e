// The Hugging Face text-classification shape, so that `@huggingface/inference`'s
// `InferenceClient().endpoint(URL).textClassification({ inputs })` works unchanged against us.
// The client posts its arguments to the endpoint URL as they are and reads `answer[0]` as the
// `[{label, score}]` list, so the answer is always one list per input (HF Inference API shape),
// every label sorted by score (highest first) unless parameters.top_k cuts it.
// parameters.function_to_apply is the transformers text-classification pipeline's: softmax
// (the served probabilities), sigmoid (of each logit) or none (the logits). The ONNX variants
// output logits and the workers carry them beside the probabilities, so all three are exact.
// Errors answer HF's `{"error": "<message>"}` so that the client shows our message.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { FromSchema } from 'json-schema-to-ts';
import type { ClassifyResult, ServeCore } from '../core.js';
import { errorResponses, hfErrorRef } from './schemas.js';
import { clientGone, deadlineOf, routingKey, setInferenceHeaders } from './request-context.js';

const hfRequestSchema = {
  type: 'object',
  required: ['inputs'],
  properties: {
    inputs: {
      description: 'One text, or a list of texts',
      oneOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' }, minItems: 1 }],
    },
    parameters: {
      type: 'object',
      properties: {
        top_k: { type: 'integer', minimum: 1, description: 'How many labels per input (default: all)' },
        function_to_apply: {
          type: 'string',
          enum: ['softmax', 'sigmoid', 'none'],
          description:
            'softmax (default; the probabilities /classify answers), sigmoid (1 / (1 + exp(-logit)) per label, independently) or none (the raw logits). ' +
            'Default as the transformers pipeline: softmax, or sigmoid for a one-label model.',
        },
      },
    },
    options: { type: 'object', description: 'HF client options (wait_for_model, use_cache): accepted and ignored' },
  },
} as const;

const hfResponseSchema = {
  description: 'Per input, its labels and scores (after function_to_apply) sorted by score, highest first',
  type: 'array',
  items: {
    type: 'array',
    items: {
      type: 'object',
      required: ['label', 'score'],
      properties: { label: { type: 'string' }, score: { type: 'number' } },
    },
  },
} as const;

type HfBody = FromSchema<typeof hfRequestSchema>;
type HfAnswer = FromSchema<typeof hfResponseSchema>;
type FunctionToApply = NonNullable<NonNullable<HfBody['parameters']>['function_to_apply']>;

/** Input i's score per label (manifest order) after the pipeline's function_to_apply. */
export function hfScores(outcome: ClassifyResult, i: number, fn: FunctionToApply): ArrayLike<number> {
  switch (fn) {
    case 'softmax':
      return outcome.probabilities[i]!;
    case 'sigmoid':
      return Array.from(outcome.logits[i]!, (z) => 1 / (1 + Math.exp(-z)));
    case 'none':
      return outcome.logits[i]!;
  }
}

export function hfRoutes(app: FastifyInstance, core: ServeCore): void {
  const handler = async (request: FastifyRequest<{ Body: HfBody; Params: { model?: string } }>, reply: FastifyReply): Promise<HfAnswer> => {
    const body = request.body;
    const inputs = typeof body.inputs === 'string' ? [body.inputs] : body.inputs;
    request.notes.inputs = inputs.length;
    const outcome = await core.classify({
      model: request.params.model,
      key: routingKey(request, undefined),
      inputs,
      truncate: true,
      requestId: request.id,
      deadline: deadlineOf(reply, core.config.requestTimeoutMs),
      signal: clientGone(reply),
    });
    setInferenceHeaders(request, reply, outcome);
    const labels = outcome.variant.labels;
    const topK = body.parameters?.top_k ?? labels.length;
    const fn = body.parameters?.function_to_apply ?? (labels.length === 1 ? 'sigmoid' : 'softmax');
    return inputs.map((_, input) => {
      const scores = hfScores(outcome, input, fn);
      return labels
        .map((label, i) => ({ label, score: scores[i]! }))
        .sort((a, b) => b.score - a.score)
        .slice(0, topK);
    });
  };
  const schema = (summary: string, params?: Record<string, unknown>) => ({
    tags: ['inference'],
    summary,
    description:
      'Hugging Face text-classification request ({inputs, parameters: {top_k, function_to_apply}}) and answer ' +
      "([[{label, score}]], one list per input). Texts longer than the variant's maxLength are truncated.",
    ...(params ? { params } : {}),
    body: hfRequestSchema,
    response: { 200: hfResponseSchema, ...errorResponses([400, 404, 413, 415, 429, 500, 503, 504], hfErrorRef) },
  });
  app.post<{ Body: HfBody; Params: { model?: string } }>(
    '/models/:model',
    {
      config: { inference: true, errorShape: 'hf' },
      schema: schema('Classify, Hugging Face Inference API shape (model named in the path)', {
        type: 'object',
        properties: { model: { type: 'string', description: 'A served model name' } },
      }),
    },
    handler,
  );
  app.post<{ Body: HfBody; Params: { model?: string } }>(
    '/hf',
    { config: { inference: true, errorShape: 'hf' }, schema: schema('Classify, Hugging Face Inference API shape (the only served model)') },
    handler,
  );
}
