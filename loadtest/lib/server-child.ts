// Child-process entry for every server under test (ours, and the plain transformers.js one).
//
// Why a child process and not the load generator's own process: autocannon (or the open-loop
// driver) parses every response on its event loop, and the server tokenizes, validates and
// serialises on its own. Sharing one event loop would charge each side with the other's work and
// make the server look slower the harder we push it. In a child, the server gets its own main
// thread (plus its onnxruntime threads), as it would in production, and the parent only measures.
//
// The parent starts this file with fork(), passing a ChildSpec as JSON in argv[2], and talks
// over IPC (protocol in server-process.ts): "ready" once the server answers, then "stats"
// (main-thread utilisation, event-loop delay, CPU, and per-batch facts) on request.
import { Session } from 'node:inspector/promises';
import { monitorEventLoopDelay, performance, type EventLoopUtilization } from 'node:perf_hooks';
import { summarizeProfile, type CpuProfile } from './cpu-profile.js';
import type { ChildSpec, ChildStats, ParentToChild, ChildToParent } from './server-process.js';

const spec = JSON.parse(process.argv[2] ?? '{}') as ChildSpec;
const send = (msg: ChildToParent): void => {
  process.send?.(msg);
};

/** Everything counted since the last reset. */
let counters = freshCounters();
function freshCounters() {
  return {
    since: performance.now(),
    elu: performance.eventLoopUtilization(),
    cpu: process.cpuUsage(),
    batches: 0,
    batchInputs: 0,
    queueMsSum: 0,
    inferenceMsSum: 0,
    inferenceMsPerInputSum: 0,
    paddedTokens: 0,
    realTokens: 0,
    handlerMsSum: 0,
    handled: 0,
  };
}
const loopDelay = monitorEventLoopDelay({ resolution: 1 });
loopDelay.enable();

function stats(): ChildStats {
  const elu: EventLoopUtilization = performance.eventLoopUtilization(counters.elu);
  const cpu = process.cpuUsage(counters.cpu);
  const c = counters;
  return {
    wallMs: performance.now() - c.since,
    eventLoopUtilization: elu.utilization,
    eventLoopDelayMs: {
      p50: loopDelay.percentile(50) / 1e6,
      p99: loopDelay.percentile(99) / 1e6,
      max: loopDelay.max / 1e6,
    },
    cpuMs: (cpu.user + cpu.system) / 1000,
    batches: c.batches,
    batchInputs: c.batchInputs,
    queueMsSum: c.queueMsSum,
    inferenceMsSum: c.inferenceMsSum,
    inferenceMsPerInputSum: c.inferenceMsPerInputSum,
    paddedTokens: c.paddedTokens,
    realTokens: c.realTokens,
    handlerMsSum: c.handlerMsSum,
    handled: c.handled,
  };
}

async function startSlim(s: Extract<ChildSpec, { kind: 'slim' }>): Promise<{ url: string; close(): Promise<void> }> {
  const { loadConfig } = await import('../../src/serve/config.js');
  const { startServer } = await import('../../src/serve/server.js');
  const config = loadConfig({
    env: {},
    overrides: {
      port: 0,
      host: '127.0.0.1',
      logLevel: 'silent',
      models: s.models,
      workers: s.workers,
      ...(s.device ? { device: s.device } : {}),
      'threads.intraOp': s.intraOp,
      'threads.interOp': s.interOp,
      'batching.maxBatchSize': s.maxBatchSize,
      'batching.maxBatchTokens': s.maxBatchTokens,
      'batching.maxQueueDelayMs': s.maxQueueDelayMs,
      'batching.maxQueued': s.maxQueued,
      // Overload shows as latency and errors in the results, not as the server's own timeouts.
      requestTimeoutMs: 60_000,
    },
  });
  const server = await startServer(config, {
    logger: false,
    metrics: s.metrics,
    // The same facts the Prometheus histograms get, kept here too so that a run with metrics
    // off still reports batch sizes and the time split.
    observers: [
      {
        onBatch: (b) => {
          if (!b.ok) return;
          counters.batches++;
          counters.batchInputs += b.size;
          for (const q of b.queueMs) counters.queueMsSum += q;
          counters.inferenceMsSum += b.inferenceMs;
          counters.inferenceMsPerInputSum += b.inferenceMs * b.size;
          counters.paddedTokens += b.tokens;
          counters.realTokens += b.realTokens;
        },
        onRequest: (r) => {
          if (r.endpoint !== '/classify') return;
          counters.handled++;
          counters.handlerMsSum += r.durationMs;
        },
      },
    ],
  });
  await server.ready;
  return { url: server.url, close: () => server.close() };
}

async function startTransformers(s: Extract<ChildSpec, { kind: 'transformers' }>): Promise<{ url: string; close(): Promise<void> }> {
  const { startTransformersServer } = await import('./transformers-server.js');
  return startTransformersServer(s, (handlerMs) => {
    counters.handled++;
    counters.handlerMsSum += handlerMs;
  });
}

async function startFloor(s: Extract<ChildSpec, { kind: 'floor' }>): Promise<{ url: string; close(): Promise<void> }> {
  const { startFloorServer } = await import('./floor-server.js');
  return startFloorServer(s, () => counters.handled++);
}

// A V8 CPU profile of this (main) thread over the measured window only, on request.
let inspector: Session | null = null;
async function profileStart(): Promise<void> {
  inspector = new Session();
  inspector.connect();
  await inspector.post('Profiler.enable');
  await inspector.post('Profiler.setSamplingInterval', { interval: 200 });
  await inspector.post('Profiler.start');
}
async function profileStop() {
  if (!inspector) throw new Error('no profile running');
  const { profile } = (await inspector.post('Profiler.stop')) as { profile: CpuProfile };
  inspector.disconnect();
  inspector = null;
  return summarizeProfile(profile);
}

async function main(): Promise<void> {
  const running = spec.kind === 'slim' ? await startSlim(spec) : spec.kind === 'floor' ? await startFloor(spec) : await startTransformers(spec);
  process.on('message', (raw: ParentToChild) => {
    if (raw.type === 'reset') {
      counters = freshCounters();
      loopDelay.reset();
      send({ type: 'reset-done', id: raw.id });
    } else if (raw.type === 'stats') {
      send({ type: 'stats', id: raw.id, stats: stats() });
    } else if (raw.type === 'profile-start') {
      void profileStart().then(() => send({ type: 'profile-started', id: raw.id }));
    } else if (raw.type === 'profile-stop') {
      void profileStop().then((summary) => send({ type: 'profile', id: raw.id, summary }));
    } else if (raw.type === 'close') {
      void running.close().finally(() => process.exit(0));
    }
  });
  // The parent went away (crashed or killed): do not outlive it.
  process.on('disconnect', () => {
    void running.close().finally(() => process.exit(0));
  });
  send({ type: 'ready', url: running.url });
}

main().catch((err: unknown) => {
  send({ type: 'failed', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  process.exit(1);
});
