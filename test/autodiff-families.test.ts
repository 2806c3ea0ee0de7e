// Gradients through the switches of the issue-15 families (architectures/transformer.ts), against
// central finite differences of the same ONNX graph, as test/autodiff-llm.test.ts does for the
// older ones: gemma's sandwich norms, embedding scale, query scale, attention and final logit
// soft-capping (Tanh), per-head q/k RMSNorm, local windows and a second RoPE table (qwen3,
// gemma2/3), phi3/mistral's causal window, modernbert's bias-free LayerNorm, skipped first norm,
// symmetric window and mean pooling, and CLS pooling (Slice + Squeeze: roberta, distilbert).
// Windows of 2 on 5-token rows, so the local masks hide keys. Float32 graph: eps 5e-3 on weights of
// scale 0.3, |analytic - fd| <= 3e-3 (1 + |fd|).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { buildTransformerGraph, HEAD_BIAS, HEAD_WEIGHT, paramSpecs, type FloatTensorValue, type TransformerConfig } from '../src/pipeline/architectures/transformer.js';
import { addGradients } from '../src/pipeline/training/autodiff.js';
import { softmaxCrossEntropy } from '../src/pipeline/training/losses.js';
import { mulberry32, randomNormal } from '../src/pipeline/random.js';
import { centralDifference } from './helpers/finite-differences.js';

const decoder = {
  positionOffset: 0, postNorm: false, gated: true, ropeTheta: 10000, causal: true, finalNorm: true, embedNorm: false, tokenTypes: false, tiedEmbeddings: true,
  layers: 2, hidden: 8, heads: 4, kvHeads: 2, headDim: 4, ffn: 12, vocab: 11, maxPositions: 16, norm: 'rms', eps: 1e-6, positions: 'rope',
} as const;

const CONFIGS: TransformerConfig[] = [
  { ...decoder, arch: 'gemma2', act: 'gelu_tanh', sandwichNorm: true, embedScale: Math.sqrt(8), attnScale: 0.3, attnSoftcap: 2, finalSoftcap: 3, localLayers: [true, false], window: 2 },
  { ...decoder, arch: 'gemma3', act: 'gelu_tanh', sandwichNorm: true, embedScale: Math.sqrt(8), qkNorm: true, localLayers: [true, false], window: 2, localRopeTheta: 100, ropeScaling: { type: 'linear', factor: 2 } },
  { ...decoder, arch: 'phi3', act: 'silu', localLayers: [true, true], window: 3, ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMax: 64 } },
  { ...decoder, arch: 'modernbert', act: 'gelu', causal: false, norm: 'layer', normBias: false, embedNorm: true, skipFirstAttnNorm: true, kvHeads: 4, localLayers: [false, true], window: 1, windowSymmetric: true, localRopeTheta: 100, pooling: 'mean' },
  { ...decoder, arch: 'roberta', act: 'gelu', gated: false, causal: false, norm: 'layer', eps: 1e-5, postNorm: true, finalNorm: false, embedNorm: true, tokenTypes: true, positions: 'learned', positionOffset: 2, kvHeads: 4, pooling: 'cls' },
];

for (const c of CONFIGS) {
  test(`autodiff through ${c.arch}-style blocks (${c.pooling ?? 'last'} pooling) matches finite differences`, async () => {
    const rng = mulberry32(3);
    const body = new Map<string, FloatTensorValue>();
    for (const s of paramSpecs(c, c.layers)) {
      const n = s.dims.reduce((a, b) => a * b, 1);
      body.set(s.name, { dims: s.dims, data: Float32Array.from({ length: n }, () => (s.kind === 'norm' && s.name.endsWith('weight') ? 1 : 0) + 0.3 * randomNormal(rng)) });
    }
    const L = 3, B = 2, S = 5;
    const weight = { dims: [c.hidden, L], data: Float32Array.from({ length: c.hidden * L }, () => 0.5 * randomNormal(rng)) };
    const bias = { dims: [L], data: Float32Array.from({ length: L }, () => 0.1 * randomNormal(rng)) };
    const trainable = [...body.keys(), HEAD_WEIGHT, HEAD_BIAS];
    const { graph: g, raw } = buildTransformerGraph(c, body, { depth: c.layers, output: { kind: 'classifier', weight, bias }, tableLength: 16, asInputs: () => true, batch: B, seq: S });
    const loss = softmaxCrossEntropy(g, raw, g.input('labels', 'int64', [B]));
    const { grads } = addGradients(g, { loss, params: trainable });
    const session = await ort.InferenceSession.create(g.toBytes(), { intraOpNumThreads: 1, logSeverityLevel: 3 });
    const values = new Map<string, FloatTensorValue>([...body, [HEAD_WEIGHT, weight], [HEAD_BIAS, bias]]);
    // Row 0 right-padded (3 real tokens), row 1 full.
    const ids = new ort.Tensor('int64', BigInt64Array.from([3n, 7n, 1n, 0n, 0n, 2n, 9n, 4n, 4n, 10n]), [B, S]);
    const mask = new ort.Tensor('int64', BigInt64Array.from([1n, 1n, 1n, 0n, 0n, 1n, 1n, 1n, 1n, 1n]), [B, S]);
    const labels = new ort.Tensor('int64', BigInt64Array.from([2n, 0n]), [B]);
    const feeds = () => {
      const f: Record<string, ort.Tensor> = { input_ids: ids, attention_mask: mask, labels };
      for (const [k, v] of values) f[k] = new ort.Tensor('float32', v.data, v.dims);
      return f;
    };
    const out = await session.run(feeds());
    const lossAt = async () => Number((await session.run(feeds(), [loss]))[loss]!.data[0]);
    // 5e-3, not autodiff-llm's 1e-2: gemma's embedding scale sqrt(8) curves the loss enough in
    // embed.tokens that a 1e-2 central difference is 0.6% off (it converges to the analytic value).
    const eps = 5e-3;
    let checked = 0, nonzero = 0;
    const pick = mulberry32(9);
    for (const name of trainable) {
      const grad = out[grads.get(name)!]!.data as Float32Array;
      const v = values.get(name)!.data;
      assert.equal(grad.length, v.length);
      for (let t = 0; t < 3; t++) {
        const i = Math.floor(pick() * v.length);
        const fd = await centralDifference(v, i, eps, lossAt);
        assert.ok(Math.abs(grad[i]! - fd) <= 3e-3 * (1 + Math.abs(fd)), `${c.arch}: d loss / d ${name}[${i}] = ${grad[i]}, finite differences ${fd}`);
        checked++;
        if (Math.abs(fd) > 1e-4) nonzero++;
      }
    }
    assert.ok(nonzero > checked / 3, `${c.arch}: most checked gradients are non-trivial (${nonzero}/${checked})`);
    await session.release();
  });
}
