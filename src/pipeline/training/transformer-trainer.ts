// Fine-tuning a depth-k gpt2/opt/llama/bert classifier (architectures/transformer.ts) whose head
// reads the last real token: `last` (a fresh linear head) or `label-words` (the LM-head columns
// of the label words as the head's initial weight, the paper's head). Same modes, batching,
// optimiser and early stopping as the USE-lite trainer (trainer.ts): both run loop.ts.
// Training examples arrive already wrapped in the prompt template (ids = prefix ++ text ++
// suffix); the exported graph applies the same template itself (transformer.ts addTemplate).
import { buildTransformerGraph, HEAD_BIAS, HEAD_WEIGHT, paramSpecs, type FloatTensorValue, type TransformerConfig } from '../architectures/transformer.js';
import { addGradients } from './autodiff.js';
import { softmaxCrossEntropy } from './losses.js';
import { pruneToOutputs } from './prune.js';
import type { ParamTensor } from './session.js';
import { mulberry32 } from '../random.js';
import { bucketsFor, LOGITS, trainableParams, trainLoop, type EncodedExample, type TrainMode, type TrainOptions, type TrainResult } from './loop.js';

/** Body parameters a mode trains (head excluded). */
export function trainableTransformerParams(c: TransformerConfig, depth: number, mode: TrainMode, trainEmbeddings = false): string[] {
  return trainableParams(paramSpecs(c, depth), depth, mode, trainEmbeddings);
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
  const { depth, mode, batchSize } = opts;
  const numLabels = labels.length;
  const W = config.hidden;
  const tableLength = Math.max(...bucketsFor(opts.maxLength));

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

  return trainLoop(
    {
      t0,
      params,
      featureWidth: W,
      rng: mulberry32(opts.seed),
      // Epoch 0: the untrained head (for label-words, the zero-shot prompt) is a candidate too.
      evalBeforeTraining: true,
      graphs: {
        // Frozen body: last-token features.
        features: () => buildTransformerGraph(config, body, { depth, output: { kind: 'features' }, tableLength }).graph,
        training: (seq) => {
          const { graph: g, raw } = buildTransformerGraph(config, body, { depth, output: head, tableLength, asInputs, batch: batchSize, seq });
          const loss = softmaxCrossEntropy(g, raw, g.input('labels', 'int64', [batchSize]));
          const { grads } = addGradients(g, { loss, params: [...trainable] });
          return { graph: g, loss, grads };
        },
        inference: () => pruneToOutputs(buildTransformerGraph(config, body, { depth, output: head, tableLength, asInputs }).graph, [LOGITS]),
      },
    },
    train,
    val,
    labels,
    opts,
  );
}
