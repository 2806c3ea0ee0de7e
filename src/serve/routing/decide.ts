// Which variants a request goes to (routing's decide step): a pure function of the routing table and
// (for sticky routing) the request's key, so every replica, and every restart, sends a key to
// the same variant without sharing any state.
//
// Sticky keys use weighted rendezvous hashing: each variant scores -ln(u)/w, with u a uniform
// number in (0, 1) drawn from SHA-256(key, variant), and the lowest score wins. P(variant i wins)
// = w_i / sum(w). When weights change, a key moves only to a variant whose weight grew relative
// to its current one (90/10 -> 80/20 moves about 1/9 of k1's keys, i.e. 10% of all keys, to k2,
// and none back), which plain "hash mod 100 against cumulative weights" would not guarantee
// once the variant order or count changes.
import { createHash } from 'node:crypto';
import type { RoutingTable } from './table.js';

const TWO_53 = 2 ** 53;

/** A uniform number in (0, 1) from SHA-256 of the key and the variant name. */
export function keyUniform(key: string, variant: string): number {
  const h = createHash('sha256').update(variant).update('\u0000').update(key).digest();
  // 53 bits: the most a double holds exactly; +0.5 keeps it off 0 and 1.
  const hi = h.readUInt32BE(0) >>> 11; // 21 bits
  const lo = h.readUInt32BE(4); // 32 bits
  return (hi * 2 ** 32 + lo + 0.5) / TWO_53;
}

/** The variant a key maps to under these weights (ties: the first listed). */
export function rendezvous(key: string, weights: readonly (readonly [string, number])[]): string {
  let best: string | undefined;
  let bestScore = Infinity;
  for (const [name, w] of weights) {
    if (!(w > 0)) continue;
    const score = -Math.log(keyUniform(key, name)) / w;
    if (score < bestScore) {
      bestScore = score;
      best = name;
    }
  }
  if (best === undefined) throw new Error('rendezvous: no variant has a positive weight');
  return best;
}

/** A variant drawn in proportion to the weights. */
export function weightedRandom(weights: readonly (readonly [string, number])[], random: () => number): string {
  const positive = weights.filter(([, w]) => w > 0);
  const total = positive.reduce((a, [, w]) => a + w, 0);
  let r = random() * total;
  for (const [name, w] of positive) {
    r -= w;
    if (r < 0) return name;
  }
  return positive.at(-1)![0];
}

export type RoutingReason = 'explicit' | 'cascade' | 'sticky' | 'weighted' | 'default';

/**
 * A routing decision: the variants a request runs through, in order. Every decision is a
 * cascade; a single-variant decision is a one-stage cascade (its stage decides every input,
 * whatever the threshold).
 */
export interface Decision {
  reason: RoutingReason;
  stages: readonly string[];
  /** Top probability at which a stage decides an input (1 for a one-stage decision: unused). */
  threshold: number;
}

const single = (reason: RoutingReason, variant: string): Decision => ({ reason, stages: [variant], threshold: 1 });

/**
 * The decision for a request (spec order): explicit variant > cascade > sticky hash of the key
 * > weighted random. `table` null: the model has no routing, its default variant answers.
 */
export function decide(
  table: RoutingTable | null,
  defaultVariant: string,
  request: { variant?: string; key?: string },
  random: () => number = Math.random,
): Decision {
  if (request.variant !== undefined) return single('explicit', request.variant);
  if (!table) return single('default', defaultVariant);
  if (table.cascade) return { reason: 'cascade', stages: table.cascade.order, threshold: table.cascade.threshold };
  const weights = Object.entries(table.variants).map(([n, s]) => [n, s.weight] as const);
  if (table.sticky && request.key !== undefined) return single('sticky', rendezvous(request.key, weights));
  return single('weighted', weightedRandom(weights, random));
}

/** What a request says about routing. */
export interface RoutingRequest {
  /** Explicit variant from the body (or the /v2 version in the URL). */
  variant?: string;
  /** Client key for sticky routing (body "key" or x-slim-key header). */
  key?: string;
}
