// Pure views of routing: GET /routing/{model} (the table in force and what it did) and the
// counters Prometheus reads at scrape time. No state of their own: they read a table state
// (table-store.ts) and the statistics (statistics.ts).
import { difference, type AccuracyEstimate, type Difference } from './online-accuracy.js';
import type { ShadowOutcome } from './shadow.js';
import type { ModelStats, RoutingStatistics, VariantStats } from './statistics.js';
import { defaultTable, shares, tableToJson } from './table.js';
import type { TableState } from './table-store.js';
import type { RoutingStatusBody } from '../routes/routing-schemas.js';

/** GET /routing/{model}'s answer: the type of its response schema (routes/routing-schemas.ts). */
export type RoutingStatus = RoutingStatusBody;

/** Normalised weights per variant of the table in force (the default table when there is none). */
export function routingShares(state: Pick<TableState, 'model' | 'table'>): [string, number][] {
  const { model, table } = state;
  return shares(
    table ?? defaultTable(model.defaultVariant),
    model.variants.map((v) => v.name),
  );
}

/** What GET /routing reads of a model's statistics: this process's (ModelStats), or the sum over processes (cluster-stats.ts). */
export interface StatsView {
  variants: Map<string, Pick<VariantStats, 'requests' | 'inputs' | 'correct' | 'incorrect'> & { window: { estimate(): AccuracyEstimate } }>;
  shadow: ModelStats['shadow'];
  escalations: ModelStats['escalations'];
}

/** GET /routing/{model}. */
export function routingStatus(state: TableState, stats: StatsView, statistics: RoutingStatistics): RoutingStatus {
  const model = state.model;
  const names = model.variants.map((v) => v.name);
  const table = state.table ?? defaultTable(model.defaultVariant);
  const shareOf = new Map(shares(table, names));
  const estimates = new Map<string, AccuracyEstimate>();
  const variants = model.variants.map((v) => {
    const s = stats.variants.get(v.name)!;
    const est = s.window.estimate();
    estimates.set(v.name, est);
    return {
      name: v.name,
      depth: v.depth,
      weight: table.variants[v.name]?.weight ?? 0,
      share: shareOf.get(v.name) ?? 0,
      requests: s.requests,
      served: s.inputs,
      feedback: { correct: s.correct, incorrect: s.incorrect, total: s.correct + s.incorrect },
      buildAccuracy: v.manifest.eval.accuracy,
      online: est,
    };
  });
  const differences: Difference[] = [];
  for (let i = 0; i < names.length; i++) {
    for (let j = i + 1; j < names.length; j++) {
      const d = difference(names[i]!, estimates.get(names[i]!)!, names[j]!, estimates.get(names[j]!)!);
      if (d) differences.push(d);
    }
  }
  const agreement = [...stats.shadow].map(([k, c]) => {
    const [served, shadow] = k.split('\u0000') as [string, string];
    const compared = c.agree + c.disagree;
    return { served, shadow, ...c, rate: compared > 0 ? c.agree / compared : null };
  });
  return {
    model: model.name,
    source: state.source,
    version: state.version,
    updatedAt: state.updatedAt,
    ...(state.lastReloadError !== null ? { lastReloadError: state.lastReloadError } : {}),
    routing: state.table ? tableToJson(state.table) : null,
    effective: tableToJson(table),
    variants,
    differences,
    shadow: { ...(table.shadow ? { variant: table.shadow.variant, fraction: table.shadow.fraction } : {}), agreement },
    cascade: {
      ...(table.cascade ? { order: [...table.cascade.order], threshold: table.cascade.threshold } : {}),
      escalations: [...stats.escalations].map(([k, count]) => {
        const [from, to] = k.split('\u0000') as [string, string];
        return { from, to, count };
      }),
    },
    feedback: { signedIds: statistics.feedback.signed, windowSize: statistics.options.feedbackWindow, ttlMs: statistics.options.feedbackTtlMs },
  };
}

export interface RoutingCounters {
  feedback: { model: string; variant: string; outcome: 'correct' | 'incorrect'; value: number }[];
  online: { model: string; variant: string; value: number }[];
  shadow: { model: string; variant: string; agreement: ShadowOutcome; value: number }[];
  escalations: { model: string; from: string; to: string; value: number }[];
}

/** What Prometheus reads at scrape time. */
export function routingCounters(statistics: RoutingStatistics): RoutingCounters {
  const out: RoutingCounters = { feedback: [], online: [], shadow: [], escalations: [] };
  for (const [model, e] of statistics.all()) {
    for (const [variant, s] of e.variants) {
      if (s.correct + s.incorrect > 0) {
        out.feedback.push({ model, variant, outcome: 'correct', value: s.correct }, { model, variant, outcome: 'incorrect', value: s.incorrect });
        const est = s.window.estimate();
        if (est.accuracy !== null) out.online.push({ model, variant, value: est.accuracy });
      }
    }
    // slim_shadow_total is per shadow variant: summed over the variants it was compared with.
    const byShadow = new Map<string, Record<ShadowOutcome, number>>();
    for (const [k, c] of e.shadow) {
      const shadow = k.split('\u0000')[1]!;
      const t = byShadow.get(shadow) ?? { agree: 0, disagree: 0, dropped: 0 };
      for (const o of ['agree', 'disagree', 'dropped'] as const) t[o] += c[o];
      byShadow.set(shadow, t);
    }
    for (const [variant, t] of byShadow)
      for (const o of ['agree', 'disagree', 'dropped'] as const) out.shadow.push({ model, variant, agreement: o, value: t[o] });
    for (const [k, value] of e.escalations) {
      const [from, to] = k.split('\u0000') as [string, string];
      out.escalations.push({ model, from, to, value });
    }
  }
  return out;
}
