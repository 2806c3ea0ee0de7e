// The GPU proof (issue 17), one short prepared script for a machine with an NVIDIA GPU, whose time
// is short: everything it needs is carried (a built model repository and node_modules with the
// CUDA provider libraries, see docs/benchmarks.md "GPU check"), nothing is downloaded or built.
//
//   1. parity: every variant of the model repository on CUDA against the same variant on the CPU,
//      a few hundred texts, max |delta p| <= 1e-3 (softmax probabilities);
//   2. session.run inputs/s at batch 1, 2, 4, ..., 256 on CUDA, and on the CPU for reference;
//   3. the server on CUDA (--device cuda), closed-loop load: batching on / off and server / ceiling.
//      The server falls back to the CPU when CUDA is unavailable (src/serve/worker.ts); GET /models
//      says which device each variant runs on, and a fallback is a failure here, never a pass;
//   4. loadtest/results/<date>-gpu-check.{md,json}.
//
// Without a CUDA provider it stops with "no CUDA provider" (exit 1). --allow-cpu is the dry run
// for a machine without a GPU: every step runs with the CPU in CUDA's place (and the server is
// started once with --device cuda to show the fallback is caught), so every code path is exercised.
//
//   node dist/loadtest/gpu-check.js --models models [--model spam] [--allow-cpu] [--quick]
//        [--texts 300 (60 with --quick)] [--seconds 8 (2)] [--server-variants k1,k2] [--out loadtest/results]
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { createSession, feeds, measureCeiling, type CeilingResult, type SessionDevice } from './lib/ceiling.js';
import { measure, type Row } from './lib/measure.js';
import { commandLine, machine, mdTable, n, today, writeResult } from './lib/report.js';
import { ServerProcess } from './lib/server-process.js';
import { classifyBodies } from './lib/text-sources.js';
import { generateTexts } from './texts.js';
import { loadTokenizer } from '../src/tokenizer.js';

/** The parity bound of issue 17: softmax probabilities, CUDA against CPU, per class and text. */
export const PARITY_TOLERANCE = 1e-3;
const BATCH_SIZES = [1, 2, 4, 8, 16, 32, 64, 128, 256];

const { values: args } = parseArgs({
  options: {
    models: { type: 'string', default: 'models' },
    model: { type: 'string' },
    'allow-cpu': { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    texts: { type: 'string' },
    seconds: { type: 'string' },
    connections: { type: 'string', default: '64' },
    'server-variants': { type: 'string', default: 'k1,k2' },
    out: { type: 'string' },
  },
});
const allowCpu = args['allow-cpu']!;
const quick = args.quick!;
const serverSeconds = Number(args.seconds ?? (quick ? 2 : 8));
const connections = Number(args.connections);
const cores = availableParallelism();
const started = performance.now();
const elapsed = (): string => `${((performance.now() - started) / 1000).toFixed(1)} s`;
const say = (line: string): void => void process.stderr.write(`gpu-check [${elapsed()}]: ${line}\n`);

// ---- the model repository: every variant directory with a manifest -------------------------
const repo = resolve(args.models!);
interface Variant {
  model: string;
  variant: string;
  dir: string;
  maxLength: number;
  precision: string;
}
function listVariants(): Variant[] {
  if (!existsSync(repo)) fail(`${repo}: no model repository (build one with npm start or slim build, and carry it)`);
  const models = args.model
    ? [args.model]
    : readdirSync(repo, { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => e.name);
  const out: Variant[] = [];
  for (const model of models) {
    const modelDir = join(repo, model);
    if (!existsSync(modelDir)) fail(`${modelDir}: no such model`);
    for (const e of readdirSync(modelDir, { withFileTypes: true })) {
      const dir = join(modelDir, e.name);
      if (!e.isDirectory() || !existsSync(join(dir, 'manifest.json'))) continue;
      const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { maxLength: number; precision?: string };
      out.push({ model, variant: e.name, dir, maxLength: m.maxLength, precision: m.precision ?? 'fp32' });
    }
  }
  if (out.length === 0) fail(`${repo}: no variants (directories with a manifest.json)`);
  return out.sort((a, b) => `${a.model}/${a.variant}`.localeCompare(`${b.model}/${b.variant}`));
}

function fail(message: string): never {
  process.stderr.write(`gpu-check: ${message}\n`);
  process.exit(1);
}

// ---- 0. is there a CUDA provider? ------------------------------------------------------------
/** null when a CUDA session opens, else why not (the first line of onnxruntime's error). */
async function cudaUnavailable(onnxPath: string): Promise<string | null> {
  const listed = ort.listSupportedBackends().find((b) => b.name === 'cuda');
  if (!listed) return 'this onnxruntime-node build does not list a cuda backend';
  try {
    const s = await createSession(onnxPath, { intraOp: 1, interOp: 1 }, 'cuda');
    await s.release();
    return null;
  } catch (err) {
    return (err as Error).message.split('\n')[0]!.slice(0, 300);
  }
}

// ---- 1. parity -------------------------------------------------------------------------------
interface Parity {
  model: string;
  variant: string;
  precision: string;
  texts: number;
  maxAbsDeltaP: number;
  /** Texts whose top label differs between the two devices. */
  labelFlips: number;
  pass: boolean;
}

async function probabilities(v: Variant, device: SessionDevice, texts: readonly string[]): Promise<Float32Array[]> {
  const session = await createSession(join(v.dir, 'model.onnx'), { intraOp: device === 'cpu' ? cores : 1, interOp: 1 }, device);
  const tokenizer = await loadTokenizer(v.dir);
  const rows: Float32Array[] = [];
  try {
    for (let k = 0; k < texts.length; k += 32) {
      const out = await session.run(feeds(tokenizer.encodeBatch(texts.slice(k, k + 32), { maxLength: v.maxLength })));
      const logits = out.logits!.data as Float32Array;
      const classes = out.logits!.dims[1]!;
      for (let r = 0; r < logits.length / classes; r++) rows.push(softmax(logits.subarray(r * classes, (r + 1) * classes)));
    }
  } finally {
    await session.release();
  }
  return rows;
}

function softmax(logits: Float32Array): Float32Array {
  const max = Math.max(...logits);
  const e = logits.map((x) => Math.exp(x - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / sum);
}

const argmax = (p: Float32Array): number => p.indexOf(Math.max(...p));

async function parity(v: Variant, device: SessionDevice, texts: readonly string[]): Promise<Parity> {
  const reference = await probabilities(v, 'cpu', texts);
  const tested = await probabilities(v, device, texts);
  let maxAbsDeltaP = 0;
  let labelFlips = 0;
  reference.forEach((p, i) => {
    const q = tested[i]!;
    for (let c = 0; c < p.length; c++) maxAbsDeltaP = Math.max(maxAbsDeltaP, Math.abs(p[c]! - q[c]!));
    if (argmax(p) !== argmax(q)) labelFlips++;
  });
  return { model: v.model, variant: v.variant, precision: v.precision, texts: texts.length, maxAbsDeltaP, labelFlips, pass: maxAbsDeltaP <= PARITY_TOLERANCE };
}

// ---- 3. the server ---------------------------------------------------------------------------
interface ServedDevice {
  model: string;
  variant: string;
  device: string;
  requestedDevice: string;
  fallbackReason?: string;
}

async function servedDevices(url: string): Promise<ServedDevice[]> {
  const res = await fetch(`${url}/models`);
  const body = (await res.json()) as { models: { name: string; variants: (Omit<ServedDevice, 'model' | 'variant'> & { name: string })[] }[] };
  return body.models.flatMap((m) =>
    m.variants.map((v) => ({
      model: m.name,
      variant: v.name,
      device: v.device,
      requestedDevice: v.requestedDevice,
      ...(v.fallbackReason ? { fallbackReason: v.fallbackReason } : {}),
    })),
  );
}

function startServer(device: SessionDevice, maxBatchSize: number): Promise<ServerProcess> {
  // One worker, as the server's default; on CUDA the intra-op threads only run the ops CUDA lacks.
  return ServerProcess.start({
    kind: 'slim',
    models: repo,
    workers: 1,
    intraOp: 2,
    interOp: 1,
    maxBatchSize,
    maxBatchTokens: 65536,
    maxQueueDelayMs: 2,
    maxQueued: 4096,
    metrics: true,
    device,
  });
}

/** Start on `device`; null and the fallbacks when any variant runs elsewhere. */
async function startChecked(device: SessionDevice, maxBatchSize: number): Promise<{ server: ServerProcess; fallbacks: ServedDevice[] }> {
  const server = await startServer(device, maxBatchSize);
  const fallbacks = (await servedDevices(server.url)).filter((s) => s.device !== device);
  return { server, fallbacks };
}

interface ServerResult {
  model: string;
  variant: string;
  on: Row;
  off: Row;
  onOffRatio: number;
  /** Server with batching on / session.run at batch 32 on the same device. */
  serverOverCeilingB32: number;
  /** Server with batching on / session.run at its best batch size. */
  serverOverCeilingBest: number;
}

async function serverRun(v: Variant, device: SessionDevice, texts: readonly string[], ceiling: CeilingResult): Promise<ServerResult> {
  const rows: Row[] = [];
  for (const [label, maxBatchSize] of [
    ['batching on', 32],
    ['batching off', 1],
  ] as const) {
    const { server, fallbacks } = await startChecked(device, maxBatchSize);
    try {
      if (fallbacks.length > 0) throw new FallbackError(fallbacks);
      rows.push(
        await measure(server, {
          label,
          texts: 'short',
          bodies: classifyBodies(texts, { model: v.model, variant: v.variant }),
          seconds: serverSeconds,
          warmupSeconds: quick ? 1 : 2,
          load: { connections },
          tokenizeUsPerText: null,
          metrics: { model: v.model, variant: v.variant },
        }),
      );
    } finally {
      await server.close();
    }
  }
  const [on, off] = rows as [Row, Row];
  const b32 = ceiling.points.find((p) => p.batchSize === 32)!;
  return {
    model: v.model,
    variant: v.variant,
    on,
    off,
    onOffRatio: on.run.inputsPerSec / off.run.inputsPerSec,
    serverOverCeilingB32: on.run.inputsPerSec / b32.inferenceInputsPerSec,
    serverOverCeilingBest: on.run.inputsPerSec / ceiling.best.inferenceInputsPerSec,
  };
}

class FallbackError extends Error {
  constructor(readonly fallbacks: ServedDevice[]) {
    super(
      `the server fell back: ${fallbacks.map((f) => `${f.model}/${f.variant} asked ${f.requestedDevice}, runs on ${f.device} (${f.fallbackReason ?? 'no reason given'})`).join('; ')}`,
    );
  }
}

// ---- the run ---------------------------------------------------------------------------------
const variants = listVariants();
say(`${variants.length} variants in ${repo}: ${variants.map((v) => `${v.model}/${v.variant}`).join(', ')}`);
const unavailable = await cudaUnavailable(join(variants[0]!.dir, 'model.onnx'));
if (unavailable !== null && !allowCpu)
  fail(`no CUDA provider: ${unavailable} (see docs/benchmarks.md "GPU check" for what the machine needs; --allow-cpu runs every step on the CPU as a dry run)`);
const device: SessionDevice = unavailable === null ? 'cuda' : 'cpu';
if (unavailable !== null) say(`no CUDA provider (${unavailable}): DRY RUN, every step on the CPU in CUDA's place`);
else say('CUDA provider opens a session');

// A dry run shows the fallback check works: the server asked for cuda must say it runs on cpu.
let fallbackProbe: { caught: boolean; fallbacks: ServedDevice[] } | null = null;
if (device === 'cpu') {
  const { server, fallbacks } = await startChecked('cuda', 32);
  await server.close();
  fallbackProbe = { caught: fallbacks.length > 0, fallbacks };
  say(`fallback probe: server asked for cuda, ${fallbackProbe.caught ? `fallback detected (${fallbacks.length} variants on cpu)` : 'NO fallback reported'}`);
}

// --quick (the dry run on a small CPU): 60 parity texts instead of 300.
const textCount = Number(args.texts ?? (quick ? 60 : 300));
const third = Math.ceil(textCount / 3);
const parityTexts = [...generateTexts('short', third, 11), ...generateTexts('medium', third, 12), ...generateTexts('long', textCount - 2 * third, 13)];
const parities: Parity[] = [];
for (const v of variants) {
  const p = await parity(v, device, parityTexts);
  parities.push(p);
  say(`parity ${v.model}/${v.variant}: max |dp| ${p.maxAbsDeltaP.toExponential(2)}, ${p.labelFlips} label flips: ${p.pass ? 'pass' : 'FAIL'}`);
}

const shortTexts = generateTexts('short', 512, 7);
const fp32 = variants.filter((v) => v.precision === 'fp32');
const ceilings: { model: string; variant: string; device: CeilingResult; cpu: CeilingResult }[] = [];
for (const v of fp32) {
  const common = { variantDir: v.dir, maxLength: v.maxLength, texts: shortTexts, batchSizes: BATCH_SIZES, secondsPerSize: quick ? 0.2 : 0.5 };
  const onDevice = await measureCeiling({ ...common, threads: { intraOp: device === 'cpu' ? cores : 1, interOp: 1 }, device });
  const cpu = device === 'cpu' ? onDevice : await measureCeiling({ ...common, threads: { intraOp: cores, interOp: 1 }, device: 'cpu' });
  ceilings.push({ model: v.model, variant: v.variant, device: onDevice, cpu });
  say(
    `session.run ${v.model}/${v.variant} on ${device}: best b${onDevice.best.batchSize} ${n(onDevice.best.inferenceInputsPerSec)} inputs/s (cpu best ${n(cpu.best.inferenceInputsPerSec)})`,
  );
}

const wanted = new Set(
  args['server-variants']!.split(',')
    .map((s) => s.trim())
    .filter(Boolean),
);
const servers: ServerResult[] = [];
let serverFailure: string | null = null;
for (const c of ceilings.filter((c) => wanted.has(c.variant))) {
  try {
    const r = await serverRun(
      variants.find((v) => v.model === c.model && v.variant === c.variant)!,
      device,
      shortTexts,
      c.device,
    );
    servers.push(r);
    say(`server ${c.model}/${c.variant} on ${device}: batching on/off ${r.onOffRatio.toFixed(2)}x, server/ceiling(b32) ${r.serverOverCeilingB32.toFixed(2)}`);
  } catch (err) {
    serverFailure = (err as Error).message;
    say(`server ${c.model}/${c.variant}: FAIL: ${serverFailure}`);
    break;
  }
}

// ---- 4. verdict and results ------------------------------------------------------------------
const failures = [
  ...(device === 'cpu' ? [`no CUDA provider: ${unavailable}`] : []),
  ...(fallbackProbe && !fallbackProbe.caught ? ['the server asked for cuda on a machine without it reported no fallback'] : []),
  ...parities.filter((p) => !p.pass).map((p) => `parity ${p.model}/${p.variant}: max |dp| ${p.maxAbsDeltaP.toExponential(2)} > ${PARITY_TOLERANCE}`),
  ...(serverFailure ? [`server: ${serverFailure}`] : []),
];
const verdict = failures.length === 0 ? 'PASS' : device === 'cpu' ? 'DRY RUN (no CUDA provider: not a GPU result)' : 'FAIL';
const date = today();
const command = commandLine('dist/loadtest/gpu-check.js');
const ceilingTable = mdTable(
  ['variant', 'device', ...BATCH_SIZES.map((b) => `b${b}`), 'best'],
  ceilings.flatMap((c) => [
    [`${c.model}/${c.variant}`, device, ...c.device.points.map((p) => n(p.inferenceInputsPerSec)), `b${c.device.best.batchSize}`],
    ...(device === 'cpu'
      ? []
      : [[`${c.model}/${c.variant}`, `cpu (${cores} threads)`, ...c.cpu.points.map((p) => n(p.inferenceInputsPerSec)), `b${c.cpu.best.batchSize}`]]),
  ]),
);
const md = [
  `# GPU check (${date}): ${verdict}`,
  '',
  `\`${command}\` on ${device === 'cuda' ? 'CUDA' : 'the CPU (dry run)'}, ${cores} cores, load average ${machine().loadAverage1m}, ${elapsed()} in all.`,
  ...(failures.length ? ['', 'Failures:', ...failures.map((f) => `- ${f}`)] : []),
  ...(fallbackProbe
    ? [
        '',
        `Fallback check (server started with --device cuda): ${fallbackProbe.caught ? `caught, ${fallbackProbe.fallbacks[0]?.fallbackReason ?? ''}` : 'NOT caught'}`,
      ]
    : []),
  '',
  `## Parity, ${device} against cpu (${parityTexts.length} generated texts, short/medium/long; bound max |dp| <= ${PARITY_TOLERANCE})`,
  '',
  mdTable(
    ['variant', 'precision', 'max abs dp', 'label flips', ''],
    parities.map((p) => [`${p.model}/${p.variant}`, p.precision, p.maxAbsDeltaP.toExponential(2), p.labelFlips, p.pass ? 'pass' : 'FAIL']),
  ),
  '',
  '## session.run inputs/s by batch size (short texts, inference only)',
  '',
  ceilingTable,
  '',
  `## Server on ${device} (1 worker, ${connections} closed-loop connections, ${serverSeconds} s, single short texts)`,
  '',
  servers.length
    ? mdTable(
        ['variant', 'on inputs/s', 'off inputs/s', 'on/off', 'mean batch (on)', 'p50 / p99 ms (on)', 'server / session.run b32', 'server / best session.run'],
        servers.map((s) => [
          `${s.model}/${s.variant}`,
          n(s.on.run.inputsPerSec),
          n(s.off.run.inputsPerSec),
          `${s.onOffRatio.toFixed(2)}x`,
          n(s.on.meanBatchSize),
          `${n(s.on.run.latency.p50Ms)} / ${n(s.on.run.latency.p99Ms)}`,
          s.serverOverCeilingB32.toFixed(2),
          s.serverOverCeilingBest.toFixed(2),
        ]),
      )
    : `(not measured${serverFailure ? `: ${serverFailure}` : ''})`,
].join('\n');
const files = writeResult(
  args.out ?? join('loadtest', 'results'),
  `${date}${device === 'cpu' ? '-dry-run' : ''}-gpu-check`,
  {
    date,
    command,
    machine: machine(),
    verdict,
    device,
    cudaUnavailable: unavailable,
    failures,
    fallbackProbe,
    parityTolerance: PARITY_TOLERANCE,
    parity: parities,
    ceilings,
    servers,
    seconds: (performance.now() - started) / 1000,
  },
  md,
);
console.log(md);
say(`${verdict}; wrote ${files.md} and ${files.json}`);
// A dry run exercised the code paths; it has not shown anything about a GPU.
process.exit(verdict === 'PASS' ? 0 : device === 'cpu' ? 2 : 1);
