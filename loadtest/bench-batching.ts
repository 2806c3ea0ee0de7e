// Batching on vs off, side by side in one run: the same model repository, the same threads,
// the same short texts, 32 concurrent closed-loop clients (autocannon) against a real server
// on loopback (a child process: see lib/server-child.ts). Runs of batching on with Prometheus
// collection off, interleaved with batching on, show what metrics cost. Before them, the model's own batching
// headroom on this machine: onnxruntime session.run at batch 1 against its best batch size, no
// HTTP (no server can gain more from batching than that, except what it saves per request
// around inference). Prints a table and writes
// loadtest/results/<date>-batching-<variant>.{json,md}. The full comparison set is run.ts.
//
//   npm run build && node dist/loadtest/bench-batching.js [--models models] [--model spam]
//        [--variant k1] [--seconds 15] [--connections 32] [--threads 2] [--quick]
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { measureCeiling, measureTokenization } from './lib/ceiling.js';
import { measure, type Row } from './lib/measure.js';
import { commandLine, machine, mdTable, n, today, writeResult } from './lib/report.js';
import { ServerProcess } from './lib/server-process.js';
import { classifyBodies, loadTextSets } from './lib/text-sources.js';

const { values: args } = parseArgs({
  options: {
    models: { type: 'string', default: 'models' },
    model: { type: 'string', default: 'spam' },
    variant: { type: 'string', default: 'k1' },
    seconds: { type: 'string' },
    connections: { type: 'string', default: '32' },
    threads: { type: 'string', default: '2' },
    data: { type: 'string' },
    quick: { type: 'boolean', default: false },
    out: { type: 'string' },
  },
});
const quick = args.quick!;
const seconds = Number(args.seconds ?? (quick ? 2 : 15));
const warmupSeconds = quick ? 1 : 3;
const connections = Number(args.connections);
const threads = Number(args.threads);
const models = resolve(args.models!);
const variantDir = join(models, args.model!, args.variant!);
const maxLength = (JSON.parse(readFileSync(join(variantDir, 'manifest.json'), 'utf8')) as { maxLength: number }).maxLength;
const texts = (await loadTextSets(args.data))[0]!;
const tokenizeUsPerText = (await measureTokenization(variantDir, maxLength, texts.texts, quick ? 0.2 : 1)).usPerText;

async function runScenario(label: string, maxBatchSize: number, metrics = true): Promise<Row> {
  const server = await ServerProcess.start({
    kind: 'slim',
    models,
    workers: 1,
    intraOp: threads,
    interOp: 1,
    maxBatchSize,
    maxBatchTokens: 65536,
    maxQueueDelayMs: 2,
    maxQueued: 4096,
    metrics,
  });
  try {
    return await measure(server, {
      label,
      texts: texts.name,
      bodies: classifyBodies(texts.texts, { model: args.model, variant: args.variant }),
      seconds,
      warmupSeconds,
      load: { connections },
      tokenizeUsPerText,
      ...(metrics ? { metrics: { model: args.model!, variant: args.variant! } } : {}),
    });
  } finally {
    await server.close();
  }
}

// The same session options and threads as the server's worker; 2 s per batch size.
const ceiling = await measureCeiling({
  variantDir,
  maxLength,
  texts: texts.texts,
  batchSizes: [1, 2, 4, 8, 16, 32],
  secondsPerSize: quick ? 0.3 : 2,
  threads: { intraOp: threads, interOp: 1 },
});
const single = ceiling.points[0]!;
const headroom = ceiling.best.inferenceInputsPerSec / single.inferenceInputsPerSec;

// This shared machine drifts by more between two runs a minute apart than metrics cost, and by
// as much as batching gains; so every scenario runs twice, interleaved (on, off, bare, on, off,
// bare), and the ratios are of means.
const on = await runScenario('batching on', 32);
const off = await runScenario('batching off', 1);
// The same batching-on server without Prometheus collection: what metrics cost (issue: <= 5% of p50).
const bare = await runScenario('batching on, metrics off', 32, false);
const on2 = await runScenario('batching on (repeat)', 32);
const off2 = await runScenario('batching off (repeat)', 1);
const bare2 = await runScenario('batching on, metrics off (repeat)', 32, false);
const rows = [on, off, bare, on2, off2, bare2];
const avg = (a: number, b: number): number => (a + b) / 2;
const p50On = avg(on.run.latency.p50Ms, on2.run.latency.p50Ms);
const p50Bare = avg(bare.run.latency.p50Ms, bare2.run.latency.p50Ms);
const onRate = avg(on.run.inputsPerSec, on2.run.inputsPerSec);
const offRate = avg(off.run.inputsPerSec, off2.run.inputsPerSec);
const table = [
  mdTable(
    ['scenario', 'maxBatchSize', 'inputs/s', 'p50 ms', 'p99 ms', 'mean batch', 'event-loop p99 ms', 'errors', 'non-2xx'],
    rows.map((r) => [
      r.label,
      r === off || r === off2 ? 1 : 32,
      n(r.run.inputsPerSec),
      n(r.run.latency.p50Ms),
      n(r.run.latency.p99Ms),
      n(r.meanBatchSize),
      n(r.server.eventLoopDelayMs.p99),
      r.run.errors,
      r.run.non2xx,
    ]),
  ),
  '',
  `throughput ratio (on / off, means of both runs): ${(onRate / offRate).toFixed(2)}x (${n(onRate)} vs ${n(offRate)} inputs/s); ` +
    `p99 on ${n(avg(on.run.latency.p99Ms, on2.run.latency.p99Ms))} ms vs off ${n(avg(off.run.latency.p99Ms, off2.run.latency.p99Ms))} ms`,
  `the model's batching headroom (session.run, no server): batch 1 ${n(single.inferenceInputsPerSec)} inputs/s, best batch ${ceiling.best.batchSize} ${n(ceiling.best.inferenceInputsPerSec)} inputs/s: ${headroom.toFixed(2)}x ` +
    `(${ceiling.points.map((p) => `b${p.batchSize} ${n(p.inferenceInputsPerSec)}`).join(', ')})`,
  `server with batching on / best session.run: ${(onRate / ceiling.best.inferenceInputsPerSec).toFixed(2)}; batching off / session.run at batch 1: ${(offRate / single.inferenceInputsPerSec).toFixed(2)}`,
  `metrics cost (means of both runs): p50 ${n(p50On)} ms with vs ${n(p50Bare)} ms without (${(((p50On - p50Bare) / p50Bare) * 100).toFixed(1)}%); ` +
    `inputs/s ${n(onRate)} vs ${n(avg(bare.run.inputsPerSec, bare2.run.inputsPerSec))}`,
].join('\n');
console.log(table);
const date = today();
const command = commandLine('dist/loadtest/bench-batching.js');
const meta = { date, command, machine: machine(), model: args.model, variant: args.variant, connections, seconds, threads, texts: texts.description };
writeResult(
  args.out ?? (quick ? join('.tmp', 'loadtest-results') : join('loadtest', 'results')),
  `${date}${quick ? '-quick' : ''}-batching-${args.variant}`,
  { ...meta, ceiling, results: rows },
  `# Batching on vs off (${date})\n\n\`${command}\`: ${connections} closed-loop clients, ${seconds} s each, model ${args.model}/${args.variant}, ${threads} intra-op threads, 1 worker, ${texts.description} texts.\n\n${table}\n`,
);
