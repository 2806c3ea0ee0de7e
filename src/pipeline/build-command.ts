// `slim build`: fine-tune builtin:use-lite at each requested depth, export each classifier as a
// variant (model.onnx + tokenizer + manifest), then write the depth report.
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadUseLiteCheckpoint, USE_LITE_ID, USE_LITE_PACKAGE } from './checkpoints/use-lite.js';
import { DatasetError, datasetSha256, prepareTrainingData } from './datasets.js';
import { removeStaleTemporaries, variantName, writeVariant, type ManifestDraft } from './model-writer.js';
import { buildReport, makeBatch, measureLatency, writeReport, type DepthResult, type DistillationRecord } from './report.js';
import { writeUseLiteTokenizer } from './tokenizers/use-lite.js';
import { isLlmBase, LlmBuildError, parseVerbalizer, runLlmBuild } from './build-llm.js';
import { loadTokenizer, type TextTokenizer } from '../tokenizer.js';
import { exportClassifier, trainClassifier } from './training/trainer.js';
import { formatTrainMode, modeSuffix, parseTrainMode, type EncodedExample, type TrainMode } from './training/loop.js';
import { DistillError, findPlainSibling, loadVariantTeacher, readTransferTexts } from './training/distill.js';

export const BUILD_VERSION = '0.1.0';

export const BUILD_DEFAULTS = {
  train: 'full',
  // 4 epochs (was 3) with early stopping after 2 epochs without a better validation accuracy:
  // 3 stopped SST-2 k2 at 0.838 dev, the reference recipe's 5 cost 1.67x; see models/REPORT-public-sets.md.
  epochs: 4,
  maxLength: 64,
  batch: 32,
  seed: 42,
  lrBody: 1e-4,
  lrHead: 1e-3,
  threads: 2,
  /** --distill-from: softmax temperature of the soft labels, and the weight of the true labels. */
  distillTemperature: 2,
  distillAlpha: 0.5,
} as const;

/** A bad flag or value: printed as one line, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export interface BuildOptions {
  base: string;
  data: string;
  depths: number[];
  mode: TrainMode;
  /** pool: builtin:use-lite; last / label-words: gpt2, opt, llama, bert checkpoints (build-llm.ts). */
  head: 'pool' | 'last' | 'label-words';
  labels?: string[];
  /** label-words: label -> word (default: each label is its own word), and the prompt around {text}. */
  verbalizer?: Record<string, string>;
  template?: string;
  epochs: number;
  lr: number;
  batch: number;
  maxLength: number;
  seed: number;
  val?: string;
  valSplit?: number;
  out: string;
  threads: number;
  trainEmbeddings: boolean;
  quiet: boolean;
  /** A built variant directory, or a depth of this build (trained first, plain), to distil the other depths from. */
  distillFrom?: { dir: string } | { depth: number };
  transferData?: string;
  temperature: number;
  alpha: number;
}

function intFlag(name: string, v: string | undefined, dflt: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (v === undefined) return dflt;
  if (!/^-?[0-9]+$/.test(v) || Number(v) < min || Number(v) > max) throw new UsageError(`--${name} must be an integer from ${min} to ${max} (got ${JSON.stringify(v)})`);
  return Number(v);
}

export function parseBuildArgs(argv: string[]): BuildOptions {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        base: { type: 'string' },
        data: { type: 'string' },
        depths: { type: 'string' },
        train: { type: 'string' },
        head: { type: 'string' },
        labels: { type: 'string' },
        epochs: { type: 'string' },
        lr: { type: 'string' },
        batch: { type: 'string' },
        'max-length': { type: 'string' },
        seed: { type: 'string' },
        val: { type: 'string' },
        'val-split': { type: 'string' },
        out: { type: 'string' },
        threads: { type: 'string' },
        'train-embeddings': { type: 'boolean' },
        template: { type: 'string' },
        verbalizer: { type: 'string' },
        quiet: { type: 'boolean' },
        'distill-from': { type: 'string' },
        'transfer-data': { type: 'string' },
        temperature: { type: 'string' },
        alpha: { type: 'string' },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message.split('\n')[0]!);
  }
  const str = (k: string) => values[k] as string | undefined;
  const base = str('base') ?? USE_LITE_ID;
  const llm = base !== USE_LITE_ID;
  if (llm && !isLlmBase(base)) throw new UsageError(`--base ${base}: not ${USE_LITE_ID}, a Hugging Face checkpoint directory (config.json + model.safetensors[.index.json]) or a llama2.c .bin file`);
  const data = str('data');
  if (!data) throw new UsageError('--data <FILE|builtin:spam> is required');
  const out = str('out');
  if (!out) throw new UsageError('--out models/<model> is required');
  const depthsText = str('depths') ?? '1,2';
  const depths = depthsText.split(',').map((d) => intFlag('depths', d.trim(), 0, 1, llm ? 10_000 : 2));
  if (new Set(depths).size !== depths.length) throw new UsageError(`--depths has a repeated depth (${depthsText})`);
  let mode: TrainMode;
  try {
    mode = parseTrainMode(str('train') ?? BUILD_DEFAULTS.train);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const head = str('head') ?? (llm ? 'label-words' : 'pool');
  if (!llm && head !== 'pool') throw new UsageError(`--head ${head} is not available for ${USE_LITE_ID} (an encoder: use --head pool)`);
  if (!llm && str('template') !== undefined) throw new UsageError(`--template needs a decoder base (gpt2, opt, llama) and --head label-words or last, not ${USE_LITE_ID}`);
  if (llm && head !== 'last' && head !== 'label-words') throw new UsageError(`--head ${head} is not available for ${base} (use last or label-words)`);
  let verbalizer: Record<string, string> | undefined;
  if (str('verbalizer') !== undefined) {
    if (head !== 'label-words') throw new UsageError('--verbalizer needs --head label-words');
    try {
      verbalizer = parseVerbalizer(str('verbalizer')!);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  }
  const labels = str('labels')?.split(',').map((l) => l.trim());
  if (labels && (labels.length < 2 || labels.some((l) => l === '') || new Set(labels).size !== labels.length)) {
    throw new UsageError('--labels must list at least two distinct non-empty labels, comma-separated');
  }
  const lrText = str('lr');
  const lr = lrText === undefined ? (mode.kind === 'head' ? BUILD_DEFAULTS.lrHead : BUILD_DEFAULTS.lrBody) : Number(lrText);
  if (!(Number.isFinite(lr) && lr > 0 && lr < 1)) throw new UsageError(`--lr must be a number between 0 and 1 (got ${JSON.stringify(lrText)})`);
  if (str('val') !== undefined && str('val-split') !== undefined) throw new UsageError('--val and --val-split cannot be combined');
  let valSplit: number | undefined;
  if (str('val-split') !== undefined) {
    valSplit = Number(str('val-split'));
    if (!(valSplit > 0 && valSplit < 1)) throw new UsageError(`--val-split must be between 0 and 1 (got ${JSON.stringify(str('val-split'))})`);
  }
  const distill = parseDistillFlags(str, depths, mode, llm);
  const model = basename(resolve(out));
  if (!model || /[^A-Za-z0-9._-]/.test(model)) throw new UsageError(`--out ${out}: the model name "${model}" may use letters, digits, ".", "_" and "-" only`);
  return {
    base,
    data,
    depths,
    mode,
    head: head as BuildOptions['head'],
    labels,
    verbalizer,
    template: str('template'),
    epochs: intFlag('epochs', str('epochs'), BUILD_DEFAULTS.epochs, 1, 1000),
    lr,
    batch: intFlag('batch', str('batch'), BUILD_DEFAULTS.batch, 1, 4096),
    maxLength: intFlag('max-length', str('max-length'), BUILD_DEFAULTS.maxLength, 1, 128),
    seed: intFlag('seed', str('seed'), BUILD_DEFAULTS.seed, 0, 2 ** 31 - 1),
    val: str('val'),
    valSplit,
    out,
    threads: intFlag('threads', str('threads'), BUILD_DEFAULTS.threads, 1, 256),
    trainEmbeddings: values['train-embeddings'] === true,
    quiet: values.quiet === true,
    ...distill,
  };
}

function parseDistillFlags(str: (k: string) => string | undefined, depths: number[], mode: TrainMode, llm: boolean): Pick<BuildOptions, 'distillFrom' | 'transferData' | 'temperature' | 'alpha'> {
  const from = str('distill-from');
  const num = (name: string, dflt: number, ok: (x: number) => boolean, range: string) => {
    const v = str(name);
    if (v === undefined) return dflt;
    if (from === undefined) throw new UsageError(`--${name} needs --distill-from`);
    const x = Number(v);
    if (v.trim() === '' || !ok(x)) throw new UsageError(`--${name} must be ${range} (got ${JSON.stringify(v)})`);
    return x;
  };
  const temperature = num('temperature', BUILD_DEFAULTS.distillTemperature, (x) => x > 0 && x <= 100, 'a number above 0, at most 100');
  const alpha = num('alpha', BUILD_DEFAULTS.distillAlpha, (x) => x >= 0 && x <= 1, 'a number from 0 to 1');
  const transferData = str('transfer-data');
  if (from === undefined) {
    if (transferData !== undefined) throw new UsageError('--transfer-data needs --distill-from');
    return { temperature, alpha };
  }
  if (llm) throw new UsageError(`--distill-from is available for ${USE_LITE_ID} only`);
  if (mode.kind === 'head') throw new UsageError('--distill-from needs --train full or top:N (head-only training has no distillation)');
  if (/^[0-9]+$/.test(from)) {
    const depth = Number(from);
    if (!depths.includes(depth)) throw new UsageError(`--distill-from ${from}: depth ${depth} is not in --depths (${depths.join(',')})`);
    if (depths.length < 2) throw new UsageError(`--distill-from ${from}: --depths needs a student depth besides the teacher's`);
    return { distillFrom: { depth }, transferData, temperature, alpha };
  }
  return { distillFrom: { dir: from }, transferData, temperature, alpha };
}

export interface BuildSummary {
  modelDir: string;
  results: DepthResult[];
  recommended: string | null;
  seconds: number;
}

export async function runBuild(o: BuildOptions): Promise<BuildSummary> {
  const t0 = performance.now();
  const log = (m: string) => {
    if (!o.quiet) process.stderr.write(`${m}\n`);
  };
  if (o.base !== USE_LITE_ID) {
    if (o.head === 'pool') throw new UsageError(`--head pool is not available for ${o.base} (use last or label-words)`);
    return runLlmBuild({ ...o, head: o.head, version: BUILD_VERSION });
  }
  // A teacher directory and the transfer text are checked before any work.
  const dirTeacher = o.distillFrom && 'dir' in o.distillFrom ? await loadVariantTeacher(o.distillFrom.dir, o.threads) : undefined;
  const transferTexts = o.transferData !== undefined ? await readTransferTexts(o.transferData) : [];
  const data = await prepareTrainingData({ data: o.data, val: o.val, valSplit: o.valSplit, seed: o.seed, labels: o.labels });
  const ckpt = loadUseLiteCheckpoint();
  const tokDir = await mkdtemp(join(tmpdir(), 'slim-tok-'));
  let tokenizer: TextTokenizer, tokenizerText: string, tokenizerConfigText: string;
  try {
    const written = await writeUseLiteTokenizer(tokDir);
    tokenizer = await loadTokenizer(tokDir);
    tokenizerText = await readFile(written.tokenizerPath, 'utf8');
    tokenizerConfigText = await readFile(written.configPath, 'utf8');
  } finally {
    await rm(tokDir, { recursive: true, force: true });
  }
  const labelIndex = new Map(data.labels.map((l, i) => [l, i]));
  const encode = (examples: typeof data.train): EncodedExample[] =>
    examples.map((e) => ({ ids: tokenizer.encode(e.text).slice(0, o.maxLength), label: labelIndex.get(e.label)! }));
  const train = encode(data.train);
  const val = encode(data.val);
  log(`slim build: ${train.length} training and ${val.length} validation examples, labels ${data.labels.join(', ')}; tokenized in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const modelDir = resolve(o.out);
  const model = basename(modelDir);
  await removeStaleTemporaries(modelDir);
  const dataSha256 = datasetSha256(data.train);
  const results: DepthResult[] = [];
  const latencySeq = o.maxLength;
  const latencyRuns = 10;
  const sequences = val.length > 0 ? val.map((e) => e.ids) : train.map((e) => e.ids);
  const mode = formatTrainMode(o.mode);
  let recommended: string | null = null;
  // Distilling from a depth of this build: that depth is trained (plain) first.
  const teacherDepth = o.distillFrom && 'depth' in o.distillFrom ? o.distillFrom.depth : undefined;
  const depths = teacherDepth === undefined ? o.depths : [teacherDepth, ...o.depths.filter((d) => d !== teacherDepth)];
  for (const depth of depths) {
    const trainOptions = {
      depth,
      mode: o.mode,
      epochs: o.epochs,
      lr: o.lr,
      batchSize: o.batch,
      maxLength: o.maxLength,
      seed: o.seed,
      padId: tokenizer.padId,
      trainEmbeddings: o.trainEmbeddings,
      threads: o.threads,
      progress: o.quiet ? null : undefined,
    };
    let distillation: DistillationRecord | undefined;
    let res;
    if (o.distillFrom && depth !== teacherDepth) {
      const teacher = dirTeacher ?? (await loadVariantTeacher(join(modelDir, variantName(teacherDepth!, modeSuffix(o.mode))), o.threads));
      const tt = performance.now();
      const teacherLogits = await teacher.logits([...data.train.map((e) => e.text), ...transferTexts], data.labels);
      const teacherSeconds = (performance.now() - tt) / 1000;
      log(`slim build: k${depth} student of ${teacher.dir} (T ${o.temperature}, alpha ${o.alpha}, ${transferTexts.length} transfer texts); teacher logits in ${teacherSeconds.toFixed(1)} s`);
      // Accuracy without distillation: the teacher's plain sibling variant of this depth when it
      // was trained the same way on the same data (findPlainSibling), else a plain run here.
      const sibling = await findPlainSibling(teacher.dir, variantName(depth, modeSuffix(o.mode)), { dataSha256, evalSplit: data.evalSplit, seed: o.seed, lr: o.lr });
      const plain = sibling ?? { ...(await trainClassifier(ckpt, train, val, data.labels, trainOptions)), source: 'trained in this build' };
      const transfer = transferTexts.map((t) => ({ ids: tokenizer.encode(t).slice(0, o.maxLength), label: -1 }));
      res = await trainClassifier(ckpt, train, val, data.labels, { ...trainOptions, distill: { temperature: o.temperature, alpha: o.alpha, teacherLogits, transfer } });
      distillation = {
        teacher: teacher.dir, teacherDepth: teacher.depth, temperature: o.temperature, alpha: o.alpha,
        transferData: o.transferData ?? null, transferExamples: transfer.length, teacherSeconds: round(teacherSeconds, 1),
        secondsPerEpoch: round(res.secondsPerEpoch, 1),
        withoutDistillation: { accuracy: plain.eval.accuracy, macroF1: plain.eval.macroF1, secondsPerEpoch: round(plain.secondsPerEpoch, 1), source: plain.source },
      };
    } else {
      res = await trainClassifier(ckpt, train, val, data.labels, trainOptions);
    }
    const variant = variantName(depth, modeSuffix(o.mode));
    const { bytes, params } = exportClassifier(ckpt, depth, data.labels, res.params);
    const draft: ManifestDraft = {
      model,
      variant,
      depth,
      base: { id: USE_LITE_ID, arch: 'use-lite', layers: ckpt.config.blocks.length, source: `npm:${USE_LITE_PACKAGE}` },
      labels: data.labels,
      head: 'pool',
      maxLength: o.maxLength,
      train: { mode, epochs: res.epochsRun, lr: o.lr, seed: o.seed, examples: train.length, dataSha256, seconds: round(res.seconds, 2) },
      eval: { split: data.evalSplit, examples: val.length, accuracy: res.eval.accuracy, macroF1: res.eval.macroF1 },
      params,
      createdAt: new Date().toISOString(),
      version: BUILD_VERSION,
    };
    const { dir } = await writeVariant(modelDir, draft, { onnx: bytes, tokenizer: tokenizerText, tokenizerConfig: tokenizerConfigText });
    const [b1, b32] = await measureLatency(bytes, [makeBatch(sequences, 1, latencySeq, tokenizer.padId), makeBatch(sequences, 32, latencySeq, tokenizer.padId)], {
      threads: o.threads,
      runs: latencyRuns,
    });
    results.push({
      variant,
      depth,
      mode,
      accuracy: res.eval.accuracy,
      macroF1: res.eval.macroF1,
      params,
      fileBytes: (await stat(join(dir, 'model.onnx'))).size,
      latencyMs: { batch1: round(b1!.medianMs, 3), batch32: round(b32!.medianMs, 3) },
      train: { stepsPerSecond: round(res.stepsPerSecond, 3), examplesPerSecond: round(res.examplesPerSecond, 1), seconds: round(res.seconds, 1), epochsRun: res.epochsRun, bestEpoch: res.bestEpoch },
      ...(distillation ? { distillation } : {}),
    });
    const report = buildReport({
      model,
      base: { id: USE_LITE_ID, arch: 'use-lite', layers: ckpt.config.blocks.length },
      data: { train: o.data, eval: data.evalSplit, evalExamples: val.length },
      latency: { threads: o.threads, seqLength: latencySeq, runs: latencyRuns },
      createdAt: new Date().toISOString(),
      version: BUILD_VERSION,
      results,
    });
    await writeReport(modelDir, report);
    recommended = report.recommended?.variant ?? null;
    log(`slim build: ${variant}: accuracy ${res.eval.accuracy.toFixed(4)}, macro-F1 ${res.eval.macroF1.toFixed(4)}, ${res.seconds.toFixed(1)} s training, latency ${b1!.medianMs.toFixed(2)} ms (batch 1) / ${b32!.medianMs.toFixed(2)} ms (batch 32) -> ${dir}`);
  }
  return { modelDir, results, recommended, seconds: (performance.now() - t0) / 1000 };
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** `slim build ...`: 0 on success, 2 on a usage or dataset error (one line, no stack), 1 otherwise. */
export async function buildCommand(argv: string[]): Promise<number> {
  let options: BuildOptions;
  try {
    options = parseBuildArgs(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`slim build: ${err.message}`);
      return 2;
    }
    throw err;
  }
  try {
    const summary = await runBuild(options);
    if (!options.quiet) {
      process.stderr.write(`slim build: done in ${summary.seconds.toFixed(1)} s; recommended variant ${summary.recommended ?? '(none)'}; report in ${join(summary.modelDir, 'report.md')}\n`);
    }
    return 0;
  } catch (err) {
    if (err instanceof DatasetError || err instanceof UsageError || err instanceof LlmBuildError || err instanceof DistillError) {
      console.error(`slim build: ${err.message.split('\n')[0]}`);
      return 2;
    }
    console.error(`slim build: ${(err as Error).message ?? String(err)}`);
    return 1;
  }
}
