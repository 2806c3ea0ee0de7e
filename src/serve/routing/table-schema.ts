// The routing document's contract, declared once: the JSON schema of routing.json and of the
// PUT /routing body (registered with the app, so it is also the OpenAPI component), the
// TypeScript type derived from it, and the one validator every table passes through, whether it
// comes from the file, a poll, a hot reload or HTTP (table.ts then checks what a schema cannot:
// variant names, weight range and sum, cascade labels).
import { Ajv, type ErrorObject } from 'ajv';
import type { FromSchema } from 'json-schema-to-ts';

/** The document's shape; routingTableSchema is it with its $id (GET /routing embeds the shape). */
export const routingDocumentShape = {
  type: 'object',
  description:
    'Routing of one model (models/<model>/routing.json). Decision order: explicit variant > cascade > sticky hash of key > weighted random. ' +
    'Refused with 400 INVALID_ROUTING: an unknown field or variant, a weight that is not 0 or within [1e-6, 1e6], weights adding up to 0, shadow.fraction outside [0, 1], ' +
    'a cascade naming a missing variant (or one twice, or variants with different labels), cascade.threshold outside (0, 1].',
  additionalProperties: false,
  properties: {
    variants: {
      type: 'object',
      description:
        'Variant -> {"weight": number >= 0}; shares are weight / sum. Absent: everything to the default variant (GET /models/{model} defaultVariant).',
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        required: ['weight'],
        properties: { weight: { type: 'number', minimum: 0 } },
      },
    },
    sticky: {
      type: 'boolean',
      default: true,
      description: 'Requests with a key (body "key" or x-slim-key) go to the variant the key hashes to (weighted rendezvous hashing).',
    },
    shadow: {
      type: 'object',
      nullable: true,
      additionalProperties: false,
      required: ['variant', 'fraction'],
      description: 'After the answer, this fraction of requests also runs on the shadow variant; only agreement is counted.',
      properties: { variant: { type: 'string' }, fraction: { type: 'number', minimum: 0, maximum: 1 } },
    },
    cascade: {
      type: 'object',
      nullable: true,
      additionalProperties: false,
      required: ['order', 'threshold'],
      description: 'Every input runs on order[0]; inputs whose top probability is under threshold go to the next variant; the last one decides.',
      properties: {
        order: { type: 'array', minItems: 2, items: { type: 'string' } },
        threshold: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
      },
    },
  },
} as const;

export const routingTableSchema = { $id: 'RoutingTable', ...routingDocumentShape } as const;

/** A routing.json document (or PUT /routing body) that passed the schema (sticky may be absent: nothing fills defaults in). */
export type RoutingDocument = FromSchema<typeof routingTableSchema, { keepDefaultedPropertiesOptional: true }>;

/** A document the schema refuses; the message names the field and the reason. */
export class RoutingTableError extends Error {
  override name = 'RoutingTableError';
}

const validate = new Ajv({ allErrors: false, verbose: true }).compile<RoutingDocument>(routingTableSchema);

interface NodeSchema {
  type?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  minItems?: number;
  items?: NodeSchema;
  required?: string[];
  properties?: Record<string, unknown>;
}

/** What a schema node accepts, in words: "a number in [0, 1]", "true or false", ... */
function accepted(s: NodeSchema): string {
  switch (s.type) {
    case 'boolean':
      return 'true or false';
    case 'string':
      return 'a string';
    case 'array':
      return `a list of at least ${s.minItems ?? 0} ${s.items?.type ?? 'item'}s`;
    case 'object':
      return s.required?.length ? `an object {${s.required.map((r) => `"${r}"`).join(', ')}}` : 'an object';
    case 'number': {
      const low = s.exclusiveMinimum !== undefined ? `(${s.exclusiveMinimum}` : s.minimum !== undefined ? `[${s.minimum}` : undefined;
      if (low && s.maximum !== undefined) return `a number in ${low}, ${s.maximum}]`;
      if (s.minimum !== undefined) return `a number >= ${s.minimum}`;
      return 'a number';
    }
    default:
      return String(s.type);
  }
}

/** "cascade.order[1]" for the JSON pointer /cascade/order/1 of `doc`. */
function fieldName(doc: unknown, pointer: string): string {
  let name = '';
  let at: unknown = doc;
  for (const raw of pointer.split('/').slice(1)) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    name += Array.isArray(at) ? `[${key}]` : name === '' ? key : `.${key}`;
    at = (at as Record<string, unknown> | undefined)?.[key];
  }
  return name;
}

function message(where: string, doc: unknown, e: ErrorObject): string {
  const field = fieldName(doc, e.instancePath);
  const schema = e.parentSchema as NodeSchema;
  if (e.keyword === 'additionalProperties') {
    const allowed = Object.keys(schema.properties ?? {}).join(', ');
    return `${where}${field ? `: ${field}` : ''}: unknown field "${(e.params as { additionalProperty: string }).additionalProperty}" (fields: ${allowed})`;
  }
  if (e.keyword === 'required') return `${where}: ${field ? `${field}.` : ''}${(e.params as { missingProperty: string }).missingProperty} is required`;
  if (field === '') return `${where}: expected a JSON object`;
  if (['type', 'minimum', 'maximum', 'exclusiveMinimum', 'minItems'].includes(e.keyword)) {
    return `${where}: ${field} must be ${accepted(schema)}, got ${JSON.stringify(e.data)}`;
  }
  return `${where}: ${field} ${e.message ?? 'is not valid'}`;
}

/** The one validator of routing documents: throws RoutingTableError with the first problem. */
export function checkRoutingDocument(model: string, raw: unknown): RoutingDocument {
  if (validate(raw)) return raw;
  throw new RoutingTableError(message(`routing of ${model}`, raw, validate.errors![0]!));
}
