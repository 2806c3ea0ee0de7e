// JSON schemas of hot reload (POST /admin/reload, and "reload" in GET /models); registered with
// the shared schemas so they appear as OpenAPI components. No imports: schemas.ts includes them.

const change = {
  type: 'object',
  required: ['model', 'variant', 'depth'],
  properties: { model: { type: 'string' }, variant: { type: 'string' }, depth: { type: 'integer' } },
} as const;

export const reloadFailureSchema = {
  $id: 'ReloadFailure',
  type: 'object',
  description: 'A variant directory that could not be loaded (or a removal refused); what served before keeps serving.',
  required: ['model', 'variant', 'error', 'at'],
  properties: {
    model: { type: 'string' },
    variant: { type: 'string' },
    file: { type: 'string', description: 'The file at fault, relative to the model repository, when known.' },
    error: { type: 'string', description: 'Why (paths relative to the model repository).' },
    at: { type: 'string', description: 'When the reload that found it started (ISO 8601).' },
  },
} as const;

export const reloadReportSchema = {
  $id: 'ReloadReport',
  type: 'object',
  required: ['trigger', 'startedAt', 'ms', 'added', 'updated', 'removed', 'failed', 'unchanged'],
  properties: {
    trigger: { type: 'string', enum: ['api', 'poll'] },
    startedAt: { type: 'string' },
    ms: { type: 'number', description: 'Duration, including loading, warm-up and the drain of removed variants.' },
    added: { type: 'array', items: change },
    updated: { type: 'array', items: change, description: 'Rebuilt variants now serving from their new files.' },
    removed: {
      type: 'array',
      items: { ...change, required: [...change.required, 'drainedMs'], properties: { ...change.properties, drainedMs: { type: 'number' } } },
      description: 'Variants whose directory is gone: no new requests, accepted ones answered (drainedMs), sessions released.',
    },
    failed: { type: 'array', items: { $ref: 'ReloadFailure#' } },
    unchanged: { type: 'integer', description: 'Variants found as they were.' },
  },
} as const;

/** GET /models: "reload": what the last reload did and what fails now. */
export const reloadStatusSchema = {
  $id: 'ReloadStatus',
  type: 'object',
  required: ['failures'],
  properties: {
    pollMs: { type: 'integer', description: 'modelReloadMs (0: only POST /admin/reload).' },
    last: { $ref: 'ReloadReport#' },
    failures: { type: 'array', items: { $ref: 'ReloadFailure#' }, description: 'Variant directories that fail to load now.' },
  },
} as const;

export const reloadSchemas = [reloadFailureSchema, reloadReportSchema, reloadStatusSchema];
