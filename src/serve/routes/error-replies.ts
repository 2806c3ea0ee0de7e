// How a CoreError becomes an HTTP answer: the status from the catalogue, the headers its code
// and retry hint call for, and the body in the shape the route's clients parse (slimserve's own;
// the Open Inference Protocol's on /v2; Hugging Face's on /models/:model and /hf; TEI's on
// /predict, /info, /health). Also maps fastify's own errors (bad JSON, body too large, schema) into the catalogue,
// so no response ever carries a code from outside it.
import { CoreError, ERROR_CODES, ERRORS, type ErrorCode } from '../errors.js';

/** HTTP status of a catalogue code. */
export function httpStatus(err: CoreError): number {
  return ERRORS[err.code].status;
}

/** Response headers an error carries: Retry-After from its retry hint; the bearer challenge on 401. */
export function errorHeaders(err: CoreError): Record<string, string> {
  const headers: Record<string, string> = {};
  if (err.retryAfterS !== undefined) headers['retry-after'] = String(Math.max(1, Math.ceil(err.retryAfterS)));
  if (err.code === 'UNAUTHORIZED') headers['www-authenticate'] = 'Bearer realm="slimserve"';
  return headers;
}

/** The body of every error of the slimserve API. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string };
}

/**
 * The Open Inference Protocol (KServe v2) defines its error body as `{"error": "<message>"}`;
 * clients of that protocol parse a string there, so /v2 answers in that shape and carries the
 * catalogue code beside it.
 */
export interface V2ErrorBody {
  error: string;
  code: ErrorCode;
}

/**
 * Hugging Face's Inference API answers `{"error": "<message>"}`; @huggingface/inference shows
 * that string in its exception only when `error` is a string, so the HF routes answer in that
 * shape, the catalogue code beside it.
 */
export type HfErrorBody = V2ErrorBody;

/** TEI's error types (router/src/lib.rs ErrorType, serialised by name). */
export type TeiErrorType = 'Unhealthy' | 'Backend' | 'Overloaded' | 'Validation' | 'Tokenizer' | 'Empty';

/** TEI's ErrorResponse `{"error": "<message>", "error_type": "<TeiErrorType>"}`, the catalogue code beside it. */
export interface TeiErrorBody {
  error: string;
  error_type: TeiErrorType;
  code: ErrorCode;
}

/** Which clients' error body a route answers with (set in its config; slimserve's when absent). */
export type ErrorShape = 'slimserve' | 'v2' | 'hf' | 'tei';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The error body this route's clients parse (see ErrorShape). */
    errorShape?: ErrorShape;
  }
}

export function errorBody(err: CoreError): ErrorBody {
  return { error: { code: err.code, message: err.message } };
}

export function v2ErrorBody(err: CoreError): V2ErrorBody {
  return { error: err.message, code: err.code };
}

/**
 * TEI's error type of a catalogue code. TEI's own statuses differ from ours (it answers 413 for
 * every validation error, 424 for backend failures); the status stays the catalogue's, which is
 * the one a generic HTTP client or gateway acts on, and `error_type` names TEI's class of error.
 */
export function teiErrorType(code: ErrorCode): TeiErrorType {
  switch (code) {
    case 'NOT_READY':
    case 'SHUTTING_DOWN':
      return 'Unhealthy';
    case 'QUEUE_FULL':
    case 'TOO_MANY_CONNECTIONS':
    case 'RATE_LIMITED':
      return 'Overloaded';
    case 'INTERNAL':
    case 'INFERENCE_FAILED':
    case 'WORKER_FAILED':
    case 'DEADLINE_EXCEEDED':
      return 'Backend';
    default:
      return 'Validation';
  }
}

export function teiErrorBody(err: CoreError): TeiErrorBody {
  return { error: err.message, error_type: teiErrorType(err.code), code: err.code };
}

/** The body of an error in the given shape. */
export function errorBodyIn(shape: ErrorShape, err: CoreError): ErrorBody | V2ErrorBody | TeiErrorBody {
  switch (shape) {
    case 'v2':
    case 'hf':
      return v2ErrorBody(err);
    case 'tei':
      return teiErrorBody(err);
    default:
      return errorBody(err);
  }
}

interface FrameworkError {
  code?: string;
  statusCode?: number;
  message: string;
  validation?: unknown;
  validationContext?: string;
}

/**
 * Map anything thrown inside a request (fastify's own errors included) to the catalogue, so no
 * response ever carries a code from outside it.
 */
export function toCoreError(err: unknown): CoreError {
  if (err instanceof CoreError) return err;
  const e = (err ?? {}) as FrameworkError;
  if (e.validation) return new CoreError('INVALID_REQUEST', e.message);
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new CoreError('PAYLOAD_TOO_LARGE');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new CoreError('UNSUPPORTED_MEDIA_TYPE', e.message);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new CoreError('INVALID_JSON', e.message);
    case 'FST_ERR_NOT_FOUND':
      return new CoreError('ROUTE_NOT_FOUND');
  }
  // JSON.parse failures surface as SyntaxError with status 400.
  if (err instanceof SyntaxError && e.statusCode === 400) return new CoreError('INVALID_JSON', e.message);
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new CoreError('INVALID_REQUEST', e.message);
  }
  return new CoreError('INTERNAL', undefined, { cause: err });
}

/** JSON schema of the error body, for route schemas and the OpenAPI document. */
export const errorBodySchema = {
  $id: 'ErrorBody',
  type: 'object',
  description: 'Every error of the slimserve API. `code` is one of a closed catalogue.',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: {
        code: { type: 'string', enum: ERROR_CODES },
        message: { type: 'string' },
      },
    },
  },
} as const;

const messageErrorProperties = {
  error: { type: 'string' },
  code: { type: 'string', enum: ERROR_CODES },
} as const;

export const hfErrorBodySchema = {
  $id: 'HfErrorBody',
  type: 'object',
  description: 'Hugging Face Inference API error: `error` is the message; `code` is the slimserve catalogue code.',
  required: ['error', 'code'],
  properties: messageErrorProperties,
} as const;

export const teiErrorBodySchema = {
  $id: 'TeiErrorBody',
  type: 'object',
  description: "Text Embeddings Inference error: `error` is the message, `error_type` TEI's class of error; `code` is the slimserve catalogue code.",
  required: ['error', 'error_type', 'code'],
  properties: {
    ...messageErrorProperties,
    error_type: { type: 'string', enum: ['Unhealthy', 'Backend', 'Overloaded', 'Validation', 'Tokenizer', 'Empty'] },
  },
} as const;

export const v2ErrorBodySchema = {
  $id: 'V2ErrorBody',
  type: 'object',
  description: 'Open Inference Protocol error: `error` is the message; `code` is the slimserve catalogue code.',
  required: ['error'],
  properties: {
    error: { type: 'string' },
    code: { type: 'string', enum: ERROR_CODES },
  },
} as const;
