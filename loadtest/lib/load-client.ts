// The reliability runs' load generator (overload.ts, soak.ts; they start the server under test as
// its own process with server-process.ts startServerProcess): every request kept as a Sample
// (status, catalogue code, hung or abandoned, when it was scheduled, written and answered), on
// raw-http.ts (cheap enough to flood a server on the same 2 cores). Its open loop is
// open-loop.ts's schedule, its latencies count from the scheduled send time (no coordinated
// omission), and its percentiles are stats.ts's. The closed loop here is for warm-up and for
// recovery windows, which need each request's time and status: closed-loop.ts (autocannon) only
// gives totals.
import { setTimeout as sleep } from 'node:timers/promises';
import { sendOnSchedule } from './open-loop.js';
import { RawHttpClient } from './raw-http.js';
import { summarize } from './stats.js';

export interface Sample {
  /** ms since the phase started: scheduled send (open loop) or send (closed loop). */
  at: number;
  /** ms the generator was late sending it: large values mean the client, not the server, limited the rate. */
  lag: number;
  /** ms since the phase started. */
  done: number;
  /** ms since the phase started when it was written to a socket (NaN: it never got one). */
  sent: number;
  /** HTTP status; 0: transport error; -1: no answer within hungMs; -2: unanswered when its open loop ended and left (abandonAtEnd). */
  status: number;
  /** Catalogue code of a 5xx answer. */
  code?: string;
}

export class LoadClient {
  private readonly http: RawHttpClient;
  private readonly requests: Buffer[];
  private i = 0;
  private abandoning = false;

  constructor(
    url: string,
    bodies: string[],
    /** A request unanswered this long (waiting for a socket included) counts as hung. */
    private readonly hungMs: number,
    maxSockets = 4096,
  ) {
    this.http = new RawHttpClient(url, maxSockets);
    this.requests = bodies.map((b) => this.http.postBytes('/classify', b));
  }

  private async send(scheduled: number, t0: number, out: (s: Sample) => void): Promise<void> {
    const sentAt = performance.now();
    const answer = await this.http.send(this.requests[this.i++ % this.requests.length]!, this.hungMs);
    let code: string | undefined;
    if (answer.body !== undefined) {
      try {
        code = (JSON.parse(answer.body) as { error?: { code?: string } }).error?.code;
      } catch {
        code = 'not-json';
      }
    }
    const sent = answer.writtenAt === undefined ? NaN : answer.writtenAt - t0;
    const status = answer.status === 0 && this.abandoning ? -2 : answer.status;
    out({ at: scheduled - t0, lag: sentAt - scheduled, done: performance.now() - t0, sent, status, ...(code ? { code } : {}) });
  }

  /**
   * Open loop: `rate` requests/s on a fixed schedule for `ms`, whatever the answers do. With
   * abandonAtEnd the clients leave when the schedule ends, as a flood's clients do: every socket
   * is closed and what is still unanswered counts as abandoned (-2), so what follows measures
   * the server, not a backlog the generator still holds open.
   */
  async openLoop(rate: number, ms: number, out: (s: Sample) => void, opts: { abandonAtEnd?: boolean } = {}): Promise<void> {
    const t0 = performance.now();
    let outstanding = 0;
    let allSent = false;
    let done: () => void = () => {};
    const finished = new Promise<void>((r) => (done = r));
    // The schedule of open-loop.ts; `scheduled` and `lag` count from each request's intended time.
    await sendOnSchedule(rate, Math.floor((rate * ms) / 1000), (intended) => {
      outstanding++;
      void this.send(intended, t0, out).then(() => {
        if (--outstanding === 0 && allSent) done();
      });
    });
    // The phase lasts `ms` even at low rates, where the last request is due up to 1/rate before its end.
    const rest = t0 + ms - performance.now();
    if (rest > 0) await sleep(rest);
    allSent = true;
    if (outstanding === 0) done();
    if (opts.abandonAtEnd && outstanding > 0) {
      this.abandoning = true;
      this.http.close();
    }
    await finished;
  }

  /** Closed loop: `n` clients, each sends its next request when the previous is answered. */
  async closedLoop(n: number, ms: number, out: (s: Sample) => void): Promise<void> {
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: n }, async () => {
        while (performance.now() - t0 < ms) await this.send(performance.now(), t0, out);
      }),
    );
  }

  close(): void {
    this.http.close();
  }
}

/** p50, p99 and max of latencies (ms) by stats.ts's percentile (nearest rank). */
export function tail(ms: readonly number[]): { p50: number; p99: number; max: number } {
  const s = summarize(ms);
  return { p50: s.p50Ms, p99: s.p99Ms, max: s.maxMs };
}

/** What a run's samples came to: statuses, admitted rate, and latencies of the 200s. */
export function summarizeSamples(samples: Sample[], ms: number) {
  const count = (pred: (s: Sample) => boolean): number => samples.filter(pred).length;
  const ok = samples.filter((s) => s.status === 200).map((s) => s.done - s.at);
  // From the moment the request was on the wire: what the server (and the kernel's buffers in front
  // of it) made it wait, without the time it queued in the generator for a free socket.
  const okSent = samples.filter((s) => s.status === 200).map((s) => s.done - s.sent);
  const lags = tail(samples.map((s) => s.lag));
  const byStatus: Record<string, number> = {};
  for (const s of samples) {
    const key = s.status === -2 ? 'abandoned' : s.status === -1 ? 'hung' : s.status === 0 ? 'error' : s.code ? `${s.status} ${s.code}` : String(s.status);
    byStatus[key] = (byStatus[key] ?? 0) + 1;
  }
  return {
    requests: samples.length,
    byStatus,
    share429: count((s) => s.status === 429) / Math.max(1, samples.length),
    admittedPerSec: ok.length / (ms / 1000),
    admittedLatencyMs: tail(ok),
    admittedFromWriteMs: tail(okSent),
    hung: count((s) => s.status === -1),
    /** Hung without ever getting a socket: they queued in the generator, not in the server. */
    hungUnsent: count((s) => s.status === -1 && Number.isNaN(s.sent)),
    serverErrors: count((s) => s.status >= 500),
    clientLagMs: { p50: lags.p50, p99: lags.p99 },
  };
}

/**
 * Sample values of a Prometheus text exposition (the first series of each name), from ONE scrape:
 * prom-client resets its event-loop histogram on every scrape.
 */
export async function scrapeMetrics(url: string, names: string[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  let text = '';
  try {
    text = await (await fetch(`${url}/metrics`)).text();
  } catch {
    /* NaN below */
  }
  for (const name of names) {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.eE+-]+|NaN)$`, 'm').exec(text);
    out[name] = m ? Number(m[1]) : NaN;
  }
  return out;
}

export const fmt = (v: number | null | undefined, d = 0): string => (v === null || v === undefined || Number.isNaN(v) ? '-' : v.toFixed(d));
