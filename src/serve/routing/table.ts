// The routing table of one model (spec: "Routing"): its validation against the variants the
// model serves (after the schema, table-schema.ts), and the live copy that requests read. A
// table is immutable once parsed; replacing it swaps one reference, so a request sees either the
// old table or the new one, never a mix.
import { checkRoutingDocument, RoutingTableError, type RoutingDocument } from './table-schema.js';

export { RoutingTableError, type RoutingDocument } from './table-schema.js';

/** A variant of the model as validation needs it. */
export interface RoutableVariant {
  name: string;
  labels: readonly string[];
}

/** A parsed table: the document with its defaults filled in (sticky true, no shadow, no cascade). */
export interface RoutingTable {
  /** Weights of the variants that take traffic; absent variants take none. */
  readonly variants: Readonly<NonNullable<RoutingDocument['variants']>>;
  /** Requests with a key go to the variant the key hashes to (rendezvous hashing). */
  readonly sticky: boolean;
  readonly shadow: Readonly<NonNullable<RoutingDocument['shadow']>> | null;
  readonly cascade: Readonly<{ order: readonly string[]; threshold: number }> | null;
}

/**
 * A positive weight must lie in [MIN_WEIGHT, MAX_WEIGHT]. Weights are relative, so this loses
 * nothing a table can mean (a ratio up to 1e12), and it keeps every computation on them finite
 * and exact enough: a subnormal weight made every sticky score -ln(u)/w infinite (keyed requests
 * answered 500), and weights near 1e308 summed to Infinity (every share 0).
 */
export const MIN_WEIGHT = 1e-6;
export const MAX_WEIGHT = 1e6;

/**
 * The table used when a model has no routing.json: everything to its default variant (the one
 * its build report recommends, else the shallowest: ServedModel.defaultVariant).
 */
export function defaultTable(defaultVariant: string): RoutingTable {
  return Object.freeze({ variants: Object.freeze({ [defaultVariant]: { weight: 1 } }), sticky: true, shadow: null, cascade: null });
}

/**
 * Parse and check a routing document against the variants a model serves: first the schema
 * (table-schema.ts: fields, types, ranges), then what it cannot say. Throws a RoutingTableError
 * naming the problem: an unknown variant, a weight neither 0 nor within [MIN_WEIGHT,
 * MAX_WEIGHT], weights adding up to 0, a cascade naming a missing variant, repeating one or
 * mixing label sets. `null` and `undefined` mean "no table": the default applies. A table
 * without "variants" sends everything to `defaultVariant`.
 */
export function parseRoutingTable(
  model: string,
  raw: unknown,
  variants: readonly RoutableVariant[],
  defaultVariant: string = variants[0]!.name,
): RoutingTable | null {
  if (raw === null || raw === undefined) return null;
  const doc = checkRoutingDocument(model, raw);
  const where = `routing of ${model}`;
  const names = variants.map((v) => v.name);
  const known = (name: string, field: string): void => {
    if (!names.includes(name))
      throw new RoutingTableError(`${where}: ${field} names "${name}", which is not a variant of ${model} (variants: ${names.join(', ')})`);
  };

  let weights: Record<string, { weight: number }>;
  if (doc.variants === undefined) {
    weights = { ...defaultTable(defaultVariant).variants };
  } else {
    const entries = Object.entries(doc.variants);
    if (entries.length > names.length) throw new RoutingTableError(`${where}: "variants" has ${entries.length} entries; ${model} has ${names.length} variants`);
    weights = {};
    let total = 0;
    for (const [name, { weight }] of entries) {
      known(name, `variants.${name}`);
      if (weight !== 0 && !(weight >= MIN_WEIGHT && weight <= MAX_WEIGHT)) {
        throw new RoutingTableError(
          `${where}: variants.${name}.weight must be 0 or between ${MIN_WEIGHT} and ${MAX_WEIGHT} (weights are relative), got ${weight}`,
        );
      }
      weights[name] = Object.freeze({ weight });
      total += weight;
    }
    if (!(total > 0)) throw new RoutingTableError(`${where}: the weights add up to 0; at least one variant needs a positive weight`);
  }

  let shadow: RoutingTable['shadow'] = null;
  if (doc.shadow) {
    known(doc.shadow.variant, 'shadow.variant');
    shadow = Object.freeze({ variant: doc.shadow.variant, fraction: doc.shadow.fraction });
  }

  let cascade: RoutingTable['cascade'] = null;
  if (doc.cascade) {
    const { order, threshold } = doc.cascade;
    order.forEach((name, i) => known(name, `cascade.order[${i}]`));
    if (new Set(order).size !== order.length) throw new RoutingTableError(`${where}: cascade.order names a variant twice`);
    const first = variants.find((v) => v.name === order[0])!;
    for (const name of order.slice(1)) {
      const v = variants.find((x) => x.name === name)!;
      if (v.labels.join('\u0000') !== first.labels.join('\u0000')) {
        throw new RoutingTableError(`${where}: cascade variants ${first.name} and ${name} have different labels; a cascade needs one label set`);
      }
    }
    cascade = Object.freeze({ order: Object.freeze([...order]), threshold });
  }

  return Object.freeze({ variants: Object.freeze(weights), sticky: doc.sticky ?? true, shadow, cascade });
}

/** The table as a routing.json document (what GET shows and PUT persists). */
export function tableToJson(table: RoutingTable): RoutingDocument {
  return {
    variants: Object.fromEntries(Object.entries(table.variants).map(([n, s]) => [n, { weight: s.weight }])),
    sticky: table.sticky,
    ...(table.shadow ? { shadow: { ...table.shadow } } : {}),
    ...(table.cascade ? { cascade: { order: [...table.cascade.order], threshold: table.cascade.threshold } } : {}),
  };
}

/** Normalised weights (0..1) of every variant, in the given order. */
export function shares(table: RoutingTable, variantNames: readonly string[]): [string, number][] {
  const total = Object.values(table.variants).reduce((a, s) => a + s.weight, 0);
  return variantNames.map((v) => [v, total > 0 ? (table.variants[v]?.weight ?? 0) / total : 0]);
}
