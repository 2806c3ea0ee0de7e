// The one feedback tally of a server of several processes (`slim serve --processes N`), kept in
// the primary: every process checks a POST /feedback itself (signature, labels: it has the
// models) and sends the checked claim here, so a request_id gets its feedback counted once and
// the online accuracy is the same whichever process answers, and survives a process restart.
import { FeedbackIds } from './feedback.js';
import { OutcomeWindow, type AccuracyEstimate } from './online-accuracy.js';
import { countClaim, type FeedbackClaim, type FeedbackResult, type FeedbackTally } from './statistics.js';

/** Per variant of a model: the feedback counts and the online-accuracy estimate. */
export type FeedbackCounts = Record<string, { correct: number; incorrect: number; online: AccuracyEstimate }>;

export class FeedbackLedger {
  /** Only its "already answered" memory is used (ids were verified by the process that took them). */
  private readonly answered: FeedbackIds;
  private readonly tallies = new Map<string, Map<string, FeedbackTally>>();

  constructor(private readonly options: { ttlMs: number; capacity: number; window: number }) {
    this.answered = new FeedbackIds({ secret: null, ttlMs: options.ttlMs, capacity: options.capacity });
  }

  count(claim: FeedbackClaim, client: string): FeedbackResult {
    return countClaim(
      claim,
      (key, index) => this.answered.markAnswered(key, index),
      (variant) => this.tally(claim.model, variant),
      client,
    );
  }

  /** What a model's variants got (only variants with feedback). */
  of(model: string): FeedbackCounts {
    const out: FeedbackCounts = {};
    for (const [variant, t] of this.tallies.get(model) ?? []) out[variant] = { correct: t.correct, incorrect: t.incorrect, online: t.window.estimate() };
    return out;
  }

  /** Every model's counts (for /metrics). */
  all(): [string, FeedbackCounts][] {
    return [...this.tallies.keys()].map((m) => [m, this.of(m)]);
  }

  private tally(model: string, variant: string): FeedbackTally {
    let m = this.tallies.get(model);
    if (!m) this.tallies.set(model, (m = new Map<string, FeedbackTally>()));
    let t = m.get(variant);
    if (!t) m.set(variant, (t = { correct: 0, incorrect: 0, window: new OutcomeWindow(this.options.window) }));
    return t;
  }
}
