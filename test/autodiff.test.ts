// Reverse-mode autodiff over ONNX graphs: every op rule against central finite differences,
// a whole pre-LN transformer block, AdamW against a plain loop, a training sanity run and a
// speed figure. Finite differences run in float64 (ONNX Runtime CPU runs double for all ops
// here but Erf): eps 1e-6, |analytic - fd| <= 1e-7 + 1e-6 |fd|. Erf and Cast, and the float32
// rule paths, are checked in float32: eps 1e-3, |analytic - fd| <= 2e-3 (1 + |fd|).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { GraphBuilder, type Dim } from '../src/pipeline/graph.js';
import { DataType } from '../src/pipeline/onnx-proto.js';
import { addGradients, promoteToInputs } from '../src/pipeline/training/autodiff.js';
import { distillationLoss, softmaxCrossEntropy } from '../src/pipeline/training/losses.js';
import { AdamW, isNoDecayParam, linearWarmupDecay } from '../src/pipeline/training/optimizer.js';
import { GradientSession, type ParamTensor } from '../src/pipeline/training/session.js';
import { pruneToOutputs } from '../src/pipeline/training/prune.js';
import { ShapeInference } from '../src/pipeline/training/shapes.js';
import {
  attentionKeyMask,
  constant,
  declareParams,
  encoderBlock,
  encoderBlockShapes,
  gelu,
  ints,
  linear,
  maskedMeanPool,
  type FloatType,
} from '../src/pipeline/training/ops.js';
import { mulberry32 } from '../src/pipeline/random.js';
import { centralDifference } from './helpers/finite-differences.js';

// ---------- helpers ----------

const count = (dims: number[]) => dims.reduce((a, b) => a * b, 1);
const SESSION_OPTS: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 1, logSeverityLevel: 3 };

function floatArray(type: FloatType, values: ArrayLike<number>): Float32Array | Float64Array {
  return type === 'float64' ? Float64Array.from(values) : Float32Array.from(values);
}

/** loss = sum(y * R) for a fixed random R: a non-uniform upstream gradient for the rule under test. */
function projectToScalar(g: GraphBuilder, type: FloatType, y: string, seed = 7): string {
  const shape = new ShapeInference(g).get(y).shape as number[];
  const rnd = mulberry32(seed);
  const r = Array.from({ length: count(shape) }, () => rnd() * 2 - 1);
  return g.op('ReduceSum', [g.op('Mul', [y, constant(g, type, r, shape)])], { keepdims: 0 });
}

interface ParamSpec {
  dims: number[];
  init?: (rnd: () => number) => number;
}

interface GradCase {
  type: FloatType;
  params: Record<string, ParamSpec>;
  /** Builds the forward graph on the declared param inputs and returns the scalar loss. */
  build: (g: GraphBuilder, p: Record<string, string>) => string;
  feeds?: Record<string, ort.Tensor>;
  /** Entries checked per parameter (all when the tensor is smaller). */
  samples?: number;
  seed?: number;
  /** The build callback declares the param inputs itself (same names, types and shapes). */
  declaredByBuild?: boolean;
}

interface GradCheck {
  maxAbsErr: number;
  checked: number;
  grads: Map<string, ArrayLike<number>>;
  g: GraphBuilder;
  loss: number;
}

async function checkGradients(name: string, c: GradCase): Promise<GradCheck> {
  const g = new GraphBuilder(name);
  const names: Record<string, string> = {};
  for (const [p, spec] of Object.entries(c.params)) names[p] = c.declaredByBuild ? p : g.input(p, c.type, spec.dims);
  const loss = c.build(g, names);
  const result = addGradients(g, { loss, params: Object.keys(c.params) });
  const session = await ort.InferenceSession.create(g.toBytes(), SESSION_OPTS);
  const rnd = mulberry32(c.seed ?? 1);
  const values: Record<string, Float32Array | Float64Array> = {};
  for (const [p, spec] of Object.entries(c.params)) {
    values[p] = floatArray(
      c.type,
      Array.from({ length: count(spec.dims) }, () => (spec.init ? spec.init(rnd) : rnd() * 2 - 1)),
    );
  }
  const feeds = () => {
    const f: Record<string, ort.Tensor> = { ...c.feeds };
    for (const [p, spec] of Object.entries(c.params)) f[p] = new ort.Tensor(c.type, values[p]!, spec.dims);
    return f;
  };
  const out = await session.run(feeds());
  const lossAt = async () => Number((await session.run(feeds(), [loss]))[loss]!.data[0]);
  const [eps, atol, rtol] = c.type === 'float64' ? [1e-6, 1e-7, 1e-6] : [1e-3, 2e-3, 2e-3];
  let maxAbsErr = 0,
    checked = 0;
  const grads = new Map<string, ArrayLike<number>>();
  for (const [p, spec] of Object.entries(c.params)) {
    const grad = out[result.grads.get(p)!]!.data as Float64Array | Float32Array;
    grads.set(p, grad);
    assert.equal(grad.length, count(spec.dims), `${name}: gradient of ${p} has the parameter's size`);
    const n = grad.length;
    const picks = n <= (c.samples ?? 12) ? [...Array(n).keys()] : Array.from({ length: c.samples ?? 12 }, () => Math.floor(rnd() * n));
    for (const i of picks) {
      const fd = await centralDifference(values[p]!, i, eps, lossAt);
      const err = Math.abs(grad[i]! - fd);
      assert.ok(err <= atol + rtol * Math.abs(fd), `${name}: d loss / d ${p}[${i}] = ${grad[i]} but finite differences give ${fd}`);
      maxAbsErr = Math.max(maxAbsErr, err);
      checked++;
    }
  }
  await session.release();
  return { maxAbsErr, checked, grads, g, loss: Number(out[loss]!.data[0]) };
}

const positive = (rnd: () => number) => 0.5 + rnd() * 1.5;
const awayFromZero = (rnd: () => number) => (rnd() < 0.5 ? -1 : 1) * (0.2 + rnd());

// ---------- op rules ----------

test('autodiff: MatMul gradients (2-D, batched 3-D x 2-D, 4-D x 4-D, broadcast batch) match finite differences', async () => {
  const cases: [string, number[], number[]][] = [
    ['2d', [3, 4], [4, 5]],
    ['3d-x-2d', [2, 3, 4], [4, 5]],
    ['4d-x-4d', [2, 3, 4, 5], [2, 3, 5, 4]],
    ['4d-x-3d-broadcast', [2, 3, 4, 5], [3, 5, 2]],
    ['3d-x-4d-broadcast', [3, 4, 5], [2, 3, 5, 2]],
  ];
  for (const [label, a, b] of cases) {
    await checkGradients(`matmul-${label}`, {
      type: 'float64',
      params: { a: { dims: a }, b: { dims: b } },
      build: (g, p) => projectToScalar(g, 'float64', g.op('MatMul', [p.a!, p.b!])),
    });
  }
});

test('autodiff: Gemm gradients for every transA/transB with alpha, beta and a broadcast C', async () => {
  for (const transA of [0, 1]) {
    for (const transB of [0, 1]) {
      await checkGradients(`gemm-${transA}${transB}`, {
        type: 'float64',
        params: { a: { dims: transA ? [4, 3] : [3, 4] }, b: { dims: transB ? [5, 4] : [4, 5] }, c: { dims: [5] } },
        build: (g, p) => projectToScalar(g, 'float64', g.op('Gemm', [p.a!, p.b!, p.c!], { transA, transB, alpha: { float: 0.75 }, beta: { float: 1.5 } })),
      });
    }
  }
});

test('autodiff: Add, Sub, Mul, Div with broadcasting undo it by summation', async () => {
  const shapes: [number[], number[]][] = [
    [
      [2, 3, 4],
      [3, 1],
    ],
    [[2, 3, 4], [4]],
    [
      [1, 3, 1],
      [2, 1, 4],
    ],
    [
      [2, 3],
      [2, 3],
    ],
    [[], [2, 3]],
  ];
  for (const op of ['Add', 'Sub', 'Mul', 'Div']) {
    for (const [a, b] of shapes) {
      await checkGradients(`${op}-${a}-${b}`, {
        type: 'float64',
        params: { a: { dims: a }, b: { dims: b, init: op === 'Div' ? positive : undefined } },
        build: (g, p) => projectToScalar(g, 'float64', g.op(op, [p.a!, p.b!])),
      });
    }
  }
});

test('autodiff: unary rules (Neg, Sqrt, Reciprocal, Exp, Log, Tanh, Relu, Sigmoid, Identity) match finite differences', async () => {
  const domains: Record<string, (r: () => number) => number> = { Sqrt: positive, Log: positive, Reciprocal: awayFromZero, Relu: awayFromZero };
  for (const op of ['Neg', 'Sqrt', 'Reciprocal', 'Exp', 'Log', 'Tanh', 'Relu', 'Sigmoid', 'Identity']) {
    await checkGradients(`unary-${op}`, {
      type: 'float64',
      params: { x: { dims: [3, 4], init: domains[op] } },
      build: (g, p) => projectToScalar(g, 'float64', g.op(op, [p.x!])),
    });
  }
});

test('autodiff: Pow with a constant exponent (and a trainable one) matches finite differences', async () => {
  for (const exponent of [3, 0.5, -1.5]) {
    await checkGradients(`pow-${exponent}`, {
      type: 'float64',
      params: { x: { dims: [2, 3], init: positive } },
      build: (g, p) => projectToScalar(g, 'float64', g.op('Pow', [p.x!, constant(g, 'float64', exponent)])),
    });
  }
  await checkGradients('pow-param-exponent', {
    type: 'float64',
    params: { x: { dims: [2, 3], init: positive }, e: { dims: [3] } },
    build: (g, p) => projectToScalar(g, 'float64', g.op('Pow', [p.x!, p.e!])),
  });
});

test('autodiff: Erf and the exact GELU decomposition match finite differences (float32)', async () => {
  await checkGradients('erf', {
    type: 'float32',
    params: { x: { dims: [3, 4] } },
    build: (g, p) => projectToScalar(g, 'float32', g.op('Erf', [p.x!])),
  });
  await checkGradients('gelu-erf', {
    type: 'float32',
    params: { x: { dims: [3, 4], init: (r) => r() * 4 - 2 } },
    build: (g, p) => projectToScalar(g, 'float32', gelu(g, 'float32', p.x!, 'erf')),
  });
  await checkGradients('gelu-tanh', {
    type: 'float64',
    params: { x: { dims: [3, 4], init: (r) => r() * 4 - 2 } },
    build: (g, p) => projectToScalar(g, 'float64', gelu(g, 'float64', p.x!, 'tanh')),
  });
});

test('autodiff: ReduceMean (axes attribute) and ReduceSum (axes input), keepdims on and off, all axes', async () => {
  const variants: [string, (g: GraphBuilder, x: string) => string][] = [
    ['mean-last-keep', (g, x) => g.op('ReduceMean', [x], { axes: [-1] })],
    ['mean-01-drop', (g, x) => g.op('ReduceMean', [x], { axes: [0, 1], keepdims: 0 })],
    ['mean-all', (g, x) => g.op('ReduceMean', [x], { keepdims: 0 })],
    ['sum-1-keep', (g, x) => g.op('ReduceSum', [x, ints(g, [1])])],
    ['sum-02-drop', (g, x) => g.op('ReduceSum', [x, ints(g, [0, -1])], { keepdims: 0 })],
    ['sum-all', (g, x) => g.op('ReduceSum', [x], { keepdims: 0 })],
  ];
  for (const [label, f] of variants) {
    await checkGradients(`reduce-${label}`, {
      type: 'float64',
      params: { x: { dims: [2, 3, 4] } },
      build: (g, p) => projectToScalar(g, 'float64', f(g, p.x!)),
    });
  }
});

test('autodiff: Softmax and LogSoftmax (last axis and axis 1) match finite differences', async () => {
  for (const op of ['Softmax', 'LogSoftmax']) {
    for (const axis of [-1, 1]) {
      await checkGradients(`${op}-${axis}`, {
        type: 'float64',
        params: { x: { dims: [2, 3, 4] } },
        build: (g, p) => projectToScalar(g, 'float64', g.op(op, [p.x!], { axis })),
      });
    }
  }
});

test('autodiff: Gather accumulates repeated embedding rows; other axes and scalar indices work', async () => {
  const ids = new ort.Tensor('int64', BigInt64Array.from([1n, 4n, 1n, 0n, 4n, 4n]), [2, 3]);
  const res = await checkGradients('gather-embedding', {
    type: 'float64',
    params: { table: { dims: [6, 4] } },
    feeds: { ids },
    samples: 24,
    build: (g, p) => projectToScalar(g, 'float64', g.op('Gather', [p.table!, g.input('ids', 'int64', [2, 3])])),
  });
  // Rows never gathered (2, 3, 5) get exactly zero.
  const grad = res.grads.get('table')!;
  for (const row of [2, 3, 5]) for (let k = 0; k < 4; k++) assert.equal(grad[row * 4 + k], 0);
  await checkGradients('gather-axis1-vector', {
    type: 'float64',
    params: { x: { dims: [2, 5, 3] } },
    build: (g, p) => projectToScalar(g, 'float64', g.op('Gather', [p.x!, ints(g, [4, 0, 4])], { axis: 1 })),
  });
  await checkGradients('gather-axis1-scalar', {
    type: 'float64',
    params: { x: { dims: [2, 5, 3] } },
    build: (g, p) => projectToScalar(g, 'float64', g.op('Gather', [p.x!, constant(g, 'int64', 0)], { axis: 1 })),
  });
});

test('autodiff: Reshape, Transpose, Unsqueeze, Squeeze, Flatten, Expand, Identity route gradients back', async () => {
  await checkGradients('shape-chain', {
    type: 'float64',
    params: { x: { dims: [2, 3, 4] } },
    build: (g, p) => {
      const r = g.op('Reshape', [p.x!, ints(g, [0, -1, 2])]); // [2, 6, 2]
      const t = g.op('Transpose', [r], { perm: [2, 0, 1] }); // [2, 2, 6]
      const u = g.op('Unsqueeze', [t, ints(g, [1])]); // [2, 1, 2, 6]
      const s = g.op('Squeeze', [u, ints(g, [1])]);
      const f = g.op('Flatten', [g.op('Identity', [s])], { axis: 2 }); // [4, 6]
      return projectToScalar(g, 'float64', g.op('Tanh', [f]));
    },
  });
  await checkGradients('expand', {
    type: 'float64',
    params: { x: { dims: [3, 1] } },
    build: (g, p) => projectToScalar(g, 'float64', g.op('Expand', [p.x!, ints(g, [2, 3, 4])])),
  });
  await checkGradients('transpose-default-perm', {
    type: 'float64',
    params: { x: { dims: [2, 3, 4] } },
    build: (g, p) => projectToScalar(g, 'float64', g.op('Transpose', [p.x!])),
  });
});

test('autodiff: Concat, Split and Slice match finite differences', async () => {
  await checkGradients('concat', {
    type: 'float64',
    params: { a: { dims: [2, 3] }, b: { dims: [2, 1] } },
    build: (g, p) => projectToScalar(g, 'float64', g.op('Concat', [p.a!, constant(g, 'float64', [1, 2, 3, 4], [2, 2]), p.b!], { axis: 1 })),
  });
  await checkGradients('split-one-used', {
    type: 'float64',
    params: { x: { dims: [2, 6] } },
    build: (g, p) => {
      const [first, , third] = g.node('Split', [p.x!, ints(g, [1, 2, 3])], { axis: 1 }, 3);
      return g.op('Add', [projectToScalar(g, 'float64', g.op('Exp', [first!])), projectToScalar(g, 'float64', third!, 3)]);
    },
  });
  await checkGradients('slice', {
    type: 'float64',
    params: { x: { dims: [3, 5, 2] } },
    build: (g, p) => projectToScalar(g, 'float64', g.op('Slice', [p.x!, ints(g, [1, -4]), ints(g, [3, 99]), ints(g, [0, 1])])),
  });
});

test('autodiff: Where sends the gradient to the selected branch only; Cast passes it to floats only', async () => {
  const cond = new ort.Tensor('bool', Uint8Array.from([1, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1]), [3, 4]);
  await checkGradients('where', {
    type: 'float64',
    params: { a: { dims: [3, 4] }, b: { dims: [4] } },
    feeds: { cond },
    build: (g, p) => projectToScalar(g, 'float64', g.op('Where', [g.input('cond', 'bool', [3, 4]), p.a!, p.b!])),
  });
  const ids = new ort.Tensor('int32', Int32Array.from([2, 0, 1]), [3]);
  await checkGradients('cast', {
    type: 'float32',
    params: { x: { dims: [3, 4] }, table: { dims: [3, 4] } },
    feeds: { ids },
    build: (g, p) => {
      const wide = g.op('Tanh', [g.op('Cast', [p.x!], { to: DataType.float64 })]);
      const narrow = g.op('Cast', [wide], { to: DataType.float32 });
      const rows = g.op('Gather', [p.table!, g.op('Cast', [g.input('ids', 'int32', [3])], { to: DataType.int64 })]);
      return projectToScalar(g, 'float32', g.op('Mul', [narrow, rows]));
    },
  });
});

test('autodiff: ONNX LayerNormalization (float32 statistics reused, float64 recomputed) matches finite differences', async () => {
  for (const type of ['float32', 'float64'] as const) {
    await checkGradients(`layernorm-${type}`, {
      type,
      params: { x: { dims: [2, 3, 5] }, scale: { dims: [5] }, bias: { dims: [5] } },
      build: (g, p) => projectToScalar(g, type, g.op('LayerNormalization', [p.x!, p.scale!, p.bias!], { axis: -1, epsilon: { float: 1e-5 } })),
    });
  }
});

test('autodiff: fused softmax cross-entropy (class ids and one-hot targets) matches finite differences and the formula', async () => {
  const labels = new ort.Tensor('int64', BigInt64Array.from([2n, 0n, 1n, 2n]), [4]);
  const res = await checkGradients('ce-ids', {
    type: 'float64',
    params: { x: { dims: [4, 3] }, w: { dims: [3, 3] } },
    feeds: { labels },
    build: (g, p) => softmaxCrossEntropy(g, g.op('MatMul', [p.x!, p.w!]), g.input('labels', 'int64', [4])),
  });
  assert.ok(res.loss > 0);
  const onehot = new ort.Tensor('float64', Float64Array.from([0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1]), [4, 3]);
  const res2 = await checkGradients('ce-onehot', {
    type: 'float64',
    params: { x: { dims: [4, 3] }, w: { dims: [3, 3] } },
    feeds: { onehot },
    build: (g, p) => softmaxCrossEntropy(g, g.op('MatMul', [p.x!, p.w!]), g.input('onehot', 'float64', [4, 3])),
  });
  assert.ok(Math.abs(res.loss - res2.loss) < 1e-12, 'ids and one-hot give the same loss');
  // The fused rule emits no LogSoftmax gradient (Exp of the log-probabilities is its softmax).
  assert.equal(res.g.nodes.filter((n) => n.op === 'LogSoftmax').length, 1);
  // Dynamic batch: the batch size comes from Shape at runtime.
  const g = new GraphBuilder('ce-dynamic');
  const logits = g.input('logits', 'float32', ['batch', 3]);
  const loss = softmaxCrossEntropy(g, logits, g.input('labels', 'int64', ['batch']));
  addGradients(g, { loss, params: [logits] });
  const s = await ort.InferenceSession.create(g.toBytes(), SESSION_OPTS);
  const z = [1, 2, 3, 0, 0, 0];
  const out = await s.run({
    logits: new ort.Tensor('float32', Float32Array.from(z), [2, 3]),
    labels: new ort.Tensor('int64', BigInt64Array.from([2n, 1n]), [2]),
  });
  const e = [Math.exp(1), Math.exp(2), Math.exp(3)],
    sum = e[0]! + e[1]! + e[2]!;
  const want = [e[0]! / sum / 2, e[1]! / sum / 2, (e[2]! / sum - 1) / 2, 1 / 6, (1 / 3 - 1) / 2, 1 / 6];
  const got = out['grad/logits']!.data as Float32Array;
  want.forEach((w, i) => assert.ok(Math.abs(got[i]! - w) < 1e-6, `grad[${i}] ${got[i]} vs ${w}`));
  assert.ok(Math.abs(Number(out.loss!.data[0]) - -(Math.log(e[2]! / sum) + Math.log(1 / 3)) / 2) < 1e-6);
});

test('autodiff: fused distillation loss (hard + T^2 KL to the teacher) matches finite differences and a float64 loop', async () => {
  const B = 4,
    C = 3,
    T = 2.5;
  const labels = [2, 0, 1, 0];
  const hard = [0.3, 0.3, 0.3, 0]; // the last row is transfer text: soft term only
  const soft = [0.7, 0.7, 0.7, 1];
  const teacher = [1.5, -0.5, 2, 0.1, 0.2, -1, -2, 3, 0.5, 0.9, 0.8, -0.4];
  const teacherLogProbs = teacher.map((_, i) => {
    const r = Math.floor(i / C),
      row = teacher.slice(r * C, r * C + C).map((z) => z / T);
    const m = Math.max(...row),
      lse = m + Math.log(row.reduce((a, z) => a + Math.exp(z - m), 0));
    return teacher[i]! / T - lse;
  });
  const feeds = {
    labels: new ort.Tensor('int64', BigInt64Array.from(labels.map(BigInt)), [B]),
    tlp: new ort.Tensor('float64', Float64Array.from(teacherLogProbs), [B, C]),
    hard: new ort.Tensor('float64', Float64Array.from(hard), [B]),
    soft: new ort.Tensor('float64', Float64Array.from(soft), [B]),
  };
  const build = (g: GraphBuilder, logits: string) =>
    distillationLoss(g, logits, {
      labels: g.input('labels', 'int64', [B]),
      teacherLogProbs: g.input('tlp', 'float64', [B, C]),
      hardWeight: g.input('hard', 'float64', [B]),
      softWeight: g.input('soft', 'float64', [B]),
      temperature: T,
    });
  await checkGradients('distill', {
    type: 'float64',
    params: { x: { dims: [B, 5] }, w: { dims: [5, C] } },
    feeds,
    samples: 20,
    build: (g, p) => build(g, g.op('MatMul', [p.x!, p.w!])),
  });
  // Loss and logits gradient against a plain float64 loop over the formula.
  const g = new GraphBuilder('distill-direct');
  const logits = g.input('logits', 'float64', [B, C]);
  const loss = build(g, logits);
  const { grads } = addGradients(g, { loss, params: [logits] });
  const s = await ort.InferenceSession.create(g.toBytes(), SESSION_OPTS);
  const z = [0.3, -1.2, 0.8, 2, 0.1, -0.3, -0.7, 0.4, 1.1, 0, 0.5, -0.5];
  const out = await s.run({ ...feeds, logits: new ort.Tensor('float64', Float64Array.from(z), [B, C]) });
  const logSoftmax = (row: number[]) => {
    const m = Math.max(...row),
      lse = m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
    return row.map((v) => v - lse);
  };
  let want = 0;
  const wantGrad: number[] = [];
  for (let b = 0; b < B; b++) {
    const row = z.slice(b * C, b * C + C);
    const lp = logSoftmax(row),
      lpT = logSoftmax(row.map((v) => v / T));
    const tl = teacherLogProbs.slice(b * C, b * C + C);
    let kl = 0;
    for (let c = 0; c < C; c++) kl += Math.exp(tl[c]!) * (tl[c]! - lpT[c]!);
    want += (hard[b]! * -lp[labels[b]!]! + soft[b]! * T * T * kl) / B;
    for (let c = 0; c < C; c++) {
      wantGrad.push((hard[b]! * (Math.exp(lp[c]!) - (c === labels[b] ? 1 : 0)) + soft[b]! * T * (Math.exp(lpT[c]!) - Math.exp(tl[c]!))) / B);
    }
  }
  assert.ok(Math.abs(Number(out.loss!.data[0]) - want) < 1e-12, `loss ${out.loss!.data[0]} vs ${want}`);
  const got = out[grads.get(logits)!]!.data as Float64Array;
  wantGrad.forEach((w, i) => assert.ok(Math.abs(got[i]! - w) < 1e-12, `grad[${i}] ${got[i]} vs ${w}`));
  // Student equal to the teacher and no hard term: the KL and its gradient vanish.
  const same = await s.run({
    ...feeds,
    hard: new ort.Tensor('float64', new Float64Array(B), [B]),
    logits: new ort.Tensor('float64', Float64Array.from(teacher), [B, C]),
  });
  assert.ok(Math.abs(Number(same.loss!.data[0])) < 1e-12);
  for (const v of same[grads.get(logits)!]!.data as Float64Array) assert.ok(Math.abs(v) < 1e-12);
  await s.release();
});

test('autodiff: Dropout in training mode scales the gradient by mask / (1 - ratio)', async () => {
  const g = new GraphBuilder('dropout');
  const x = g.input('x', 'float32', [4, 8]);
  const y = g.op('Dropout', [x, constant(g, 'float32', 0.25), constant(g, 'bool', 1)], { seed: 5 });
  const loss = g.op('ReduceSum', [g.op('Mul', [y, y])], { keepdims: 0 });
  const res = addGradients(g, { loss, params: [x] });
  const dropNode = g.nodes.find((n) => n.op === 'Dropout')!;
  g.output(dropNode.outputs[0]!, 'float32', [4, 8]);
  g.output(dropNode.outputs[1]!, 'bool', [4, 8]);
  const s = await ort.InferenceSession.create(g.toBytes(), SESSION_OPTS);
  const xs = Float32Array.from({ length: 32 }, (_, i) => (i % 7) - 3);
  const out = await s.run({ x: new ort.Tensor('float32', xs, [4, 8]) });
  const mask = out[dropNode.outputs[1]!]!.data as Uint8Array;
  const yv = out[dropNode.outputs[0]!]!.data as Float32Array;
  const grad = out[res.grads.get(x)!]!.data as Float32Array;
  let dropped = 0;
  for (let i = 0; i < 32; i++) {
    dropped += mask[i] ? 0 : 1;
    const want = mask[i] ? (2 * yv[i]!) / 0.75 : 0;
    assert.ok(Math.abs(grad[i]! - want) < 1e-5, `grad[${i}] = ${grad[i]}, want ${want}`);
  }
  assert.ok(dropped > 0 && dropped < 32, 'some but not all entries dropped');
});

test('autodiff: only the part of the graph between the params and the loss is differentiated', async () => {
  const g = new GraphBuilder('prune');
  const x = g.input('x', 'float64', [2, 3]);
  const w = g.input('w', 'float64', [2, 3]);
  const frozen = g.op('Tanh', [x]); // x is not a param: no gradient for it
  const dead = g.op('Exp', [w]); // does not reach the loss
  g.output(dead, 'float64', [2, 3]);
  const z = g.input('z', 'float64', [3]); // a param the loss ignores
  // x*x + x shape: w used twice, gradients summed.
  const loss = g.op('ReduceSum', [g.op('Add', [g.op('Mul', [frozen, g.op('Mul', [w, w])]), w])], { keepdims: 0 });
  const before = g.nodes.length;
  const res = addGradients(g, { loss, params: [w, z] });
  const backward = g.nodes.slice(before);
  assert.ok(!backward.some((n) => n.inputs.includes(x) || n.inputs.includes(dead)), 'no backward node reads x or the dead branch');
  assert.deepEqual(res.unreachable, ['z']);
  const s = await ort.InferenceSession.create(g.toBytes(), SESSION_OPTS);
  const xs = Float64Array.from([0.1, -0.2, 0.3, 0.4, -0.5, 0.6]),
    ws = Float64Array.from([1, 2, -1, 0.5, -2, 3]);
  const out = await s.run({
    x: new ort.Tensor('float64', xs, [2, 3]),
    w: new ort.Tensor('float64', ws, [2, 3]),
    z: new ort.Tensor('float64', new Float64Array(3), [3]),
  });
  const gw = out['grad/w']!.data as Float64Array;
  for (let i = 0; i < 6; i++) assert.ok(Math.abs(gw[i]! - (2 * Math.tanh(xs[i]!) * ws[i]! + 1)) < 1e-12);
  assert.deepEqual(Array.from(out['grad/z']!.data as Float64Array), [0, 0, 0]);
});

test('autodiff: promoteToInputs turns initializers into inputs; a non-input param is refused', () => {
  const g = new GraphBuilder('promote');
  const x = g.input('x', 'float32', [2, 3]);
  const w = g.initializer('w', Float32Array.from([1, 2, 3, 4, 5, 6]), [3, 2]);
  const loss = g.op('ReduceSum', [g.op('MatMul', [x, w])], { keepdims: 0 });
  assert.throws(() => addGradients(g, { loss, params: [w] }), /promoteToInputs/);
  const taken = promoteToInputs(g, [w]);
  assert.deepEqual(Array.from(taken.get('w')!.data as Float32Array), [1, 2, 3, 4, 5, 6]);
  assert.ok(!g.initializers.has('w'));
  assert.deepEqual(g.inputs.find((v) => v.name === 'w')?.shape, [3, 2]);
  const res = addGradients(g, { loss, params: [w] });
  assert.equal(res.grads.get('w'), 'grad/w');
});

// ---------- a whole transformer encoder block ----------

const BLOCK = { batch: 2, seq: 5, width: 8, heads: 2, ffn: 12, classes: 3 };

/** Pre-LN encoder block, masked mean pool, tanh, linear head, softmax cross-entropy. */
function buildClassifier(
  g: GraphBuilder,
  type: FloatType,
  opts: { layerNorm: 'decomposed' | 'fused'; activation: 'gelu' | 'gelu-tanh' | 'relu'; batch?: Dim; seq?: Dim },
) {
  const { width, heads, ffn, classes } = BLOCK;
  const { batch, seq } = { batch: opts.batch ?? BLOCK.batch, seq: opts.seq ?? BLOCK.seq };
  const w = declareParams(g, type, 'l0.', encoderBlockShapes(width, ffn));
  const head = declareParams(g, type, 'head.', { pool_w: [width, width], pool_b: [width], w: [width, classes], b: [classes] } as Record<string, Dim[]>);
  const x = g.input('hidden', type, [batch, seq, width]);
  const mask = g.input('attention_mask', 'int64', [batch, seq]);
  const labels = g.input('labels', 'int64', [batch]);
  const h = encoderBlock(g, type, x, w, { heads, width, keyMask: attentionKeyMask(g, mask), layerNorm: opts.layerNorm, activation: opts.activation });
  const pooled = g.op('Tanh', [linear(g, maskedMeanPool(g, type, h, mask), head.pool_w!, head.pool_b!)]);
  const logits = g.identity(linear(g, pooled, head.w!, head.b!), 'logits');
  g.output(logits, type, [batch, classes]);
  return { loss: softmaxCrossEntropy(g, logits, labels), params: [...Object.values(w), ...Object.values(head)] as string[], x };
}

function blockFeeds(type: FloatType, hidden?: boolean) {
  const { batch, seq, width } = BLOCK;
  const rnd = mulberry32(99);
  const feeds: Record<string, ort.Tensor> = {
    attention_mask: new ort.Tensor('int64', BigInt64Array.from([1n, 1n, 1n, 1n, 1n, 1n, 1n, 1n, 0n, 0n]), [batch, seq]),
    labels: new ort.Tensor('int64', BigInt64Array.from([2n, 0n]), [batch]),
  };
  if (hidden !== false)
    feeds.hidden = new ort.Tensor(
      type,
      floatArray(
        type,
        Array.from({ length: batch * seq * width }, () => rnd() * 2 - 1),
      ),
      [batch, seq, width],
    );
  return feeds;
}

function blockParamSpecs(): Record<string, ParamSpec> {
  const { width, ffn, classes } = BLOCK;
  const specs: Record<string, ParamSpec> = {};
  for (const [k, dims] of Object.entries(encoderBlockShapes(width, ffn))) {
    specs[`l0.${k}`] = { dims, init: k.endsWith('Scale') ? (r) => 1 + 0.2 * (r() - 0.5) : (r) => (r() * 2 - 1) * 0.5 };
  }
  Object.assign(specs, {
    'head.pool_w': { dims: [width, width] },
    'head.pool_b': { dims: [width] },
    'head.w': { dims: [width, classes] },
    'head.b': { dims: [classes] },
  });
  return specs;
}

test('autodiff: a pre-LN transformer block with padding mask, pooling, tanh and linear head matches finite differences for every parameter', async () => {
  const specs = blockParamSpecs();
  const res = await checkGradients('encoder-block', {
    type: 'float64',
    params: specs,
    feeds: blockFeeds('float64'),
    samples: 6,
    seed: 3,
    declaredByBuild: true,
    build: (g) => buildClassifier(g, 'float64', { layerNorm: 'decomposed', activation: 'gelu-tanh' }).loss,
  });
  assert.equal(res.grads.size, 20);
  assert.ok(res.checked >= 20 * 3);
  // A padded key must not influence anything: its hidden state's gradient is zero.
  const g = new GraphBuilder('block-pad');
  const built = buildClassifier(g, 'float64', { layerNorm: 'decomposed', activation: 'relu' });
  const r2 = addGradients(g, { loss: built.loss, params: [built.x] });
  const s = await ort.InferenceSession.create(g.toBytes(), SESSION_OPTS);
  const rnd = mulberry32(5);
  const feeds = blockFeeds('float64');
  for (const [name, spec] of Object.entries(specs))
    feeds[name] = new ort.Tensor(
      'float64',
      Float64Array.from({ length: count(spec.dims) }, () => rnd() - 0.5),
      spec.dims,
    );
  const gx = (await s.run(feeds))[r2.grads.get(built.x)!]!.data as Float64Array;
  const { seq, width } = BLOCK;
  for (const t of [3, 4]) for (let k = 0; k < width; k++) assert.equal(gx[(seq + t) * width + k], 0, 'padded tokens get no gradient');
  assert.ok(gx.slice(0, seq * width).some((v) => Math.abs(v) > 1e-6));
});

test('autodiff: the float32 block (fused LayerNormalization, exact GELU) agrees with float64 gradients', async (t) => {
  const specs = blockParamSpecs();
  const rnd = mulberry32(11);
  const values = new Map(Object.entries(specs).map(([n, s]) => [n, Array.from({ length: count(s.dims) }, () => (s.init ? s.init(rnd) : rnd() - 0.5))]));
  const run = async (type: FloatType, layerNorm: 'decomposed' | 'fused', activation: 'gelu' | 'gelu-tanh') => {
    const g = new GraphBuilder(`block-${type}`);
    const built = buildClassifier(g, type, { layerNorm, activation });
    const res = addGradients(g, { loss: built.loss, params: built.params });
    const s = await ort.InferenceSession.create(g.toBytes(), SESSION_OPTS);
    const feeds = blockFeeds(type);
    for (const [n, spec] of Object.entries(specs)) feeds[n] = new ort.Tensor(type, floatArray(type, values.get(n)!), spec.dims);
    const out = await s.run(feeds);
    return new Map(built.params.map((p) => [p, out[res.grads.get(p)!]!.data as Float32Array | Float64Array]));
  };
  // Exact GELU needs Erf, which ONNX Runtime runs in float32 only: compare the two float32 variants
  // (fused vs decomposed LN) and the tanh-GELU float32 fused graph against float64.
  const f64 = await run('float64', 'decomposed', 'gelu-tanh');
  const f32 = await run('float32', 'fused', 'gelu-tanh');
  const f32erfFused = await run('float32', 'fused', 'gelu');
  const f32erfDecomposed = await run('float32', 'decomposed', 'gelu');
  let worst = 0;
  for (const [p, ref] of f64) {
    const scale = Math.max(...Array.from(ref, Math.abs));
    const a = f32.get(p)!,
      b = f32erfFused.get(p)!,
      c = f32erfDecomposed.get(p)!;
    for (let i = 0; i < ref.length; i++) {
      // l0.bk's true gradient is zero (softmax ignores a per-query constant): rounding noise only.
      if (p !== 'l0.bk') worst = Math.max(worst, Math.abs(a[i]! - ref[i]!) / scale);
      assert.ok(Math.abs(a[i]! - ref[i]!) <= 1e-4 * scale + 1e-6, `${p}[${i}]: float32 ${a[i]} vs float64 ${ref[i]}`);
      assert.ok(Math.abs(b[i]! - c[i]!) <= 1e-4 * Math.max(...Array.from(c, Math.abs)) + 1e-6, `${p}[${i}]: fused LN ${b[i]} vs decomposed ${c[i]}`);
    }
  }
  t.diagnostic(`float32 vs float64 gradients: worst difference ${worst.toExponential(2)} of each tensor's largest entry`);
  assert.ok(worst < 1e-4, `worst relative difference ${worst}`);
});

test("autodiff: with symbolic batch and sequence axes the block gives the static graph's gradients, at two sizes", async () => {
  const specs = blockParamSpecs();
  const rnd = mulberry32(17);
  const values = new Map(Object.entries(specs).map(([n, s]) => [n, Float64Array.from({ length: count(s.dims) }, () => (s.init ? s.init(rnd) : rnd() - 0.5))]));
  const gradsOf = async (batch: Dim, seq: Dim, feeds: Record<string, ort.Tensor>) => {
    const g = new GraphBuilder('block-dims');
    const built = buildClassifier(g, 'float64', { layerNorm: 'decomposed', activation: 'gelu-tanh', batch, seq });
    const res = addGradients(g, { loss: built.loss, params: built.params });
    const s = await ort.InferenceSession.create(g.toBytes(), SESSION_OPTS);
    for (const [n, spec] of Object.entries(specs)) feeds[n] = new ort.Tensor('float64', values.get(n)!, spec.dims);
    const out = await s.run(feeds);
    return {
      shapeNodes: g.nodes.filter((n) => n.op === 'Shape').length,
      grads: new Map(built.params.map((p) => [p, out[res.grads.get(p)!]!.data as Float64Array])),
    };
  };
  const feeds = blockFeeds('float64');
  const fixed = await gradsOf(BLOCK.batch, BLOCK.seq, { ...feeds });
  const dynamic = await gradsOf('batch', 'seq', { ...feeds });
  assert.equal(fixed.shapeNodes, 0, 'a static graph needs no runtime Shape nodes');
  assert.ok(dynamic.shapeNodes > 0);
  for (const [p, ref] of fixed.grads) {
    const got = dynamic.grads.get(p)!;
    for (let i = 0; i < ref.length; i++) assert.ok(Math.abs(got[i]! - ref[i]!) < 1e-12, `${p}[${i}]`);
  }
  // A different bucket through the same dynamic graph: [1 x 3], no padding, also finite and non-zero.
  const one = {
    hidden: new ort.Tensor(
      'float64',
      Float64Array.from({ length: 3 * BLOCK.width }, (_, i) => Math.sin(i)),
      [1, 3, BLOCK.width],
    ),
    attention_mask: new ort.Tensor('int64', BigInt64Array.from([1n, 1n, 1n]), [1, 3]),
    labels: new ort.Tensor('int64', BigInt64Array.from([1n]), [1]),
  };
  const small = await gradsOf('batch', 'seq', one);
  assert.ok([...small.grads.values()].every((gr) => gr.every(Number.isFinite)));
  assert.ok(small.grads.get('l0.w1')!.some((v) => v !== 0));
});

// ---------- optimizer ----------

test('optimizer: AdamW matches a plain loop of the AdamW formula, with clipping, warmup/decay and no decay on biases', () => {
  const rnd = mulberry32(21);
  const shapes: Record<string, number> = { 'l0.w1': 50, 'l0.b1': 7, 'l0.ln1Scale': 5 };
  const params = new Map(Object.entries(shapes).map(([n, k]) => [n, Float32Array.from({ length: k }, () => rnd() - 0.5)]));
  const ref = new Map([...params].map(([n, v]) => [n, { p: Float64Array.from(v), m: new Float64Array(v.length), v: new Float64Array(v.length) }]));
  const schedule = linearWarmupDecay({ lr: 0.01, warmupSteps: 2, totalSteps: 6 });
  const [b1, b2, eps, wd, maxNorm] = [0.9, 0.98, 1e-6, 0.1, 0.5];
  const opt = new AdamW(params, { lr: 0.01, beta1: b1, beta2: b2, eps, weightDecay: wd, maxGradNorm: maxNorm, schedule });
  assert.ok(opt.decays('l0.w1') && !opt.decays('l0.b1') && !opt.decays('l0.ln1Scale'));
  for (let t = 1; t <= 5; t++) {
    const grads = new Map([...params].map(([n, v]) => [n, Float32Array.from({ length: v.length }, () => (rnd() - 0.5) * 0.4)]));
    const report = opt.step(grads);
    // The formula, written out.
    let norm = 0;
    for (const g of grads.values()) for (const x of g) norm += x * x;
    norm = Math.sqrt(norm);
    const clip = norm > maxNorm ? maxNorm / (norm + 1e-6) : 1;
    const lr = schedule(t - 1);
    assert.equal(report.lr, lr);
    assert.ok(Math.abs(report.gradNorm - norm) < 1e-9 * Math.max(1, norm));
    for (const [n, s] of ref) {
      const g = grads.get(n)!;
      const decay = n === 'l0.w1' ? wd : 0;
      for (let i = 0; i < s.p.length; i++) {
        const gi = g[i]! * clip;
        s.m[i] = b1 * s.m[i]! + (1 - b1) * gi;
        s.v[i] = b2 * s.v[i]! + (1 - b2) * gi * gi;
        const mhat = s.m[i]! / (1 - b1 ** t),
          vhat = s.v[i]! / (1 - b2 ** t);
        s.p[i] = s.p[i]! - lr * decay * s.p[i]! - (lr * mhat) / (Math.sqrt(vhat) + eps);
      }
      const got = params.get(n)!;
      for (let i = 0; i < got.length; i++) assert.ok(Math.abs(got[i]! - s.p[i]!) < 2e-6, `${n}[${i}] step ${t}: ${got[i]} vs ${s.p[i]}`);
    }
  }
});

test('optimizer: schedule warms up linearly then decays linearly to zero; default no-decay names', () => {
  const f = linearWarmupDecay({ lr: 1, warmupSteps: 4, totalSteps: 12 });
  assert.deepEqual([0, 1, 2, 3, 4, 8, 12, 20].map(f), [0.25, 0.5, 0.75, 1, 1, 0.5, 0, 0]);
  for (const n of ['l0.bq', 'l0.b1', 'encoder.layer.0.output.dense.bias', 'ln_f.weight', 'l0.ln1Scale', 'model.norm.weight', 'LayerNorm.gamma'])
    assert.ok(isNoDecayParam(n), n);
  for (const n of ['l0.wq', 'l0.w1', 'encoder.layer.0.output.dense.weight', 'embed_tokens.weight', 'head.w', 'lm_head.weight'])
    assert.ok(!isNoDecayParam(n), n);
});

// ---------- training through GradientSession ----------

async function classifierSession(type: 'float32', width: number, heads: number, ffn: number, batch: number, seq: number, classes: number) {
  const g = new GraphBuilder('train');
  const w = declareParams(g, type, 'l0.', encoderBlockShapes(width, ffn));
  const head = declareParams(g, type, 'head.', { w: [width, classes], b: [classes] } as Record<string, Dim[]>);
  const x = g.input('hidden', type, [batch, seq, width]);
  const mask = g.input('attention_mask', 'int64', [batch, seq]);
  const h = encoderBlock(g, type, x, w, { heads, width, keyMask: attentionKeyMask(g, mask), layerNorm: 'fused', activation: 'gelu' });
  const pooled = g.op('Tanh', [maskedMeanPool(g, type, h, mask)]);
  const logits = g.identity(linear(g, pooled, head.w!, head.b!), 'logits');
  g.output(logits, type, [batch, classes]);
  const loss = softmaxCrossEntropy(g, logits, g.input('labels', 'int64', [batch]));
  const params = [...Object.values(w), ...Object.values(head)] as string[];
  const res = addGradients(g, { loss, params });
  const forward = pruneToOutputs(g, ['loss', 'logits']);
  const rnd = mulberry32(3);
  const values = new Map<string, ParamTensor>();
  for (const p of params) {
    const dims = g.inputs.find((v) => v.name === p)!.shape as number[];
    const fanIn = dims.length === 2 ? dims[0]! : 0;
    const init = p.endsWith('Scale') ? () => 1 : fanIn ? () => (rnd() * 2 - 1) * Math.sqrt(3 / fanIn) : () => 0;
    values.set(p, { data: Float32Array.from({ length: count(dims) }, init), dims });
  }
  const session = await GradientSession.create(g, { params, loss, grads: res.grads, intraOpNumThreads: 2, forwardModel: forward });
  const rndData = mulberry32(4);
  const feeds = {
    hidden: new ort.Tensor(
      'float32',
      Float32Array.from({ length: batch * seq * width }, () => rndData() * 2 - 1),
      [batch, seq, width],
    ),
    attention_mask: new ort.Tensor(
      'int64',
      BigInt64Array.from({ length: batch * seq }, (_, i) => (i % seq < seq - ((i / seq) % 3) ? 1n : 0n)),
      [batch, seq],
    ),
    labels: new ort.Tensor(
      'int64',
      BigInt64Array.from({ length: batch }, (_, i) => BigInt(i % classes)),
      [batch],
    ),
  };
  return { session, values, feeds, backwardNodes: res.backwardNodes, nodes: g.nodes.length, forwardNodes: forward.nodes.length };
}

test('training: AdamW on a tiny encoder classifier drives the loss on a fixed batch below 1% of its start', async (t) => {
  const { session, values, feeds } = await classifierSession('float32', 16, 2, 32, 8, 6, 3);
  const opt = new AdamW(new Map([...values].map(([n, p]) => [n, p.data])), { lr: 1e-2, weightDecay: 0.01 });
  const first = (await session.step(feeds, values)).loss;
  let last = first,
    steps = 0;
  while (steps < 60 && last > first * 0.005) {
    const { loss, grads } = await session.step(feeds, values);
    last = loss;
    opt.step(grads);
    steps++;
  }
  const after = (await session.forward(feeds, values, ['loss'])).loss!.data[0] as number;
  t.diagnostic(`loss ${first.toFixed(4)} -> ${after.toExponential(2)} in ${steps} AdamW steps`);
  assert.ok(after < first * 0.01, `loss ${first} -> ${after} after ${steps} steps`);
  await session.release();
});

test('training: speed of one 384-wide encoder layer + head, batch 32 x 64 tokens (forward+backward, AdamW)', async (t) => {
  const { session, values, feeds, backwardNodes, nodes, forwardNodes } = await classifierSession('float32', 384, 12, 1536, 32, 64, 2);
  const opt = new AdamW(new Map([...values].map(([n, p]) => [n, p.data])), { lr: 1e-4 });
  const steps = Number(process.env.SLIM_AUTODIFF_BENCH_STEPS ?? 4);
  const warmup = 3; // ONNX Runtime sizes its memory arena and V8 compiles the update loop on the first runs
  let runMs = 0,
    adamMs = 0,
    fwdMs = 0;
  const losses: number[] = [];
  for (let i = 0; i < warmup + steps; i++) {
    const t0 = performance.now();
    const { loss, grads } = await session.step(feeds, values);
    const t1 = performance.now();
    opt.step(grads);
    const t2 = performance.now();
    losses.push(loss);
    if (i >= warmup) {
      runMs += t1 - t0;
      adamMs += t2 - t1;
    }
  }
  // Validation runs between epochs, not between steps: time the forward-only session on its own.
  for (let i = 0; i < warmup + steps; i++) {
    const t0 = performance.now();
    const fwd = await session.forward(feeds, values, ['loss', 'logits']);
    if (i >= warmup) fwdMs += performance.now() - t0;
    assert.deepEqual(fwd.logits!.dims, [32, 2]);
  }
  const params = [...values.values()].reduce((a, p) => a + p.data.length, 0);
  t.diagnostic(`graph: ${nodes} nodes (${backwardNodes} backward; pruned forward graph ${forwardNodes}), ${params} parameters`);
  t.diagnostic(
    `forward+backward ${(runMs / steps).toFixed(1)} ms/step, AdamW ${(adamMs / steps).toFixed(1)} ms/step, forward-only session ${(fwdMs / steps).toFixed(1)} ms`,
  );
  assert.ok(forwardNodes < nodes / 2, 'the forward-only graph carries no backward nodes');
  assert.ok(losses.every(Number.isFinite));
  assert.ok(losses[losses.length - 1]! < losses[0]!, `loss falls: ${losses.join(', ')}`);
  await session.release();
});
