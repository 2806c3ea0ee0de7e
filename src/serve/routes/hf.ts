// The Hugging Face text-classification shape, so that `@huggingface/inference`'s
// `InferenceClient().endpoint(URL).textClassification({ inputs })` works unchanged against us.
// The client posts its arguments to the endpoint URL as they are and reads `answer[0]` as the
// `[{label, score}]` list, so the answer is always one list per input (HF Inference API shape),
// every label sorted by score (highest first) unless parameters.top_k cuts it.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ServeCore } from '../core.js';
import { CoreError } from '../errors.js';
import { errorResponses } from './schemas.js';
import { clientGone, deadlineOf, routingKey, setInferenceHeaders } from './request-context.js';

const hfRequestSchema = {
  type: 'object',
  required: ['inputs'],
  properties: {
    inputs: {
      description: 'One text, or a list of texts',
      oneOf: [
        { type: 'string' },
        { type: 'array', items: { type: 'string' }, minItems: 1 },
      ],
    },
    parameters: {
      type: 'object',
      properties: {
        top_k: { type: 'integer', minimum: 1, description: 'How many labels per input (default: all)' },
        function_to_apply: {
          type: 'string',
          enum: ['softmax', 'sigmoid', 'none'],
          description: 'Only softmax is served: the models answer probabilities (sigmoid and none answer 400)',
        },
      },
    },
    options: { type: 'object', description: 'HF client options (wait_for_model, use_cache): accepted and ignored' },
  },
} as const;

const hfResponseSchema = {
  description: 'Per input, its labels and probabilities sorted by score, highest first',
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

interface HfBody {
  inputs: string | string[];
  parameters?: { top_k?: number; function_to_apply?: 'softmax' | 'sigmoid' | 'none' };
}

export function hfRoutes(app: FastifyInstance, core: ServeCore): void {
  const handler = async (request: FastifyRequest<{ Body: HfBody; Params: { model?: string } }>, reply: FastifyReply) => {
    const body = request.body;
    const fn = body.parameters?.function_to_apply ?? 'softmax';
    if (fn !== 'softmax') {
      throw new CoreError('INVALID_REQUEST', `parameters.function_to_apply "${fn}" is not served: the models answer softmax probabilities only`);
    }
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
    return outcome.probabilities.map((p) =>
      labels
        .map((label, i) => ({ label, score: p[i]! }))
        .sort((a, b) => b.score - a.score)
        .slice(0, topK),
    );
  };
  const schema = (summary: string, params?: Record<string, unknown>) => ({
    tags: ['inference'],
    summary,
    description:
      'Hugging Face text-classification request ({inputs, parameters: {top_k, function_to_apply}}) and answer ' +
      '([[{label, score}]], one list per input). Texts longer than the variant\'s maxLength are truncated.',
    ...(params ? { params } : {}),
    body: hfRequestSchema,
    response: { 200: hfResponseSchema, ...errorResponses([400, 404, 413, 429, 503, 504]) },
  });
  app.post<{ Body: HfBody; Params: { model?: string } }>(
    '/models/:model',
    {
      config: { inference: true },
      schema: schema('Classify, Hugging Face Inference API shape (model named in the path)', {
        type: 'object',
        properties: { model: { type: 'string', description: 'A served model name' } },
      }),
    },
    handler,
  );
  app.post<{ Body: HfBody; Params: { model?: string } }>(
    '/hf',
    { config: { inference: true }, schema: schema('Classify, Hugging Face Inference API shape (the only served model)') },
    handler,
  );
}
