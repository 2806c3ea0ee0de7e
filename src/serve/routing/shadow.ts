// Shadow traffic: after a request is answered, a fraction of them also runs on the shadow
// variant. The shadow's result is never returned; only its agreement with the labels the client
// got is counted. Shadow work must never slow real traffic, so it is dropped (and counted as
// dropped), not queued, when the shadow variant's queue is over half full, and it never fails
// anything but itself. Pure: the serving core runs the job (src/serve/core.ts) and records
// what shadowOutcomes() counts.
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

/** Shadow work is dropped, not queued, when it would fill the shadow variant's queue past half. */
export function shadowFits(queued: number, inputs: number, maxQueued: number): boolean {
  return queued + inputs <= maxQueued / 2;
}

/**
 * What to count for a job: per variant that answered, inputs by outcome. `shadowLabels` null:
 * the shadow did not run (dropped); else the shadow's label per input of the job.
 */
export function shadowOutcomes(job: ShadowJob, shadowLabels: readonly string[] | null): [served: string, outcome: ShadowOutcome, count: number][] {
  const out = new Map<string, [string, ShadowOutcome, number]>();
  job.servedVariants.forEach((served, i) => {
    const outcome: ShadowOutcome = shadowLabels === null ? 'dropped' : shadowLabels[i] === job.servedLabels[i] ? 'agree' : 'disagree';
    const k = `${served}\u0000${outcome}`;
    const e = out.get(k) ?? [served, outcome, 0];
    e[2]++;
    out.set(k, e);
  });
  return [...out.values()];
}
