// Deterministic helpers over loaded examples: the label set, counts per label, the stratified
// validation split and the content hash. Same data and seed, same result on every machine.
import { createHash } from 'node:crypto';
import { mulberry32, shuffleInPlace } from '../random.js';
import type { Example } from './example.js';

/** Distinct labels in code-unit order: the same order for the same data on every machine. */
export function labelSet(examples: readonly Example[]): string[] {
  return [...new Set(examples.map((e) => e.label))].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Examples per label, keys in `labelSet` order. */
export function labelCounts(examples: readonly Example[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const label of labelSet(examples)) counts[label] = 0;
  for (const e of examples) counts[e.label]!++;
  return counts;
}

/**
 * Stratified split: each label contributes round(n * fraction) examples to validation, at
 * least one and never all of them (a label with a single example stays in training). The
 * seeded shuffle makes the split depend only on the data and the seed; both halves keep the
 * file's order, so the trainer's own shuffle is the only reordering.
 */
export function splitDataset(examples: readonly Example[], fraction: number, seed: number): { train: Example[]; val: Example[] } {
  if (!(fraction > 0 && fraction < 1)) {
    throw new RangeError(`the validation fraction must be between 0 and 1 (exclusive), got ${fraction}`);
  }
  const rng = mulberry32(seed);
  const byLabel = new Map<string, number[]>();
  for (const label of labelSet(examples)) byLabel.set(label, []);
  examples.forEach((e, i) => byLabel.get(e.label)!.push(i));
  const inVal = new Set<number>();
  for (const indices of byLabel.values()) {
    const n = indices.length;
    const take = n < 2 ? 0 : Math.min(n - 1, Math.max(1, Math.round(n * fraction)));
    for (const i of shuffleInPlace([...indices], rng).slice(0, take)) inVal.add(i);
  }
  return {
    train: examples.filter((_, i) => !inVal.has(i)),
    val: examples.filter((_, i) => inVal.has(i)),
  };
}

/**
 * SHA-256 of the examples' content (text and label, in order), independent of the file
 * format and line numbers: the same data as CSV or JSONL has the same hash.
 */
export function datasetSha256(examples: readonly Example[]): string {
  const hash = createHash('sha256');
  for (const e of examples) hash.update(`${JSON.stringify([e.text, e.label])}\n`);
  return hash.digest('hex');
}
