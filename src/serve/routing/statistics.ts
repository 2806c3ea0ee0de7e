// What routing did and how well it went, per served model: requests and inputs per variant,
// feedback (true labels joined with the predictions behind a request_id) and the online accuracy
// over a window of it, shadow agreement and cascade escalations. Counters only grow (Prometheus
// reads them at scrape time); a new routing table never resets them. A variant's statistics go
// when the model store stops serving it, so no series of a removed variant stays in /metrics.
import type { FeedbackResponseBody } from '../routes/routing-schemas.js';
import type { ServedModel } from '../catalogue.js';
import { CoreError } from '../errors.js';
import { FeedbackIds, type ServedRecord } from './feedback.js';
import { OutcomeWindow } from './online-accuracy.js';
import type { ShadowOutcome } from './shadow.js';

export interface StatisticsOptions {
  feedbackSecret: string | null;
  feedbackTtlMs: number;
  feedbackCapacity: number;
  /** Feedback outcomes per variant in the online-accuracy window. */
  feedbackWindow: number;
}

export interface VariantStats {
  /** Requests whose top-level variant this was. */
  requests: number;
  /** Inputs this variant decided. */
  inputs: number;
  correct: number;
  incorrect: number;
  window: OutcomeWindow;
}

export interface ModelStats {
  model: ServedModel;
  variants: Map<string, VariantStats>;
  /** "<served>\u0000<shadow>" -> outcome -> inputs. */
  shadow: Map<string, Record<ShadowOutcome, number>>;
  /** "<from>\u0000<to>" -> inputs. */
  escalations: Map<string, number>;
}

/** POST /feedback's answer: the type of its response schema (routes/routing-schemas.ts). */
export type FeedbackResult = FeedbackResponseBody;

export class RoutingStatistics {
  readonly feedback: FeedbackIds;
  private readonly models = new Map<string, ModelStats>();

  constructor(readonly options: StatisticsOptions) {
    this.feedback = new FeedbackIds({ secret: options.feedbackSecret, ttlMs: options.feedbackTtlMs, capacity: options.feedbackCapacity });
  }

  /** Part of the model store's swap: statistics of variants that stay are kept, removed ones go. */
  bind(model: ServedModel): void {
    const e = this.models.get(model.name) ?? { model, variants: new Map<string, VariantStats>(), shadow: new Map(), escalations: new Map() };
    e.model = model;
    for (const name of [...e.variants.keys()]) if (!model.variants.some((v) => v.name === name)) e.variants.delete(name);
    for (const v of model.variants) {
      if (!e.variants.has(v.name))
        e.variants.set(v.name, { requests: 0, inputs: 0, correct: 0, incorrect: 0, window: new OutcomeWindow(this.options.feedbackWindow) });
    }
    this.models.set(model.name, e);
  }

  forget(model: string): void {
    this.models.delete(model);
  }

  /** Everything counted for a model (undefined when it is not served). */
  of(model: string): ModelStats | undefined {
    return this.models.get(model);
  }

  all(): IterableIterator<[string, ModelStats]> {
    return this.models.entries();
  }

  /** An answered request: its top-level variant and the variant that decided each input. */
  recordServed(model: string, variant: string, decidedBy: readonly string[]): void {
    const e = this.models.get(model);
    if (!e) return;
    const s = e.variants.get(variant);
    if (s) s.requests++;
    for (const v of decidedBy) {
      const d = e.variants.get(v);
      if (d) d.inputs++;
    }
  }

  recordEscalation(model: string, from: string, to: string, count: number): void {
    const e = this.models.get(model);
    if (!e) return;
    const k = `${from}\u0000${to}`;
    e.escalations.set(k, (e.escalations.get(k) ?? 0) + count);
  }

  recordShadow(model: string, served: string, shadow: string, outcome: ShadowOutcome, count: number): void {
    const e = this.models.get(model);
    if (!e) return;
    const k = `${served}\u0000${shadow}`;
    const c = e.shadow.get(k) ?? { agree: 0, disagree: 0, dropped: 0 };
    c[outcome] += count;
    e.shadow.set(k, c);
  }

  /** The request_id of an answered request (signed, or stored in memory). */
  issueId(record: ServedRecord): string {
    return this.feedback.issue(record);
  }

  /**
   * POST /feedback: join true labels (per input; null skips one) with the predictions behind a
   * request_id. Returns what was counted; inputs that already had feedback are not counted again.
   */
  recordFeedback(requestId: string, labels: readonly (string | null)[], client = ''): FeedbackResult {
    return this.countFeedback(this.checkFeedback(requestId, labels), client);
  }

  /**
   * The checks of POST /feedback (signature, age, model served, label count and names) and the
   * outcome of every labelled input, not yet counted. With several server processes the primary
   * counts them (src/serve/routing/feedback-ledger.ts), so every process sees one tally.
   */
  checkFeedback(requestId: string, labels: readonly (string | null)[]): FeedbackClaim {
    const { record, key } = this.feedback.resolve(requestId);
    const e = this.models.get(record.model);
    if (!e) throw new CoreError('REQUEST_ID_NOT_FOUND', `request_id names model ${record.model}, which this server does not serve`);
    if (labels.length !== record.labels.length) {
      throw new CoreError(
        'INVALID_REQUEST',
        record.labels.length === 1
          ? `the request had 1 input: send "label" (or "labels" with one entry), got ${labels.length}`
          : `the request had ${record.labels.length} inputs: send "labels" with one entry per input (null to skip one), got ${labels.length}`,
      );
    }
    const known = e.model.variants.find((v) => v.name === record.variants[0])?.labels ?? e.model.variants[0]!.labels;
    labels.forEach((l, i) => {
      if (l !== null && !known.includes(l))
        throw new CoreError('UNKNOWN_LABEL', `labels[${i}]: "${l}" is not a label of ${record.model} (labels: ${known.join(', ')})`);
    });
    const outcomes: FeedbackOutcome[] = [];
    labels.forEach((label, i) => {
      if (label !== null) outcomes.push({ index: i, variant: record.variants[i]!, predicted: record.labels[i]!, label, correct: label === record.labels[i] });
    });
    return { model: record.model, key, outcomes };
  }

  /** Count checked feedback in this process; an input that already had feedback is not counted again. */
  countFeedback(claim: FeedbackClaim, client = ''): FeedbackResult {
    return countClaim(
      claim,
      (key, index) => this.feedback.markAnswered(key, index),
      (variant) => this.models.get(claim.model)?.variants.get(variant),
      client,
    );
  }
}

/** Checked feedback on one request_id: what each labelled input's outcome is. */
export interface FeedbackClaim {
  model: string;
  /** Key of the "already answered" memory (src/serve/routing/feedback.ts). */
  key: string;
  outcomes: FeedbackOutcome[];
}

export interface FeedbackOutcome {
  index: number;
  variant: string;
  predicted: string;
  label: string;
  correct: boolean;
}

/** Where feedback is counted: correct/incorrect totals and the online-accuracy window. */
export interface FeedbackTally {
  correct: number;
  incorrect: number;
  window: OutcomeWindow;
}

/** Count a claim: once per input (`fresh` says whether it is new), into the tally of its variant. */
export function countClaim(
  claim: FeedbackClaim,
  fresh: (key: string, index: number) => boolean,
  tally: (variant: string) => FeedbackTally | undefined,
  client: string,
): FeedbackResult {
  const out: FeedbackResult = { model: claim.model, counted: 0, duplicates: 0, results: [] };
  for (const o of claim.outcomes) {
    const counted = fresh(claim.key, o.index);
    out.results.push({ ...o, counted });
    if (!counted) {
      out.duplicates++;
      continue;
    }
    out.counted++;
    const s = tally(o.variant);
    if (!s) continue;
    if (o.correct) s.correct++;
    else s.incorrect++;
    s.window.add(o.correct, client);
  }
  return out;
}
