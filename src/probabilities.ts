// Logits to probabilities and the winning label: one definition for the server's workers,
// `slim eval` and the cascade rule, so a probability (and a tie) is the same everywhere.

/**
 * Softmax per row in float64, rounded to float32 at the end: batching (or evaluating offline)
 * cannot change a probability beyond float32 rounding.
 */
export function softmaxRows(logits: ArrayLike<number>, rows: number, numLabels: number): Float32Array {
  const out = new Float32Array(rows * numLabels);
  const exps = new Float64Array(numLabels);
  for (let r = 0; r < rows; r++) {
    const o = r * numLabels;
    let max = -Infinity;
    for (let c = 0; c < numLabels; c++) max = Math.max(max, logits[o + c]!);
    let sum = 0;
    for (let c = 0; c < numLabels; c++) sum += exps[c] = Math.exp(logits[o + c]! - max);
    for (let c = 0; c < numLabels; c++) out[o + c] = exps[c]! / sum;
  }
  return out;
}

/** Index of the largest value; ties go to the first (the label listed first in the manifest). */
export function argmax(p: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < p.length; i++) if (p[i]! > p[best]!) best = i;
  return best;
}

/** The largest value (the confidence a cascade compares with its threshold). */
export function topProbability(p: ArrayLike<number>): number {
  let best = -Infinity;
  for (let i = 0; i < p.length; i++) if (p[i]! > best) best = p[i]!;
  return best;
}
