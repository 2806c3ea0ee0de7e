// Routing statistics of a server of several processes: each process counts what it served
// (requests, inputs, shadow agreement, escalations) and hands a plain snapshot to the primary,
// which sums the snapshots and adds the one feedback tally (feedback-ledger.ts). GET /routing
// renders the sum, so it says the same whichever process answers.
import type { ServedModel } from '../catalogue.js';
import type { FeedbackCounts } from './feedback-ledger.js';
import { wilson } from './online-accuracy.js';
import type { StatsView } from './render.js';
import type { ShadowOutcome } from './shadow.js';
import type { RoutingStatistics } from './statistics.js';

/** One model's counters in one process, as plain JSON. */
export interface ModelSnapshot {
  variants: Record<string, { requests: number; inputs: number }>;
  shadow: Record<string, Record<ShadowOutcome, number>>;
  escalations: Record<string, number>;
}

export type StatsSnapshot = Record<string, ModelSnapshot>;

export function snapshotOf(statistics: RoutingStatistics): StatsSnapshot {
  const out: StatsSnapshot = {};
  for (const [model, e] of statistics.all()) {
    const variants: ModelSnapshot['variants'] = {};
    for (const [v, s] of e.variants) variants[v] = { requests: s.requests, inputs: s.inputs };
    out[model] = { variants, shadow: Object.fromEntries(e.shadow), escalations: Object.fromEntries(e.escalations) };
  }
  return out;
}

/** One model's counters summed over the snapshots of every process. */
export function sumSnapshots(snapshots: readonly StatsSnapshot[], model: string): ModelSnapshot {
  const sum: ModelSnapshot = { variants: {}, shadow: {}, escalations: {} };
  for (const snap of snapshots) {
    const m = snap[model];
    if (!m) continue;
    for (const [v, s] of Object.entries(m.variants)) {
      const t = (sum.variants[v] ??= { requests: 0, inputs: 0 });
      t.requests += s.requests;
      t.inputs += s.inputs;
    }
    for (const [k, c] of Object.entries(m.shadow)) {
      const t = (sum.shadow[k] ??= { agree: 0, disagree: 0, dropped: 0 });
      for (const o of ['agree', 'disagree', 'dropped'] as const) t[o] += c[o];
    }
    for (const [k, n] of Object.entries(m.escalations)) sum.escalations[k] = (sum.escalations[k] ?? 0) + n;
  }
  return sum;
}

/** The statistics GET /routing renders: the summed counters and the primary's feedback tally. */
export function clusterView(model: ServedModel, counters: ModelSnapshot, feedback: FeedbackCounts): StatsView {
  const variants: StatsView['variants'] = new Map();
  for (const v of model.variants) {
    const c = counters.variants[v.name] ?? { requests: 0, inputs: 0 };
    const f = feedback[v.name];
    const online = f?.online ?? { n: 0, correct: 0, accuracy: null, ci95: wilson(0, 0), clients: 0 };
    variants.set(v.name, {
      requests: c.requests,
      inputs: c.inputs,
      correct: f?.correct ?? 0,
      incorrect: f?.incorrect ?? 0,
      window: { estimate: () => online },
    });
  }
  return { variants, shadow: new Map(Object.entries(counters.shadow)), escalations: new Map(Object.entries(counters.escalations)) };
}
