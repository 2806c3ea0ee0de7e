// Batching on vs off, side by side in one run: the same model repository, the same threads,
// the same short texts, 32 concurrent closed-loop clients (autocannon) against a real server
// on loopback. Prints a table and writes loadtest/results/<date>-batching.{json,md}.
//
//   npm run build && node dist/loadtest/bench-batching.js [--models models] [--model spam]
//        [--variant k1] [--seconds 15] [--connections 32]
import autocannon from 'autocannon';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { loadConfig } from '../src/serve/config.js';
import { startServer } from '../src/serve/server.js';
import { generateTexts } from './texts.js';

const { values: args } = parseArgs({
  options: {
    models: { type: 'string', default: 'models' },
    model: { type: 'string', default: 'spam' },
    variant: { type: 'string', default: 'k1' },
    seconds: { type: 'string', default: '15' },
    connections: { type: 'string', default: '32' },
    threads: { type: 'string', default: '2' },
  },
});

interface ScenarioResult {
  scenario: string;
  maxBatchSize: number;
  requestsPerSec: number;
  inputsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  non2xx: number;
  meanBatchSize: number;
  eventLoopP99Ms: number;
}

async function runScenario(scenario: string, maxBatchSize: number, metrics = true): Promise<ScenarioResult> {
  const config = loadConfig({
    env: {},
    overrides: {
      port: 0,
      host: '127.0.0.1',
      logLevel: 'silent',
      models: args.models,
      workers: 1,
      threads: { intraOp: Number(args.threads), interOp: 1 },
      batching: { maxBatchSize, maxBatchTokens: 65536, maxQueueDelayMs: 2, maxQueued: 4096 },
    },
  });
  let batches = 0;
  let batchInputs = 0;
  const server = await startServer(config, {
    logger: false,
    metrics,
    observers: [{ onBatch: (b: { size: number }) => { batches++; batchInputs += b.size; } }],
  });
  await server.ready;
  const texts = generateTexts('short', 256, 7);
  const bodies = texts.map((t) => JSON.stringify({ inputs: t, model: args.model, variant: args.variant }));
  const request = (i: number) => ({ method: 'POST' as const, path: '/classify', headers: { 'content-type': 'application/json' }, body: bodies[i % bodies.length]! });
  // Warm up, then measure.
  await autocannon({ url: server.url, connections: Number(args.connections), duration: 3, requests: [request(0)] });
  batches = 0;
  batchInputs = 0;
  const loop = monitorEventLoopDelay({ resolution: 5 });
  loop.enable();
  let n = 0;
  const result = await autocannon({
    url: server.url,
    connections: Number(args.connections),
    duration: Number(args.seconds),
    requests: [{ method: 'POST', path: '/classify', headers: { 'content-type': 'application/json' }, setupRequest: (req) => ({ ...req, body: bodies[n++ % bodies.length]! }) }],
  });
  loop.disable();
  await server.close();
  return {
    scenario,
    maxBatchSize,
    requestsPerSec: result.requests.average,
    inputsPerSec: result.requests.average, // one input per request
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
    meanBatchSize: batches ? batchInputs / batches : 0,
    eventLoopP99Ms: loop.percentile(99) / 1e6,
  };
}

const on = await runScenario('batching on', 32);
const off = await runScenario('batching off', 1);
// The same batching-on server without Prometheus collection: what metrics cost (issue: <= 5% of p50).
const bare = await runScenario('batching on, metrics off', 32, false);
const rows = [on, off, bare];
const table = [
  `| scenario | maxBatchSize | inputs/s | p50 ms | p99 ms | mean batch | event-loop p99 ms | errors | non-2xx |`,
  `|---|---|---|---|---|---|---|---|---|`,
  ...rows.map((r) => `| ${r.scenario} | ${r.maxBatchSize} | ${r.inputsPerSec.toFixed(0)} | ${r.p50Ms} | ${r.p99Ms} | ${r.meanBatchSize.toFixed(1)} | ${r.eventLoopP99Ms.toFixed(1)} | ${r.errors} | ${r.non2xx} |`),
  '',
  `throughput ratio (on / off): ${(on.inputsPerSec / off.inputsPerSec).toFixed(2)}x; p99 on ${on.p99Ms} ms vs off ${off.p99Ms} ms`,
  `metrics cost: p50 ${on.p50Ms} ms with vs ${bare.p50Ms} ms without (${(((on.p50Ms - bare.p50Ms) / bare.p50Ms) * 100).toFixed(1)}%); inputs/s ${on.inputsPerSec.toFixed(0)} vs ${bare.inputsPerSec.toFixed(0)}`,
].join('\n');
console.log(table);
const date = new Date().toISOString().slice(0, 10);
const dir = join('loadtest', 'results');
mkdirSync(dir, { recursive: true });
const meta = { date, command: `node dist/loadtest/bench-batching.js ${process.argv.slice(2).join(' ')}`.trim(), model: args.model, variant: args.variant, connections: Number(args.connections), seconds: Number(args.seconds), threads: Number(args.threads), texts: 'short (~10 words, generated)' };
writeFileSync(join(dir, `${date}-batching.json`), JSON.stringify({ ...meta, results: rows }, null, 2) + '\n');
writeFileSync(join(dir, `${date}-batching.md`), `# Batching on vs off (${date})\n\n\`${meta.command}\`: ${meta.connections} closed-loop clients, ${meta.seconds} s each, model ${meta.model}/${meta.variant}, ${meta.threads} intra-op threads, 1 worker, short texts.\n\n${table}\n`);
