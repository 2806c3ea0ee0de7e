// Fine-tuning a classifier head (and optionally the top of its body), whatever the body: the
// training modes, length-bucketed batches, and the one training loop (epochs, batches, AdamW,
// validation, early stopping with patience, best-weights snapshot, progress) that the USE-lite
// trainer (trainer.ts) and the gpt2/opt/llama/bert trainer (transformer-trainer.ts) both run.
// An architecture only says how to build its graphs (ClassifierGraphs); everything that decides
// the numbers (batch plans, optimiser, seeds) lives here once, so fixed seeds repeat exactly.
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../graph.js';
import type { ParamSpec } from '../architectures/param-spec.js';
import { addGradients } from './autodiff.js';
import { softmaxCrossEntropy } from './losses.js';
import { logSoftmaxAtTemperature, TEACHER_INPUTS, type DistillTargets } from './distill.js';
import { GradientSession, type ParamTensor } from './session.js';
import { createGraphSession } from './graph-session.js';
import { AdamW, linearWarmupDecay } from './optimizer.js';
import { mulberry32, shuffleInPlace, type Rng } from '../random.js';
import { evaluate, type EvalReport } from '../evaluation.js';
import { ProgressReporter, type ProgressStream } from '../progress.js';

/** The linear head's parameters (features [width] -> logits [labels]) and the logits output. */
export const HEAD_WEIGHT = 'head.weight';
export const HEAD_BIAS = 'head.bias';
export const LOGITS = 'logits';
export const SEQ_BUCKETS = [16, 32, 64, 128] as const;

export type TrainMode = { kind: 'head' } | { kind: 'full' } | { kind: 'top'; n: number };

/** "head" | "full" | "top:N" -> TrainMode; throws RangeError with a one-line message otherwise. */
export function parseTrainMode(text: string): TrainMode {
  if (text === 'head') return { kind: 'head' };
  if (text === 'full') return { kind: 'full' };
  const m = /^top:([1-9][0-9]*)$/.exec(text);
  if (m) return { kind: 'top', n: Number(m[1]) };
  throw new RangeError(`--train must be head, full or top:N (got ${JSON.stringify(text)})`);
}

export function formatTrainMode(mode: TrainMode): string {
  return mode.kind === 'top' ? `top:${mode.n}` : mode.kind;
}

/** Variant-name suffix for a mode: none for the default (full), "head", "top1". */
export function modeSuffix(mode: TrainMode): string | undefined {
  return mode.kind === 'full' ? undefined : mode.kind === 'head' ? 'head' : `top${mode.n}`;
}

/**
 * Names of the body parameters a mode trains (head excluded): none for `head`, the blocks from
 * depth - N up (and block-less parameters such as a pooler or final norm) for `top:N`,
 * everything for `full`; token embeddings only for `full` with `trainEmbeddings`.
 */
export function trainableParams(specs: readonly ParamSpec[], depth: number, mode: TrainMode, trainEmbeddings = false): string[] {
  if (mode.kind === 'head') return [];
  const first = mode.kind === 'full' ? 0 : Math.max(0, depth - mode.n);
  return specs.filter((s) => (s.kind === 'embedding' ? mode.kind === 'full' && trainEmbeddings : s.block === null || s.block >= first)).map((s) => s.name);
}

export interface EncodedExample {
  /** Token ids, already cut to maxLength. */
  ids: number[];
  /** Index into the label list; -1 for unlabelled transfer text (distillation only). */
  label: number;
}

export interface TrainOptions {
  depth: number;
  mode: TrainMode;
  epochs: number;
  lr: number;
  batchSize: number;
  maxLength: number;
  seed: number;
  padId: number;
  weightDecay?: number;
  warmupFraction?: number;
  /** Epochs without a better validation accuracy before stopping (default 2). */
  patience?: number;
  /** full/top: also train the token embedding. */
  trainEmbeddings?: boolean;
  /** full/top: dropout ratio on sub-layer outputs and the pooled features (default 0.1; USE-lite only). */
  dropout?: number;
  threads?: number;
  /**
   * Train on a teacher's soft labels as well (full/top; the architecture's training graph must
   * take TEACHER_INPUTS): loss = alpha CE(true) + (1 - alpha) T^2 KL(teacher_T || student_T),
   * over the training examples and then the unlabelled transfer examples (soft term only).
   */
  distill?: DistillTargets;
  /** Progress output (default process.stderr); null for none. */
  progress?: ProgressStream | null;
}

export interface TrainResult {
  /** Values of every parameter that differs from the checkpoint (trained ones, and the head). */
  params: Map<string, ParamTensor>;
  /** Validation metrics of the kept (best) weights. */
  eval: EvalReport;
  bestEpoch: number;
  epochsRun: number;
  steps: number;
  seconds: number;
  /** Training seconds per epoch run (the epoch's validation pass included). */
  secondsPerEpoch: number;
  stepsPerSecond: number;
  examplesPerSecond: number;
}

// ---------------------------------------------------------------------------------------------
// Batching

export function bucketsFor(maxLength: number): number[] {
  const b: number[] = SEQ_BUCKETS.filter((x) => x < maxLength);
  b.push(maxLength);
  return b;
}

function bucketIndex(len: number, buckets: readonly number[]): number {
  const i = buckets.findIndex((b) => len <= b);
  return i < 0 ? buckets.length - 1 : i;
}

export interface PlannedBatch {
  seq: number;
  rows: number[];
}

/**
 * One epoch's batches: examples in shuffled order are grouped by length bucket into batches of
 * exactly `batchSize`; a bucket's remainder moves up to the next bucket, and the top bucket's
 * remainder is topped up with random training examples. Batch order is shuffled too.
 */
export function planEpoch(lengths: readonly number[], buckets: readonly number[], batchSize: number, rng: Rng): PlannedBatch[] {
  const order = shuffleInPlace(
    lengths.map((_, i) => i),
    rng,
  );
  const perBucket: number[][] = buckets.map(() => []);
  for (const i of order) perBucket[bucketIndex(lengths[i]!, buckets)]!.push(i);
  const batches: PlannedBatch[] = [];
  let carry: number[] = [];
  buckets.forEach((seq, b) => {
    const rows = [...carry, ...perBucket[b]!];
    let k = 0;
    for (; k + batchSize <= rows.length; k += batchSize) batches.push({ seq, rows: rows.slice(k, k + batchSize) });
    carry = rows.slice(k);
  });
  if (carry.length > 0) {
    while (carry.length < batchSize) carry.push(Math.floor(rng() * lengths.length));
    batches.push({ seq: buckets[buckets.length - 1]!, rows: carry });
  }
  return shuffleInPlace(batches, rng);
}

export function batchTensors(examples: readonly EncodedExample[], rows: readonly number[], seq: number, padId: number): { ids: ort.Tensor; mask: ort.Tensor } {
  const ids = new BigInt64Array(rows.length * seq).fill(BigInt(padId));
  const mask = new BigInt64Array(rows.length * seq);
  rows.forEach((r, b) => {
    const t = examples[r]!.ids;
    for (let s = 0; s < Math.min(seq, t.length); s++) {
      ids[b * seq + s] = BigInt(t[s]!);
      mask[b * seq + s] = 1n;
    }
  });
  return { ids: new ort.Tensor('int64', ids, [rows.length, seq]), mask: new ort.Tensor('int64', mask, [rows.length, seq]) };
}

/** Fixed-order inference batches (sorted by length, padded to the bucket). */
export function inferenceBatches(examples: readonly EncodedExample[], buckets: readonly number[], size = 64, maxTokens = Infinity): PlannedBatch[] {
  const order = examples.map((_, i) => i).sort((a, b) => examples[a]!.ids.length - examples[b]!.ids.length || a - b);
  const seqOf = (row: number) => buckets[bucketIndex(examples[row]!.ids.length, buckets)]!;
  const out: PlannedBatch[] = [];
  for (let k = 0; k < order.length;) {
    // Rows are sorted by length, so the last row taken sets the batch's (bucketed) length.
    let n = 1;
    while (n < size && k + n < order.length && (n + 1) * seqOf(order[k + n]!) <= maxTokens) n++;
    const rows = order.slice(k, k + n);
    const longest = Math.max(1, ...rows.map((r) => examples[r]!.ids.length));
    out.push({ seq: buckets[bucketIndex(longest, buckets)]!, rows });
    k += n;
  }
  return out;
}

/**
 * Tokens per batch of the frozen body's feature pass (head mode). A batch's activations grow
 * with its tokens (a [batch, seq, ffn] float32 tensor is batch * seq * ffn * 4 bytes, several
 * alive at once): 64 rows of 48 tokens through one 1024-wide block with a 3072 FFN took 330 MB
 * of onnxruntime memory, 16 rows 90 MB. 512 tokens keep the GEMMs large enough to run at speed.
 */
export const FEATURE_BATCH_TOKENS = 512;

function sessionOptions(threads: number): ort.InferenceSession.SessionOptions {
  return { intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all', logSeverityLevel: 3 };
}

function argmaxRow(data: Float32Array, cols: number, row: number): number {
  let best = 0;
  for (let c = 1; c < cols; c++) if (data[row * cols + c]! > data[row * cols + best]!) best = c;
  return best;
}

// ---------------------------------------------------------------------------------------------
// Training

/** What an architecture contributes: its graphs. Inputs are input_ids and attention_mask. */
export interface ClassifierGraphs {
  /** Head mode: the frozen body, -> `features` [batch, featureWidth]. */
  features(): GraphBuilder;
  /**
   * full/top: the static-shape training graph of one length bucket, [batchSize, seq]: every
   * trained parameter a graph input, a `labels` input, the loss and its gradients.
   */
  training(seq: number): { graph: GraphBuilder; loss: string; grads: Map<string, string> };
  /** full/top: the forward graph with dynamic axes, trained parameters as inputs, -> LOGITS. */
  inference(): GraphBuilder;
}

export interface LoopSetup {
  /** performance.now() when the trainer was called: TrainResult.seconds counts from there. */
  t0: number;
  /** The head and the trained body parameters, initial values; trained in place (copies, not the checkpoint's arrays). */
  params: Map<string, ParamTensor>;
  /** Width of the features the head reads. */
  featureWidth: number;
  /** The generator seeded with opts.seed, after any draws for initialisation: the epoch plans continue it. */
  rng: Rng;
  graphs: ClassifierGraphs;
  /** Evaluate the untrained head first, as the epoch-0 candidate (label-words: the zero-shot prompt). */
  evalBeforeTraining?: boolean;
}

/**
 * Train `setup.params` with AdamW (linear warm-up and decay) over length-bucketed batches,
 * evaluate after each epoch and keep the weights of the best validation accuracy; stop after
 * `patience` epochs without improvement. Head mode computes the frozen body's features once and
 * trains a features -> logits graph; full/top run the architecture's training graphs.
 */
export async function trainLoop(
  setup: LoopSetup,
  train: readonly EncodedExample[],
  val: readonly EncodedExample[],
  labels: readonly string[],
  opts: TrainOptions,
): Promise<TrainResult> {
  const { t0, params, rng, graphs } = setup;
  const { depth, mode, batchSize, padId } = opts;
  const threads = opts.threads ?? 2;
  const patience = opts.patience ?? 2;
  const numLabels = labels.length;
  const width = setup.featureWidth;
  const buckets = bucketsFor(opts.maxLength);
  const trainable = new Set(params.keys());
  const distill = opts.distill;
  if (distill && mode.kind === 'head') throw new Error('distillation needs full or top:N training, not head');
  // With distillation the epochs run over the training examples followed by the transfer text.
  const examplesIn: readonly EncodedExample[] = distill ? [...train, ...distill.transfer] : train;
  if (distill && distill.teacherLogits.length !== examplesIn.length * numLabels) {
    throw new Error(`distillation: ${distill.teacherLogits.length / numLabels} teacher rows for ${examplesIn.length} training + transfer examples`);
  }
  const teacherLogProbs = distill ? logSoftmaxAtTemperature(distill.teacherLogits, numLabels, distill.temperature) : undefined;

  const lengths = examplesIn.map((e) => Math.max(1, Math.min(e.ids.length, opts.maxLength)));
  const stepsPerEpoch = planEpoch(lengths, buckets, batchSize, mulberry32(0)).length;
  const totalSteps = Math.max(1, stepsPerEpoch * opts.epochs);
  const optimizer = new AdamW(new Map([...params].map(([k, v]) => [k, v.data])), {
    lr: opts.lr,
    weightDecay: opts.weightDecay ?? 0.01,
    schedule: linearWarmupDecay({ lr: opts.lr, warmupSteps: Math.max(1, Math.round((opts.warmupFraction ?? 0.1) * totalSteps)), totalSteps }),
  });

  const label = `k${depth} ${formatTrainMode(mode)}`;
  const reporter = opts.progress === null ? undefined : new ProgressReporter({ total: totalSteps, label, stream: opts.progress });
  const snapshot = () => new Map([...params].map(([k, v]) => [k, { data: Float32Array.from(v.data), dims: v.dims }]));

  let trainStep: (b: PlannedBatch) => Promise<number>;
  let predictVal: () => Promise<number[]>;
  const release: (() => Promise<void>)[] = [];

  if (mode.kind === 'head') {
    // Frozen body: features once per example, then a tiny graph features -> logits -> loss.
    const encSession = await createGraphSession(graphs.features(), sessionOptions(threads));
    const featuresOf = async (examples: readonly EncodedExample[]) => {
      const out = new Float32Array(examples.length * width);
      for (const b of inferenceBatches(examples, buckets, 64, FEATURE_BATCH_TOKENS)) {
        const { ids, mask } = batchTensors(examples, b.rows, b.seq, padId);
        const f = (await encSession.run({ input_ids: ids, attention_mask: mask }, ['features'])).features!.data as Float32Array;
        b.rows.forEach((row, i) => out.set(f.subarray(i * width, (i + 1) * width), row * width));
      }
      return out;
    };
    const trainFeatures = await featuresOf(train);
    const valFeatures = await featuresOf(val);
    await encSession.release();

    const g = new GraphBuilder('head_train');
    const x = g.input('features', 'float32', [batchSize, width]);
    const w = g.input(HEAD_WEIGHT, 'float32', [width, numLabels]);
    const bias = g.input(HEAD_BIAS, 'float32', [numLabels]);
    const logits = g.op('Add', [g.op('MatMul', [x, w]), bias]);
    const loss = softmaxCrossEntropy(g, logits, g.input('labels', 'int64', [batchSize]));
    const { grads } = addGradients(g, { loss, params: [HEAD_WEIGHT, HEAD_BIAS] });
    const session = await GradientSession.create(g, { params: [HEAD_WEIGHT, HEAD_BIAS], loss, grads, intraOpNumThreads: threads });
    release.push(() => session.release());
    trainStep = async (b) => {
      const feats = new Float32Array(batchSize * width);
      b.rows.forEach((r, i) => feats.set(trainFeatures.subarray(r * width, (r + 1) * width), i * width));
      const y = BigInt64Array.from(b.rows.map((r) => BigInt(train[r]!.label)));
      const res = await session.step(
        { features: new ort.Tensor('float32', feats, [batchSize, width]), labels: new ort.Tensor('int64', y, [batchSize]) },
        params,
      );
      optimizer.step(res.grads);
      return res.loss;
    };
    predictVal = async () => {
      const W = params.get(HEAD_WEIGHT)!.data,
        B = params.get(HEAD_BIAS)!.data;
      return val.map((_, i) => {
        let best = 0,
          bestV = -Infinity;
        for (let c = 0; c < numLabels; c++) {
          let s = B[c]!;
          for (let k = 0; k < width; k++) s += valFeatures[i * width + k]! * W[k * numLabels + c]!;
          if (s > bestV) {
            bestV = s;
            best = c;
          }
        }
        return best;
      });
    };
  } else {
    // One static-shape training session per length bucket, made when its first batch comes.
    const sessions = new Map<number, GradientSession>();
    const sessionFor = async (seq: number) => {
      let s = sessions.get(seq);
      if (!s) {
        const { graph, loss, grads } = graphs.training(seq);
        if (distill && !graph.inputs.some((i) => i.name === TEACHER_INPUTS.logProbs))
          throw new Error("distillation: this architecture's training graph takes no teacher input");
        s = await GradientSession.create(graph, { params: [...trainable], loss, grads, intraOpNumThreads: threads });
        sessions.set(seq, s);
        release.push(() => s!.release());
      }
      return s;
    };
    const evalSession = await createGraphSession(graphs.inference(), sessionOptions(threads));
    release.push(() => evalSession.release());
    trainStep = async (b) => {
      const session = await sessionFor(b.seq);
      const { ids, mask } = batchTensors(examplesIn, b.rows, b.seq, padId);
      const y = BigInt64Array.from(b.rows.map((r) => BigInt(Math.max(0, examplesIn[r]!.label))));
      const feeds: Record<string, ort.Tensor> = { input_ids: ids, attention_mask: mask, labels: new ort.Tensor('int64', y, [batchSize]) };
      if (distill) {
        // Labelled rows mix both terms; transfer rows (label -1) have only the teacher's.
        const tlp = new Float32Array(batchSize * numLabels);
        b.rows.forEach((r, i) => tlp.set(teacherLogProbs!.subarray(r * numLabels, (r + 1) * numLabels), i * numLabels));
        const labelled = b.rows.map((r) => examplesIn[r]!.label >= 0);
        feeds[TEACHER_INPUTS.logProbs] = new ort.Tensor('float32', tlp, [batchSize, numLabels]);
        feeds[TEACHER_INPUTS.hardWeight] = new ort.Tensor(
          'float32',
          Float32Array.from(labelled, (l) => (l ? distill.alpha : 0)),
          [batchSize],
        );
        feeds[TEACHER_INPUTS.softWeight] = new ort.Tensor(
          'float32',
          Float32Array.from(labelled, (l) => (l ? 1 - distill.alpha : 1)),
          [batchSize],
        );
      }
      const res = await session.step(feeds, params);
      optimizer.step(res.grads);
      return res.loss;
    };
    predictVal = async () => {
      const pred = new Array<number>(val.length).fill(0);
      for (const b of inferenceBatches(val, buckets)) {
        const { ids, mask } = batchTensors(val, b.rows, b.seq, padId);
        const feeds: Record<string, ort.Tensor> = { input_ids: ids, attention_mask: mask };
        for (const name of trainable) feeds[name] = new ort.Tensor('float32', params.get(name)!.data, params.get(name)!.dims);
        const out = (await evalSession.run(feeds, [LOGITS]))[LOGITS]!.data as Float32Array;
        b.rows.forEach((row, i) => (pred[row] = argmaxRow(out, numLabels, i)));
      }
      return pred;
    };
  }

  const truth = val.map((e) => labels[e.label]!);
  const evalNow = async (): Promise<EvalReport> =>
    evaluate(
      truth,
      (await predictVal()).map((c) => labels[c]!),
      labels,
    );
  let best: { report: EvalReport; params: Map<string, ParamTensor>; epoch: number } | undefined;
  let step = 0,
    examples = 0,
    epochsRun = 0,
    sinceBest = 0;
  const trainStart = performance.now();
  try {
    if (setup.evalBeforeTraining) {
      best = { report: await evalNow(), params: snapshot(), epoch: 0 };
      reporter?.log(`${label} before training: val accuracy ${best.report.accuracy.toFixed(4)}`);
    }
    for (let epoch = 1; epoch <= opts.epochs; epoch++) {
      let lossSum = 0;
      const plan = planEpoch(lengths, buckets, batchSize, rng);
      for (const [i, b] of plan.entries()) {
        lossSum += await trainStep(b);
        step++;
        examples += b.rows.length;
        reporter?.update({ step, epoch, epochs: opts.epochs, loss: lossSum / (i + 1), examples });
      }
      epochsRun = epoch;
      const report = await evalNow();
      reporter?.log(
        `${label} epoch ${epoch}: train loss ${(lossSum / Math.max(1, plan.length)).toFixed(4)}, val accuracy ${report.accuracy.toFixed(4)}, macro-F1 ${report.macroF1.toFixed(4)}`,
      );
      if (!best || report.accuracy > best.report.accuracy) {
        best = { report, params: snapshot(), epoch };
        sinceBest = 0;
      } else if (++sinceBest >= patience) {
        reporter?.log(`${label}: no better validation accuracy for ${patience} epochs, stopping`);
        break;
      }
    }
    // No epochs at all: the untrained weights are the result.
    if (!best) best = { report: await evalNow(), params: snapshot(), epoch: 0 };
  } finally {
    for (const r of release) await r();
  }
  const trainSeconds = (performance.now() - trainStart) / 1000;
  const seconds = (performance.now() - t0) / 1000;
  reporter?.finish(`${label}: best val accuracy ${best.report.accuracy.toFixed(4)} (epoch ${best.epoch}) in ${seconds.toFixed(1)} s`);
  return {
    params: best.params,
    eval: best.report,
    bestEpoch: best.epoch,
    epochsRun,
    steps: step,
    seconds,
    secondsPerEpoch: epochsRun > 0 ? trainSeconds / epochsRun : 0,
    stepsPerSecond: trainSeconds > 0 ? step / trainSeconds : 0,
    examplesPerSecond: trainSeconds > 0 ? examples / trainSeconds : 0,
  };
}
