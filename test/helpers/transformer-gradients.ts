// The gradient check both transformer autodiff suites run (autodiff-llm: llama/gpt2/bert blocks;
// autodiff-families: the newer families' switches): a depth-`layers` classifier on random weights,
// a right-padded batch, every trainable tensor's analytic gradient at three random entries against
// a central finite difference of the same float32 ONNX graph, |analytic - fd| <= 3e-3 (1 + |fd|).
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import {
  buildTransformerGraph,
  HEAD_BIAS,
  HEAD_WEIGHT,
  paramSpecs,
  type FloatTensorValue,
  type TransformerConfig,
} from '../../src/pipeline/architectures/transformer.js';
import { addGradients } from '../../src/pipeline/training/autodiff.js';
import { softmaxCrossEntropy } from '../../src/pipeline/training/losses.js';
import { mulberry32, randomNormal } from '../../src/pipeline/random.js';
import { centralDifference } from './finite-differences.js';

/** Check autodiff through `c`'s blocks against finite differences with step `eps` (weights of scale 0.3). */
export async function checkTransformerGradients(c: TransformerConfig, eps: number): Promise<void> {
  const rng = mulberry32(3);
  const body = new Map<string, FloatTensorValue>();
  for (const s of paramSpecs(c, c.layers)) {
    const n = s.dims.reduce((a, b) => a * b, 1);
    body.set(s.name, {
      dims: s.dims,
      data: Float32Array.from({ length: n }, () => (s.kind === 'norm' && s.name.endsWith('weight') ? 1 : 0) + 0.3 * randomNormal(rng)),
    });
  }
  const L = 3,
    B = 2,
    S = 5;
  const weight = { dims: [c.hidden, L], data: Float32Array.from({ length: c.hidden * L }, () => 0.5 * randomNormal(rng)) };
  const bias = { dims: [L], data: Float32Array.from({ length: L }, () => 0.1 * randomNormal(rng)) };
  const trainable = [...body.keys(), HEAD_WEIGHT, HEAD_BIAS];
  const { graph: g, raw } = buildTransformerGraph(c, body, {
    depth: c.layers,
    output: { kind: 'classifier', weight, bias },
    tableLength: 16,
    asInputs: () => true,
    batch: B,
    seq: S,
  });
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
  let checked = 0,
    nonzero = 0;
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
}
