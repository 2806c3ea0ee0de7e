// The one catalogue of error codes the server answers with. Every error body's `code` comes
// from here, so clients, dashboards and docs can rely on a closed set; adding a failure mode
// means adding a line here first.

export const ERRORS = {
  INVALID_REQUEST: { status: 400, summary: 'the request does not match the schema' },
  INVALID_JSON: { status: 400, summary: 'the body is not valid JSON' },
  MODEL_REQUIRED: { status: 400, summary: 'several models are served: name one in "model"' },
  INVALID_ROUTING: { status: 400, summary: 'the routing table is not valid for this model (unknown variant, bad weight, fraction or threshold, bad cascade)' },
  INVALID_REQUEST_ID: { status: 400, summary: 'the feedback request_id is not a signed id of this server (forged, altered or another secret)' },
  ROUTE_NOT_FOUND: { status: 404, summary: 'no such endpoint' },
  MODEL_NOT_FOUND: { status: 404, summary: 'no such model' },
  VARIANT_NOT_FOUND: { status: 404, summary: 'no such variant of the model' },
  UNAUTHORIZED: { status: 401, summary: 'a bearer token is required (admin endpoints; POST /feedback when feedbackToken is set)' },
  FORBIDDEN: { status: 403, summary: 'the bearer token is wrong' },
  ADMIN_DISABLED: { status: 403, summary: 'no admin token is configured (adminToken / SLIM_ADMIN_TOKEN), so admin endpoints are off' },
  REQUEST_ID_NOT_FOUND: { status: 404, summary: 'no answered request with this request_id (unknown, evicted, or older than feedback.ttlMs)' },
  TOO_MANY_INPUTS: { status: 413, summary: 'more inputs than maxInputs in one request' },
  PAYLOAD_TOO_LARGE: { status: 413, summary: 'the body is larger than bodyLimit' },
  URI_TOO_LONG: { status: 414, summary: 'a path parameter of the URL is longer than the server accepts' },
  REQUEST_TIMEOUT: { status: 408, summary: 'the request headers or body did not arrive in time' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, summary: 'the body must be application/json' },
  EXPECTATION_FAILED: { status: 417, summary: 'the request has an Expect header other than 100-continue' },
  UNKNOWN_LABEL: { status: 422, summary: 'the feedback label is not a label of the model' },
  TEXT_TOO_LONG: { status: 422, summary: 'an input has more tokens than the variant\'s maxLength and truncate is false' },
  QUEUE_FULL: { status: 429, summary: 'the variant\'s queue is full; retry after Retry-After seconds' },
  TOO_MANY_CONNECTIONS: { status: 429, summary: 'the server holds maxConnections connections; this one is closed unread; retry after Retry-After seconds' },
  RATE_LIMITED: { status: 429, summary: 'too many requests from this client on this route (rateLimit); retry after Retry-After seconds' },
  HEADERS_TOO_LARGE: { status: 431, summary: 'the request headers are larger than the server accepts' },
  CLIENT_CLOSED: { status: 499, summary: 'the client closed the connection before the answer (never sent, only counted)' },
  INTERNAL: { status: 500, summary: 'an unexpected server error' },
  INFERENCE_FAILED: { status: 500, summary: 'the model failed to run on this batch' },
  WORKER_FAILED: { status: 503, summary: 'the inference worker running this batch crashed or hung and is being replaced; retry' },
  NOT_READY: { status: 503, summary: 'the models are still loading or warming up' },
  SHUTTING_DOWN: { status: 503, summary: 'the server is shutting down and takes no new work' },
  DEADLINE_EXCEEDED: { status: 504, summary: 'the answer was not ready within requestTimeoutMs' },
} as const satisfies Record<string, { status: number; summary: string }>;

export type ErrorCode = keyof typeof ERRORS;

export const ERROR_CODES = Object.keys(ERRORS) as ErrorCode[];

/** An error the server answers with: its HTTP status follows from its code. */
export class SlimError extends Error {
  readonly code: ErrorCode;
  readonly statusCode: number;
  /** Extra response headers (Retry-After for QUEUE_FULL). */
  readonly headers: Record<string, string>;

  /** `cause`: the exception behind it, for the log line (never for the answer). */
  constructor(code: ErrorCode, message?: string, headers: Record<string, string> = {}, options?: { cause?: unknown }) {
    super(message ?? ERRORS[code].summary, options);
    this.name = 'SlimError';
    this.code = code;
    this.statusCode = ERRORS[code].status;
    this.headers = headers;
  }
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

export function errorBody(err: SlimError): ErrorBody {
  return { error: { code: err.code, message: err.message } };
}

export function v2ErrorBody(err: SlimError): V2ErrorBody {
  return { error: err.message, code: err.code };
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
export function toSlimError(err: unknown): SlimError {
  if (err instanceof SlimError) return err;
  const e = (err ?? {}) as FrameworkError;
  if (e.validation) return new SlimError('INVALID_REQUEST', e.message);
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new SlimError('PAYLOAD_TOO_LARGE');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new SlimError('UNSUPPORTED_MEDIA_TYPE', e.message);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new SlimError('INVALID_JSON', e.message);
    case 'FST_ERR_NOT_FOUND':
      return new SlimError('ROUTE_NOT_FOUND');
  }
  // JSON.parse failures surface as SyntaxError with status 400.
  if (err instanceof SyntaxError && e.statusCode === 400) return new SlimError('INVALID_JSON', e.message);
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new SlimError('INVALID_REQUEST', e.message);
  }
  return new SlimError('INTERNAL', undefined, {}, { cause: err });
}

/** The root cause of an error for a log line: the innermost `cause`'s type, message and stack. */
export function rootCause(err: Error): { type: string; message: string; stack?: string } | undefined {
  let cause: unknown = err.cause;
  if (cause === undefined) return undefined;
  while (cause instanceof Error && cause.cause !== undefined) cause = cause.cause;
  if (!(cause instanceof Error)) return { type: typeof cause, message: String(cause) };
  return { type: cause.name, message: cause.message, ...(cause.stack ? { stack: cause.stack } : {}) };
}

/**
 * A file-system failure as a client may see it: the error code and what was being done, never
 * the absolute path node puts in the message.
 */
export function publicFsError(err: unknown, what: string): string {
  const e = err as NodeJS.ErrnoException;
  return `${e.code ?? 'error'}: ${what}`;
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
