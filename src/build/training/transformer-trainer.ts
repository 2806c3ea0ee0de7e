// Fine-tuning a depth-k gpt2/opt/llama/bert classifier (architectures/transformer.ts) whose head
// reads the last real token: `last` (a fresh linear head) or `label-words` (the LM-head columns
// of the label words as the head's initial weight, the paper's head). Same modes, batching,
// optimiser and early stopping as the USE-lite trainer (trainer.ts), whose helpers it reuses.
// Training examples arrive already wrapped in the prompt template (ids = prefix ++ text ++
// suffix); the exported graph applies the same template itself (transformer.ts addTemplate).
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../graph.js';
import {
  buildTransformerGraph, HEAD_BIAS, HEAD_WEIGHT, paramSpecs, type FloatTensorValue, type TransformerConfig,
} from '../architectures/transformer.js';
import { addGradients } from './autodiff.js';
import { softmaxCrossEntropy } from './losses.js';
import { pruneToOutputs } from './prune.js';
import { GradientSession, type ParamTensor } from './session.js';
import { AdamW, linearWarmupDecay } from './optimizer.js';
import { mulberry32 } from '../random.js';
import { evaluate, type EvalReport } from '../evaluation.js';
import { ProgressReporter } from '../progress.js';
import {
  batchTensors, bucketsFor, formatTrainMode, inferenceBatches, planEpoch, LOGITS,
  type EncodedExample, type PlannedBatch, type TrainMode, type TrainOptions, type TrainResult,
} from './trainer.js';

/** Body parameters a mode trains (head excluded). */
export function trainableTransformerParams(c: TransformerConfig, depth: number, mode: TrainMode, trainEmbeddings = false): string[] {
  if (mode.kind === 'head') return [];
  const first = mode.kind === 'full' ? 0 : Math.max(0, depth - mode.n);
  return paramSpecs(c, depth)
    .filter((s) => (s.kind === 'embedding' ? mode.kind === 'full' && trainEmbeddings : s.block === null || s.block >= first))
    .map((s) => s.name);
}

function sessionOptions(threads: number): ort.InferenceSession.SessionOptions {
  return { intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all', logSeverityLevel: 3 };
}

function argmaxRow(data: Float32Array, cols: number, row: number): number {
  let best = 0;
  for (let c = 1; c < cols; c++) if (data[row * cols + c]! > data[row * cols + best]!) best = c;
  return best;
}

export async function trainTransformerClassifier(
  config: TransformerConfig,
  body: ReadonlyMap<string, FloatTensorValue>,
  headInit: { weight: FloatTensorValue; bias: FloatTensorValue },
  train: readonly EncodedExample[],
  val: readonly EncodedExample[],
  labels: readonly string[],
  opts: TrainOptions,
): Promise<TrainResult> {
  const t0 = performance.now();
  const { depth, mode, batchSize, padId } = opts;
  const threads = opts.threads ?? 2;
  const patience = opts.patience ?? 2;
  const numLabels = labels.length;
  const W = config.hidden;
  const rng = mulberry32(opts.seed);
  const buckets = bucketsFor(opts.maxLength);
  const tableLength = Math.max(...buckets);

  const params = new Map<string, ParamTensor>();
  params.set(HEAD_WEIGHT, { data: Float32Array.from(headInit.weight.data), dims: [W, numLabels] });
  params.set(HEAD_BIAS, { data: Float32Array.from(headInit.bias.data), dims: [numLabels] });
  for (const name of trainableTransformerParams(config, depth, mode, opts.trainEmbeddings)) {
    const v = body.get(name);
    if (v) params.set(name, { data: Float32Array.from(v.data), dims: [...v.dims] });
  }
  const trainable = new Set(params.keys());
  const asInputs = (n: string) => trainable.has(n);
  const head = { kind: 'classifier' as const, weight: headInit.weight, bias: headInit.bias };

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
    // Frozen body: last-token features once per example, then a tiny head graph.
    const enc = buildTransformerGraph(config, body, { depth, output: { kind: 'features' }, tableLength }).graph;
    const encSession = await ort.InferenceSession.create(enc.toBytes(), sessionOptions(threads));
    const featuresOf = async (examples: readonly EncodedExample[]) => {
      const out = new Float32Array(examples.length * W);
      for (const b of inferenceBatches(examples, buckets)) {
        const { ids, mask } = batchTensors(examples, b.rows, b.seq, padId);
        const f = (await encSession.run({ input_ids: ids, attention_mask: mask }, ['features'])).features!.data as Float32Array;
        b.rows.forEach((row, i) => out.set(f.subarray(i * W, (i + 1) * W), row * W));
      }
      return out;
    };
    const trainFeatures = await featuresOf(train);
    const valFeatures = await featuresOf(val);
    await encSession.release();
    const g = new GraphBuilder('head_train');
    const x = g.input('features', 'float32', [batchSize, W]);
    const w = g.input(HEAD_WEIGHT, 'float32', [W, numLabels]);
    const bias = g.input(HEAD_BIAS, 'float32', [numLabels]);
    const loss = softmaxCrossEntropy(g, g.op('Add', [g.op('MatMul', [x, w]), bias]), g.input('labels', 'int64', [batchSize]));
    const { grads } = addGradients(g, { loss, params: [HEAD_WEIGHT, HEAD_BIAS] });
    const session = await GradientSession.create(g.toBytes(), { params: [HEAD_WEIGHT, HEAD_BIAS], loss, grads, intraOpNumThreads: threads });
    release.push(() => session.release());
    trainStep = async (b) => {
      const feats = new Float32Array(batchSize * W);
      b.rows.forEach((r, i) => feats.set(trainFeatures.subarray(r * W, (r + 1) * W), i * W));
      const y = BigInt64Array.from(b.rows.map((r) => BigInt(train[r]!.label)));
      const res = await session.step({ features: new ort.Tensor('float32', feats, [batchSize, W]), labels: new ort.Tensor('int64', y, [batchSize]) }, params);
      optimizer.step(res.grads);
      return res.loss;
    };
    predictVal = async () => {
      const Wt = params.get(HEAD_WEIGHT)!.data, B = params.get(HEAD_BIAS)!.data;
      return val.map((_, i) => {
        let best = 0, bestV = -Infinity;
        for (let c = 0; c < numLabels; c++) {
          let s = B[c]!;
          for (let k = 0; k < W; k++) s += valFeatures[i * W + k]! * Wt[k * numLabels + c]!;
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
        const { graph: g, raw } = buildTransformerGraph(config, body, { depth, output: head, tableLength, asInputs, batch: batchSize, seq });
        const loss = softmaxCrossEntropy(g, raw, g.input('labels', 'int64', [batchSize]));
        const { grads } = addGradients(g, { loss, params: [...trainable] });
        s = await GradientSession.create(g.toBytes(), { params: [...trainable], loss, grads, intraOpNumThreads: threads });
        sessions.set(seq, s);
        release.push(() => s!.release());
      }
      return s;
    };
    const evalGraph = pruneToOutputs(buildTransformerGraph(config, body, { depth, output: head, tableLength, asInputs }).graph, [LOGITS]);
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
        b.rows.forEach((row, i) => (pred[row] = argmaxRow(out, numLabels, i)));
      }
      return pred;
    };
  }

  const truth = val.map((e) => labels[e.label]!);
  const evalNow = async (): Promise<EvalReport> => evaluate(truth, (await predictVal()).map((c) => labels[c]!), labels);
  let best: { report: EvalReport; params: Map<string, ParamTensor>; epoch: number } | undefined;
  let step = 0, examples = 0, epochsRun = 0, sinceBest = 0;
  const trainStart = performance.now();
  try {
    // Epoch 0: the untrained head (for label-words, the zero-shot prompt) is a candidate too.
    best = { report: await evalNow(), params: snapshot(), epoch: 0 };
    reporter?.log(`${label} before training: val accuracy ${best.report.accuracy.toFixed(4)}`);
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
      reporter?.log(`${label} epoch ${epoch}: train loss ${(lossSum / Math.max(1, plan.length)).toFixed(4)}, val accuracy ${report.accuracy.toFixed(4)}, macro-F1 ${report.macroF1.toFixed(4)}`);
      if (report.accuracy > best.report.accuracy) {
        best = { report, params: snapshot(), epoch };
        sinceBest = 0;
      } else if (++sinceBest >= patience) {
        reporter?.log(`${label}: no better validation accuracy for ${patience} epochs, stopping`);
        break;
      }
    }
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
