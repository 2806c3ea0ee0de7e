// Vector-Jacobian product rules, one per forward op: given the gradients of a node's outputs,
// emit the nodes that compute the gradients of the inputs the caller wants. Every rule uses
// standard ONNX ops (opset 13 or later semantics, so ReduceSum takes its axes as an input).
import type { Dim, GraphNode } from '../graph.js';
import type { GradEmitter } from './emitter.js';
import { attrFloat, attrInt, attrInts, sliceRange } from './shapes.js';

/** Input gradients (undefined: none) for the given output gradients (undefined: output unused). */
export type VjpRule = (e: GradEmitter, node: GraphNode, gys: (string | undefined)[], wants: boolean[]) => (string | undefined)[];

const input = (node: GraphNode, i: number): string => node.inputs[i]!;
const output = (node: GraphNode, i = 0): string => node.outputs[i]!;

function normAxis(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}

/** Constant int values of a node input, or a clear error: backward rules need them statically. */
function constInts(e: GradEmitter, node: GraphNode, i: number, what: string): number[] {
  const v = e.facts.get(input(node, i)).value;
  if (!v || !v.every((d) => typeof d === 'number')) throw new Error(`autodiff: ${node.op} ${node.name}: ${what} must be a constant`);
  return v as number[];
}

function reductionAxes(e: GradEmitter, node: GraphNode, rank: number): number[] {
  const fromAttr = attrInts(node, 'axes');
  if (fromAttr) return fromAttr.map((a) => normAxis(a, rank));
  if (node.inputs.length > 1 && node.inputs[1] !== '') {
    const v = constInts(e, node, 1, 'axes');
    if (v.length > 0) return v.map((a) => normAxis(a, rank));
  }
  return attrInt(node, 'noop_with_empty_axes', 0) ? [] : [...Array(rank).keys()];
}

/** The gradient of a reduction's input: gy restored to the input's rank and expanded over the reduced axes. */
function expandReduced(e: GradEmitter, node: GraphNode, gy: string, axes: number[]): string {
  const x = input(node, 0);
  const keep = attrInt(node, 'keepdims', 1) === 1;
  const restored = keep || axes.length === e.rank(x) ? gy : e.op('Unsqueeze', [gy, e.ints(axes)]);
  return e.op('Expand', [restored, e.shapeOf(x)]);
}

function swapLastTwo(e: GradEmitter, x: string, rank: number): string {
  const perm = [...Array(rank).keys()];
  [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1]!, perm[rank - 2]!];
  return e.op('Transpose', [x], { perm });
}

const unaryFromOutput =
  (f: (e: GradEmitter, gy: string, y: string, x: string) => string): VjpRule =>
  (e, node, [gy]) => [f(e, gy!, output(node), input(node, 0))];

/** Elementwise binary ops with broadcasting: each operand's gradient is summed back to its shape. */
const binary =
  (
    fa: ((e: GradEmitter, gy: string, node: GraphNode) => string) | undefined,
    fb: ((e: GradEmitter, gy: string, node: GraphNode) => string) | undefined,
  ): VjpRule =>
  (e, node, [gy], wants) => {
    const ys = e.shape(output(node));
    return [
      wants[0] && fa ? e.unbroadcast(fa(e, gy!, node), ys, input(node, 0)) : undefined,
      wants[1] && fb ? e.unbroadcast(fb(e, gy!, node), ys, input(node, 1)) : undefined,
    ];
  };

const reshapeBack: VjpRule = (e, node, [gy]) => [e.op('Reshape', [gy!, e.shapeOf(input(node, 0))])];

export const VJP_RULES: Record<string, VjpRule> = {
  Identity: (_e, _node, [gy]) => [gy],
  Neg: (e, _node, [gy]) => [e.op('Neg', [gy!])],
  Add: binary(
    (_e, gy) => gy,
    (_e, gy) => gy,
  ),
  Sub: binary(
    (_e, gy) => gy,
    (e, gy) => e.op('Neg', [gy]),
  ),
  Mul: binary(
    (e, gy, n) => e.op('Mul', [gy, input(n, 1)]),
    (e, gy, n) => e.op('Mul', [gy, input(n, 0)]),
  ),
  // d(a/b)/db = -a/b^2 = -y/b
  Div: binary(
    (e, gy, n) => e.op('Div', [gy, input(n, 1)]),
    (e, gy, n) => e.op('Neg', [e.op('Div', [e.op('Mul', [gy, output(n)]), input(n, 1)])]),
  ),
  Sum: (e, node, [gy], wants) => node.inputs.map((x, i) => (wants[i] ? e.unbroadcast(gy!, e.shape(output(node)), x) : undefined)),
  Pow: binary(
    (e, gy, n) => {
      const [a, b] = [input(n, 0), input(n, 1)];
      const bMinusOne = e.op('Sub', [b, e.scalar(a, 1)]);
      const bType = e.facts.get(b).type;
      // An integer exponent must match the base's type before it scales the gradient.
      const bF = bType === e.dtype(a) ? b : e.cast(b, e.dtype(a));
      return e.op('Mul', [gy, e.op('Mul', [bF, e.op('Pow', [a, bMinusOne])])]);
    },
    (e, gy, n) => e.op('Mul', [gy, e.op('Mul', [output(n), e.op('Log', [input(n, 0)])])]),
  ),
  Sqrt: unaryFromOutput((e, gy, y) => e.op('Div', [e.op('Mul', [gy, e.scalar(y, 0.5)]), y])),
  Reciprocal: unaryFromOutput((e, gy, y) => e.op('Neg', [e.op('Mul', [gy, e.op('Mul', [y, y])])])),
  Exp: unaryFromOutput((e, gy, y) => e.op('Mul', [gy, y])),
  Log: unaryFromOutput((e, gy, _y, x) => e.op('Div', [gy, x])),
  Tanh: unaryFromOutput((e, gy, y) => e.op('Mul', [gy, e.op('Sub', [e.scalar(y, 1), e.op('Mul', [y, y])])])),
  Sigmoid: unaryFromOutput((e, gy, y) => e.op('Mul', [gy, e.op('Mul', [y, e.op('Sub', [e.scalar(y, 1), y])])])),
  Relu: unaryFromOutput((e, gy, _y, x) => e.op('Where', [e.op('Greater', [x, e.scalar(x, 0)]), gy, e.scalar(x, 0)])),
  // d erf(x)/dx = 2/sqrt(pi) exp(-x^2)
  Erf: unaryFromOutput((e, gy, _y, x) =>
    e.op('Mul', [gy, e.op('Mul', [e.scalar(x, 2 / Math.sqrt(Math.PI)), e.op('Exp', [e.op('Neg', [e.op('Mul', [x, x])])])])]),
  ),
  Cast: (e, node, [gy]) => {
    const from = e.facts.get(input(node, 0)).type;
    if (from === 'float32' || from === 'float64' || from === 'float16') {
      return [from === e.facts.get(output(node)).type ? gy : e.cast(gy!, from)];
    }
    return [undefined];
  },
  Softmax: (e, node, [gy]) => {
    const y = output(node);
    const axis = attrInt(node, 'axis', -1);
    const dot = e.reduceSum(e.op('Mul', [gy!, y]), [axis], true);
    return [e.op('Mul', [y, e.op('Sub', [gy!, dot])])];
  },
  LogSoftmax: (e, node, [gy]) => {
    const y = output(node);
    const axis = attrInt(node, 'axis', -1);
    const total = e.reduceSum(gy!, [axis], true);
    return [e.op('Sub', [gy!, e.op('Mul', [e.op('Exp', [y]), total])])];
  },
  ReduceSum: (e, node, [gy]) => {
    const x = input(node, 0);
    const axes = reductionAxes(e, node, e.rank(x));
    if (axes.length === 0) return [gy];
    return [expandReduced(e, node, gy!, axes)];
  },
  ReduceMean: (e, node, [gy]) => {
    const x = input(node, 0);
    const axes = reductionAxes(e, node, e.rank(x));
    if (axes.length === 0) return [gy];
    // Scale the small gradient before expanding it.
    const scaled = e.op('Div', [gy!, e.countOver(x, axes)]);
    return [expandReduced(e, node, scaled, axes)];
  },
  Reshape: reshapeBack,
  Squeeze: reshapeBack,
  Unsqueeze: reshapeBack,
  Flatten: reshapeBack,
  Transpose: (e, node, [gy]) => {
    const rank = e.rank(input(node, 0));
    const perm = attrInts(node, 'perm') ?? [...Array(rank).keys()].reverse();
    const inverse = new Array<number>(rank);
    perm.forEach((p, i) => (inverse[p] = i));
    return [e.op('Transpose', [gy!], { perm: inverse })];
  },
  Expand: (e, node, [gy]) => [e.unbroadcast(gy!, e.shape(output(node)), input(node, 0))],
  Where: (e, node, [gy], wants) => {
    const [c, a, b] = [input(node, 0), input(node, 1), input(node, 2)];
    const ys = e.shape(output(node));
    const zero = e.scalar(output(node), 0);
    return [
      undefined,
      wants[1] ? e.unbroadcast(e.op('Where', [c, gy!, zero]), ys, a) : undefined,
      wants[2] ? e.unbroadcast(e.op('Where', [c, zero, gy!]), ys, b) : undefined,
    ];
  },
  Concat: (e, node, [gy], wants) => {
    const rank = e.rank(output(node));
    const axis = normAxis(attrInt(node, 'axis', 0), rank);
    const sizes: Dim[] = node.inputs.map((x) => e.shape(x)[axis]!);
    const split = sizes.every((s) => typeof s === 'number')
      ? e.ints(sizes as number[])
      : e.op(
          'Concat',
          node.inputs.map((x) => e.op('Gather', [e.op('Shape', [x]), e.ints([axis])])),
          { axis: 0 },
        );
    const parts = e.g.node('Split', [gy!, split], { axis }, node.inputs.length);
    e.emitted++;
    return parts.map((p, i) => (wants[i] ? p : undefined));
  },
  Split: (e, node, gys) => {
    const axis = attrInt(node, 'axis', 0);
    const parts = node.outputs.map((y, i) => gys[i] ?? e.zerosLike(y));
    return [e.op('Concat', parts, { axis })];
  },
  Slice: (e, node, [gy]) => {
    // Pad the gradient back with zeros: needs constant bounds and static sizes on the sliced axes.
    const x = input(node, 0);
    const xs = e.shape(x);
    const starts = constInts(e, node, 1, 'starts');
    const ends = constInts(e, node, 2, 'ends');
    const axes = node.inputs[3] ? constInts(e, node, 3, 'axes') : starts.map((_, i) => i);
    const steps = node.inputs[4] ? constInts(e, node, 4, 'steps') : starts.map(() => 1);
    const pads = new Array<number>(2 * xs.length).fill(0);
    axes.forEach((ax, i) => {
      const a = normAxis(ax, xs.length);
      if (steps[i] !== 1) throw new Error(`autodiff: Slice ${node.name}: only step 1 is differentiable here`);
      const r = sliceRange(xs[a]!, starts[i]!, ends[i]!, 1);
      if (!r) throw new Error(`autodiff: Slice ${node.name}: axis ${a} of ${x} has symbolic size ${xs[a]}`);
      pads[a] = r.start;
      pads[a + xs.length] = (xs[a] as number) - r.start - r.count;
    });
    return [e.op('Pad', [gy!, e.ints(pads)])];
  },
  Gather: (e, node, [gy]) => {
    // Scatter-add the rows back: repeated indices (the same token twice) must accumulate.
    const [data, indices] = [input(node, 0), input(node, 1)];
    const r = e.rank(data);
    const q = e.rank(indices);
    const axis = normAxis(attrInt(node, 'axis', 0), r);
    const idx = e.op('Unsqueeze', [indices, e.ints([-1])]);
    if (axis === 0) return [e.op('ScatterND', [e.zerosLike(data), idx, gy!], { reduction: 'add' }), undefined];
    // Other axes: move the gathered axis to the front, scatter there, move it back.
    const perm = [axis, ...[...Array(r).keys()].filter((i) => i !== axis)];
    const gyPerm = [...Array(q).keys()]
      .map((i) => axis + i)
      .concat(
        [...Array(axis).keys()],
        [...Array(r - axis - 1).keys()].map((i) => axis + q + i),
      );
    const dtShape = e.op('Gather', [e.shapeOf(data), e.ints(perm)]);
    const type = e.dtype(data);
    const zeros = e.op('ConstantOfShape', [dtShape], {
      value: { tensor: { type, dims: [1], data: type === 'float64' ? Float64Array.from([0]) : Float32Array.from([0]) } },
    });
    const scattered = e.op('ScatterND', [zeros, idx, e.op('Transpose', [gy!], { perm: gyPerm })], { reduction: 'add' });
    const inverse = new Array<number>(r);
    perm.forEach((p, i) => (inverse[p] = i));
    return [e.op('Transpose', [scattered], { perm: inverse }), undefined];
  },
  MatMul: (e, node, [gy], wants) => {
    const [a, b] = [input(node, 0), input(node, 1)];
    const [as, bs, ys] = [e.shape(a), e.shape(b), e.shape(output(node))];
    if (as.length < 2 || bs.length < 2) throw new Error(`autodiff: MatMul ${node.name}: 1-D operands are not supported`);
    if (bs.length === 2) {
      // x[..., K] @ W[K, N]: flatten the batch so that each gradient is one Gemm, with no transposed copies.
      const gy2 = e.flattenTo2D(gy!, output(node));
      const ga = wants[0] ? e.op('Gemm', [gy2, b], { transB: 1 }) : undefined;
      const gb = wants[1] ? e.op('Gemm', [as.length === 2 ? a : e.flattenTo2D(a, a), gy2], { transA: 1 }) : undefined;
      return [ga && as.length > 2 ? e.op('Reshape', [ga, e.shapeOf(a)]) : ga, gb];
    }
    const batch = ys.slice(0, -2);
    return [
      wants[0] ? e.unbroadcast(e.op('MatMul', [gy!, swapLastTwo(e, b, bs.length)]), [...batch, as[as.length - 2]!, as[as.length - 1]!], a) : undefined,
      wants[1] ? e.unbroadcast(e.op('MatMul', [swapLastTwo(e, a, as.length), gy!]), [...batch, bs[bs.length - 2]!, bs[bs.length - 1]!], b) : undefined,
    ];
  },
  Gemm: (e, node, [gy], wants) => {
    // Y = alpha * A' B' + beta * C with A' = transA ? A^T : A (likewise B).
    const [a, b] = [input(node, 0), input(node, 1)];
    const c = node.inputs[2];
    const alpha = attrFloat(node, 'alpha', 1);
    const beta = attrFloat(node, 'beta', 1);
    const tA = attrInt(node, 'transA', 0),
      tB = attrInt(node, 'transB', 0);
    const gemm = (x: string, y: string, trans: Record<string, number>) => e.op('Gemm', [x, y], alpha === 1 ? trans : { ...trans, alpha: { float: alpha } });
    let ga: string | undefined, gb: string | undefined;
    if (wants[0]) {
      // dA' = gy B'^T; dA = dA'^T when A was transposed.
      ga = !tA ? gemm(gy!, b, { transB: tB ? 0 : 1 }) : gemm(b, gy!, { transA: tB, transB: 1 });
    }
    if (wants[1]) {
      // dB' = A'^T gy; dB = dB'^T when B was transposed.
      gb = !tB ? gemm(a, gy!, { transA: tA ? 0 : 1 }) : gemm(gy!, a, { transA: 1, transB: tA });
    }
    let gc: string | undefined;
    if (c && wants[2]) {
      const g = beta === 1 ? gy! : e.op('Mul', [gy!, e.scalar(c, beta)]);
      gc = e.unbroadcast(g, e.shape(output(node)), c);
    }
    return [ga, gb, gc];
  },
  LayerNormalization: (e, node, [gy], wants) => {
    const [x, scale] = [input(node, 0), input(node, 1)];
    const bias = node.inputs[2];
    const xs = e.shape(x);
    const axis = normAxis(attrInt(node, 'axis', -1), xs.length);
    const axes = [...Array(xs.length - axis).keys()].map((i) => axis + i);
    const count = e.countOver(x, axes);
    const mean = (v: string) => e.op('Div', [e.reduceSum(v, axes, true), count]);
    let mu: string, invStd: string;
    if (e.dtype(x) === 'float32') {
      // Reuse the statistics the forward kernel computes anyway (its optional outputs).
      while (node.outputs.length < 3) node.outputs.push('');
      if (node.outputs[1] === '') node.outputs[1] = e.g.fresh('ln_mean');
      if (node.outputs[2] === '') node.outputs[2] = e.g.fresh('ln_inv_std');
      [mu, invStd] = [node.outputs[1]!, node.outputs[2]!];
    } else {
      // ONNX Runtime stashes the statistics in float32; recompute them at full precision.
      mu = mean(x);
      const d = e.op('Sub', [x, mu]);
      const variance = mean(e.op('Mul', [d, d]));
      invStd = e.op('Reciprocal', [e.op('Sqrt', [e.op('Add', [variance, e.scalar(x, attrFloat(node, 'epsilon', 1e-5))])])]);
    }
    const xhat = e.op('Mul', [e.op('Sub', [x, mu]), invStd]);
    let gx: string | undefined;
    if (wants[0]) {
      const gxhat = e.op('Mul', [gy!, scale]);
      const inner = e.op('Sub', [e.op('Sub', [gxhat, mean(gxhat)]), e.op('Mul', [xhat, mean(e.op('Mul', [gxhat, xhat]))])]);
      gx = e.op('Mul', [invStd, inner]);
    }
    return [gx, wants[1] ? e.unbroadcast(e.op('Mul', [gy!, xhat]), xs, scale) : undefined, bias && wants[2] ? e.unbroadcast(gy!, xs, bias) : undefined];
  },
  Dropout: (e, node, [gy]) => {
    const x = input(node, 0);
    const training = node.inputs[2] ? e.facts.get(node.inputs[2]).value : undefined;
    if (!node.inputs[2] || (training && training[0] === 0)) return [gy];
    while (node.outputs.length < 2) node.outputs.push('');
    if (node.outputs[1] === '') node.outputs[1] = e.g.fresh('dropout_mask');
    const ratioValue = node.inputs[1] ? e.facts.get(node.inputs[1]).value?.[0] : 0.5;
    let keepScale = typeof ratioValue === 'number' ? e.scalar(x, 1 / (1 - ratioValue)) : e.op('Reciprocal', [e.op('Sub', [e.scalar(x, 1), node.inputs[1]!])]);
    // A runtime training flag: in inference mode Dropout is the identity (mask all ones, no scaling).
    if (!training) keepScale = e.op('Where', [node.inputs[2], keepScale, e.scalar(x, 1)]);
    return [e.op('Mul', [e.op('Mul', [gy!, e.cast(node.outputs[1]!, e.dtype(x))]), keepScale])];
  },
};

/** Ops whose outputs carry no gradient even when an input does. */
export const NON_DIFFERENTIABLE = new Set([
  'Shape',
  'Size',
  'Floor',
  'Ceil',
  'Round',
  'Sign',
  'ConstantOfShape',
  'Range',
  'ArgMax',
  'ArgMin',
  'Equal',
  'Less',
  'Greater',
  'LessOrEqual',
  'GreaterOrEqual',
  'Not',
  'And',
  'Or',
  'Xor',
  'IsNaN',
  'IsInf',
  'RandomNormalLike',
  'RandomUniformLike',
  'OneHot',
  'NonZero',
]);
