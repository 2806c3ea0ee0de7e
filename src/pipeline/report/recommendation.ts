// Which variant the report recommends serving: the cheapest within a point of the best.
import { PRECISIONS, precisionOf } from '../../manifest.js';
import type { DepthReport, DepthResult } from './types.js';

/** One accuracy point: accuracies are fractions, so 0.01. */
export const RECOMMENDATION_TOLERANCE = 0.01;
const RULE =
  'the cheapest variant (lowest batch-32 latency on this machine) whose accuracy is within 1 point of the best (fp16 variants, for GPUs, are not recommended from CPU measurements)';

/**
 * The cheapest variant within `tolerance` of the best accuracy: the lowest measured batch-32
 * latency (the cost of serving under load, where depth and precision both count), then the
 * smaller file, then the more accurate. The margin is compared with a small epsilon, so an
 * accuracy exactly 1 point below the best still qualifies despite rounding.
 */
export function recommendVariant(results: readonly DepthResult[], tolerance = RECOMMENDATION_TOLERANCE): DepthResult | undefined {
  if (results.length === 0) return undefined;
  // fp16 variants are for GPU execution providers; the build measures on CPU, where fp16 is not
  // the fast path, so they are listed but not recommended (unless nothing else was built).
  const candidates = results.some((r) => precisionOf(r) !== 'fp16') ? results.filter((r) => precisionOf(r) !== 'fp16') : results;
  const best = Math.max(...candidates.map((r) => r.accuracy));
  const eligible = candidates.filter((r) => r.accuracy >= best - tolerance - 1e-9);
  return [...eligible].sort(
    (a, b) => a.latencyMs.batch32 - b.latencyMs.batch32 || a.fileBytes - b.fileBytes || b.accuracy - a.accuracy || (a.variant < b.variant ? -1 : 1),
  )[0];
}

/** Complete a report with its recommendation; results are ordered by depth, then mode, then precision. */
export function buildReport(input: Omit<DepthReport, 'recommended'>): DepthReport {
  const results = [...input.results].sort(
    (a, b) => a.depth - b.depth || (a.mode < b.mode ? -1 : a.mode > b.mode ? 1 : 0) || PRECISIONS.indexOf(precisionOf(a)) - PRECISIONS.indexOf(precisionOf(b)),
  );
  const pick = recommendVariant(results);
  return {
    ...input,
    results,
    recommended: pick ? { variant: pick.variant, depth: pick.depth, mode: pick.mode, precision: precisionOf(pick), rule: RULE } : null,
  };
}
