// Closed loop on autocannon: N connections, each sends its next request as soon as the previous
// answer arrives. This measures the throughput a fixed number of busy clients get, and the
// latency each of them sees; it cannot say what latency an arrival rate gets, because a slow
// answer delays the next send (coordinated omission): that is the open loop's job (open-loop.ts).
import autocannon from 'autocannon';
import { summarize, type LatencySplit, type LatencySummary } from './stats.js';

export interface RunResult {
  mode: 'closed' | 'open';
  /** Closed loop: concurrent connections. */
  connections?: number;
  /** Open loop: intended requests per second. */
  targetRate?: number;
  /** Measured seconds. */
  seconds: number;
  /** 2xx answers. */
  ok: number;
  /** Connection errors and timeouts (closed loop); plus requests never answered (open loop). */
  errors: number;
  non2xx: number;
  requestsPerSec: number;
  /** 2xx answers x inputs per request, per second. */
  inputsPerSec: number;
  /** Of 2xx answers: closed loop from send; open loop from the intended send time. */
  latency: LatencySummary;
  /** Open loop only: how late the generator itself sent (its own health; large = the result is suspect). */
  sendLagMs?: { p99: number; max: number };
  /** Open loop only: median and tail requests split by the server's x-slim-* timing headers. */
  splits?: LatencySplit[];
}

export interface ClosedLoopOptions {
  url: string;
  path?: string;
  /** JSON bodies, sent in rotation. */
  bodies: readonly string[];
  inputsPerRequest?: number;
  connections: number;
  seconds: number;
  warmupSeconds: number;
  /** Requests per second over all connections, at most (autocannon's overallRate); default: as fast as answered. */
  overallRate?: number;
  /** Called between warm-up and the measured run (reset counters, scrape metrics). */
  beforeMeasure?: () => Promise<void>;
}

function run(opts: autocannon.Options, onLatency?: (ms: number) => void): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => {
    const instance = autocannon(opts, (err, result) => (err ? reject(err as Error) : resolve(result)));
    // autocannon's own histogram keeps p50/p97.5/p99 but no p95: record each 2xx latency here.
    if (onLatency) {
      instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
        if (statusCode >= 200 && statusCode < 300) onLatency(responseTime);
      });
    }
  });
}

export async function closedLoop(o: ClosedLoopOptions): Promise<RunResult> {
  let n = 0;
  const request: autocannon.Request = {
    method: 'POST',
    path: o.path ?? '/classify',
    headers: { 'content-type': 'application/json' },
    setupRequest: (req) => ({ ...req, body: o.bodies[n++ % o.bodies.length]! }),
  };
  const rate = o.overallRate !== undefined ? { overallRate: o.overallRate } : {};
  if (o.warmupSeconds > 0) await run({ url: o.url, connections: o.connections, duration: o.warmupSeconds, requests: [request], ...rate });
  await o.beforeMeasure?.();
  const latencies: number[] = [];
  const started = performance.now();
  const result = await run({ url: o.url, connections: o.connections, duration: o.seconds, requests: [request], timeout: 60, ...rate }, (ms) =>
    latencies.push(ms),
  );
  const seconds = (performance.now() - started) / 1000;
  const ok = result['2xx'];
  return {
    mode: 'closed',
    connections: o.connections,
    seconds,
    ok,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
    requestsPerSec: ok / seconds,
    inputsPerSec: (ok * (o.inputsPerRequest ?? 1)) / seconds,
    latency: summarize(latencies),
  };
}
