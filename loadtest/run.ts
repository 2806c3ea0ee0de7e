// The standard load-test set, side by side in one run on one model file and one thread count
// (`npm run loadtest`; about 6-7 minutes with the defaults, under 10):
//
//   ceiling      onnxruntime-node session.run in a tight loop, batch sizes swept, no HTTP
//                (inference only, and tokenize + inference)
//   closed-loop  our server, batching on: 1, 8, 32, 128 concurrent clients (autocannon), plus
//                32 clients on medium and long texts
//   servers      at 32 clients: ours with batching on, ours with batching off (maxBatchSize 1),
//                and a plain fastify + transformers.js pipeline('text-classification') server
//   open-loop    our server at fixed request rates (fractions of the closed-loop maximum),
//                latency from each request's intended send time (no coordinated omission)
//   depth        k1 against k2 (server at 32 clients, and the ceiling), and a random-weight
//                GPT-2-small-shaped (768 wide, 12 heads) classifier cut to 1, 2, 6, 12 layers
//                (session.run, and through our server at 32 clients; speed only)
//   summary      the issue's targets, met or not; for each one missed, where the time goes
//
// Every server runs in a child process on loopback (lib/server-child.ts says why), one worker
// with --threads onnxruntime threads; the ceiling and the depth sessions get the same threads.
//
//   npm run loadtest -- [--quick] [--seconds 10] [--warmup 3] [--threads N] [--data FILE]
//        [--only ceiling,closed-loop,servers,open-loop,depth] [--out loadtest/results]
//        [--concurrency 1,8,32,128] [--open-fractions 0.25,0.5,0.75,0.9 | --rates 100,200]
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { measureCeiling, measureTokenization, type CeilingResult } from './lib/ceiling.js';
import { GPT2_MODEL, measureGpt2Depths, type Gpt2DepthPoint } from './lib/gpt2-depth.js';
import type { Row } from './lib/measure.js';
import { measure } from './lib/measure.js';
import { describeProfile, type ProfileSummary } from './lib/cpu-profile.js';
import { explain, explainTail } from './lib/profile.js';
import { commandLine, machine, mdTable, n, today, writeResult } from './lib/report.js';
import { ServerProcess, type ChildSpec } from './lib/server-process.js';
import { classifyBodies, loadTextSets, type TextSet } from './lib/text-sources.js';
import { makeTransformersModelDir } from './lib/transformers-model-dir.js';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    seconds: { type: 'string' },
    warmup: { type: 'string' },
    threads: { type: 'string' },
    models: { type: 'string', default: 'models' },
    model: { type: 'string', default: 'spam' },
    variant: { type: 'string', default: 'k1' },
    'deep-variant': { type: 'string', default: 'k2' },
    data: { type: 'string' },
    out: { type: 'string' },
    only: { type: 'string' },
    concurrency: { type: 'string', default: '1,8,32,128' },
    'open-fractions': { type: 'string', default: '0.25,0.5,0.75,0.9' },
    rates: { type: 'string' },
    'max-batch-size': { type: 'string', default: '32' },
    'max-queue-delay-ms': { type: 'string', default: '2' },
    'gpt2-layers': { type: 'string', default: '1,2,6,12' },
    'gpt2-batch': { type: 'string' },
    'gpt2-vocab': { type: 'string' },
    'gpt2-session-only': { type: 'boolean', default: false },
  },
});

const quick = args.quick!;
const cores = availableParallelism();
// One core for the load generator and one for the server's event loop; onnxruntime gets the rest.
const threads = Number(args.threads ?? Math.max(1, cores - 2));
const seconds = Number(args.seconds ?? (quick ? 2 : 10));
const warmupSeconds = Number(args.warmup ?? (quick ? 1 : 3));
const maxBatchSize = Number(args['max-batch-size']);
const maxQueueDelayMs = Number(args['max-queue-delay-ms']);
const concurrencies = args.concurrency!.split(',').map(Number);
const CLIENTS = 32; // the issue's comparison point
const only = new Set((args.only ?? 'ceiling,closed-loop,servers,open-loop,depth').split(','));
const date = today();
const prefix = quick ? `${date}-quick` : date;
// Smoke runs are not results: they go to the ignored .tmp/ unless --out says otherwise.
const outDir = args.out ?? (quick ? join('.tmp', 'loadtest-results') : join('loadtest', 'results'));
const models = resolve(args.models!);
const variantDir = join(models, args.model!, args.variant!);
const deepDir = join(models, args.model!, args['deep-variant']!);
const maxLength = (JSON.parse(readFileSync(join(variantDir, 'manifest.json'), 'utf8')) as { maxLength: number }).maxLength;
const command = commandLine('dist/loadtest/run.js');

const textSets = await loadTextSets(args.data);
const primary = textSets[0]!;
const meta = {
  date,
  command,
  quick,
  machine: machine(),
  model: `${args.model}/${args.variant}`,
  threads: { intraOp: threads, interOp: 1, workers: 1 },
  batching: { maxBatchSize, maxQueueDelayMs },
  seconds,
  warmupSeconds,
  texts: Object.fromEntries(textSets.map((t) => [t.name, t.description])),
};
const log = (msg: string) => console.log(`[loadtest ${new Date().toISOString().slice(11, 19)}] ${msg}`);
const written: string[] = [];
const save = (scenario: string, json: Record<string, unknown>, md: string) => {
  const files = writeResult(outDir, `${prefix}-${scenario}`, { ...meta, scenario, ...json }, md);
  written.push(files.md);
  log(`wrote ${files.json} and ${files.md}`);
};
const header = (title: string) =>
  `# ${title} (${date}${quick ? ', quick smoke run: not a result' : ''})\n\n` +
  `\`${command}\` on ${String(meta.machine.cores)} cores (${String(meta.machine.cpu)}); model ${meta.model}; 1 worker, ${threads} intra-op thread(s); ` +
  `${seconds} s per run after ${warmupSeconds} s warm-up.\n\n`;

const slimSpec = (batch: number, metrics = true): ChildSpec => ({
  kind: 'slim',
  models,
  workers: 1,
  intraOp: threads,
  interOp: 1,
  maxBatchSize: batch,
  maxBatchTokens: 65536,
  maxQueueDelayMs,
  maxQueued: 8192,
  metrics,
});

// ---- tokenization alone (used by every breakdown) and the ceiling ----
const tokenizeUs: Record<string, number> = {};
for (const set of textSets) tokenizeUs[set.name] = (await measureTokenization(variantDir, maxLength, set.texts, quick ? 0.2 : 1)).usPerText;
let ceiling: CeilingResult | null = null;
if (only.has('ceiling') || only.has('depth')) {
  log(`ceiling: session.run sweep on ${primary.name} texts`);
  ceiling = await measureCeiling({
    variantDir,
    maxLength,
    texts: primary.texts,
    batchSizes: quick ? [1, 8, 32] : [1, 2, 4, 8, 16, 32, 64, 128],
    secondsPerSize: quick ? 0.3 : 2,
    threads: { intraOp: threads, interOp: 1 },
  });
  save(
    'ceiling',
    { tokenizeUsPerText: tokenizeUs, ceiling },
    header('Ceiling: onnxruntime-node session.run, no HTTP') +
      mdTable(
        ['batch', 'padded length', 'ms / batch', 'tokenize ms / batch', 'inputs/s (inference)', 'inputs/s (tokenize + inference)'],
        ceiling.points.map((p) => [
          p.batchSize,
          n(p.seqLength),
          n(p.msPerBatch),
          n(p.tokenizeMsPerBatch),
          n(p.inferenceInputsPerSec),
          n(p.withTokenizationInputsPerSec),
        ]),
      ) +
      `\n\nBest: batch ${ceiling.best.batchSize}, ${n(ceiling.best.inferenceInputsPerSec)} inputs/s (inference only); ` +
      `batch ${ceiling.bestWithTokenization.batchSize}, ${n(ceiling.bestWithTokenization.withTokenizationInputsPerSec)} inputs/s with tokenization on the same thread.\n\n` +
      `Tokenization alone, per text: ${textSets.map((t) => `${t.name} ${n(tokenizeUs[t.name])} µs`).join(', ')}.\n`,
  );
}

const rowTable = (rows: Row[], first: string, firstOf: (r: Row) => string | number) =>
  mdTable(
    [first, 'texts', 'inputs/s', 'p50 ms', 'p95 ms', 'p99 ms', 'errors', 'mean batch', 'server main thread busy', 'server CPU cores'],
    rows.map((r) => [
      firstOf(r),
      r.texts,
      n(r.run.inputsPerSec),
      n(r.run.latency.p50Ms),
      n(r.run.latency.p95Ms),
      n(r.run.latency.p99Ms),
      r.run.errors + r.run.non2xx,
      n(r.meanBatchSize),
      `${n(r.server.eventLoopUtilization * 100)}%`,
      n(r.breakdown.cpuCores),
    ]),
  );
// Where the time goes, per row (means; lib/profile.ts says what each column is).
const breakdownTable = (rows: Row[]) =>
  '\n\nWhere the time goes (means per request, ms; main thread and worker: share of wall time busy):\n\n' +
  mdTable(
    ['row', 'client', 'outside server', 'server', 'queue', 'inference', 'tokenization', 'other server', 'main thread', 'worker', 'event-loop delay p99'],
    rows.map((r) => {
      const b = r.breakdown;
      return [
        `${r.label}, ${r.texts}${r.run.connections ? `, ${r.run.connections} clients` : ''}`,
        n(b.clientMeanMs),
        n(b.outsideServerMs),
        n(b.serverMeanMs),
        n(b.queueMs),
        n(b.inferenceMs),
        n(b.tokenizeMs),
        n(b.otherServerMs),
        `${n(b.mainThreadUtilization * 100)}%`,
        b.workerBusy === null ? '-' : `${n(b.workerBusy * 100)}%`,
        n(b.eventLoopDelayP99Ms),
      ];
    }),
  ) +
  '\n';
const bodiesFor = (set: TextSet, variant = args.variant!) => classifyBodies(set.texts, { model: args.model, variant });
const run = (server: ServerProcess, label: string, set: TextSet, load: { connections: number } | { rate: number }, variant = args.variant!, metrics = true) =>
  measure(server, {
    label,
    texts: set.name,
    bodies: bodiesFor(set, variant),
    seconds,
    warmupSeconds,
    load,
    tokenizeUsPerText: tokenizeUs[set.name] ?? null,
    ...(metrics ? { metrics: { model: args.model!, variant } } : {}),
  });

/** A ratio for a table cell: "2.5x", or "-" when either side is missing or zero. */
const times = (r: number) => (Number.isFinite(r) ? `${n(r)}x` : '-');

/** Markdown for a row's main-thread CPU profile. */
function profileSection(r: Row): string {
  const p = r.mainThreadProfile as ProfileSummary;
  return (
    `\n## Main-thread CPU profile: ${r.label}, ${r.texts}, ${r.run.connections} clients\n\n` +
    `A repeat of the run above under the V8 sampling profiler (${n(r.run.inputsPerSec)} inputs/s while profiled). ` +
    `Main thread busy ${n(p.busyMs)} of ${n(p.wallMs)} ms; per answered input ${n(p.busyMs / Math.max(1, r.run.ok))} ms.\n\n` +
    mdTable(
      ['where the main thread spends its busy time', 'share', 'ms per input'],
      p.categories.map((c) => [c.category, `${n(c.share * 100)}%`, n(c.ms / Math.max(1, r.run.ok))]),
    ) +
    '\n\n' +
    mdTable(
      ['function (self time)', 'file:line', 'category', 'share'],
      p.top.map((f) => [f.fn, f.where, f.category, `${n(f.share * 100)}%`]),
    ) +
    '\n'
  );
}

// ---- our server, batching on: closed-loop sweep, other text lengths, k2, open loop ----
const closedRows: Row[] = [];
const openRows: Row[] = [];
let onAt32: Row | null = null;
/** A repeat of the 32-client run with the server's main thread under the V8 profiler. */
let profiledAt32: Row | null = null;
let deepAt32: Row | null = null;
const needOn = only.has('closed-loop') || only.has('servers') || only.has('open-loop') || only.has('depth');
if (needOn) {
  const on = await ServerProcess.start(slimSpec(maxBatchSize));
  try {
    // 32 clients is the comparison point of every other scenario: always measured.
    const sweep = only.has('closed-loop') ? [...new Set([...concurrencies, CLIENTS])].sort((a, b) => a - b) : [CLIENTS];
    for (const c of sweep) {
      log(`closed loop: batching on, ${c} clients, ${primary.name}`);
      const row = await run(on, `slim ${args.variant}, batching on`, primary, { connections: c });
      closedRows.push(row);
      if (c === CLIENTS) onAt32 = row;
    }
    if (only.has('servers') || only.has('closed-loop')) {
      // Profiled separately, so the profiler's own cost stays out of the compared numbers.
      log(`closed loop: batching on, ${CLIENTS} clients, main thread profiled`);
      profiledAt32 = await measure(on, {
        label: `slim ${args.variant}, batching on (profiled)`,
        texts: primary.name,
        bodies: bodiesFor(primary),
        seconds,
        warmupSeconds: Math.min(1, warmupSeconds),
        load: { connections: CLIENTS },
        tokenizeUsPerText: tokenizeUs[primary.name] ?? null,
        metrics: { model: args.model!, variant: args.variant! },
        cpuProfile: true,
      });
    }
    if (only.has('closed-loop')) {
      for (const set of textSets.slice(1)) {
        log(`closed loop: batching on, ${CLIENTS} clients, ${set.name}`);
        closedRows.push(await run(on, `slim ${args.variant}, batching on`, set, { connections: CLIENTS }));
      }
    }
    if (only.has('depth') && deepDir) {
      log(`closed loop: ${args['deep-variant']}, ${CLIENTS} clients`);
      deepAt32 = await run(on, `slim ${args['deep-variant']}, batching on`, primary, { connections: CLIENTS }, args['deep-variant']);
    }
    if (only.has('open-loop')) {
      // The maximum sustainable rate: the best closed-loop throughput measured above.
      const maxRate = Math.max(...closedRows.filter((r) => r.texts === primary.name).map((r) => r.run.inputsPerSec));
      // Rates: fractions of that maximum (default), or fixed requests/s given with --rates.
      const rates = args.rates
        ? args.rates.split(',').map((r) => ({ rate: Number(r), f: Number(r) / maxRate }))
        : args['open-fractions']!.split(',')
            .map(Number)
            .map((f) => ({ rate: Math.max(1, Math.round(f * maxRate)), f }));
      for (const { rate, f } of rates) {
        log(`open loop: ${rate} requests/s (${n(f)} x ${n(maxRate)})`);
        openRows.push(await run(on, `slim ${args.variant}, batching on, ${args.rates ? `${rate} req/s` : `${f} x max`}`, primary, { rate }));
      }
      save(
        'open-loop',
        { maxSustainableInputsPerSec: maxRate, rows: openRows },
        header('Open loop: fixed request rates, latency from the intended send time') +
          `Maximum sustainable rate (best closed-loop inputs/s above): ${n(maxRate)}. One input per request.\n\n` +
          mdTable(
            ['target req/s', 'fraction of max', 'achieved inputs/s', 'p50 ms', 'p95 ms', 'p99 ms', 'p99 / p50', 'errors', 'mean batch', 'generator lag p99 ms'],
            openRows.map((r) => [
              r.run.targetRate!,
              n(r.run.targetRate! / maxRate),
              n(r.run.inputsPerSec),
              n(r.run.latency.p50Ms),
              n(r.run.latency.p95Ms),
              n(r.run.latency.p99Ms),
              n(r.run.latency.p99Ms / r.run.latency.p50Ms),
              r.run.errors + r.run.non2xx,
              n(r.meanBatchSize),
              n(r.run.sendLagMs?.p99),
            ]),
          ) +
          "\n\nMedian and tail requests split by the server's x-slim-* headers (ms): outside = client minus x-slim-total-ms " +
          '(generator lateness, socket pool, loopback HTTP).\n\n' +
          mdTable(
            ['target req/s', 'band', 'client', 'outside server', 'queue', 'inference', 'other server'],
            openRows.flatMap((r) =>
              (r.run.splits ?? []).map((s) => [
                r.run.targetRate!,
                s.band,
                n(s.clientMs),
                n(s.outsideServerMs),
                n(s.queueMs),
                n(s.inferenceMs),
                n(s.otherServerMs),
              ]),
            ),
          ) +
          breakdownTable(openRows),
      );
    }
  } finally {
    await on.close();
  }
  if (only.has('closed-loop')) {
    save(
      'closed-loop',
      { rows: closedRows },
      header('Closed loop: our server, batching on') + rowTable(closedRows, 'clients', (r) => r.run.connections!) + breakdownTable(closedRows),
    );
  }
}

// ---- batching off and transformers.js, same texts, same clients ----
let offAt32: Row | null = null;
let tjsAt32: Row | null = null;
if (only.has('servers')) {
  log(`servers: batching off, ${CLIENTS} clients`);
  const off = await ServerProcess.start(slimSpec(1));
  try {
    offAt32 = await run(off, `slim ${args.variant}, batching off (maxBatchSize 1)`, primary, { connections: CLIENTS });
  } finally {
    await off.close();
  }
  log(`servers: transformers.js pipeline, ${CLIENTS} clients`);
  const tmp = mkdtempSync(join(tmpdir(), 'slim-loadtest-tjs-'));
  try {
    const dir = makeTransformersModelDir(variantDir, tmp);
    const tjs = await ServerProcess.start({ kind: 'transformers', modelDir: join(dir.root, dir.name), intraOp: threads, interOp: 1 });
    try {
      tjsAt32 = await measure(tjs, {
        label: 'fastify + transformers.js pipeline',
        texts: primary.name,
        bodies: classifyBodies(primary.texts),
        seconds,
        warmupSeconds,
        load: { connections: CLIENTS },
        tokenizeUsPerText: tokenizeUs[primary.name] ?? null,
      });
    } finally {
      await tjs.close();
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  const rows = [onAt32, offAt32, tjsAt32].filter((r): r is Row => r !== null);
  const base = onAt32?.run.inputsPerSec ?? NaN;
  save(
    'servers',
    { rows },
    header(`Servers side by side at ${CLIENTS} closed-loop clients, ${primary.name} texts`) +
      rowTable(rows, 'server', (r) => r.label) +
      `\n\nOurs (batching on) over: batching off ${times(base / (offAt32?.run.inputsPerSec ?? NaN))}, transformers.js ${times(base / (tjsAt32?.run.inputsPerSec ?? NaN))}` +
      (ceiling
        ? `; ours is ${n((base / ceiling.best.inferenceInputsPerSec) * 100)}% of the ceiling (${n(ceiling.best.inferenceInputsPerSec)} inputs/s, inference only).`
        : '.') +
      breakdownTable(rows) +
      '\nThe transformers.js row has no queue or batches; its "server" time is the pipeline call (tokenize + session.run + post-processing). ' +
      "onnxruntime-node runs session.run on libuv's thread pool, so that server may run up to UV_THREADPOOL_SIZE (default 4) requests at once, each with the same intra-op threads: see its CPU column.\n" +
      (profiledAt32?.mainThreadProfile ? profileSection(profiledAt32) : ''),
  );
}

// ---- depth ----
let gpt2: Gpt2DepthPoint<Row>[] = [];
let deepCeiling: CeilingResult | null = null;
if (only.has('depth')) {
  const size = ceiling?.best.batchSize ?? 32;
  log(`depth: ${args['deep-variant']} ceiling at batch ${size}`);
  deepCeiling = await measureCeiling({
    variantDir: deepDir,
    maxLength,
    texts: primary.texts,
    batchSizes: [size],
    secondsPerSize: quick ? 0.3 : 2,
    threads: { intraOp: threads, interOp: 1 },
  });
  const k1Ceiling = ceiling?.points.find((p) => p.batchSize === size) ?? null;
  const layers = args['gpt2-layers']!.split(',').map(Number);
  const batch = Number(args['gpt2-batch'] ?? (quick ? 8 : 32));
  // The GPT-2 inputs get as many tokens as the primary texts have under our tokenizer.
  const seqLength = Math.max(1, Math.round(ceiling?.points.find((p) => p.batchSize === size)?.seqLength ?? 16));
  log(`depth: random GPT-2-small-shaped classifier, layers ${layers.join(',')}, batch ${batch} x ${seqLength} tokens`);
  // Quick runs use a small vocabulary only to write smaller files; the embedding is a lookup, so
  // its size barely changes the time per input.
  const vocab = Number(args['gpt2-vocab'] ?? (quick ? 8000 : 50257));
  // Each depth also through our server (unless --gpt2-session-only), at 32 clients on the
  // primary texts, from a repository holding only that variant (lib/gpt2-depth.ts).
  const serve = async (repo: string, variant: string): Promise<Row> => {
    log(`depth: ${GPT2_MODEL}/${variant} through our server, ${CLIENTS} clients`);
    const server = await ServerProcess.start({ ...slimSpec(maxBatchSize), models: repo } as ChildSpec);
    try {
      return await measure(server, {
        label: `${GPT2_MODEL} ${variant}, batching on`,
        texts: primary.name,
        bodies: classifyBodies(primary.texts, { model: GPT2_MODEL, variant }),
        // A 12-layer batch can take seconds on few cores: a window of several batches at least.
        seconds: Math.max(seconds, 5),
        warmupSeconds: Math.max(warmupSeconds, 2),
        load: { connections: CLIENTS },
        tokenizeUsPerText: tokenizeUs[primary.name] ?? null,
        metrics: { model: GPT2_MODEL, variant },
      });
    } finally {
      await server.close();
    }
  };
  gpt2 = await measureGpt2Depths<Row>({
    layers,
    batchSize: batch,
    seqLength,
    seconds: quick ? 0.5 : 3,
    threads: { intraOp: threads, interOp: 1 },
    vocab,
    ...(args['gpt2-session-only'] ? {} : { serve: { tokenizerFrom: variantDir, maxLength: 32, run: serve } }),
  });
  const g1 = gpt2.find((p) => p.layers === Math.min(...layers));
  const gMax = gpt2.find((p) => p.layers === Math.max(...layers));
  save(
    'depth',
    { k1Ceiling, deepCeiling, k1Server: onAt32, deepServer: deepAt32, gpt2 },
    header('Depth: cost against the number of layers') +
      `## ${args.model}: ${args.variant} against ${args['deep-variant']}\n\n` +
      mdTable(
        ['variant', 'server inputs/s (32 clients)', 'server p50 ms', 'server p99 ms', `ceiling inputs/s (batch ${size}, inference only)`],
        [
          [args.variant!, n(onAt32?.run.inputsPerSec), n(onAt32?.run.latency.p50Ms), n(onAt32?.run.latency.p99Ms), n(k1Ceiling?.inferenceInputsPerSec)],
          [
            args['deep-variant']!,
            n(deepAt32?.run.inputsPerSec),
            n(deepAt32?.run.latency.p50Ms),
            n(deepAt32?.run.latency.p99Ms),
            n(deepCeiling.best.inferenceInputsPerSec),
          ],
        ],
      ) +
      `\n\n## Random-weight GPT-2-small-shaped classifier (768 wide, 12 heads): session.run and our server\n\n` +
      `session.run: batch ${batch} x ${seqLength} tokens, ${threads} intra-op thread(s). Through our server: ${CLIENTS} closed-loop clients, ${primary.name} texts ` +
      `(tokenized by ${args.model}/${args.variant}'s tokenizer, whose ids are valid GPT-2 ids), maxBatchSize ${maxBatchSize}. ` +
      `Speed only, the weights are random. Built by ${gpt2[0]?.builder ?? '-'}.\n\n` +
      mdTable(
        [
          'layers',
          'parameters',
          'session ms / batch',
          'session inputs/s',
          `session vs ${Math.max(...layers)} layers`,
          'server inputs/s',
          'server p50 ms',
          'server p99 ms',
          'server mean batch',
          `server vs ${Math.max(...layers)} layers`,
        ],
        gpt2.map((p) => [
          p.layers,
          n(p.parameters / 1e6) + 'M',
          n(p.msPerBatch),
          n(p.inputsPerSec),
          times(p.inputsPerSec / (gMax?.inputsPerSec ?? NaN)),
          n(p.server?.run.inputsPerSec),
          n(p.server?.run.latency.p50Ms),
          n(p.server?.run.latency.p99Ms),
          n(p.server?.meanBatchSize),
          times((p.server?.run.inputsPerSec ?? NaN) / (gMax?.server?.run.inputsPerSec ?? NaN)),
        ]),
      ) +
      `\n\n${g1 && gMax ? `${g1.layers} layer(s) over ${gMax.layers}: ${times(g1.inputsPerSec / gMax.inputsPerSec)} the inputs/s with session.run` + (g1.server && gMax.server ? `, ${times(g1.server.run.inputsPerSec / gMax.server.run.inputsPerSec)} through our server.` : '.') : ''}\n` +
      (gpt2.some((p) => p.server) ? breakdownTable(gpt2.flatMap((p) => (p.server ? [p.server] : []))) : ''),
  );
}

// ---- summary: the issue's targets ----
interface Target {
  target: string;
  measured: number | null;
  threshold: number;
  met: boolean | null;
  profile?: string;
}
const targets: Target[] = [];
const profiled = new Set<Row>();
const ctx = { cores, maxBatchSize, ...(ceiling ? { ceilingBatchSize: ceiling.best.batchSize } : {}) };
const ratio = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined && b > 0 ? a / b : null);
const add = (target: string, measured: number | null, threshold: number, atMost: boolean, profileRow: Row | null) => {
  const met = measured === null ? null : atMost ? measured <= threshold : measured >= threshold;
  // Several targets share the row that explains them (ours at 32 clients): explain it once.
  const profile = (r: Row) =>
    profiled.has(r)
      ? `${r.label} (${r.texts}): the same row as above.`
      : (profiled.add(r),
        `${r.label} (${r.texts}): ${r.run.mode === 'open' ? explainTail(r.run) + ' Means: ' : ''}${explain(r.breakdown, ctx)}` +
          (r === onAt32 && profiledAt32?.mainThreadProfile
            ? ` CPU profile of the same run repeated: ${describeProfile(profiledAt32.mainThreadProfile)}.`
            : ''));
  targets.push({ target, measured, threshold, met, ...(met === false && profileRow ? { profile: profile(profileRow) } : {}) });
};
if (onAt32 && ceiling)
  add(
    `our server at ${CLIENTS} clients, ${primary.name} texts, / ceiling (inference only)`,
    ratio(onAt32.run.inputsPerSec, ceiling.best.inferenceInputsPerSec),
    0.8,
    false,
    onAt32,
  );
if (onAt32 && offAt32) add('batching on / batching off', ratio(onAt32.run.inputsPerSec, offAt32.run.inputsPerSec), 2, false, onAt32);
if (onAt32 && tjsAt32) add('ours / transformers.js server', ratio(onAt32.run.inputsPerSec, tjsAt32.run.inputsPerSec), 3, false, onAt32);
if (gpt2.length > 1) {
  const l = gpt2.map((p) => p.layers);
  const lo = gpt2.find((p) => p.layers === Math.min(...l));
  const hi = gpt2.find((p) => p.layers === Math.max(...l));
  add(`GPT-2 768 wide: ${Math.min(...l)} layer / ${Math.max(...l)} layers inputs/s (session.run)`, ratio(lo?.inputsPerSec, hi?.inputsPerSec), 6, false, null);
  if (lo?.server && hi?.server) {
    add(
      `GPT-2 768 wide: ${Math.min(...l)} layer / ${Math.max(...l)} layers inputs/s (our server, ${CLIENTS} clients)`,
      ratio(lo.server.run.inputsPerSec, hi.server.run.inputsPerSec),
      6,
      false,
      lo.server,
    );
  }
}
const half = openRows.find((r) => r.label.endsWith(', 0.5 x max'));
// (with --rates, no row is exactly half the maximum, and the target is left out)
if (half) add('open loop at half the maximum rate: p99 / p50', ratio(half.run.latency.p99Ms, half.run.latency.p50Ms), 3, true, half);
if (targets.length > 0) {
  const profiles = targets.filter((t) => t.profile);
  // Even when every target is met, the breakdown of the main comparison row is worth keeping.
  const always =
    onAt32 && !profiled.has(onAt32) ? `\n\n## Where the time goes at ${CLIENTS} clients (ours, batching on)\n\n${explain(onAt32.breakdown, ctx)}\n` : '';
  // A busy machine measures contention, not the server: say so above the table. Only the load
  // before the run counts (during it, the run itself keeps every core busy).
  const load = loadavg()[0]!;
  const busy =
    (meta.machine.loadAverage1m as number) > cores * 0.5
      ? `**The machine was busy during this run (1-minute load average ${n(meta.machine.loadAverage1m as number)} before the run, ${n(load)} at its end, on ${cores} cores): these numbers measure contention, not slimserve. Rerun on a quiet machine.**\n\n`
      : '';
  save(
    'summary',
    { targets, files: written },
    header('Load-test summary: the issue targets') +
      busy +
      mdTable(
        ['target', 'measured', 'needed', 'met'],
        targets.map((t) => [
          t.target,
          n(t.measured),
          `${t.target.includes('p99') ? '<=' : '>='} ${t.threshold}`,
          t.met === null ? '-' : t.met ? 'yes' : '**no**',
        ]),
      ) +
      (profiles.length ? `\n\n## Missed targets: where the time goes\n\n${profiles.map((t) => `- **${t.target}**: ${t.profile}`).join('\n')}\n` : '\n') +
      always +
      (profiledAt32?.mainThreadProfile ? profileSection(profiledAt32) : '') +
      `\nTables: ${written.map((f) => f.split('/').pop()).join(', ')}.\n`,
  );
  console.log(
    '\n' +
      mdTable(
        ['target', 'measured', 'needed', 'met'],
        targets.map((t) => [t.target, n(t.measured), String(t.threshold), t.met === null ? '-' : t.met ? 'yes' : 'NO']),
      ),
  );
  for (const t of profiles) console.log(`\n${t.target}: ${t.profile}`);
}
