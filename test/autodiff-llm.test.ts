// Gradients through the decoder/encoder families' building blocks (training/autodiff.ts over
// architectures/transformer.ts): RMSNorm, RoPE (rotate_half), SwiGLU and grouped-query attention
// (llama), GELU-tanh and learned positions (gpt2), post-LN with GELU-erf (bert), and the
// last-real-token classifier head, against central finite differences of the same ONNX graph.
// The graph is float32, so: eps 1e-2 on weights of scale 0.3, |analytic - fd| <= 3e-3 (1 + |fd|).
import { test } from 'node:test';
import type { TransformerConfig } from '../src/pipeline/architectures/transformer.js';
import { checkTransformerGradients } from './helpers/transformer-gradients.js';

const base = {
  positionOffset: 0,
  postNorm: false,
  gated: false,
  ropeTheta: 10000,
  causal: true,
  finalNorm: true,
  embedNorm: false,
  tokenTypes: false,
  tiedEmbeddings: true,
} as const;

const CONFIGS: TransformerConfig[] = [
  {
    ...base,
    arch: 'llama',
    layers: 2,
    hidden: 8,
    heads: 4,
    kvHeads: 2,
    headDim: 2,
    ffn: 12,
    vocab: 11,
    maxPositions: 16,
    norm: 'rms',
    eps: 1e-5,
    act: 'silu',
    gated: true,
    positions: 'rope',
  },
  {
    ...base,
    arch: 'gpt2',
    layers: 2,
    hidden: 8,
    heads: 2,
    kvHeads: 2,
    headDim: 4,
    ffn: 16,
    vocab: 11,
    maxPositions: 16,
    norm: 'layer',
    eps: 1e-5,
    act: 'gelu_tanh',
    positions: 'learned',
  },
  {
    ...base,
    arch: 'bert',
    layers: 1,
    hidden: 8,
    heads: 2,
    kvHeads: 2,
    headDim: 4,
    ffn: 16,
    vocab: 11,
    maxPositions: 16,
    norm: 'layer',
    eps: 1e-12,
    act: 'gelu',
    positions: 'learned',
    postNorm: true,
    causal: false,
    finalNorm: false,
    embedNorm: true,
    tokenTypes: true,
  },
];

for (const c of CONFIGS) {
  test(`autodiff through ${c.arch} blocks (${c.norm} norm, ${c.act}${c.gated ? ' gated' : ''}, ${c.positions} positions${c.kvHeads < c.heads ? ', GQA' : ''}) matches finite differences`, async () => {
    await checkTransformerGradients(c, 1e-2);
  });
}
