// The one catalogue of error codes the server answers with, and the error the serving core
// raises. Every error body's `code` comes from here, so clients, dashboards and docs can rely on
// a closed set; adding a failure mode means adding a line here first. The core (batcher, worker
// pool, routing, model store) raises CoreError and knows nothing of HTTP: the status beside each
// code is read only by src/serve/routes/error-replies.ts, which writes the answer.

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
  TEXT_TOO_LONG: { status: 422, summary: "an input has more tokens than the variant's maxLength and truncate is false" },
  QUEUE_FULL: { status: 429, summary: "the variant's queue is full; retry after Retry-After seconds" },
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

/** An error of the serving core: a catalogue code, a message, and when to retry (if it helps). */
export class CoreError extends Error {
  readonly code: ErrorCode;
  /** Seconds after which a retry is likely to succeed (QUEUE_FULL, WORKER_FAILED, RATE_LIMITED...). */
  readonly retryAfterS: number | undefined;

  /** `cause`: the exception behind it, for the log line (never for the answer). */
  constructor(code: ErrorCode, message?: string, opts: { retryAfterS?: number; cause?: unknown } = {}) {
    super(message ?? ERRORS[code].summary, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'CoreError';
    this.code = code;
    this.retryAfterS = opts.retryAfterS;
  }
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
