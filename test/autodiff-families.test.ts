// Gradients through the switches of the issue-15 families (architectures/transformer.ts), against
// central finite differences of the same ONNX graph, as test/autodiff-llm.test.ts does for the
// older ones: gemma's sandwich norms, embedding scale, query scale, attention and final logit
// soft-capping (Tanh), per-head q/k RMSNorm, local windows and a second RoPE table (qwen3,
// gemma2/3), phi3/mistral's causal window, modernbert's bias-free LayerNorm, skipped first norm,
// symmetric window and mean pooling, and CLS pooling (Slice + Squeeze: roberta, distilbert).
// Windows of 2 on 5-token rows, so the local masks hide keys. Float32 graph: eps 5e-3 on weights of
// scale 0.3, |analytic - fd| <= 3e-3 (1 + |fd|).
import { test } from 'node:test';
import type { TransformerConfig } from '../src/pipeline/architectures/transformer.js';
import { checkTransformerGradients } from './helpers/transformer-gradients.js';

const decoder = {
  positionOffset: 0,
  postNorm: false,
  gated: true,
  ropeTheta: 10000,
  causal: true,
  finalNorm: true,
  embedNorm: false,
  tokenTypes: false,
  tiedEmbeddings: true,
  layers: 2,
  hidden: 8,
  heads: 4,
  kvHeads: 2,
  headDim: 4,
  ffn: 12,
  vocab: 11,
  maxPositions: 16,
  norm: 'rms',
  eps: 1e-6,
  positions: 'rope',
} as const;

const CONFIGS: TransformerConfig[] = [
  {
    ...decoder,
    arch: 'gemma2',
    act: 'gelu_tanh',
    sandwichNorm: true,
    embedScale: Math.sqrt(8),
    attnScale: 0.3,
    attnSoftcap: 2,
    finalSoftcap: 3,
    localLayers: [true, false],
    window: 2,
  },
  {
    ...decoder,
    arch: 'gemma3',
    act: 'gelu_tanh',
    sandwichNorm: true,
    embedScale: Math.sqrt(8),
    qkNorm: true,
    localLayers: [true, false],
    window: 2,
    localRopeTheta: 100,
    ropeScaling: { type: 'linear', factor: 2 },
  },
  {
    ...decoder,
    arch: 'phi3',
    act: 'silu',
    localLayers: [true, true],
    window: 3,
    ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMax: 64 },
  },
  {
    ...decoder,
    arch: 'modernbert',
    act: 'gelu',
    causal: false,
    norm: 'layer',
    normBias: false,
    embedNorm: true,
    skipFirstAttnNorm: true,
    kvHeads: 4,
    localLayers: [false, true],
    window: 1,
    windowSymmetric: true,
    localRopeTheta: 100,
    pooling: 'mean',
  },
  {
    ...decoder,
    arch: 'roberta',
    act: 'gelu',
    gated: false,
    causal: false,
    norm: 'layer',
    eps: 1e-5,
    postNorm: true,
    finalNorm: false,
    embedNorm: true,
    tokenTypes: true,
    positions: 'learned',
    positionOffset: 2,
    kvHeads: 4,
    pooling: 'cls',
  },
];

for (const c of CONFIGS) {
  test(`autodiff through ${c.arch}-style blocks (${c.pooling ?? 'last'} pooling) matches finite differences`, async () => {
    // 5e-3, not autodiff-llm's 1e-2: gemma's embedding scale sqrt(8) curves the loss enough in
    // embed.tokens that a 1e-2 central difference is 0.6% off (it converges to the analytic value).
    await checkTransformerGradients(c, 5e-3);
  });
}
