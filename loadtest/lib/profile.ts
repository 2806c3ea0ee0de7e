// Where a request's time goes, from what one measured run recorded: the client's latency, the
// server's own clock (arrival to answer), the batcher's per-input queue time and session.run
// time (the same facts as the slim_* histograms and the x-slim-* headers), tokenization (timed
// alone, per text, on this machine), and the server process' main-thread utilisation and CPU.
// A target that is missed gets this breakdown plus a one-line reading of it in the report.
import type { RunResult } from './closed-loop.js';
import type { ChildStats } from './server-process.js';
import { n } from './report.js';

export interface Breakdown {
  /** Mean latency the client saw. */
  clientMeanMs: number;
  /** Mean arrival-to-answer time inside the server (ours: whole request; transformers.js: the pipeline call). */
  serverMeanMs: number | null;
  /** Client minus server: loopback TCP, HTTP framing, and the load generator itself. */
  outsideServerMs: number | null;
  /** Per input: enqueue to batch start. */
  queueMs: number | null;
  /** Per input: session.run time of its batch. */
  inferenceMs: number | null;
  /** Per request: tokenizing its inputs (timed alone). */
  tokenizeMs: number | null;
  /** Server time left: JSON parse, schema validation, routing, batch assembly, worker messages, response. */
  otherServerMs: number | null;
  /** Share of wall time the server's main thread was busy (1 = the event loop is the bottleneck). */
  mainThreadUtilization: number;
  /** Busy main-thread ms per answered input. */
  mainThreadMsPerInput: number | null;
  /** Tokenization's share of that. */
  tokenizeShareOfMainThread: number | null;
  eventLoopDelayP99Ms: number;
  /** Server process CPU time over wall time (all its threads). */
  cpuCores: number;
  meanBatchSize: number | null;
  /** 1 - real tokens / padded tokens. */
  paddingWaste: number | null;
  /** Share of wall time the inference worker(s) spent in session.run (1 = compute is the bottleneck). */
  workerBusy: number | null;
}

export function breakdown(
  run: RunResult,
  stats: ChildStats,
  opts: { tokenizeUsPerText: number | null; inputsPerRequest: number; meanBatchSize: number | null; workers?: number },
): Breakdown {
  const server = stats.handled > 0 ? stats.handlerMsSum / stats.handled : null;
  const perInput = (sum: number) => (stats.batchInputs > 0 ? sum / stats.batchInputs : null);
  const queue = perInput(stats.queueMsSum);
  const inference = perInput(stats.inferenceMsPerInputSum);
  const tokenize = opts.tokenizeUsPerText === null ? null : (opts.tokenizeUsPerText * opts.inputsPerRequest) / 1000;
  const inputs = run.ok * opts.inputsPerRequest;
  const mainMs = inputs > 0 ? (stats.eventLoopUtilization * stats.wallMs) / inputs : null;
  return {
    clientMeanMs: run.latency.meanMs,
    serverMeanMs: server,
    outsideServerMs: server === null ? null : run.latency.meanMs - server,
    queueMs: queue,
    inferenceMs: inference,
    tokenizeMs: tokenize,
    otherServerMs: server !== null && queue !== null && inference !== null ? server - queue - inference - (tokenize ?? 0) : null,
    mainThreadUtilization: stats.eventLoopUtilization,
    mainThreadMsPerInput: mainMs,
    tokenizeShareOfMainThread: mainMs && tokenize !== null ? tokenize / opts.inputsPerRequest / mainMs : null,
    eventLoopDelayP99Ms: stats.eventLoopDelayMs.p99,
    cpuCores: stats.wallMs > 0 ? stats.cpuMs / stats.wallMs : 0,
    meanBatchSize: opts.meanBatchSize,
    paddingWaste: stats.paddedTokens > 0 ? 1 - stats.realTokens / stats.paddedTokens : null,
    workerBusy: stats.batches > 0 && stats.wallMs > 0 ? stats.inferenceMsSum / stats.wallMs / (opts.workers ?? 1) : null,
  };
}

/** One paragraph: the breakdown, and which part to change to close the gap. */
export function explain(b: Breakdown, ctx: { cores: number; maxBatchSize?: number; ceilingBatchSize?: number; generatorShare?: string }): string {
  const parts = [
    `client mean ${n(b.clientMeanMs)} ms = outside the server ${n(b.outsideServerMs)} ms + server ${n(b.serverMeanMs)} ms`,
    b.queueMs !== null ? `(queue ${n(b.queueMs)}, inference ${n(b.inferenceMs)}, tokenization ~${n(b.tokenizeMs)}, other ${n(b.otherServerMs)} ms)` : '',
    `; server main thread busy ${n(b.mainThreadUtilization * 100)}% (${n(b.mainThreadMsPerInput)} ms per input${b.tokenizeShareOfMainThread !== null ? `, ${n(b.tokenizeShareOfMainThread * 100)}% of it tokenization` : ''}),`,
    b.workerBusy !== null ? `inference worker busy ${n(b.workerBusy * 100)}%,` : '',
    `event-loop delay p99 ${n(b.eventLoopDelayP99Ms)} ms, server CPU ${n(b.cpuCores)} of ${ctx.cores} cores`,
    b.meanBatchSize !== null ? `, mean batch ${n(b.meanBatchSize)}${b.paddingWaste !== null ? ` (${n(b.paddingWaste * 100)}% padding)` : ''}` : '',
    '.',
  ];
  return `${parts.join(' ').replace(/ ([,;.])/g, '$1')} ${verdict(b, ctx)}`;
}

function verdict(b: Breakdown, ctx: { cores: number; maxBatchSize?: number; ceilingBatchSize?: number }): string {
  if (b.workerBusy !== null && b.workerBusy >= 0.85) {
    const small = b.meanBatchSize !== null && ctx.ceilingBatchSize !== undefined && b.meanBatchSize < ctx.ceilingBatchSize / 2;
    return small
      ? `Reading: the inference worker is saturated with batches of ${n(b.meanBatchSize)}, well below the ceiling's best batch (${ctx.ceilingBatchSize}). To close it: let batches grow (maxBatchSize, maxQueueDelayMs) or add a worker.`
      : `Reading: compute-bound: the inference worker is busy ${n(b.workerBusy * 100)}% of the time. To close it: a shallower variant, fewer padded tokens (length grouping), or more cores for onnxruntime.`;
  }
  if (b.mainThreadUtilization >= 0.85) {
    return `Reading: the event loop is the bottleneck, not the model (the worker is idle ${b.workerBusy === null ? '?' : n((1 - b.workerBusy) * 100)}% of the time). To close it: take per-input work off the main thread (tokenize in the inference workers, send texts rather than ids), and/or run several server processes (one per pair of cores) behind SO_REUSEPORT or a balancer.`;
  }
  if (b.cpuCores >= 0.85 * ctx.cores) {
    return `Reading: the machine's cores are saturated (server plus load generator share ${ctx.cores} cores). To close it: measure on a machine with cores to spare for the generator, or give onnxruntime one thread fewer so the event loop is not starved.`;
  }
  // Neither side saturated: with a closed loop, throughput = clients / latency, so the answer is
  // in whichever part of the latency is largest.
  const parts: [string, number | null, string][] = [
    [
      'time outside the server (loopback HTTP and the load generator)',
      b.outsideServerMs,
      'give the generator its own cores (or more inputs per request); a starved generator under-reports every server alike',
    ],
    ['queueing', b.queueMs, 'a batch that arrives while the worker is busy waits for the whole running batch: add a worker so batches overlap'],
    ['inference', b.inferenceMs, 'larger batches amortise better (maxBatchSize, maxQueueDelayMs) and length grouping cuts padding'],
    ['other server time (parsing, validation, tokenization, replies)', b.otherServerMs, 'move tokenization into the workers and keep the reply path lean'],
  ];
  const [what, ms, fix] = parts.reduce((a, c) => ((c[1] ?? -Infinity) > (a[1] ?? -Infinity) ? c : a));
  return `Reading: neither the event loop (${n(b.mainThreadUtilization * 100)}%) nor the worker (${b.workerBusy === null ? '?' : n(b.workerBusy * 100) + '%'}) is saturated, so the clients mostly wait; the largest part is ${what} (${n(ms)} ms)${b.cpuCores < 0.5 * ctx.cores ? `, and the server got only ${n(b.cpuCores)} cores of CPU (other load on the machine?)` : ''}. To close it: ${fix}.`;
}

/**
 * For the tail target (open loop): what the median and the slowest 1% of requests spent their
 * time on (from the x-slim-* headers), and which part grew the most between them.
 */
export function explainTail(run: RunResult): string {
  const [mid, tail] = run.splits ?? [];
  const lag = run.sendLagMs ? ` The generator sent late by up to ${n(run.sendLagMs.p99)} ms at its p99 (counted in "outside").` : '';
  if (!mid || !tail) return `No x-slim-* timing headers to split the tail.${lag}`;
  const fmt = (s: typeof mid) =>
    `client ${n(s.clientMs)} ms = outside the server ${n(s.outsideServerMs)} + queue ${n(s.queueMs)} + inference ${n(s.inferenceMs)} + other server ${n(s.otherServerMs)}`;
  const growth: [string, number][] = [
    ['outside the server (generator lateness, sockets, loopback HTTP)', tail.outsideServerMs - mid.outsideServerMs],
    ['queueing for a batch slot', tail.queueMs - mid.queueMs],
    ['inference (larger or slower batches)', tail.inferenceMs - mid.inferenceMs],
    ['other server time (tokenization, parsing, event-loop stalls)', tail.otherServerMs - mid.otherServerMs],
  ];
  const [what, ms] = growth.reduce((a, b) => (b[1] > a[1] ? b : a));
  const fix: Record<string, string> = {
    outside:
      'measure with the generator on its own cores; if it persists, the server accepts connections late (event loop busy): move tokenization off the main thread',
    queueing: 'a batch that arrives while the worker is busy waits a whole batch: a second worker (or shorter batches via maxBatchTokens) halves that wait',
    inference: 'batches vary in size and padded length: group by length (the batcher does) and cap maxBatchTokens so the slowest batch is shorter',
    other: 'the event loop stalls (GC, a burst of tokenization): tokenize in the workers, or run two server processes',
  };
  return `Median (p45-p55): ${fmt(mid)}. Tail (slowest 1%): ${fmt(tail)}. The tail grows most in ${what} (+${n(ms)} ms).${lag} To close it: ${fix[what.split(' ')[0]!]}.`;
}
