// Fine-tuning a depth-k USE-lite classifier (head = linear 512 -> labels on the tanh `features`).
// Modes: `head` (frozen body; features computed once and cached, only the head trains),
// `top:N` (top N kept blocks + pooler + head train; lower blocks stay initializers, so the
// backward pass never reaches them), `full` (all kept blocks + pooler + head; the token
// embedding only with `trainEmbeddings`). Training graphs have static shapes, one per
// sequence-length bucket; validation and export use the same forward graph with dynamic axes.
import * as ort from 'onnxruntime-node';
import { GraphBuilder, type Dim } from '../graph.js';
import type { UseLiteCheckpoint } from '../checkpoints/use-lite.js';
import { addUseLiteForward, addUseLiteParameters, buildUseLiteEncoderGraph, checkDepth, useLiteParamSpecs, useLiteParamValues, USE_LITE_IO } from '../architectures/use-lite.js';
import { addGradients } from './autodiff.js';
import { softmaxCrossEntropy } from './losses.js';
import { pruneToOutputs } from './prune.js';
import { GradientSession, type ParamTensor } from './session.js';
import { AdamW, linearWarmupDecay } from './optimizer.js';
import { mulberry32, randomNormal, shuffleInPlace, type Rng } from '../random.js';
import { evaluate, type EvalReport } from '../evaluation.js';
import { ProgressReporter, type ProgressStream } from '../progress.js';

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

export interface EncodedExample {
  /** Token ids, already cut to maxLength. */
  ids: number[];
  /** Index into the label list. */
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
  /** full/top: also train the 8002 x 256 token embedding. */
  trainEmbeddings?: boolean;
  /** full/top: dropout ratio on sub-layer outputs and the pooled features (default 0.1). */
  dropout?: number;
  threads?: number;
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
  stepsPerSecond: number;
  examplesPerSecond: number;
}

/** Names of the body parameters a mode trains (head excluded). */
export function trainableBodyParams(ckpt: UseLiteCheckpoint, depth: number, mode: TrainMode, trainEmbeddings = false): string[] {
  if (mode.kind === 'head') return [];
  const first = mode.kind === 'full' ? 0 : Math.max(0, depth - mode.n);
  return useLiteParamSpecs(ckpt.config, depth)
    .filter((s) => (s.kind === 'embedding' ? mode.kind === 'full' && trainEmbeddings : s.block === null || s.block >= first))
    .map((s) => s.name);
}

export interface ClassifierGraphOptions {
  /** Parameters declared as graph inputs (fed per run) rather than initializers. */
  inputs?: ReadonlySet<string>;
  batch?: Dim;
  seq?: Dim;
  /** Add labels input, loss and gradients of `inputs`. */
  training?: boolean;
  /** Training only: dropout on each sub-layer output and on the features before the head. */
  dropout?: { ratio: number; seed: number };
}

/**
 * The classifier graph: input_ids/attention_mask -> logits. Parameters found in `values`
 * override the checkpoint's (as initializers unless listed in `inputs`).
 */
export function buildClassifierGraph(
  ckpt: UseLiteCheckpoint,
  depth: number,
  numLabels: number,
  values: ReadonlyMap<string, ParamTensor>,
  opts: ClassifierGraphOptions = {},
): { graph: GraphBuilder; grads: Map<string, string> } {
  checkDepth(ckpt.config, depth);
  const inputs = opts.inputs ?? new Set<string>();
  const batch = opts.batch ?? 'batch';
  const seq = opts.seq ?? 'seq';
  const g = new GraphBuilder(`use_lite_classifier_k${depth}`);
  const ids = g.input(USE_LITE_IO.inputIds, 'int64', [batch, seq]);
  const mask = g.input(USE_LITE_IO.attentionMask, 'int64', [batch, seq]);
  const p = addUseLiteParameters(g, ckpt, depth, { asInputs: (n) => inputs.has(n) });
  for (const [name, t] of values) {
    if (name === HEAD_WEIGHT || name === HEAD_BIAS || inputs.has(name)) continue;
    if (!g.initializers.has(name)) throw new Error(`classifier graph: unknown parameter ${name}`);
    g.initializers.set(name, { type: 'float32', dims: [...t.dims], data: t.data });
  }
  const headParam = (name: string, dims: number[]) => {
    if (inputs.has(name)) return g.input(name, 'float32', dims);
    const t = values.get(name);
    if (!t) throw new Error(`classifier graph: no value for ${name}`);
    return g.initializer(name, t.data, dims);
  };
  const width = ckpt.config.outputWidth;
  const hw = headParam(HEAD_WEIGHT, [width, numLabels]);
  const hb = headParam(HEAD_BIAS, [numLabels]);
  // ONNX Dropout in training mode, one seed per node: the masks differ per step and per node
  // yet a run with the same seed repeats exactly. Inference graphs have no Dropout at all.
  let drop: ((g: GraphBuilder, x: string) => string) | undefined;
  if (opts.training && opts.dropout && opts.dropout.ratio > 0) {
    const ratio = g.initializer('dropout.ratio', new Float32Array([opts.dropout.ratio]), []);
    const on = g.initializer('dropout.training', new Uint8Array([1]), [], 'bool');
    let n = 0;
    const seed = opts.dropout.seed;
    drop = (gb, x) => gb.op('Dropout', [x, ratio, on], { seed: seed + n++ });
  }
  const fwd = addUseLiteForward(g, ckpt.config, p, depth, ids, mask, drop);
  const raw = g.op('Add', [g.op('MatMul', [drop ? drop(g, fwd.features) : fwd.features, hw]), hb]);
  g.output(g.identity(raw, LOGITS), 'float32', [batch, numLabels]);
  if (!opts.training) return { graph: pruneToOutputs(g, [LOGITS], g.name), grads: new Map() };
  const labels = g.input('labels', 'int64', [batch]);
  const loss = softmaxCrossEntropy(g, raw, labels);
  const result = addGradients(g, { loss, params: [...inputs] });
  return { graph: g, grads: result.grads };
}

/** The self-contained classifier ONNX (weights as initializers) and its parameter count. */
export function exportClassifier(
  ckpt: UseLiteCheckpoint,
  depth: number,
  labels: readonly string[],
  values: ReadonlyMap<string, ParamTensor>,
  metadata: Record<string, string> = {},
): { bytes: Uint8Array; params: number } {
  const { graph } = buildClassifierGraph(ckpt, depth, labels.length, values);
  let params = 0;
  for (const [name, t] of graph.initializers) {
    if (name === HEAD_WEIGHT || name === HEAD_BIAS || /^(embeddings\.token|blocks\.|pooler\.)/.test(name)) params += t.data.length;
  }
  const bytes = graph.toBytes({
    docString: `slimserve classifier on builtin:use-lite, first ${depth} blocks, labels ${labels.join(',')}`,
    metadata: { 'slim.base': 'builtin:use-lite', 'slim.depth': String(depth), 'slim.labels': JSON.stringify(labels), ...metadata },
  });
  return { bytes, params };
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
  const order = shuffleInPlace(lengths.map((_, i) => i), rng);
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
export function inferenceBatches(examples: readonly EncodedExample[], buckets: readonly number[], size = 64): PlannedBatch[] {
  const order = examples.map((_, i) => i).sort((a, b) => examples[a]!.ids.length - examples[b]!.ids.length || a - b);
  const out: PlannedBatch[] = [];
  for (let k = 0; k < order.length; k += size) {
    const rows = order.slice(k, k + size);
    const longest = Math.max(1, ...rows.map((r) => examples[r]!.ids.length));
    out.push({ seq: buckets[bucketIndex(longest, buckets)]!, rows });
  }
  return out;
}

function sessionOptions(threads: number): ort.InferenceSession.SessionOptions {
  return { intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all', logSeverityLevel: 3 };
}

function argmaxRows(data: Float32Array, cols: number, row: number): number {
  let best = 0;
  for (let c = 1; c < cols; c++) if (data[row * cols + c]! > data[row * cols + best]!) best = c;
  return best;
}

// ---------------------------------------------------------------------------------------------
// Training

export async function trainClassifier(
  ckpt: UseLiteCheckpoint,
  train: readonly EncodedExample[],
  val: readonly EncodedExample[],
  labels: readonly string[],
  opts: TrainOptions,
): Promise<TrainResult> {
  const t0 = performance.now();
  const { depth, mode, batchSize, padId } = opts;
  checkDepth(ckpt.config, depth);
  const threads = opts.threads ?? 2;
  const patience = opts.patience ?? 2;
  const numLabels = labels.length;
  const width = ckpt.config.outputWidth;
  const rng = mulberry32(opts.seed);
  const buckets = bucketsFor(opts.maxLength);

  // Parameters the trainer owns: the head (small random init) and the trainable body.
  const params = new Map<string, ParamTensor>();
  const hw = new Float32Array(width * numLabels);
  for (let i = 0; i < hw.length; i++) hw[i] = 0.02 * randomNormal(rng);
  params.set(HEAD_WEIGHT, { data: hw, dims: [width, numLabels] });
  params.set(HEAD_BIAS, { data: new Float32Array(numLabels), dims: [numLabels] });
  const specs = new Map(useLiteParamSpecs(ckpt.config, depth).map((s) => [s.name, s]));
  const bodyNames = trainableBodyParams(ckpt, depth, mode, opts.trainEmbeddings);
  if (bodyNames.length > 0) {
    // Copies: the checkpoint's arrays stay pristine for other depths and modes.
    const values = useLiteParamValues(ckpt, depth);
    for (const name of bodyNames) params.set(name, { data: Float32Array.from(values.get(name)!.data as Float32Array), dims: [...specs.get(name)!.dims] });
  }
  const trainable = new Set(params.keys());

  const lengths = train.map((e) => Math.max(1, Math.min(e.ids.length, opts.maxLength)));
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
    const enc = pruneToOutputs(buildUseLiteEncoderGraph(ckpt, { depth, intermediates: true }).graph, [USE_LITE_IO.features]);
    const encSession = await ort.InferenceSession.create(enc.toBytes(), sessionOptions(threads));
    const featuresOf = async (examples: readonly EncodedExample[]) => {
      const out = new Float32Array(examples.length * width);
      for (const b of inferenceBatches(examples, buckets)) {
        const { ids, mask } = batchTensors(examples, b.rows, b.seq, padId);
        const r = await encSession.run({ [USE_LITE_IO.inputIds]: ids, [USE_LITE_IO.attentionMask]: mask }, [USE_LITE_IO.features]);
        const f = r[USE_LITE_IO.features]!.data as Float32Array;
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
    const session = await GradientSession.create(g.toBytes(), { params: [HEAD_WEIGHT, HEAD_BIAS], loss, grads, intraOpNumThreads: threads });
    release.push(() => session.release());
    trainStep = async (b) => {
      const feats = new Float32Array(batchSize * width);
      b.rows.forEach((r, i) => feats.set(trainFeatures.subarray(r * width, (r + 1) * width), i * width));
      const y = BigInt64Array.from(b.rows.map((r) => BigInt(train[r]!.label)));
      const res = await session.step({ features: new ort.Tensor('float32', feats, [batchSize, width]), labels: new ort.Tensor('int64', y, [batchSize]) }, params);
      optimizer.step(res.grads);
      return res.loss;
    };
    predictVal = async () => {
      const W = params.get(HEAD_WEIGHT)!.data, B = params.get(HEAD_BIAS)!.data;
      return val.map((_, i) => {
        let best = 0, bestV = -Infinity;
        for (let c = 0; c < numLabels; c++) {
          let s = B[c]!;
          for (let k = 0; k < width; k++) s += valFeatures[i * width + k]! * W[k * numLabels + c]!;
          if (s > bestV) (bestV = s), (best = c);
        }
        return best;
      });
    };
  } else {
    const sessions = new Map<number, GradientSession>();
    const sessionFor = async (seq: number) => {
      let s = sessions.get(seq);
      if (!s) {
        const { graph, grads } = buildClassifierGraph(ckpt, depth, numLabels, params, { inputs: trainable, batch: batchSize, seq, training: true, dropout: { ratio: opts.dropout ?? 0.1, seed: opts.seed * 1000 + seq } });
        s = await GradientSession.create(graph.toBytes(), { params: [...trainable], loss: 'loss', grads, intraOpNumThreads: threads });
        sessions.set(seq, s);
        release.push(() => s!.release());
      }
      return s;
    };
    const evalGraph = buildClassifierGraph(ckpt, depth, numLabels, params, { inputs: trainable }).graph;
    const evalSession = await ort.InferenceSession.create(evalGraph.toBytes(), sessionOptions(threads));
    release.push(() => evalSession.release());
    trainStep = async (b) => {
      const session = await sessionFor(b.seq);
      const { ids, mask } = batchTensors(train, b.rows, b.seq, padId);
      const y = BigInt64Array.from(b.rows.map((r) => BigInt(train[r]!.label)));
      const res = await session.step({ input_ids: ids, attention_mask: mask, labels: new ort.Tensor('int64', y, [batchSize]) }, params);
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
        b.rows.forEach((row, i) => (pred[row] = argmaxRows(out, numLabels, i)));
      }
      return pred;
    };
  }

  const truth = val.map((e) => labels[e.label]!);
  const evalNow = async () => evaluate(truth, (await predictVal()).map((c) => labels[c]!), labels);
  let best: { report: EvalReport; params: Map<string, ParamTensor>; epoch: number } | undefined;
  let step = 0, examples = 0, epochsRun = 0, sinceBest = 0;
  const trainStart = performance.now();
  try {
    for (let epoch = 1; epoch <= opts.epochs; epoch++) {
      let lossSum = 0;
      const plan = planEpoch(lengths, buckets, batchSize, rng);
      for (const [i, b] of plan.entries()) {
        const loss = await trainStep(b);
        lossSum += loss;
        step++;
        examples += b.rows.length;
        reporter?.update({ step, epoch, epochs: opts.epochs, loss: lossSum / (i + 1), examples });
      }
      epochsRun = epoch;
      const report = await evalNow();
      reporter?.log(`${label} epoch ${epoch}: train loss ${(lossSum / Math.max(1, plan.length)).toFixed(4)}, val accuracy ${report.accuracy.toFixed(4)}, macro-F1 ${report.macroF1.toFixed(4)}`);
      if (!best || report.accuracy > best.report.accuracy) {
        best = { report, params: snapshot(), epoch };
        sinceBest = 0;
      } else if (++sinceBest >= patience) {
        reporter?.log(`${label}: no better validation accuracy for ${patience} epochs, stopping`);
        break;
      }
    }
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
    stepsPerSecond: trainSeconds > 0 ? step / trainSeconds : 0,
    examplesPerSecond: trainSeconds > 0 ? examples / trainSeconds : 0,
  };
}
