// The Open Inference Protocol (KServe v2) REST subset. A model's "version" is a variant name;
// without one, requests are routed like /classify. One input `text` (BYTES, shape [N]); outputs
// `label` (BYTES [N]) and `probabilities` (FP32 [N, labels]).
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ServedModel } from '../catalogue.js';
import { findVariant } from '../catalogue.js';
import { CoreError } from '../errors.js';
import type { ServeCore } from '../core.js';
import { clientGone, deadlineOf, routingKey, setInferenceHeaders } from './request-context.js';
import {
  errorResponses,
  ok,
  v2ErrorRef,
  type V2InferenceRequestBody,
  type V2InferenceResponseBody,
  type V2ModelMetadataBody,
  type V2ReadyBody,
  type V2ServerMetadataBody,
} from './schemas.js';
import { BINARY_CONTENT_TYPE, binaryOutputs, decodeBinaryRequest, encodeBinaryResponse, HEADER_LENGTH } from './v2-binary.js';

export const V2_INPUT = 'text';
export const V2_OUTPUTS = ['label', 'probabilities'] as const;
/** Protocol extensions served, as GET /v2 lists them. */
export const V2_EXTENSIONS = ['binary_tensor_data'] as const;

interface V2Params {
  model: string;
  version?: string;
}

type V2InferBody = V2InferenceRequestBody;
type V2Output = NonNullable<V2InferenceResponseBody['outputs']>[number];

const modelParams = {
  type: 'object',
  required: ['model'],
  properties: { model: { type: 'string' } },
} as const;
const versionParams = {
  type: 'object',
  required: ['model', 'version'],
  properties: { model: { type: 'string' }, version: { type: 'string', description: 'Variant name, e.g. k1.' } },
} as const;

/** Nesting past this is refused: the input's shape is [N], and Array.prototype.flat recursed
 * into a 100,000-deep body until the stack overflowed (answered 500). */
const MAX_DATA_NESTING = 32;

/** Row-major contents of (possibly nested) tensor data, without recursion. */
function flatten(data: unknown[]): unknown[] {
  if (!data.some(Array.isArray)) return data;
  const out: unknown[] = [];
  const stack: { items: unknown[]; at: number }[] = [{ items: data, at: 0 }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    if (top.at >= top.items.length) {
      stack.pop();
      continue;
    }
    const v = top.items[top.at++];
    if (!Array.isArray(v)) out.push(v);
    else if (stack.length >= MAX_DATA_NESTING)
      throw new CoreError('INVALID_REQUEST', `input "${V2_INPUT}": data nested deeper than ${MAX_DATA_NESTING} levels`);
    else stack.push({ items: v, at: 0 });
  }
  return out;
}

/** The texts of a request, checked against the one input this server takes. */
function textsOf(body: V2InferBody): string[] {
  const input = body.inputs.find((i) => i.name === V2_INPUT);
  if (body.inputs.length !== 1 || !input) {
    throw new CoreError('INVALID_REQUEST', `expected exactly one input named "${V2_INPUT}", got ${body.inputs.map((i) => JSON.stringify(i.name)).join(', ')}`);
  }
  if (input.datatype !== 'BYTES') throw new CoreError('INVALID_REQUEST', `input "${V2_INPUT}" must have datatype BYTES, got ${input.datatype}`);
  // [N, 1] is what tritonclient and most batching clients send for one text per row.
  if (!(input.shape.length === 1 || (input.shape.length === 2 && input.shape[1] === 1)) || input.shape[0]! < 1) {
    throw new CoreError('INVALID_REQUEST', `input "${V2_INPUT}" must have shape [N] or [N, 1] with N >= 1, got [${input.shape.join(', ')}]`);
  }
  const data = flatten(input.data);
  if (data.length !== input.shape[0]) {
    throw new CoreError('INVALID_REQUEST', `input "${V2_INPUT}" has shape [${input.shape[0]}] but ${data.length} elements`);
  }
  if (!data.every((d): d is string => typeof d === 'string')) throw new CoreError('INVALID_REQUEST', `input "${V2_INPUT}" must hold strings`);
  return data;
}

function requestedOutputs(body: V2InferBody): Set<string> {
  if (!body.outputs || body.outputs.length === 0) return new Set(V2_OUTPUTS);
  for (const o of body.outputs) {
    if (!(V2_OUTPUTS as readonly string[]).includes(o.name)) {
      throw new CoreError('INVALID_REQUEST', `unknown output "${o.name}"; outputs are ${V2_OUTPUTS.join(', ')}`);
    }
  }
  return new Set(body.outputs.map((o) => o.name));
}

function modelMetadata(model: ServedModel, version: string | undefined): V2ModelMetadataBody {
  const variants = version === undefined ? model.variants : [findVariantOr404(model, version)];
  const labels = variants[0]!.labels;
  return {
    name: model.name,
    versions: variants.map((v) => v.name),
    platform: 'onnxruntime_onnx',
    inputs: [{ name: V2_INPUT, datatype: 'BYTES', shape: [-1] }],
    outputs: [
      { name: 'label', datatype: 'BYTES', shape: [-1] },
      { name: 'probabilities', datatype: 'FP32', shape: [-1, labels.length] },
    ],
    properties: {
      labels: labels.join(','),
      depths: variants.map((v) => String(v.depth)).join(','),
      devices: variants.map((v) => v.device).join(','),
    },
  };
}

function findVariantOr404(model: ServedModel, version: string) {
  const v = findVariant(model, version);
  if (!v) throw new CoreError('VARIANT_NOT_FOUND', `model ${model.name} has no version (variant) ${version}`);
  return v;
}

export function v2Routes(app: FastifyInstance, core: ServeCore, serverVersion: string): void {
  const v2 = { v2: true };

  app.get(
    '/v2',
    {
      config: v2,
      schema: { tags: ['open inference protocol'], summary: 'Server metadata', response: { 200: ok('V2ServerMetadata', 'Server metadata') } },
    },
    // The extension names are Triton's: clients look for "binary_tensor_data" before they send binary bodies.
    async (): Promise<V2ServerMetadataBody> => ({ name: 'slimserve', version: serverVersion, extensions: [...V2_EXTENSIONS] }),
  );

  app.get(
    '/v2/health/live',
    { config: v2, schema: { tags: ['open inference protocol'], summary: 'Server live', response: { 200: ok('V2Ready', 'Live') } } },
    async (): Promise<V2ReadyBody> => ({ live: true }),
  );

  app.get(
    '/v2/health/ready',
    {
      config: v2,
      schema: { tags: ['open inference protocol'], summary: 'Server ready', response: { 200: ok('V2Ready', 'Ready'), ...errorResponses([503], v2ErrorRef) } },
    },
    async (): Promise<V2ReadyBody> => {
      const refused = core.unavailable();
      if (refused) throw refused;
      return { ready: true };
    },
  );

  const metadata = async (request: FastifyRequest<{ Params: V2Params }>): Promise<V2ModelMetadataBody> => {
    const model = core.model(request.params.model);
    return modelMetadata(model, request.params.version);
  };
  for (const [url, params] of [
    ['/v2/models/:model', modelParams],
    ['/v2/models/:model/versions/:version', versionParams],
  ] as const) {
    app.get<{ Params: V2Params }>(
      url,
      {
        config: v2,
        schema: {
          tags: ['open inference protocol'],
          summary: 'Model metadata',
          params,
          response: { 200: ok('V2ModelMetadata', 'Model metadata'), ...errorResponses([404], v2ErrorRef) },
        },
      },
      metadata,
    );
  }

  const ready = async (request: FastifyRequest<{ Params: V2Params }>): Promise<V2ReadyBody> => {
    const model = core.model(request.params.model);
    if (request.params.version !== undefined) findVariantOr404(model, request.params.version);
    const refused = core.unavailable();
    if (refused) throw refused;
    return { name: model.name, ready: true };
  };
  for (const [url, params] of [
    ['/v2/models/:model/ready', modelParams],
    ['/v2/models/:model/versions/:version/ready', versionParams],
  ] as const) {
    app.get<{ Params: V2Params }>(
      url,
      {
        config: v2,
        schema: {
          tags: ['open inference protocol'],
          summary: 'Model ready',
          params,
          response: { 200: ok('V2Ready', 'Ready'), ...errorResponses([404, 503], v2ErrorRef) },
        },
      },
      ready,
    );
  }

  const infer = async (
    request: FastifyRequest<{ Params: V2Params; Body: V2InferBody }>,
    reply: FastifyReply,
  ): Promise<V2InferenceResponseBody | FastifyReply> => {
    const body = request.body;
    const texts = textsOf(body);
    const outputs = requestedOutputs(body);
    const binary = binaryOutputs(body, V2_OUTPUTS);
    request.notes.inputs = texts.length;
    const truncate = body.parameters?.truncate;
    if (truncate !== undefined && typeof truncate !== 'boolean') throw new CoreError('INVALID_REQUEST', 'parameters.truncate must be a boolean');
    const key = body.parameters?.key;
    if (key !== undefined && typeof key !== 'string') throw new CoreError('INVALID_REQUEST', 'parameters.key must be a string');
    // Resolve the model before routing so an unknown one is a 404 even with one model served.
    core.model(request.params.model);
    const outcome = await core.classify({
      model: request.params.model,
      variant: request.params.version,
      key: routingKey(request, key),
      inputs: texts,
      truncate: truncate ?? true,
      requestId: request.id,
      deadline: deadlineOf(reply, core.config.requestTimeoutMs),
      signal: clientGone(reply),
    });
    setInferenceHeaders(request, reply, outcome);
    const labels = outcome.variant.labels;
    const n = outcome.probabilities.length;
    const tensors: V2Output[] = [];
    if (outputs.has('label')) {
      tensors.push({ name: 'label', datatype: 'BYTES', shape: [n], data: outcome.labels });
    }
    if (outputs.has('probabilities')) {
      const flat: number[] = [];
      for (const p of outcome.probabilities) for (const x of p) flat.push(x);
      tensors.push({ name: 'probabilities', datatype: 'FP32', shape: [n, labels.length], data: flat, parameters: { labels: labels.join(',') } });
    }
    const answer = {
      model_name: outcome.model.name,
      model_version: outcome.variant.name,
      id: body.id ?? request.id,
      // request_id: what POST /feedback takes (signed when feedbackSecret is set).
      parameters: { depth: outcome.variant.depth, request_id: outcome.requestId },
      outputs: tensors,
    } satisfies V2InferenceResponseBody;
    if (binary.size === 0) return answer;
    const encoded = encodeBinaryResponse(answer, binary);
    reply.header('inference-header-content-length', String(encoded.headerLength)).type('application/octet-stream');
    return reply.send(encoded.body);
  };
  // tritonclient sends no content type for JSON, and binary bodies with the header length only.
  app.addContentTypeParser(BINARY_CONTENT_TYPE, { parseAs: 'buffer' }, (request, body, done) => {
    try {
      done(null, decodeBinaryRequest(body as Buffer, request.headers[HEADER_LENGTH] as string | undefined));
    } catch (err) {
      done(err as Error, undefined);
    }
  });
  const contentTypeOfInfer = async (request: FastifyRequest): Promise<void> => {
    if (request.headers[HEADER_LENGTH] !== undefined) request.headers['content-type'] = BINARY_CONTENT_TYPE;
    else if (request.headers['content-type'] === undefined) request.headers['content-type'] = 'application/json';
  };
  for (const [url, params] of [
    ['/v2/models/:model/infer', modelParams],
    ['/v2/models/:model/versions/:version/infer', versionParams],
  ] as const) {
    app.post<{ Params: V2Params; Body: V2InferBody }>(
      url,
      {
        config: { ...v2, inference: true },
        onRequest: contentTypeOfInfer,
        schema: {
          tags: ['open inference protocol'],
          summary: 'Inference',
          description: `One input "${V2_INPUT}" (BYTES, shape [N] or [N, 1]); outputs label (BYTES [N]) and probabilities (FP32 [N, labels]). parameters: truncate, key. JSON with or without a content type, or the binary tensor extension (Inference-Header-Content-Length; binary_data on an output, binary_data_output in the request parameters).`,
          params,
          body: { $ref: 'V2InferenceRequest#' },
          response: { 200: ok('V2InferenceResponse', 'Inference response'), ...errorResponses([400, 404, 413, 422, 429, 503, 504], v2ErrorRef) },
        },
      },
      infer,
    );
  }
}
