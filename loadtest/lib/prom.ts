// Read histogram sums and counts from our server's /metrics (Prometheus text format), so a run's
// mean batch size, queue time and inference time come from the same numbers an operator sees.
// Histograms are cumulative: a run's value is the difference of two scrapes.

export interface HistogramTotals {
  sum: number;
  count: number;
}

export type MetricsSnapshot = Map<string, HistogramTotals>;

const FAMILIES = ['slim_batch_size', 'slim_batch_tokens', 'slim_queue_duration_seconds', 'slim_inference_duration_seconds', 'slim_request_duration_seconds'];

/** Sum of every series of each family whose labels include all of `match` (e.g. {variant: "k1"}). */
export async function scrapeHistograms(url: string, match: Record<string, string> = {}): Promise<MetricsSnapshot> {
  const res = await fetch(`${url}/metrics`);
  if (!res.ok) throw new Error(`GET ${url}/metrics: ${res.status}`);
  return parseHistograms(await res.text(), match);
}

export function parseHistograms(text: string, match: Record<string, string> = {}): MetricsSnapshot {
  const out: MetricsSnapshot = new Map(FAMILIES.map((f) => [f, { sum: 0, count: 0 }]));
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)_(sum|count)(?:\{([^}]*)\})? ([-+0-9.eE]+|NaN)$/.exec(line);
    if (!m) continue;
    const totals = out.get(m[1]!);
    if (!totals) continue;
    const labels = Object.fromEntries([...(m[3] ?? '').matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1]!, l[2]!]));
    if (!Object.entries(match).every(([k, v]) => labels[k] === v)) continue;
    totals[m[2] as 'sum' | 'count'] += Number(m[4]);
  }
  return out;
}

export function diff(after: MetricsSnapshot, before: MetricsSnapshot): MetricsSnapshot {
  const out: MetricsSnapshot = new Map();
  for (const [k, a] of after) {
    const b = before.get(k) ?? { sum: 0, count: 0 };
    out.set(k, { sum: a.sum - b.sum, count: a.count - b.count });
  }
  return out;
}

/** Mean of a family over a run, or null when nothing was observed. */
export function mean(snapshot: MetricsSnapshot, family: string): number | null {
  const t = snapshot.get(family);
  return t && t.count > 0 ? t.sum / t.count : null;
}
