// Shadow traffic: after a request is answered, a fraction of them also runs on the shadow
// variant. The shadow's result is never returned; only its agreement with the labels the client
// got is counted. Shadow work must never slow real traffic, so it is dropped (and counted as
// dropped), not queued, when the shadow variant's queue is over half full, and it never fails
// anything but itself.
import type { RoutingTable } from './table.js';

export type ShadowOutcome = 'agree' | 'disagree' | 'dropped';

export interface ShadowJob {
  model: string;
  shadow: string;
  texts: string[];
  /** Per input: the variant that answered it and the label the client got. */
  servedVariants: string[];
  servedLabels: string[];
  truncate: boolean;
}

export interface ShadowDeps {
  /** Inputs waiting in the variant's queue now, and the queue's bound. */
  queued(model: string, variant: string): number;
  maxQueued(): number;
  /** Predicted labels of the shadow variant for these texts. */
  classify(model: string, variant: string, texts: string[], truncate: boolean): Promise<string[]>;
  /** Count `count` inputs answered by `served` with this shadow outcome. */
  record(model: string, served: string, shadow: string, outcome: ShadowOutcome, count: number): void;
  onError(err: unknown): void;
}

/**
 * The shadow job of an answered request, or null: none configured, the coin says no, or every
 * input was answered by the shadow variant itself (nothing to compare).
 */
export function shadowJob(
  table: RoutingTable | null,
  model: string,
  texts: string[],
  servedVariants: string[],
  servedLabels: string[],
  truncate: boolean,
  random: () => number = Math.random,
): ShadowJob | null {
  const s = table?.shadow;
  if (!s || s.fraction <= 0 || !(random() < s.fraction)) return null;
  const keep = servedVariants.map((v, i) => (v !== s.variant ? i : -1)).filter((i) => i >= 0);
  if (keep.length === 0) return null;
  return {
    model,
    shadow: s.variant,
    texts: keep.map((i) => texts[i]!),
    servedVariants: keep.map((i) => servedVariants[i]!),
    servedLabels: keep.map((i) => servedLabels[i]!),
    truncate,
  };
}

function countBy(variants: string[], pick: (i: number) => boolean): Map<string, number> {
  const m = new Map<string, number>();
  variants.forEach((v, i) => {
    if (pick(i)) m.set(v, (m.get(v) ?? 0) + 1);
  });
  return m;
}

/** Run a shadow job; never throws. */
export async function runShadow(job: ShadowJob, deps: ShadowDeps): Promise<void> {
  const dropAll = (): void => {
    for (const [served, n] of countBy(job.servedVariants, () => true)) deps.record(job.model, served, job.shadow, 'dropped', n);
  };
  if (deps.queued(job.model, job.shadow) + job.texts.length > deps.maxQueued() / 2) {
    dropAll();
    return;
  }
  let labels: string[];
  try {
    labels = await deps.classify(job.model, job.shadow, job.texts, job.truncate);
  } catch (err) {
    dropAll();
    deps.onError(err);
    return;
  }
  for (const [served, n] of countBy(job.servedVariants, (i) => labels[i] === job.servedLabels[i])) deps.record(job.model, served, job.shadow, 'agree', n);
  for (const [served, n] of countBy(job.servedVariants, (i) => labels[i] !== job.servedLabels[i])) deps.record(job.model, served, job.shadow, 'disagree', n);
}
