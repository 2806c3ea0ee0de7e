// JSON schemas of the routing and feedback endpoints (registered with the shared schemas, so
// they appear as OpenAPI components). The routing table's schema lives with its validator
// (src/serve/routing/table-schema.ts), which file reloads and PUT share, so both give the same
// messages.
import type { FromSchema } from 'json-schema-to-ts';
import { routingDocumentShape, routingTableSchema } from '../routing/table-schema.js';

// Response schemas list every field and say additionalProperties: false: the serializer writes
// only listed fields anyway, and the derived types are then exact, so a domain type that
// grows a field must grow the schema too.

const interval = {
  type: 'object',
  additionalProperties: false,
  required: ['low', 'high'],
  properties: { low: { type: 'number' }, high: { type: 'number' } },
} as const;

const accuracyEstimate = {
  type: 'object',
  additionalProperties: false,
  required: ['n', 'correct', 'accuracy', 'ci95', 'clients'],
  description:
    'Over the last feedback.window outcomes of this variant; ci95 is the Wilson score interval. clients: how many distinct client addresses (IPv6: /64) those outcomes came from -- ' +
    'an estimate fed by one or two clients says more about them than about the variant.',
  properties: {
    n: { type: 'integer' },
    correct: { type: 'integer' },
    accuracy: { type: 'number', nullable: true },
    ci95: interval,
    clients: { type: 'integer' },
  },
} as const;

export const routingStatusSchema = {
  $id: 'RoutingStatus',
  type: 'object',
  required: ['model', 'source', 'version', 'updatedAt', 'routing', 'effective', 'variants', 'differences', 'shadow', 'cascade', 'feedback'],
  properties: {
    model: { type: 'string' },
    source: { type: 'string', enum: ['default', 'file', 'api'], description: 'Where the live table came from: none (default), routing.json, or PUT.' },
    version: { type: 'integer', description: 'Incremented on every replacement.' },
    updatedAt: { type: 'string' },
    persisted: { type: 'boolean', description: 'PUT only: whether routing.json was rewritten (false on a read-only model directory: this replica only).' },
    persistError: { type: 'string' },
    lastReloadError: { type: 'string', description: 'Why the last changed routing.json was refused (the previous table stays).' },
    routing: { ...routingDocumentShape, nullable: true, description: 'The live table, or null without one.' },
    effective: { ...routingDocumentShape, description: 'The table in force (the default one without routing).' },
    variants: {
      type: 'array',
      items: {
        type: 'object',
        required: ['name', 'depth', 'weight', 'share', 'requests', 'served', 'feedback', 'buildAccuracy', 'online'],
        properties: {
          name: { type: 'string' },
          depth: { type: 'integer' },
          weight: { type: 'number' },
          share: { type: 'number' },
          requests: { type: 'integer', description: 'Requests answered with this as the top-level variant.' },
          served: { type: 'integer', description: 'Inputs this variant decided.' },
          feedback: {
            type: 'object',
            required: ['correct', 'incorrect', 'total'],
            properties: { correct: { type: 'integer' }, incorrect: { type: 'integer' }, total: { type: 'integer' } },
          },
          buildAccuracy: { type: 'number' },
          online: accuracyEstimate,
        },
      },
    },
    differences: {
      type: 'array',
      description: 'Online accuracy of a minus b for every pair with feedback, with the Newcombe 95% interval; significant: the interval excludes 0.',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['a', 'b', 'difference', 'ci95', 'significant'],
        properties: { a: { type: 'string' }, b: { type: 'string' }, difference: { type: 'number' }, ci95: interval, significant: { type: 'boolean' } },
      },
    },
    shadow: {
      type: 'object',
      required: ['agreement'],
      properties: {
        variant: { type: 'string' },
        fraction: { type: 'number' },
        agreement: {
          type: 'array',
          items: {
            type: 'object',
            required: ['served', 'shadow', 'agree', 'disagree', 'dropped', 'rate'],
            properties: {
              served: { type: 'string' },
              shadow: { type: 'string' },
              agree: { type: 'integer' },
              disagree: { type: 'integer' },
              dropped: { type: 'integer' },
              rate: { type: 'number', nullable: true },
            },
          },
        },
      },
    },
    cascade: {
      type: 'object',
      required: ['escalations'],
      properties: {
        order: { type: 'array', items: { type: 'string' } },
        threshold: { type: 'number' },
        escalations: {
          type: 'array',
          items: {
            type: 'object',
            required: ['from', 'to', 'count'],
            properties: { from: { type: 'string' }, to: { type: 'string' }, count: { type: 'integer' } },
          },
        },
      },
    },
    feedback: {
      type: 'object',
      required: ['signedIds', 'windowSize', 'ttlMs'],
      properties: { signedIds: { type: 'boolean' }, windowSize: { type: 'integer' }, ttlMs: { type: 'integer' } },
    },
  },
} as const;

/** The body of GET and PUT /routing/{model}. */
export type RoutingStatusBody = FromSchema<typeof routingStatusSchema, { keepDefaultedPropertiesOptional: true }>;

export const feedbackRequestSchema = {
  $id: 'FeedbackRequest',
  type: 'object',
  additionalProperties: false,
  required: ['request_id'],
  description: 'The true label of an answered /classify request: "label" for a one-input request, or "labels" with one entry per input (null skips one).',
  properties: {
    request_id: { type: 'string', minLength: 1, maxLength: 65536 },
    label: { type: 'string' },
    labels: { type: 'array', minItems: 1, items: { type: 'string', nullable: true } },
  },
} as const;

/** The body of POST /feedback, as validated. */
export type FeedbackRequestBody = FromSchema<typeof feedbackRequestSchema>;

export const feedbackResponseSchema = {
  $id: 'FeedbackResponse',
  type: 'object',
  required: ['model', 'counted', 'duplicates', 'results'],
  properties: {
    model: { type: 'string' },
    counted: { type: 'integer', description: 'Inputs counted now.' },
    duplicates: { type: 'integer', description: 'Inputs that already had feedback (not counted again).' },
    results: {
      type: 'array',
      items: {
        type: 'object',
        required: ['index', 'variant', 'predicted', 'label', 'correct', 'counted'],
        properties: {
          index: { type: 'integer' },
          variant: { type: 'string' },
          predicted: { type: 'string' },
          label: { type: 'string' },
          correct: { type: 'boolean' },
          counted: { type: 'boolean' },
        },
      },
    },
  },
} as const;

/** The body of POST /feedback's 202. */
export type FeedbackResponseBody = FromSchema<typeof feedbackResponseSchema>;

export const routingSchemas = [routingTableSchema, routingStatusSchema, feedbackRequestSchema, feedbackResponseSchema];
