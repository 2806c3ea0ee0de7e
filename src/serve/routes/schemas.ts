// JSON schemas of the HTTP API. They drive request validation (ajv), response serialisation
// (fast-json-stringify) and the OpenAPI document (@fastify/swagger): one source for all three.
// Shared shapes are registered with an $id and referenced as "<Id>#". The TypeScript types of
// request bodies and of answers are derived from the same schemas (json-schema-to-ts
// FromSchema), so the contract is declared once: a field added to a schema is a field the
// handler sees, and a handler cannot answer a field of the wrong type or miss a required one.
import type { FromSchema } from 'json-schema-to-ts';
import { ERROR_CODES, ERRORS } from '../errors.js';
import { errorBodySchema, hfErrorBodySchema, teiErrorBodySchema, v2ErrorBodySchema } from './error-replies.js';
import { routingSchemas } from './routing-schemas.js';
import { reloadFailureSchema, reloadReportSchema, reloadSchemas, reloadStatusSchema } from './reload-schemas.js';

export const classifyRequestSchema = {
  $id: 'ClassifyRequest',
  type: 'object',
  additionalProperties: false,
  required: ['inputs'],
  properties: {
    inputs: {
      description: 'One text, or a list of texts (at most maxInputs).',
      anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' }, minItems: 1 }],
    },
    model: { type: 'string', minLength: 1, description: 'Model name; may be omitted when one model is served.' },
    variant: { type: 'string', minLength: 1, description: 'Variant (k<depth>[-suffix]); routed when omitted.' },
    key: { type: 'string', description: 'Client key for sticky routing (also the x-slim-key header).' },
    truncate: { type: 'boolean', default: true, description: "Cut texts longer than the variant's maxLength; false answers 422 instead." },
  },
} as const;

/** The body of POST /classify, as validated. */
export type ClassifyRequestBody = FromSchema<typeof classifyRequestSchema>;

export const classifyResultSchema = {
  $id: 'ClassifyResult',
  type: 'object',
  required: ['label', 'score', 'scores', 'truncated'],
  properties: {
    label: { type: 'string', description: 'The most probable label.' },
    score: { type: 'number', description: 'Its probability.' },
    scores: { type: 'object', additionalProperties: { type: 'number' }, description: 'Probability of every label.' },
    variant: { type: 'string', description: 'The variant that decided this input (in a cascade, the depth where it stopped).' },
    depth: { type: 'integer', description: 'Its depth.' },
    truncated: {
      type: 'boolean',
      description:
        "This input had more tokens than the variant's maxLength and only its first maxLength were classified (truncate: true, the default). x-slim-truncated-inputs counts them.",
    },
  },
} as const;

export const classifyResponseSchema = {
  $id: 'ClassifyResponse',
  type: 'object',
  required: ['model', 'variant', 'depth', 'request_id', 'results'],
  properties: {
    model: { type: 'string' },
    variant: { type: 'string', description: 'The variant that answered (in a cascade, the deepest one any input needed).' },
    depth: { type: 'integer' },
    request_id: {
      type: 'string',
      description:
        "Id for POST /feedback, issued by the server (never the client's x-request-id): a random id, or with feedbackSecret a signed id carrying model, variant and predicted labels.",
    },
    routing: { type: 'string', enum: ['explicit', 'cascade', 'sticky', 'weighted', 'default'], description: 'How the variant was chosen.' },
    results: { type: 'array', items: { $ref: 'ClassifyResult#' }, description: 'One per input, in input order.' },
  },
} as const;

/** The body of POST /classify's 200. */
export type ClassifyResponseBody = FromSchema<typeof classifyResponseSchema, { references: [typeof classifyResultSchema] }>;

export const variantInfoSchema = {
  $id: 'VariantInfo',
  type: 'object',
  required: ['name', 'depth', 'precision', 'device', 'requestedDevice', 'ready', 'queueDepth', 'running', 'labels', 'maxLength'],
  properties: {
    name: { type: 'string' },
    depth: { type: 'integer' },
    precision: { type: 'string', enum: ['fp32', 'int8', 'fp16'], description: "The variant's numeric precision (manifest `precision`; fp32 when absent)." },
    device: { type: 'string', description: 'Device the variant runs on (cpu when the requested one was unavailable).' },
    requestedDevice: { type: 'string' },
    fallbackReason: { type: 'string' },
    int8Weights: {
      type: 'object',
      required: ['file', 'run'],
      additionalProperties: false,
      description:
        'int8 variants: how the weights are stored in model.onnx and in the running sessions. The server rewrites them (exactly: same integers, same answers) to the storage whose kernel is fast and exact on this CPU (--int8-weights).',
      properties: { file: { type: 'string', enum: ['int8', 'uint8'] }, run: { type: 'string', enum: ['int8', 'uint8'] } },
    },
    ready: { type: 'boolean' },
    queueDepth: { type: 'integer', description: 'Inputs waiting for a batch.' },
    running: { type: 'integer', description: 'Inputs in batches running now.' },
    labels: { type: 'array', items: { type: 'string' } },
    maxLength: { type: 'integer' },
    head: { type: 'string' },
    params: { type: 'number' },
    base: { type: 'object', additionalProperties: true },
    train: { type: 'object', additionalProperties: true },
    eval: { type: 'object', additionalProperties: true },
    onnxSha256: { type: 'string' },
    createdAt: { type: 'string' },
    version: { type: 'string', description: 'Version of the build tool that made the variant.' },
    loadMs: { type: 'number' },
    warmupMs: { type: 'number' },
    lastReloadError: {
      $ref: 'ReloadFailure#',
      description: "Hot reload found this variant's directory changed and could not load it: the version shown keeps serving.",
    },
  },
} as const;

export const modelInfoSchema = {
  $id: 'ModelInfo',
  type: 'object',
  required: ['name', 'labels', 'variants', 'defaultVariant'],
  properties: {
    name: { type: 'string' },
    labels: { type: 'array', items: { type: 'string' }, description: 'Labels of the shallowest variant.' },
    defaultVariant: { type: 'string', description: 'Variant used when neither the request nor routing.json chooses.' },
    routing: { type: 'object', additionalProperties: true, nullable: true, description: 'routing.json as loaded, or null.' },
    variants: { type: 'array', items: { $ref: 'VariantInfo#' } },
  },
} as const;

export const modelListSchema = {
  $id: 'ModelList',
  type: 'object',
  required: ['ready', 'models'],
  properties: {
    ready: { type: 'boolean' },
    models: { type: 'array', items: { $ref: 'ModelInfo#' } },
    reload: { $ref: 'ReloadStatus#' },
  },
} as const;

type ReloadReferences = [typeof reloadFailureSchema, typeof reloadReportSchema, typeof reloadStatusSchema];
/** One variant in GET /models. */
export type VariantInfoBody = FromSchema<typeof variantInfoSchema, { references: ReloadReferences }>;
/** GET /models/{model}. */
export type ModelInfoBody = FromSchema<typeof modelInfoSchema, { references: [typeof variantInfoSchema, ...ReloadReferences] }>;
/** GET /models. */
export type ModelListBody = FromSchema<typeof modelListSchema, { references: [typeof modelInfoSchema, typeof variantInfoSchema, ...ReloadReferences] }>;

export const healthSchema = {
  $id: 'Health',
  type: 'object',
  required: ['status'],
  properties: { status: { type: 'string', enum: ['live', 'ready'] } },
} as const;

/** GET /health/live and /health/ready. */
export type HealthBody = FromSchema<typeof healthSchema>;

// ---- Open Inference Protocol (KServe v2) subset -------------------------------------------

const v2Parameters = { type: 'object', additionalProperties: true } as const;

export const v2TensorDataSchema = {
  type: 'array',
  description: 'Row-major tensor contents (nested arrays are flattened).',
  items: {},
} as const;

export const v2InferenceRequestSchema = {
  $id: 'V2InferenceRequest',
  type: 'object',
  required: ['inputs'],
  properties: {
    id: { type: 'string' },
    parameters: {
      ...v2Parameters,
      description: 'Optional: truncate (boolean, default true), key (string, sticky routing).',
    },
    inputs: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['name', 'shape', 'datatype', 'data'],
        properties: {
          name: { type: 'string' },
          shape: { type: 'array', items: { type: 'integer' } },
          datatype: { type: 'string' },
          parameters: v2Parameters,
          data: v2TensorDataSchema,
        },
      },
    },
    outputs: {
      type: 'array',
      items: { type: 'object', required: ['name'], properties: { name: { type: 'string' }, parameters: v2Parameters } },
    },
  },
} as const;

/** The body of POST /v2/models/{model}[/versions/{version}]/infer, as validated. */
export type V2InferenceRequestBody = FromSchema<typeof v2InferenceRequestSchema>;

export const v2InferenceResponseSchema = {
  $id: 'V2InferenceResponse',
  type: 'object',
  required: ['model_name', 'outputs'],
  properties: {
    model_name: { type: 'string' },
    model_version: { type: 'string' },
    id: { type: 'string' },
    parameters: v2Parameters,
    outputs: {
      type: 'array',
      items: {
        type: 'object',
        required: ['name', 'shape', 'datatype', 'data'],
        properties: {
          name: { type: 'string' },
          shape: { type: 'array', items: { type: 'integer' } },
          datatype: { type: 'string' },
          parameters: v2Parameters,
          data: { type: 'array', items: { anyOf: [{ type: 'string' }, { type: 'number' }] } },
        },
      },
    },
  },
} as const;

/** The body of a v2 inference answer (JSON; the binary extension moves some `data` after it). */
export type V2InferenceResponseBody = FromSchema<typeof v2InferenceResponseSchema>;

const v2TensorMetadata = {
  type: 'object',
  required: ['name', 'datatype', 'shape'],
  properties: { name: { type: 'string' }, datatype: { type: 'string' }, shape: { type: 'array', items: { type: 'integer' } } },
} as const;

export const v2ModelMetadataSchema = {
  $id: 'V2ModelMetadata',
  type: 'object',
  required: ['name', 'platform'],
  properties: {
    name: { type: 'string' },
    versions: { type: 'array', items: { type: 'string' } },
    platform: { type: 'string' },
    inputs: { type: 'array', items: v2TensorMetadata },
    outputs: { type: 'array', items: v2TensorMetadata },
    properties: { type: 'object', additionalProperties: { type: 'string' } },
  },
} as const;

export type V2ModelMetadataBody = FromSchema<typeof v2ModelMetadataSchema>;

export const v2ServerMetadataSchema = {
  $id: 'V2ServerMetadata',
  type: 'object',
  required: ['name', 'version', 'extensions'],
  properties: { name: { type: 'string' }, version: { type: 'string' }, extensions: { type: 'array', items: { type: 'string' } } },
} as const;

export type V2ServerMetadataBody = FromSchema<typeof v2ServerMetadataSchema>;

export const v2ReadySchema = {
  $id: 'V2Ready',
  type: 'object',
  properties: { name: { type: 'string' }, live: { type: 'boolean' }, ready: { type: 'boolean' } },
} as const;

export type V2ReadyBody = FromSchema<typeof v2ReadySchema>;

/** Every shared schema, registered once on the app (and listed in the OpenAPI components). */
export const sharedSchemas = [
  errorBodySchema,
  v2ErrorBodySchema,
  hfErrorBodySchema,
  teiErrorBodySchema,
  classifyRequestSchema,
  classifyResultSchema,
  classifyResponseSchema,
  variantInfoSchema,
  modelInfoSchema,
  modelListSchema,
  healthSchema,
  v2InferenceRequestSchema,
  v2InferenceResponseSchema,
  v2ModelMetadataSchema,
  v2ServerMetadataSchema,
  v2ReadySchema,
  ...routingSchemas,
  ...reloadSchemas,
];

export const errorRef = { $ref: 'ErrorBody#' } as const;
export const v2ErrorRef = { $ref: 'V2ErrorBody#' } as const;
export const hfErrorRef = { $ref: 'HfErrorBody#' } as const;
export const teiErrorRef = { $ref: 'TeiErrorBody#' } as const;
type ErrorRef = typeof errorRef | typeof v2ErrorRef | typeof hfErrorRef | typeof teiErrorRef;

/** Error responses of a route, by status, described by the catalogue codes with that status. */
export function errorResponses(statuses: number[], ref: ErrorRef = errorRef): Record<string, unknown> {
  return Object.fromEntries(
    statuses.map((status) => {
      const codes = ERROR_CODES.filter((c) => ERRORS[c].status === status && c !== 'CLIENT_CLOSED');
      const description = codes.map((c) => `${c}: ${ERRORS[c].summary}`).join('; ');
      return [String(status), { description, ...ref }];
    }),
  );
}

/** The error body schema a route answers with, from its config (see ErrorShape). */
function errorRefOf(config: { errorShape?: string; v2?: boolean } | undefined, url: string): ErrorRef {
  const shape = config?.errorShape ?? (config?.v2 === true || url.startsWith('/v2') ? 'v2' : 'slimserve');
  return shape === 'v2' ? v2ErrorRef : shape === 'hf' ? hfErrorRef : shape === 'tei' ? teiErrorRef : errorRef;
}

/**
 * onRoute: every route that declares responses also declares the errors any route can answer,
 * in its own error shape: 400 (no Host header), 500 (a bug), 429 (rateLimit, when configured;
 * not the probes), and for a body 413 and 415. So every answer goes through a response schema
 * (fast-json-stringify) and the OpenAPI document lists what a client can get.
 */
export function completeErrorResponses(route: { method: string | string[]; url: string; schema?: { response?: unknown }; config?: unknown }): void {
  const response = route.schema?.response as Record<string, unknown> | undefined;
  if (!response) return;
  const methods = Array.isArray(route.method) ? route.method : [route.method];
  const statuses = [400, 500];
  if (!route.url.startsWith('/health/') && !route.url.startsWith('/v2/health/')) statuses.push(429); // as rate-limit.ts exempts the probes
  if (methods.some((m) => m === 'POST' || m === 'PUT')) statuses.push(413, 415);
  const missing = statuses.filter((s) => response[String(s)] === undefined);
  Object.assign(response, errorResponses(missing, errorRefOf(route.config as { errorShape?: string; v2?: boolean } | undefined, route.url)));
}

/** A success response: a shared schema and what it means. */
export function ok(id: string, description: string): Record<string, unknown> {
  return { description, $ref: `${id}#` };
}
