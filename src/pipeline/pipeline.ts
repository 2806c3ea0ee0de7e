// The build pipeline, the same for every base (bases/*.ts): read and check the data, open the
// base, encode, then for each requested depth run DEPTH_STEPS -- train, export, write the
// variant, measure it, rewrite the depth report -- in that order. A new per-depth step (another
// precision, distillation, a check) is one entry in DEPTH_STEPS; a step sees the whole build
// (BuildContext) and what the steps before it produced for this depth (DepthState).
import { stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import type { ModelProto } from './onnx-proto.js';
import { modelPieces } from './onnx-pieces.js';
import { datasetSha256, prepareTrainingData, type TrainingData } from './datasets/index.js';
import { ONNX_DATA_FILE, ONNX_FILE, removeStaleTemporaries, variantName, writeVariant, type Manifest, type ManifestDraft } from './model-writer.js';
import { moveToExternalData } from './onnx-external.js';
import { buildReport, makeBatch, measureLatency, writeReport, type DepthResult } from './report/index.js';
import { formatTrainMode, modeSuffix, type EncodedExample, type TrainResult } from './training/loop.js';
import { openBase } from './bases/open.js';
import type { BuildBase } from './bases/base.js';
import { BUILD_VERSION, type BuildOptions } from './build-options.js';
import { buildPrecisionSiblings } from './precision/variants.js';
import { convertFp16 } from './precision/convert-fp16.js';
import { collectGarbage } from './collect-garbage.js';
import { findPlainSibling, loadVariantTeacher, readTransferTexts, type VariantTeacher } from './training/distill.js';
import type { DistillationRecord } from './report/index.js';

/** Runs timed per batch size when measuring a variant's latency for the report. */
export const LATENCY_RUNS = 10;
/**
 * Untimed runs before them: the first run of a shape allocates; after it the runs are steady. (It
 * was 3: at batch 32 of 128-token emails that was 2 more full batches per variant and size.)
 */
export const LATENCY_WARMUP = 1;

/** What the whole build shares: options, base, encoded data, where variants go, results so far. */
export interface BuildContext {
  readonly options: BuildOptions;
  readonly base: BuildBase;
  readonly data: TrainingData;
  /** Training and validation examples as the training graphs see them (base.trainingIds). */
  readonly train: readonly EncodedExample[];
  readonly val: readonly EncodedExample[];
  /** Served-model ids of the validation texts (of the training texts without any): latency batches. */
  readonly latencySequences: readonly (readonly number[])[];
  readonly modelDir: string;
  /** The model name: the last part of modelDir. */
  readonly model: string;
  readonly dataSha256: string;
  /** The training mode as manifests and the report write it (full, head, top:N). */
  readonly mode: string;
  /** Every variant measured so far, in build order: the report's rows. */
  readonly results: DepthResult[];
  recommended: string | null;
  /** --distill-from: the teacher (a variant directory, or loaded after this build's teacher depth is written) and transfer texts. */
  distill?: { teacher?: VariantTeacher; teacherDepth?: number; transferTexts: readonly string[] };
  log(line: string): void;
}

/** What the steps produce for one depth, filled in order. */
export interface DepthState {
  readonly depth: number;
  /** The variant's directory name, k<depth>[-mode]. */
  readonly variant: string;
  /** Its params (the trained weights) are emptied once the variant is written, like `exported`. */
  trained?: TrainResult;
  /**
   * model.onnx as pieces (views of the weights, onnx-pieces.ts), and its external data when the
   * weights are past --external-data-threshold; let go once written unless precision siblings need it.
   */
  exported?: { model: ModelProto; onnx: Uint8Array[]; onnxData?: Uint8Array[]; params: number };
  written?: { dir: string; manifest: Manifest };
  latencyMs?: { batch1: number; batch32: number };
  /** A distilled student: teacher, recipe and the same depth's accuracy without distillation. */
  distillation?: DistillationRecord;
}

export interface DepthStep {
  name: string;
  run(ctx: BuildContext, d: DepthState): Promise<void>;
}

function need<T>(value: T | undefined, step: string, what: string): T {
  if (value === undefined) throw new Error(`build step ${step}: no ${what} (a step before it is missing)`);
  return value;
}

const train: DepthStep = {
  name: 'train',
  async run(ctx, d) {
    const o = ctx.options;
    const opts = {
      mode: o.mode,
      epochs: o.epochs,
      lr: o.lr,
      batchSize: o.batch,
      seed: o.seed,
      trainEmbeddings: o.trainEmbeddings,
      threads: o.threads,
      progress: o.quiet ? null : undefined,
    };
    const distill = ctx.distill;
    if (!distill || d.depth === distill.teacherDepth) {
      d.trained = await ctx.base.train(d.depth, ctx.train, ctx.val, opts);
      return;
    }
    // A student: the teacher's logits over the training and transfer texts are its soft labels.
    distill.teacher ??= await loadVariantTeacher(join(ctx.modelDir, variantName(distill.teacherDepth!, modeSuffix(o.mode))), o.threads);
    const teacher = distill.teacher;
    const t0 = performance.now();
    const teacherLogits = await teacher.logits([...ctx.data.train.map((e) => e.text), ...distill.transferTexts], ctx.data.labels);
    const teacherSeconds = (performance.now() - t0) / 1000;
    ctx.log(
      `slim build: k${d.depth} student of ${teacher.dir} (T ${o.temperature}, alpha ${o.alpha}, ${distill.transferTexts.length} transfer texts); teacher logits in ${teacherSeconds.toFixed(1)} s`,
    );
    // Accuracy without distillation: the teacher's plain sibling variant of this depth when it was
    // trained the same way on the same data (findPlainSibling), else a plain run here.
    const sibling = await findPlainSibling(teacher.dir, d.variant, { dataSha256: ctx.dataSha256, evalSplit: ctx.data.evalSplit, seed: o.seed, lr: o.lr });
    const plain = sibling ?? { ...(await ctx.base.train(d.depth, ctx.train, ctx.val, opts)), source: 'trained in this build' };
    const transfer = distill.transferTexts.map((t) => ({ ids: ctx.base.trainingIds(t), label: -1 }));
    d.trained = await ctx.base.train(d.depth, ctx.train, ctx.val, {
      ...opts,
      distill: { temperature: o.temperature, alpha: o.alpha, teacherLogits, transfer },
    });
    d.distillation = {
      teacher: teacher.dir,
      teacherDepth: teacher.depth,
      temperature: o.temperature,
      alpha: o.alpha,
      transferData: o.transferData ?? null,
      transferExamples: transfer.length,
      teacherSeconds: round(teacherSeconds, 1),
      secondsPerEpoch: round(d.trained.secondsPerEpoch, 1),
      withoutDistillation: {
        accuracy: plain.eval.accuracy,
        macroF1: plain.eval.macroF1,
        secondsPerEpoch: round(plain.secondsPerEpoch, 1),
        source: plain.source,
      },
    };
  },
};

const exportOnnx: DepthStep = {
  name: 'export',
  async run(ctx, d) {
    const { model, params } = ctx.base.exportModel(d.depth, need(d.trained, 'export', 'trained weights'));
    // --weights-dtype fp16: the float32 graph rewritten to float16 (precision/convert-fp16.ts), one initializer at a time.
    if (ctx.options.weightsDtype === 'fp16') convertFp16(model);
    const onnxData = moveToExternalData(model, ONNX_DATA_FILE, ctx.options.externalDataThreshold);
    d.exported = { model, onnx: modelPieces(model).pieces, onnxData, params };
  },
};

const write: DepthStep = {
  name: 'write',
  async run(ctx, d) {
    const o = ctx.options,
      res = need(d.trained, 'write', 'trained weights'),
      exp = need(d.exported, 'write', 'exported model');
    const draft: ManifestDraft = {
      model: ctx.model,
      variant: d.variant,
      depth: d.depth,
      base: ctx.base.info,
      labels: ctx.data.labels,
      head: ctx.base.head,
      ...ctx.base.manifestFields,
      maxLength: o.maxLength,
      train: {
        mode: ctx.mode,
        epochs: res.epochsRun,
        lr: o.lr,
        seed: o.seed,
        examples: ctx.train.length,
        dataSha256: ctx.dataSha256,
        seconds: round(res.seconds, 2),
      },
      eval: { split: ctx.data.evalSplit, examples: ctx.val.length, accuracy: res.eval.accuracy, macroF1: res.eval.macroF1 },
      params: exp.params,
      precision: ctx.options.weightsDtype,
      createdAt: new Date().toISOString(),
      version: BUILD_VERSION,
    };
    d.written = await writeVariant(ctx.modelDir, draft, {
      onnx: exp.onnx,
      onnxData: exp.onnxData,
      tokenizer: ctx.base.tokenizerFiles.tokenizer,
      tokenizerConfig: ctx.base.tokenizerFiles.tokenizerConfig,
    });
    // The int8/fp16 siblings read the written file back (external data included).
    releaseWeights(ctx, d);
  },
};

/**
 * The variant is on disk: the export's pieces (views of the body's float32 weights), the trained
 * weights and the body the base read for this depth are let go, so that the onnxruntime sessions
 * over the written variant (latency, siblings) do not run beside them: they are the peak of a
 * build (docs/checkpoints.md). V8 frees them at its next collection (collectGarbage).
 */
function releaseWeights(ctx: BuildContext, d: DepthState): void {
  d.exported = undefined;
  if (d.trained) d.trained = { ...d.trained, params: new Map() };
  ctx.base.releaseDepth(d.depth);
}

const measure: DepthStep = {
  name: 'measure',
  async run(ctx, d) {
    const o = ctx.options,
      res = need(d.trained, 'measure', 'trained weights');
    const { dir, manifest } = need(d.written, 'measure', 'written variant');
    const seqs = ctx.latencySequences,
      pad = ctx.base.padId;
    // What write let go of is freed now, before the session's allocations (a collection here, not
    // in write, whose frame still holds the export).
    collectGarbage();
    // From the written file, as the server loads it (external data is found beside it).
    const [b1, b32] = await measureLatency(join(dir, ONNX_FILE), [makeBatch(seqs, 1, o.maxLength, pad), makeBatch(seqs, 32, o.maxLength, pad)], {
      threads: o.threads,
      runs: LATENCY_RUNS,
      warmup: LATENCY_WARMUP,
    });
    d.latencyMs = { batch1: round(b1!.medianMs, 3), batch32: round(b32!.medianMs, 3) };
    ctx.results.push({
      variant: d.variant,
      depth: d.depth,
      mode: ctx.mode,
      precision: ctx.options.weightsDtype,
      accuracy: res.eval.accuracy,
      macroF1: res.eval.macroF1,
      params: manifest.params,
      fileBytes: (await stat(join(dir, ONNX_FILE))).size + (manifest.externalData ?? []).reduce((n, e) => n + e.bytes, 0),
      latencyMs: d.latencyMs,
      train: {
        stepsPerSecond: round(res.stepsPerSecond, 3),
        examplesPerSecond: round(res.examplesPerSecond, 1),
        seconds: round(res.seconds, 1),
        epochsRun: res.epochsRun,
        bestEpoch: res.bestEpoch,
      },
      ...(d.distillation ? { distillation: d.distillation } : {}),
    });
    ctx.log(
      `slim build: ${d.variant}: accuracy ${res.eval.accuracy.toFixed(4)}, macro-F1 ${res.eval.macroF1.toFixed(4)}, ${res.seconds.toFixed(1)} s training, latency ${b1!.medianMs.toFixed(2)} ms (batch 1) / ${b32!.medianMs.toFixed(2)} ms (batch 32) -> ${dir}`,
    );
  },
};

/**
 * The int8 / fp16 siblings of this depth's float32 variant (k2-int8, k2-fp16: src/pipeline/precision/),
 * evaluated on the same validation texts (as the server feeds them) and timed on the same batches.
 */
const precisions: DepthStep = {
  name: 'precisions',
  async run(ctx, d) {
    const o = ctx.options;
    if (!o.precisions.some((p) => p !== 'fp32')) return;
    const { dir } = need(d.written, 'precisions', 'written variant');
    const fp32 = ctx.results.find((r) => r.variant === d.variant);
    if (!fp32) throw new Error('build step precisions: no measured float32 variant (the measure step is missing)');
    const seqs = ctx.latencySequences,
      pad = ctx.base.padId;
    const batches = [makeBatch(seqs, 1, o.maxLength, pad), makeBatch(seqs, 32, o.maxLength, pad)];
    const examples = ctx.data.val.map((e, i) => ({ ids: ctx.base.textIds(e.text), label: ctx.val[i]!.label }));
    // The manifest this build just wrote: its model.onnx is read back but not hashed again.
    const fromBuild = { manifest: need(d.written, 'precisions', 'written variant').manifest };
    const siblings = await buildPrecisionSiblings(
      dir,
      o.precisions,
      { examples, padId: pad, threads: o.threads },
      async (onnxBytes) => {
        const [s1, s32] = await measureLatency(onnxBytes, batches, { threads: o.threads, runs: LATENCY_RUNS, warmup: LATENCY_WARMUP });
        return { batch1: round(s1!.medianMs, 3), batch32: round(s32!.medianMs, 3) };
      },
      fromBuild,
    );
    for (const s of siblings) {
      ctx.results.push({
        ...fp32,
        variant: s.variant,
        precision: s.precision,
        accuracy: s.accuracy,
        macroF1: s.macroF1,
        fileBytes: s.fileBytes,
        latencyMs: s.latencyMs,
      });
      ctx.log(
        `slim build: ${s.variant}: accuracy ${s.accuracy.toFixed(4)}, macro-F1 ${s.macroF1.toFixed(4)}, ${(s.fileBytes / 2 ** 20).toFixed(1)} MiB, latency ${s.latencyMs.batch1.toFixed(2)} ms (batch 1) / ${s.latencyMs.batch32.toFixed(2)} ms (batch 32) -> ${s.dir}; ` +
          `${Object.entries(s.seconds)
            .map(([part, sec]) => `${part} ${sec.toFixed(1)} s`)
            .join(', ')}`,
      );
    }
  },
};

/** Rewritten after every depth, so an interrupted build still has the report of what it finished. */
const report: DepthStep = {
  name: 'report',
  async run(ctx) {
    const o = ctx.options;
    const r = buildReport({
      model: ctx.model,
      base: { id: ctx.base.info.id, arch: ctx.base.info.arch, layers: ctx.base.info.layers },
      data: { train: o.data, eval: ctx.data.evalSplit, evalExamples: ctx.val.length },
      latency: { threads: o.threads, seqLength: o.maxLength, runs: LATENCY_RUNS },
      createdAt: new Date().toISOString(),
      version: BUILD_VERSION,
      results: ctx.results,
    });
    await writeReport(ctx.modelDir, r);
    ctx.recommended = r.recommended?.variant ?? null;
  },
};

/** The per-depth steps, in order: the one place a build step is added, removed or reordered. */
export const DEPTH_STEPS: readonly DepthStep[] = [train, exportOnnx, write, measure, precisions, report];

export interface BuildSummary {
  modelDir: string;
  results: DepthResult[];
  recommended: string | null;
  seconds: number;
  /** Wall seconds of each per-depth step, by variant then step name, in build order (where the time goes). */
  stepSeconds: Record<string, Record<string, number>>;
}

export async function runBuild(o: BuildOptions, steps: readonly DepthStep[] = DEPTH_STEPS): Promise<BuildSummary> {
  const t0 = performance.now();
  const log = (m: string) => {
    if (!o.quiet) process.stderr.write(`${m}\n`);
  };
  // A teacher directory and the transfer text are checked before any work.
  const dirTeacher = o.distillFrom && 'dir' in o.distillFrom ? await loadVariantTeacher(o.distillFrom.dir, o.threads) : undefined;
  const transferTexts = o.transferData !== undefined ? await readTransferTexts(o.transferData) : [];
  const teacherDepth = o.distillFrom && 'depth' in o.distillFrom ? o.distillFrom.depth : undefined;
  const data = await prepareTrainingData({
    data: o.data,
    val: o.val,
    valSplit: o.valSplit,
    seed: o.seed,
    labels: o.labels ?? (o.verbalizer ? Object.keys(o.verbalizer) : undefined),
  });
  const base = await openBase(o, data.labels);
  try {
    const labelIndex = new Map(data.labels.map((l, i) => [l, i]));
    const encode = (examples: TrainingData['train']): EncodedExample[] =>
      examples.map((e) => ({ ids: base.trainingIds(e.text), label: labelIndex.get(e.label)! }));
    const modelDir = resolve(o.out);
    const ctx: BuildContext = {
      options: o,
      base,
      data,
      train: encode(data.train),
      val: encode(data.val),
      latencySequences: (data.val.length > 0 ? data.val : data.train).map((e) => base.textIds(e.text)),
      modelDir,
      model: basename(modelDir),
      dataSha256: datasetSha256(data.train),
      mode: formatTrainMode(o.mode),
      results: [],
      recommended: null,
      distill: o.distillFrom ? { teacher: dirTeacher, teacherDepth, transferTexts } : undefined,
      log,
    };
    log(
      `slim build: ${base.description}; ${ctx.train.length} training and ${ctx.val.length} validation examples, labels ${data.labels.join(', ')}; ready in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
    await removeStaleTemporaries(modelDir);
    // Distilling from a depth of this build: that depth is trained (plain) first.
    const depths = teacherDepth === undefined ? o.depths : [teacherDepth, ...o.depths.filter((k) => k !== teacherDepth)];
    const stepSeconds: BuildSummary['stepSeconds'] = {};
    for (const depth of depths) {
      // An fp16 build's variants say so in their name (k1-head-fp16), as the manifest validator wants.
      const suffix = [modeSuffix(o.mode), o.weightsDtype === 'fp16' ? 'fp16' : undefined].filter(Boolean).join('-');
      const d: DepthState = { depth, variant: variantName(depth, suffix || undefined) };
      const times: Record<string, number> = (stepSeconds[d.variant] = {});
      for (const step of steps) {
        const started = performance.now();
        await step.run(ctx, d);
        times[step.name] = round((performance.now() - started) / 1000, 2);
      }
      // One line per depth: a long build says where its time went (training vs the rest).
      log(
        `slim build: ${d.variant} step times: ${Object.entries(times)
          .map(([name, s]) => `${name} ${s.toFixed(1)} s`)
          .join(', ')}`,
      );
    }
    return { modelDir, results: ctx.results, recommended: ctx.recommended, seconds: (performance.now() - t0) / 1000, stepSeconds };
  } finally {
    base.close();
  }
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
