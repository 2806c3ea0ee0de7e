// Open loop: requests are sent on a fixed schedule (request i at t0 + i/rate), whether or not
// earlier ones have been answered, the way independent users arrive. Latency is measured from
// each request's INTENDED send time, not from when it actually left.
//
// Why not autocannon here: autocannon's rate limit is per connection and a connection waits
// for its answer before sending again, so when the server stalls, the requests that should have
// been sent during the stall are simply not sent and their latency is never recorded
// ("coordinated omission": the generator politely backs off exactly when latency is worst). Its
// correction (recordValueWithExpectedInterval with ceil(1/rate)) uses an interval of 1 ms
// whatever the rate, and its limiter sends each second's quota in a burst. This driver instead
// keeps the schedule, lets requests pile up in a large keep-alive socket pool, and charges any
// wait (in the pool, in the server, or in the generator's own timer) to the request's latency.
// It sends through lib/raw-http.ts, whose per-request cost is a few microseconds, so that on a
// small machine the generator takes as little CPU from the server as it can.
// The generator's lateness is reported as sendLagMs so a slow generator is visible.
import { performance } from 'node:perf_hooks';
import type { RunResult } from './closed-loop.js';
import { RawHttpClient } from './raw-http.js';
import { latencySplits, percentile, summarize, type TimedAnswer } from './stats.js';

export interface OpenLoopOptions {
  url: string;
  path?: string;
  bodies: readonly string[];
  inputsPerRequest?: number;
  /** Intended requests per second. */
  rate: number;
  seconds: number;
  warmupSeconds: number;
  /** Sockets the generator may open (requests beyond wait in the agent, and that wait counts). */
  maxSockets?: number;
  /** Past this many unanswered requests the generator stops sending and counts them as errors. */
  maxOutstanding?: number;
  /** How long a request may go unanswered (an error after that); also bounds the wait for stragglers. */
  drainMs?: number;
  /** Called between warm-up and the measured run (reset counters, scrape metrics). */
  beforeMeasure?: () => Promise<void>;
}

interface Tally {
  latencies: number[];
  answers: TimedAnswer[];
  lags: number[];
  ok: number;
  non2xx: number;
  errors: number;
  lastAnswerAt: number;
}

const HEADER_PATTERNS = new Map<string, RegExp>();

/** A numeric response header out of a raw head, NaN when absent. */
function headerNumber(head: string | undefined, name: string): number {
  if (!head) return NaN;
  let pattern = HEADER_PATTERNS.get(name);
  if (!pattern) HEADER_PATTERNS.set(name, (pattern = new RegExp(`\\r\\n${name}:\\s*([0-9.eE+-]+)`, 'i')));
  const m = pattern.exec(head);
  return m ? Number(m[1]) : NaN;
}

/**
 * The one open-loop scheduler of the load tests: calls `send(intended, now, i)` for i = 0..total-1,
 * request i due at t0 + i/rate, and resolves once the last is sent (not answered). Timers fire
 * late by a millisecond or more, so one tick may owe several requests; each still gets its own
 * intended time, from which its latency counts.
 */
export function sendOnSchedule(rate: number, total: number, send: (intended: number, now: number, i: number) => void): Promise<void> {
  const interval = 1000 / rate;
  const t0 = performance.now();
  let sent = 0;
  return new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      while (sent < total && t0 + sent * interval <= now) {
        send(t0 + sent * interval, now, sent);
        sent++;
      }
      if (sent >= total) return resolve();
      setTimeout(tick, Math.max(0, t0 + sent * interval - performance.now()));
    };
    tick();
  });
}

async function schedule(o: OpenLoopOptions, client: RawHttpClient, seconds: number, tally: Tally | null): Promise<void> {
  const requests = o.bodies.map((b) => client.postBytes(o.path ?? '/classify', b));
  const total = Math.max(1, Math.floor(o.rate * seconds));
  const maxOutstanding = o.maxOutstanding ?? 4096;
  const timeoutMs = o.drainMs ?? 10_000;
  let outstanding = 0;
  let onIdle: (() => void) | null = null;
  const send = (intended: number, now: number, bytes: Buffer) => {
    if (outstanding >= maxOutstanding) {
      if (tally) tally.errors++;
      return;
    }
    outstanding++;
    tally?.lags.push(now - intended);
    void client.send(bytes, timeoutMs).then((answer) => {
      const end = performance.now();
      if (tally) {
        const code = answer.status;
        if (code >= 200 && code < 300) {
          tally.ok++;
          tally.latencies.push(end - intended);
          const h = answer.head;
          tally.answers.push({
            clientMs: end - intended,
            serverMs: headerNumber(h, 'x-slim-total-ms'),
            queueMs: headerNumber(h, 'x-slim-queue-ms'),
            inferenceMs: headerNumber(h, 'x-slim-inference-ms'),
          });
        } else if (code > 0) {
          tally.non2xx++;
        } else {
          tally.errors++;
        }
        tally.lastAnswerAt = end;
      }
      outstanding--;
      if (outstanding === 0 && onIdle) onIdle();
    });
  };
  await sendOnSchedule(o.rate, total, (intended, now, i) => send(intended, now, requests[i % requests.length]!));
  if (tally) tally.lastAnswerAt = Math.max(tally.lastAnswerAt, performance.now());
  if (outstanding > 0) {
    // Every request ends by its timeout (drainMs) at the latest, answered or counted an error.
    await new Promise<void>((resolve) => (onIdle = resolve));
  }
}

export async function openLoop(o: OpenLoopOptions): Promise<RunResult> {
  const client = new RawHttpClient(o.url, o.maxSockets ?? 512);
  try {
    if (o.warmupSeconds > 0) await schedule(o, client, o.warmupSeconds, null);
    await o.beforeMeasure?.();
    const tally: Tally = { latencies: [], answers: [], lags: [], ok: 0, non2xx: 0, errors: 0, lastAnswerAt: 0 };
    const started = performance.now();
    await schedule(o, client, o.seconds, tally);
    const seconds = Math.max(o.seconds, (tally.lastAnswerAt - started) / 1000);
    const lags = Float64Array.from(tally.lags).sort();
    return {
      mode: 'open',
      targetRate: o.rate,
      seconds,
      ok: tally.ok,
      errors: tally.errors,
      non2xx: tally.non2xx,
      requestsPerSec: tally.ok / seconds,
      inputsPerSec: (tally.ok * (o.inputsPerRequest ?? 1)) / seconds,
      latency: summarize(tally.latencies),
      sendLagMs: { p99: percentile(lags, 99), max: lags.length ? lags[lags.length - 1]! : NaN },
      splits: latencySplits(tally.answers),
    };
  } finally {
    client.close();
  }
}
