// Forward-building helpers for training graphs: typed constants, linear layers, layer norm
// (decomposed, or ONNX LayerNormalization), GELU, multi-head attention with a padding mask,
// masked mean pooling, and a pre-LN transformer encoder block. Every helper takes the element
// type, so the same graph can be built in float64 for gradient checks.
import type { Dim, GraphBuilder } from '../graph.js';
import { DataType, type ElemType } from '../onnx-proto.js';

export type FloatType = 'float32' | 'float64';

/** A Constant node (not an initializer: constants then never need a claimed initializer name). */
export function constant(g: GraphBuilder, type: ElemType, values: number | number[], dims?: number[]): string {
  const arr = typeof values === 'number' ? [values] : values;
  const shape = dims ?? (typeof values === 'number' ? [] : [arr.length]);
  const data =
    type === 'int64'
      ? BigInt64Array.from(arr.map((v) => BigInt(v)))
      : type === 'float64'
        ? Float64Array.from(arr)
        : type === 'bool'
          ? Uint8Array.from(arr)
          : Float32Array.from(arr);
  return g.op('Constant', [], { value: { tensor: { type, dims: shape, data } } });
}

export const ints = (g: GraphBuilder, values: number[]): string => constant(g, 'int64', values);

export function linear(g: GraphBuilder, x: string, w: string, b?: string): string {
  const y = g.op('MatMul', [x, w]);
  return b ? g.op('Add', [y, b]) : y;
}

/** Layer norm over the last axis, written out (mean, centred variance, sqrt, scale, shift). */
export function layerNormDecomposed(g: GraphBuilder, type: FloatType, x: string, scale: string, bias: string, eps = 1e-5): string {
  const mean = g.op('ReduceMean', [x], { axes: [-1] });
  const d = g.op('Sub', [x, mean]);
  const variance = g.op('ReduceMean', [g.op('Mul', [d, d])], { axes: [-1] });
  const std = g.op('Sqrt', [g.op('Add', [variance, constant(g, type, eps)])]);
  return g.op('Add', [g.op('Mul', [g.op('Div', [d, std]), scale]), bias]);
}

export function layerNormFused(g: GraphBuilder, x: string, scale: string, bias: string, eps = 1e-5): string {
  return g.op('LayerNormalization', [x, scale, bias], { axis: -1, epsilon: { float: eps } });
}

/** GELU: exact x*0.5*(1+erf(x/sqrt2)), or the tanh approximation (float64-friendly: no Erf). */
export function gelu(g: GraphBuilder, type: FloatType, x: string, approx: 'erf' | 'tanh' = 'erf'): string {
  const half = g.op('Mul', [x, constant(g, type, 0.5)]);
  let inner: string;
  if (approx === 'erf') {
    inner = g.op('Erf', [g.op('Div', [x, constant(g, type, Math.SQRT2)])]);
  } else {
    const cube = g.op('Pow', [x, constant(g, type, 3)]);
    const arg = g.op('Add', [x, g.op('Mul', [cube, constant(g, type, 0.044715)])]);
    inner = g.op('Tanh', [g.op('Mul', [arg, constant(g, type, Math.sqrt(2 / Math.PI))])]);
  }
  return g.op('Mul', [half, g.op('Add', [inner, constant(g, type, 1)])]);
}

/** attention_mask int64 [B, S] (1 = token) -> bool [B, 1, 1, S], broadcast over heads and queries. */
export function attentionKeyMask(g: GraphBuilder, mask: string): string {
  return g.op('Unsqueeze', [g.op('Cast', [mask], { to: DataType.bool }), ints(g, [1, 2])]);
}

export interface AttentionWeights {
  wq: string;
  bq: string;
  wk: string;
  bk: string;
  wv: string;
  bv: string;
  wo: string;
  bo: string;
}

/** Multi-head self-attention on x [B, S, D]; keyMask bool [B, 1, 1, S] (padding keys get -1e9 before softmax). */
export function multiHeadAttention(
  g: GraphBuilder,
  type: FloatType,
  x: string,
  w: AttentionWeights,
  opts: { heads: number; width: number; keyMask?: string },
): string {
  const { heads, width } = opts;
  const dh = width / heads;
  const split = (v: string, perm: number[]) => g.op('Transpose', [g.op('Reshape', [v, ints(g, [0, 0, heads, dh])])], { perm });
  const q = split(linear(g, x, w.wq, w.bq), [0, 2, 1, 3]); // [B, H, S, dh]
  const kT = split(linear(g, x, w.wk, w.bk), [0, 2, 3, 1]); // [B, H, dh, S]
  const v = split(linear(g, x, w.wv, w.bv), [0, 2, 1, 3]);
  let scores = g.op('Mul', [g.op('MatMul', [q, kT]), constant(g, type, 1 / Math.sqrt(dh))]);
  if (opts.keyMask) scores = g.op('Where', [opts.keyMask, scores, constant(g, type, -1e9)]);
  const probs = g.op('Softmax', [scores], { axis: -1 });
  const ctx = g.op('Transpose', [g.op('MatMul', [probs, v])], { perm: [0, 2, 1, 3] });
  return linear(g, g.op('Reshape', [ctx, ints(g, [0, 0, width])]), w.wo, w.bo);
}

/** Mean over real tokens: x [B, S, D], mask int64 [B, S] -> [B, D]. */
export function maskedMeanPool(g: GraphBuilder, type: FloatType, x: string, mask: string): string {
  const m = g.op('Unsqueeze', [g.op('Cast', [mask], { to: DataType[type] }), ints(g, [2])]); // [B, S, 1]
  const total = g.op('ReduceSum', [g.op('Mul', [x, m]), ints(g, [1])], { keepdims: 0 });
  const count = g.op('Max', [g.op('ReduceSum', [m, ints(g, [1])], { keepdims: 0 }), constant(g, type, 1)]);
  return g.op('Div', [total, count]);
}

export interface EncoderBlockWeights extends AttentionWeights {
  ln1Scale: string;
  ln1Bias: string;
  ln2Scale: string;
  ln2Bias: string;
  w1: string;
  b1: string;
  w2: string;
  b2: string;
}

export const ENCODER_WEIGHT_NAMES = [
  'ln1Scale',
  'ln1Bias',
  'wq',
  'bq',
  'wk',
  'bk',
  'wv',
  'bv',
  'wo',
  'bo',
  'ln2Scale',
  'ln2Bias',
  'w1',
  'b1',
  'w2',
  'b2',
] as const;

export function encoderBlockShapes(width: number, ffn: number): Record<keyof EncoderBlockWeights, number[]> {
  return {
    ln1Scale: [width],
    ln1Bias: [width],
    ln2Scale: [width],
    ln2Bias: [width],
    wq: [width, width],
    bq: [width],
    wk: [width, width],
    bk: [width],
    wv: [width, width],
    bv: [width],
    wo: [width, width],
    bo: [width],
    w1: [width, ffn],
    b1: [ffn],
    w2: [ffn, width],
    b2: [width],
  };
}

export interface EncoderBlockOptions {
  heads: number;
  width: number;
  keyMask?: string;
  activation?: 'gelu' | 'gelu-tanh' | 'relu';
  layerNorm?: 'decomposed' | 'fused';
  eps?: number;
}

/** Pre-LN block: h = x + Attn(LN1(x)); y = h + W2 act(W1 LN2(h)). */
export function encoderBlock(g: GraphBuilder, type: FloatType, x: string, w: EncoderBlockWeights, opts: EncoderBlockOptions): string {
  const ln = (v: string, s: string, b: string) =>
    opts.layerNorm === 'fused' ? layerNormFused(g, v, s, b, opts.eps) : layerNormDecomposed(g, type, v, s, b, opts.eps);
  const h = g.op('Add', [x, multiHeadAttention(g, type, ln(x, w.ln1Scale, w.ln1Bias), w, opts)]);
  const pre = linear(g, ln(h, w.ln2Scale, w.ln2Bias), w.w1, w.b1);
  const act = opts.activation === 'relu' ? g.op('Relu', [pre]) : gelu(g, type, pre, opts.activation === 'gelu-tanh' ? 'tanh' : 'erf');
  return g.op('Add', [h, linear(g, act, w.w2, w.b2)]);
}

/** Declare graph inputs `${prefix}${key}` for a set of parameter shapes; returns key -> input name. */
export function declareParams<K extends string>(g: GraphBuilder, type: FloatType, prefix: string, shapes: Record<K, Dim[]>): Record<K, string> {
  const out = {} as Record<K, string>;
  for (const key of Object.keys(shapes) as K[]) out[key] = g.input(`${prefix}${key}`, type, shapes[key]);
  return out;
}
