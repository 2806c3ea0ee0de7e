// Fine-tuning a depth-k USE-lite classifier (head = linear 512 -> labels on the tanh `features`).
// Modes: `head` (frozen body; features computed once and cached, only the head trains),
// `top:N` (top N kept blocks + pooler + head train; lower blocks stay initializers, so the
// backward pass never reaches them), `full` (all kept blocks + pooler + head; the token
// embedding only with `trainEmbeddings`). Training graphs have static shapes, one per
// sequence-length bucket; validation and export use the same forward graph with dynamic axes.
// This file holds the USE-lite graphs; modes, batching and the training loop are loop.ts.
import { GraphBuilder, type Dim } from '../graph.js';
import type { UseLiteCheckpoint } from '../checkpoints/use-lite.js';
import {
  addUseLiteForward,
  addUseLiteParameters,
  buildUseLiteEncoderGraph,
  checkDepth,
  useLiteParamSpecs,
  useLiteParamValues,
  USE_LITE_IO,
} from '../architectures/use-lite.js';
import { addGradients } from './autodiff.js';
import { distillationLoss, softmaxCrossEntropy } from './losses.js';
import { TEACHER_INPUTS } from './distill.js';
import { pruneToOutputs } from './prune.js';
import type { ParamTensor } from './session.js';
import { mulberry32, randomNormal } from '../random.js';
import {
  HEAD_BIAS,
  HEAD_WEIGHT,
  LOGITS,
  trainableParams,
  trainLoop,
  type EncodedExample,
  type TrainMode,
  type TrainOptions,
  type TrainResult,
} from './loop.js';

/** Names of the body parameters a mode trains (head excluded). */
export function trainableBodyParams(ckpt: UseLiteCheckpoint, depth: number, mode: TrainMode, trainEmbeddings = false): string[] {
  return trainableParams(useLiteParamSpecs(ckpt.config, depth), depth, mode, trainEmbeddings);
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
  /** Training only: the distillation loss at this temperature, with the TEACHER_INPUTS inputs. */
  distillTemperature?: number;
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
  const loss =
    opts.distillTemperature === undefined
      ? softmaxCrossEntropy(g, raw, labels)
      : distillationLoss(g, raw, {
          labels,
          teacherLogProbs: g.input(TEACHER_INPUTS.logProbs, 'float32', [batch, numLabels]),
          hardWeight: g.input(TEACHER_INPUTS.hardWeight, 'float32', [batch]),
          softWeight: g.input(TEACHER_INPUTS.softWeight, 'float32', [batch]),
          temperature: opts.distillTemperature,
        });
  const result = addGradients(g, { loss, params: [...inputs] });
  return { graph: g, grads: result.grads };
}

export async function trainClassifier(
  ckpt: UseLiteCheckpoint,
  train: readonly EncodedExample[],
  val: readonly EncodedExample[],
  labels: readonly string[],
  opts: TrainOptions,
): Promise<TrainResult> {
  const t0 = performance.now();
  const { depth, mode, batchSize } = opts;
  checkDepth(ckpt.config, depth);
  const numLabels = labels.length;
  const width = ckpt.config.outputWidth;
  const rng = mulberry32(opts.seed);

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

  return trainLoop(
    {
      t0,
      params,
      featureWidth: width,
      rng,
      graphs: {
        features: () => pruneToOutputs(buildUseLiteEncoderGraph(ckpt, { depth, intermediates: true }).graph, [USE_LITE_IO.features]),
        training: (seq) => {
          const dropout = { ratio: opts.dropout ?? 0.1, seed: opts.seed * 1000 + seq };
          const { graph, grads } = buildClassifierGraph(ckpt, depth, numLabels, params, {
            inputs: trainable,
            batch: batchSize,
            seq,
            training: true,
            dropout,
            distillTemperature: opts.distill?.temperature,
          });
          return { graph, loss: 'loss', grads };
        },
        inference: () => buildClassifierGraph(ckpt, depth, numLabels, params, { inputs: trainable }).graph,
      },
    },
    train,
    val,
    labels,
    opts,
  );
}
