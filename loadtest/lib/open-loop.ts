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
// The generator's lateness is reported as sendLagMs so a slow generator is visible.
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import type { RunResult } from './closed-loop.js';
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
  /** How long to wait for stragglers after the schedule ends. */
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

async function schedule(o: OpenLoopOptions, agent: http.Agent, seconds: number, tally: Tally | null): Promise<void> {
  const target = new URL(o.url);
  const bodies = o.bodies.map((b) => Buffer.from(b));
  const interval = 1000 / o.rate;
  const total = Math.max(1, Math.floor(o.rate * seconds));
  const maxOutstanding = o.maxOutstanding ?? 4096;
  let outstanding = 0;
  let sent = 0;
  let onIdle: (() => void) | null = null;
  const finished = () => {
    outstanding--;
    if (outstanding === 0 && onIdle) onIdle();
  };
  const send = (intended: number, now: number, body: Buffer) => {
    if (outstanding >= maxOutstanding) {
      if (tally) tally.errors++;
      return;
    }
    outstanding++;
    tally?.lags.push(now - intended);
    const req = http.request(
      { agent, host: target.hostname, port: target.port, path: o.path ?? '/classify', method: 'POST', headers: { 'content-type': 'application/json', 'content-length': body.length } },
      (res) => {
        res.resume();
        res.on('end', () => {
          const end = performance.now();
          if (tally) {
            const code = res.statusCode ?? 0;
            if (code >= 200 && code < 300) {
              tally.ok++;
              tally.latencies.push(end - intended);
              const h = res.headers;
              tally.answers.push({ clientMs: end - intended, serverMs: Number(h['x-slim-total-ms']), queueMs: Number(h['x-slim-queue-ms']), inferenceMs: Number(h['x-slim-inference-ms']) });
            } else {
              tally.non2xx++;
            }
            tally.lastAnswerAt = end;
          }
          finished();
        });
      },
    );
    req.on('error', () => {
      if (tally) tally.errors++;
      finished();
    });
    req.end(body);
  };
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      // Send everything that is due: timers fire late by a millisecond or more, so one tick may
      // owe several requests; each still counts its latency from its own intended time.
      while (sent < total && t0 + sent * interval <= now) {
        send(t0 + sent * interval, now, bodies[sent % bodies.length]!);
        sent++;
      }
      if (sent >= total) return resolve();
      setTimeout(tick, Math.max(0, t0 + sent * interval - performance.now()));
    };
    tick();
  });
  if (tally) tally.lastAnswerAt = Math.max(tally.lastAnswerAt, performance.now());
  if (outstanding > 0) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, o.drainMs ?? 10_000);
      onIdle = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    // Whatever is still unanswered never got an answer in time: an error, not a missing sample.
    if (tally) tally.errors += outstanding;
  }
}

export async function openLoop(o: OpenLoopOptions): Promise<RunResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: o.maxSockets ?? 512 });
  try {
    if (o.warmupSeconds > 0) await schedule(o, agent, o.warmupSeconds, null);
    await o.beforeMeasure?.();
    const tally: Tally = { latencies: [], answers: [], lags: [], ok: 0, non2xx: 0, errors: 0, lastAnswerAt: 0 };
    const started = performance.now();
    await schedule(o, agent, o.seconds, tally);
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
    agent.destroy();
  }
}
