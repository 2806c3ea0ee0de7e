// The routing table of one model (spec: "Routing"): its schema, its validation against the
// variants the model serves, and the live copy that requests read. A table is immutable once
// parsed; replacing it swaps one reference, so a request sees either the old table or the new
// one, never a mix.

/** A variant of the model as validation needs it. */
export interface RoutableVariant {
  name: string;
  labels: readonly string[];
}

export interface RoutingTable {
  /** Weights of the variants that take traffic; absent variants take none. */
  variants: Readonly<Record<string, { weight: number }>>;
  /** Requests with a key go to the variant the key hashes to (rendezvous hashing). Default true. */
  sticky: boolean;
  shadow: { variant: string; fraction: number } | null;
  cascade: { order: readonly string[]; threshold: number } | null;
}

/** A table that cannot be used; the message names the field and the reason. */
export class RoutingTableError extends Error {
  override name = 'RoutingTableError';
}

const TOP_KEYS = ['variants', 'sticky', 'shadow', 'cascade'];

/**
 * A positive weight must lie in [MIN_WEIGHT, MAX_WEIGHT]. Weights are relative, so this loses
 * nothing a table can mean (a ratio up to 1e12), and it keeps every computation on them finite
 * and exact enough: a subnormal weight made every sticky score -ln(u)/w infinite (keyed requests
 * answered 500), and weights near 1e308 summed to Infinity (every share 0).
 */
export const MIN_WEIGHT = 1e-6;
export const MAX_WEIGHT = 1e6;

function isObject(x: unknown): x is Record<string, unknown> {
  return x !== null && typeof x === 'object' && !Array.isArray(x);
}

function noOtherKeys(obj: Record<string, unknown>, allowed: string[], where: string): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) throw new RoutingTableError(`${where}: unknown field "${k}" (fields: ${allowed.join(', ')})`);
  }
}

/**
 * The table used when a model has no routing.json: everything to its default variant (the one
 * its build report recommends, else the shallowest: ServedModel.defaultVariant).
 */
export function defaultTable(defaultVariant: string): RoutingTable {
  return Object.freeze({ variants: Object.freeze({ [defaultVariant]: { weight: 1 } }), sticky: true, shadow: null, cascade: null });
}

/**
 * Parse and check a routing document against the variants a model serves. Throws a
 * RoutingTableError naming the problem: an unknown variant, a negative or non-numeric weight,
 * weights adding up to 0, a shadow fraction outside [0, 1], a cascade naming a missing variant,
 * repeating one, mixing label sets, or a threshold outside (0, 1]. `null` and `undefined` mean
 * "no table": the default applies. A table without "variants" sends everything to
 * `defaultVariant`.
 */
export function parseRoutingTable(model: string, raw: unknown, variants: readonly RoutableVariant[], defaultVariant: string = variants[0]!.name): RoutingTable | null {
  if (raw === null || raw === undefined) return null;
  const where = `routing of ${model}`;
  const names = variants.map((v) => v.name);
  const known = (name: string, field: string): void => {
    if (!names.includes(name)) throw new RoutingTableError(`${where}: ${field} names "${name}", which is not a variant of ${model} (variants: ${names.join(', ')})`);
  };
  if (!isObject(raw)) throw new RoutingTableError(`${where}: expected a JSON object`);
  noOtherKeys(raw, TOP_KEYS, where);

  let weights: Record<string, { weight: number }>;
  if (raw.variants === undefined) {
    weights = { ...defaultTable(defaultVariant).variants };
  } else {
    if (!isObject(raw.variants)) throw new RoutingTableError(`${where}: "variants" must be an object of variant -> {"weight": number}`);
    if (Object.keys(raw.variants).length > names.length) {
      throw new RoutingTableError(`${where}: "variants" has ${Object.keys(raw.variants).length} entries; ${model} has ${names.length} variants`);
    }
    weights = {};
    let total = 0;
    for (const [name, spec] of Object.entries(raw.variants)) {
      known(name, `variants.${name}`);
      if (!isObject(spec)) throw new RoutingTableError(`${where}: variants.${name} must be an object {"weight": number}`);
      noOtherKeys(spec, ['weight'], `${where}: variants.${name}`);
      const weight = spec.weight;
      if (typeof weight !== 'number' || !Number.isFinite(weight) || weight < 0) {
        throw new RoutingTableError(`${where}: variants.${name}.weight must be a number >= 0, got ${JSON.stringify(weight)}`);
      }
      if (weight !== 0 && !(weight >= MIN_WEIGHT && weight <= MAX_WEIGHT)) {
        throw new RoutingTableError(`${where}: variants.${name}.weight must be 0 or between ${MIN_WEIGHT} and ${MAX_WEIGHT} (weights are relative), got ${weight}`);
      }
      weights[name] = Object.freeze({ weight });
      total += weight;
    }
    if (!(total > 0)) throw new RoutingTableError(`${where}: the weights add up to 0; at least one variant needs a positive weight`);
  }

  if (raw.sticky !== undefined && typeof raw.sticky !== 'boolean') throw new RoutingTableError(`${where}: "sticky" must be true or false`);

  let shadow: RoutingTable['shadow'] = null;
  if (raw.shadow !== undefined && raw.shadow !== null) {
    if (!isObject(raw.shadow)) throw new RoutingTableError(`${where}: "shadow" must be an object {"variant", "fraction"}`);
    noOtherKeys(raw.shadow, ['variant', 'fraction'], `${where}: shadow`);
    const { variant, fraction } = raw.shadow;
    if (typeof variant !== 'string') throw new RoutingTableError(`${where}: shadow.variant must be a variant name`);
    known(variant, 'shadow.variant');
    if (typeof fraction !== 'number' || !(fraction >= 0 && fraction <= 1)) {
      throw new RoutingTableError(`${where}: shadow.fraction must be a number in [0, 1], got ${JSON.stringify(fraction)}`);
    }
    shadow = Object.freeze({ variant, fraction });
  }

  let cascade: RoutingTable['cascade'] = null;
  if (raw.cascade !== undefined && raw.cascade !== null) {
    if (!isObject(raw.cascade)) throw new RoutingTableError(`${where}: "cascade" must be an object {"order", "threshold"}`);
    noOtherKeys(raw.cascade, ['order', 'threshold'], `${where}: cascade`);
    const { order, threshold } = raw.cascade;
    if (!Array.isArray(order) || order.length < 2 || !order.every((o): o is string => typeof o === 'string')) {
      throw new RoutingTableError(`${where}: cascade.order must list at least two variant names`);
    }
    order.forEach((name, i) => known(name, `cascade.order[${i}]`));
    if (new Set(order).size !== order.length) throw new RoutingTableError(`${where}: cascade.order names a variant twice`);
    const first = variants.find((v) => v.name === order[0])!;
    for (const name of order.slice(1)) {
      const v = variants.find((x) => x.name === name)!;
      if (v.labels.join('\u0000') !== first.labels.join('\u0000')) {
        throw new RoutingTableError(`${where}: cascade variants ${first.name} and ${name} have different labels; a cascade needs one label set`);
      }
    }
    if (typeof threshold !== 'number' || !(threshold > 0 && threshold <= 1)) {
      throw new RoutingTableError(`${where}: cascade.threshold must be a number in (0, 1], got ${JSON.stringify(threshold)}`);
    }
    cascade = Object.freeze({ order: Object.freeze([...order]), threshold });
  }

  return Object.freeze({ variants: Object.freeze(weights), sticky: raw.sticky ?? true, shadow, cascade });
}

/** The table as a routing.json document (what GET shows and PUT persists). */
export function tableToJson(table: RoutingTable): Record<string, unknown> {
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
