// One measured run against a running server child: warm up, reset the child's counters and
// scrape /metrics, run (closed or open loop), read both again, and put the row together.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { closedLoop, type RunResult } from './closed-loop.js';
import { openLoop } from './open-loop.js';
import { breakdown, type Breakdown } from './profile.js';
import { diff, mean, scrapeHistograms, type MetricsSnapshot } from './prom.js';
import type { ProfileSummary } from './cpu-profile.js';
import type { ChildStats, ServerProcess } from './server-process.js';

export interface Row {
  /** What is compared, e.g. "slim k1, batching on". */
  label: string;
  texts: string;
  run: RunResult;
  /** From /metrics (slim_batch_size sum/count) when the server has it; else from the child's batch facts. */
  meanBatchSize: number | null;
  meanBatchSizeSource: 'metrics' | 'observer' | null;
  server: ChildStats;
  breakdown: Breakdown;
  /** V8 CPU profile of the server's main thread over the measured window, when asked for. */
  mainThreadProfile?: ProfileSummary;
}

export interface MeasureOptions {
  label: string;
  texts: string;
  bodies: readonly string[];
  inputsPerRequest?: number;
  seconds: number;
  warmupSeconds: number;
  load: { connections: number } | { rate: number };
  /** /metrics series to count (e.g. {variant: "k1"}); omit for a server without /metrics. */
  metrics?: Record<string, string>;
  tokenizeUsPerText: number | null;
  /** Profile the server's main thread during the measured run (costs it a few percent). */
  cpuProfile?: boolean;
}

/**
 * A full garbage collection of this (the generator's) process. The generator keeps every earlier
 * run's samples for its report; left alone, its heap grows run after run until a major collection
 * lands inside a measured window, and on 2 cores that collection (main thread plus V8's helper
 * threads) also takes the CPU from the server: at a quarter of the maximum rate the slowest 1%
 * of requests then took 90 ms, of which 45 ms outside the server and 24 ms of descheduled
 * inference. Collecting just before each measured run keeps that pause out of the window.
 */
const collectGarbage: () => void = (() => {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
})();

export async function measure(server: ServerProcess, o: MeasureOptions): Promise<Row> {
  let before: MetricsSnapshot | null = null;
  const beforeMeasure = async () => {
    if (o.metrics) before = await scrapeHistograms(server.url, o.metrics);
    if (o.cpuProfile) await server.profileStart();
    collectGarbage();
    await server.reset();
  };
  const common = {
    url: server.url,
    bodies: o.bodies,
    inputsPerRequest: o.inputsPerRequest ?? 1,
    seconds: o.seconds,
    warmupSeconds: o.warmupSeconds,
    beforeMeasure,
  };
  const run = 'connections' in o.load ? await closedLoop({ ...common, connections: o.load.connections }) : await openLoop({ ...common, rate: o.load.rate });
  const stats = await server.stats();
  const profile = o.cpuProfile ? await server.profileStop() : undefined;
  let meanBatchSize: number | null = null;
  let source: Row['meanBatchSizeSource'] = null;
  if (o.metrics && before) {
    meanBatchSize = mean(diff(await scrapeHistograms(server.url, o.metrics), before), 'slim_batch_size');
    source = 'metrics';
  }
  if (meanBatchSize === null && stats.batches > 0) {
    meanBatchSize = stats.batchInputs / stats.batches;
    source = 'observer';
  }
  return {
    label: o.label,
    texts: o.texts,
    run,
    meanBatchSize,
    meanBatchSizeSource: source,
    server: stats,
    ...(profile ? { mainThreadProfile: profile } : {}),
    breakdown: breakdown(run, stats, { tokenizeUsPerText: o.tokenizeUsPerText, inputsPerRequest: o.inputsPerRequest ?? 1, meanBatchSize }),
  };
}
