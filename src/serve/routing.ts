// Which variant answers a request. This is the seam for full routing (A/B weights, sticky keys,
// shadow, cascade): callers only use chooseVariant and validateRouting. For now: an explicit
// variant wins; otherwise the weights of models/<model>/routing.json; otherwise the shallowest
// variant, the cheapest one.
import type { ServedModel, ServedVariant } from './catalog.js';
import { findVariant } from './catalog.js';
import { SlimError } from './errors.js';

export interface RoutingRequest {
  /** Explicit variant from the body (or the /v2 version in the URL). */
  variant?: string;
  /** Client key for sticky routing (body "key" or x-slim-key header). */
  key?: string;
}

export interface RoutingDecision {
  variant: ServedVariant;
  reason: 'explicit' | 'weighted' | 'default';
}

export interface RoutingWeights {
  variants: Record<string, { weight: number }>;
}

/**
 * Check the parts of a routing document this module uses, against the variants that exist.
 * Throws a message naming the problem; the keys it does not use yet are left for full routing.
 */
export function validateRouting(modelName: string, raw: unknown, variantNames: string[]): RoutingWeights | null {
  if (raw === null || raw === undefined) return null;
  const where = `routing of ${modelName}`;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`${where}: expected a JSON object`);
  const variants = (raw as { variants?: unknown }).variants;
  if (variants === undefined) return null;
  if (variants === null || typeof variants !== 'object' || Array.isArray(variants)) throw new Error(`${where}: "variants" must be an object`);
  let total = 0;
  const out: RoutingWeights = { variants: {} };
  for (const [name, spec] of Object.entries(variants)) {
    if (!variantNames.includes(name)) throw new Error(`${where}: variants.${name} is not a variant of ${modelName} (${variantNames.join(', ')})`);
    const weight = (spec as { weight?: unknown } | null)?.weight;
    if (typeof weight !== 'number' || !Number.isFinite(weight) || weight < 0) throw new Error(`${where}: variants.${name}.weight must be a number >= 0`);
    out.variants[name] = { weight };
    total += weight;
  }
  if (total <= 0) throw new Error(`${where}: the weights add up to 0`);
  return out;
}

const parsed = new WeakMap<object, RoutingWeights | null>();

function routingWeights(model: ServedModel): RoutingWeights | null {
  const raw = model.routing;
  if (raw === null || typeof raw !== 'object') return null;
  if (!parsed.has(raw)) parsed.set(raw, validateRouting(model.name, raw, model.variants.map((v) => v.name)));
  return parsed.get(raw)!;
}

export function chooseVariant(model: ServedModel, request: RoutingRequest, random: () => number = Math.random): RoutingDecision {
  if (request.variant !== undefined) {
    const v = findVariant(model, request.variant);
    if (!v) {
      throw new SlimError(
        'VARIANT_NOT_FOUND',
        `model ${model.name} has no variant ${request.variant} (variants: ${model.variants.map((x) => x.name).join(', ')})`,
      );
    }
    return { variant: v, reason: 'explicit' };
  }
  const weights = routingWeights(model);
  if (weights) {
    const entries = Object.entries(weights.variants).filter(([, s]) => s.weight > 0);
    const total = entries.reduce((a, [, s]) => a + s.weight, 0);
    let r = random() * total;
    for (const [name, s] of entries) {
      r -= s.weight;
      if (r < 0) return { variant: findVariant(model, name)!, reason: 'weighted' };
    }
    return { variant: findVariant(model, entries.at(-1)![0])!, reason: 'weighted' };
  }
  return { variant: model.variants[0]!, reason: 'default' };
}
