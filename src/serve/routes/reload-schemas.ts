// JSON schemas of hot reload (POST /admin/reload, and "reload" in GET /models); registered with
// the shared schemas so they appear as OpenAPI components, and the types of the model store's
// reports derive from them. No runtime imports: schemas.ts includes them.
import type { FromSchema } from 'json-schema-to-ts';

const change = {
  type: 'object',
  additionalProperties: false,
  required: ['model', 'variant', 'depth'],
  properties: { model: { type: 'string' }, variant: { type: 'string' }, depth: { type: 'integer' } },
} as const;

export const reloadFailureSchema = {
  $id: 'ReloadFailure',
  type: 'object',
  additionalProperties: false,
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
  additionalProperties: false,
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

/** A variant added, updated or removed by a reload. */
export type ReloadChange = FromSchema<typeof change>;
/** A variant directory that could not be loaded (or a removal refused). */
export type ReloadFailure = FromSchema<typeof reloadFailureSchema>;
/** What a reload did (POST /admin/reload's answer; GET /models reload.last). */
export type ReloadReport = FromSchema<typeof reloadReportSchema, { references: [typeof reloadFailureSchema] }>;
/** GET /models: "reload". */
export type ReloadStatus = FromSchema<typeof reloadStatusSchema, { references: [typeof reloadFailureSchema, typeof reloadReportSchema] }>;

export const reloadSchemas = [reloadFailureSchema, reloadReportSchema, reloadStatusSchema];
