// Latency percentiles from raw samples (every response is kept: runs are short, and exact
// percentiles avoid the bucket error a histogram would add at the p99 we compare against p50).

export interface LatencySummary {
  count: number;
  meanMs: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Nearest-rank percentile of sorted samples. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

/**
 * Middle of a few repeated figures (rounds of a benchmark): the mean of the two middle ones for
 * an even count. Not for latencies, which use percentile's nearest rank.
 */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = Float64Array.from(xs).sort();
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function summarize(samples: readonly number[]): LatencySummary {
  const sorted = Float64Array.from(samples).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    count: sorted.length,
    meanMs: sorted.length ? sum / sorted.length : NaN,
    p50Ms: percentile(sorted, 50),
    p95Ms: percentile(sorted, 95),
    p99Ms: percentile(sorted, 99),
    maxMs: sorted.length ? sorted[sorted.length - 1]! : NaN,
  };
}

/** One answered request with the server's own timing headers (x-slim-total-ms, -queue-ms, -inference-ms). */
export interface TimedAnswer {
  clientMs: number;
  serverMs: number;
  queueMs: number;
  inferenceMs: number;
}

/** Mean split of the answers whose client latency falls in a percentile band. */
export interface LatencySplit {
  band: string;
  count: number;
  clientMs: number;
  /** Client minus server: waiting to be sent (generator, socket pool), TCP and HTTP on loopback. */
  outsideServerMs: number;
  serverMs: number;
  queueMs: number;
  inferenceMs: number;
  /** Server time that is neither queue nor inference: tokenization, parsing, batch assembly, replies. */
  otherServerMs: number;
}

/**
 * Where the median and the tail requests spend their time, from the x-slim-* headers: the
 * p99/p50 target is about the tail, and a mean breakdown hides what makes a request slow.
 */
export function latencySplits(answers: readonly TimedAnswer[]): LatencySplit[] {
  const timed = answers.filter((a) => Number.isFinite(a.serverMs));
  if (timed.length === 0) return [];
  const sorted = [...timed].sort((a, b) => a.clientMs - b.clientMs);
  const band = (name: string, lo: number, hi: number): LatencySplit => {
    const from = Math.floor((lo / 100) * sorted.length);
    const to = Math.max(from + 1, Math.ceil((hi / 100) * sorted.length));
    const group = sorted.slice(from, to);
    const m = (f: (a: TimedAnswer) => number) => group.reduce((s, a) => s + f(a), 0) / group.length;
    const server = m((a) => a.serverMs);
    const queue = m((a) => a.queueMs);
    const inference = m((a) => a.inferenceMs);
    return {
      band: name,
      count: group.length,
      clientMs: m((a) => a.clientMs),
      outsideServerMs: m((a) => a.clientMs) - server,
      serverMs: server,
      queueMs: queue,
      inferenceMs: inference,
      otherServerMs: server - queue - inference,
    };
  };
  return [band('p45-p55', 45, 55), band('p99-p100', 99, 100)];
}
