// Online accuracy of a variant from feedback: the share of correct answers among the last
// `window` feedback outcomes (a count-based sliding window, so a variant with little traffic
// keeps its estimate instead of forgetting it overnight), with a 95% Wilson score interval, and
// the difference between two variants with Newcombe's hybrid score interval (built from the two
// Wilson intervals; good at small counts and near 0 or 1, unlike the Wald interval). An A/B test
// has enough data when the difference's interval excludes 0.

const Z95 = 1.959963984540054;

export interface Interval {
  low: number;
  high: number;
}

/** 95% Wilson score interval of a proportion; [0, 1] without data. */
export function wilson(correct: number, n: number, z = Z95): Interval {
  if (n <= 0) return { low: 0, high: 1 };
  const p = correct / n;
  const z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / (1 + z2 / n);
  return { low: Math.max(0, centre - half), high: Math.min(1, centre + half) };
}

export interface AccuracyEstimate {
  n: number;
  correct: number;
  accuracy: number | null;
  ci95: Interval;
  /** Distinct clients the windowed outcomes came from. */
  clients: number;
}

export interface Difference {
  a: string;
  b: string;
  /** accuracy(a) - accuracy(b). */
  difference: number;
  ci95: Interval;
  /** The interval excludes 0: the data say which variant is more accurate. */
  significant: boolean;
}

/** Newcombe (1998) method 10: the interval of p1 - p2 from the two Wilson intervals. */
export function difference(a: string, ea: Omit<AccuracyEstimate, 'clients'>, b: string, eb: Omit<AccuracyEstimate, 'clients'>): Difference | null {
  if (ea.n === 0 || eb.n === 0 || ea.accuracy === null || eb.accuracy === null) return null;
  const p1 = ea.accuracy;
  const p2 = eb.accuracy;
  const d = p1 - p2;
  const low = d - Math.sqrt((p1 - ea.ci95.low) ** 2 + (eb.ci95.high - p2) ** 2);
  const high = d + Math.sqrt((ea.ci95.high - p1) ** 2 + (p2 - eb.ci95.low) ** 2);
  return { a, b, difference: d, ci95: { low, high }, significant: low > 0 || high < 0 };
}

/** The last `size` outcomes (true = correct) of one variant and who sent each, in a ring buffer. */
export class OutcomeWindow {
  private readonly ring: Uint8Array;
  private readonly senders: string[];
  /** Client -> outcomes of it in the window. */
  private readonly perClient = new Map<string, number>();
  private next = 0;
  private filled = 0;
  private correctInWindow = 0;
  /** All feedback ever received, correct and not (not windowed). */
  total = 0;

  constructor(readonly size: number) {
    this.ring = new Uint8Array(size);
    this.senders = new Array<string>(size);
  }

  add(correct: boolean, client = ''): void {
    this.total++;
    if (this.filled === this.size) {
      this.correctInWindow -= this.ring[this.next]!;
      const gone = this.senders[this.next]!;
      const left = this.perClient.get(gone)! - 1;
      if (left === 0) this.perClient.delete(gone);
      else this.perClient.set(gone, left);
    } else this.filled++;
    this.senders[this.next] = client;
    this.perClient.set(client, (this.perClient.get(client) ?? 0) + 1);
    this.ring[this.next] = correct ? 1 : 0;
    this.correctInWindow += correct ? 1 : 0;
    this.next = (this.next + 1) % this.size;
  }

  estimate(): AccuracyEstimate {
    const n = this.filled;
    return {
      n,
      correct: this.correctInWindow,
      accuracy: n > 0 ? this.correctInWindow / n : null,
      ci95: wilson(this.correctInWindow, n),
      clients: this.perClient.size,
    };
  }
}
