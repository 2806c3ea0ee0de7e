// USE-lite's forward pass as ONNX nodes. Each function ADDS nodes to a GraphBuilder, taking and
// returning value names, so that the exporter (weights as initializers) and the trainer (weights as
// graph inputs, plus backward nodes) build the very same forward graph.
//
// Only plain, easily differentiated ops are used: Gather, MatMul, Add, Sub, Mul, Div, ReduceMean,
// ReduceSum, Sqrt, Max, Softmax, Tanh, Relu, Reshape, Transpose, Unsqueeze, Cast, Slice, Shape.
// Layer normalisation is decomposed (no LayerNormalization op).
//
// Inputs are dense and right-padded: `input_ids` int64 [batch, seq] holds the reference
// tokenizer's ids as they are (id = embedding row; 0 is the unknown piece, not padding) and
// `attention_mask` int64 [batch, seq] is 1 for tokens, 0 for padding. Padded positions compute
// values that are never read: they are masked out of attention keys and of the pooling.
import { GraphBuilder } from '../graph.js';
import { graphConstants } from './graph-constants.js';
import type { ParamKind, ParamSpec } from './param-spec.js';
import type { UseLiteCheckpoint, UseLiteConfig, WeightTensor } from '../checkpoints/use-lite.js';

/** Parameter name -> graph value name (an initializer, or a graph input when training). */
export type ParamRefs = Readonly<Record<string, string>>;

/** Names of the graph's public values. */
export const USE_LITE_IO = {
  inputIds: 'input_ids',
  attentionMask: 'attention_mask',
  embedding: 'embedding',
  features: 'features',
  hidden: (blockNumber: number) => `hidden_${blockNumber}`,
} as const;

/** The non-trainable sinusoidal position table [maxLength, embedDim]. */
export const POSITION_SIGNAL = 'embeddings.position.signal';

// Parameter names: systematic, so a trainer can select by prefix or by `block`.
export const paramName = {
  tokenEmbedding: 'embeddings.token.weight',
  block: (i: number, part: string) => `blocks.${i}.${part}`,
  pooler: (p: 'weight' | 'bias') => `pooler.${p}`,
};

export function checkDepth(config: UseLiteConfig, depth: number): void {
  if (!Number.isInteger(depth) || depth < 1 || depth > config.blocks.length) {
    throw new Error(`use-lite has ${config.blocks.length} transformer blocks; depth ${depth} is not available (use 1..${config.blocks.length})`);
  }
}

/** Every trainable parameter of the first `depth` blocks plus embeddings and pooler, in a fixed order. */
export function useLiteParamSpecs(config: UseLiteConfig, depth: number): ParamSpec[] {
  checkDepth(config, depth);
  const specs: ParamSpec[] = [{ name: paramName.tokenEmbedding, dims: [config.vocabRows, config.embedDim], kind: 'embedding', block: null }];
  for (let i = 0; i < depth; i++) {
    const b = config.blocks[i]!;
    const add = (part: string, dims: number[], kind: ParamKind) => specs.push({ name: paramName.block(i, part), dims, kind, block: i });
    const linear = (part: string, inW: number, outW: number) => {
      add(`${part}.weight`, [inW, outW], 'matrix');
      add(`${part}.bias`, [outW], 'bias');
    };
    add('attn_norm.weight', [b.inputWidth], 'norm');
    add('attn_norm.bias', [b.inputWidth], 'norm');
    for (const p of ['q', 'k', 'v']) linear(`attn.${p}`, b.inputWidth, b.attentionWidth);
    linear('attn.out', b.attentionWidth, b.width);
    if (b.residualProjection) linear('residual', b.inputWidth, b.width);
    add('ffn_norm.weight', [b.width], 'norm');
    add('ffn_norm.bias', [b.width], 'norm');
    linear('ffn.up', b.width, b.ffnSize);
    linear('ffn.down', b.ffnSize, b.width);
  }
  const last = config.blocks[depth - 1]!.width;
  specs.push({ name: paramName.pooler('weight'), dims: [last, config.outputWidth], kind: 'matrix', block: null });
  specs.push({ name: paramName.pooler('bias'), dims: [config.outputWidth], kind: 'bias', block: null });
  return specs;
}

/** The checkpoint's values for useLiteParamSpecs(config, depth), keyed by parameter name. */
export function useLiteParamValues(ckpt: UseLiteCheckpoint, depth: number): Map<string, WeightTensor> {
  checkDepth(ckpt.config, depth);
  const values = new Map<string, WeightTensor>([[paramName.tokenEmbedding, ckpt.tokenEmbedding]]);
  for (let i = 0; i < depth; i++) {
    const b = ckpt.blocks[i]!;
    const set = (part: string, t: WeightTensor) => values.set(paramName.block(i, part), t);
    const linear = (part: string, l: { weight: WeightTensor; bias: WeightTensor }) => {
      set(`${part}.weight`, l.weight);
      set(`${part}.bias`, l.bias);
    };
    set('attn_norm.weight', b.attnNorm.scale);
    set('attn_norm.bias', b.attnNorm.bias);
    linear('attn.q', b.q);
    linear('attn.k', b.k);
    linear('attn.v', b.v);
    linear('attn.out', b.out);
    if (b.residualProjection) linear('residual', b.residualProjection);
    set('ffn_norm.weight', b.ffnNorm.scale);
    set('ffn_norm.bias', b.ffnNorm.bias);
    linear('ffn.up', b.ffnUp);
    linear('ffn.down', b.ffnDown);
  }
  values.set(paramName.pooler('weight'), ckpt.pooler.weight);
  values.set(paramName.pooler('bias'), ckpt.pooler.bias);
  for (const s of useLiteParamSpecs(ckpt.config, depth)) {
    const v = values.get(s.name);
    if (!v || v.dims.join() !== s.dims.join()) throw new Error(`use-lite: parameter ${s.name} has shape [${v?.dims}], expected [${s.dims}]`);
  }
  return values;
}

/**
 * The sinusoidal position signal, [maxLength, embedDim]: row p = [sin(p * inv), cos(p * inv)].
 * Computed as TF.js does in float32 (product rounded to float32, then sin/cos rounded), so the
 * table equals the original graph's signal rather than a float64 approximation of it.
 */
export function positionSignalTable(config: UseLiteConfig, invTimescales: Float32Array): Float32Array {
  const half = config.embedDim / 2;
  if (invTimescales.length !== half) throw new Error(`use-lite: ${invTimescales.length} timescales for an embedding of ${config.embedDim}`);
  const table = new Float32Array(config.maxLength * config.embedDim);
  for (let p = 0; p < config.maxLength; p++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(p * invTimescales[i]!);
      table[p * config.embedDim + i] = Math.sin(angle);
      table[p * config.embedDim + half + i] = Math.cos(angle);
    }
  }
  return table;
}

export interface AddParamsOptions {
  /** Parameters that become graph inputs (fed per run, e.g. by a trainer) instead of initializers. */
  asInputs?: boolean | ((name: string) => boolean);
}

/** Declare parameters (initializers or graph inputs) and the position table; returns their refs. */
export function addUseLiteParameters(g: GraphBuilder, ckpt: UseLiteCheckpoint, depth: number, opts: AddParamsOptions = {}): ParamRefs {
  const asInput = typeof opts.asInputs === 'function' ? opts.asInputs : () => opts.asInputs === true;
  const values = useLiteParamValues(ckpt, depth);
  const refs: Record<string, string> = {};
  for (const spec of useLiteParamSpecs(ckpt.config, depth)) {
    const t = values.get(spec.name)!;
    refs[spec.name] = asInput(spec.name) ? g.input(spec.name, 'float32', spec.dims) : g.initializer(spec.name, t.data, spec.dims);
  }
  refs[POSITION_SIGNAL] = g.initializer(POSITION_SIGNAL, positionSignalTable(ckpt.config, ckpt.timingInvTimescales), [
    ckpt.config.maxLength,
    ckpt.config.embedDim,
  ]);
  return refs;
}

// Small constants, shared per graph by value (graph-constants.ts).
const constant = graphConstants('use_lite.');

/** A float32 constant: a scalar, or a 1-D tensor. */
export function constF(g: GraphBuilder, values: number | number[]): string {
  return typeof values === 'number' ? constant(g, Float32Array.of(values), []) : constant(g, Float32Array.from(values), [values.length]);
}

/** A 1-D int64 constant (shapes, axes, slice bounds). */
export function constI64(g: GraphBuilder, values: number[]): string {
  return constant(g, BigInt64Array.from(values.map((v) => BigInt(v))), [values.length]);
}

function ref(p: ParamRefs, name: string): string {
  const v = p[name];
  if (v === undefined) throw new Error(`use-lite graph: parameter ${name} was not declared`);
  return v;
}

export interface EmbeddedInputs {
  /** Block 0 input, [batch, seq', embedDim] with seq' = min(seq, maxLength). */
  hidden: string;
  /** attention_mask as float32, [batch, seq']. */
  maskF: string;
  /** Additive attention bias over keys, [batch, 1, 1, seq']: 0 for tokens, maskBias for padding. */
  attnBias: string;
}

/** Clip to maxLength (as the original's ClipToMaxLength), embed, add the position signal, build masks. */
export function addUseLiteEmbeddings(g: GraphBuilder, config: UseLiteConfig, p: ParamRefs, inputIds: string, attentionMask: string): EmbeddedInputs {
  const clip = (x: string) => g.op('Slice', [x, constI64(g, [0]), constI64(g, [config.maxLength]), constI64(g, [1])]);
  const ids = clip(inputIds);
  const mask = clip(attentionMask);
  const seqLen = g.op('Shape', [ids], { start: 1, end: 2 }); // [1] int64
  const positions = g.op('Slice', [ref(p, POSITION_SIGNAL), constI64(g, [0]), seqLen, constI64(g, [0])]); // [seq', embedDim]
  const emb = g.op('Gather', [ref(p, paramName.tokenEmbedding), ids], { axis: 0 });
  // The original adds the token embedding twice (once before, once after the timing signal).
  const hidden = g.op('Add', [emb, g.op('Add', [emb, positions])]);
  const maskF = g.op('Cast', [mask], { to: 1 /* FLOAT */ });
  const bias2d = g.op('Mul', [g.op('Sub', [constF(g, 1), maskF]), constF(g, config.maskBias)]); // (1 - mask) * -1e9
  const attnBias = g.op('Unsqueeze', [bias2d, constI64(g, [1, 2])]);
  return { hidden, maskF, attnBias };
}

/** x @ W + b over the last axis. */
export function addLinear(g: GraphBuilder, p: ParamRefs, x: string, prefix: string): string {
  return g.op('Add', [g.op('MatMul', [x, ref(p, `${prefix}.weight`)]), ref(p, `${prefix}.bias`)]);
}

/** Layer normalisation over the last axis, decomposed so that every op has a simple gradient. */
export function addLayerNorm(g: GraphBuilder, p: ParamRefs, x: string, prefix: string, eps: number): string {
  const mean = g.op('ReduceMean', [x], { axes: [-1], keepdims: 1 });
  const centred = g.op('Sub', [x, mean]);
  const variance = g.op('ReduceMean', [g.op('Mul', [centred, centred])], { axes: [-1], keepdims: 1 });
  const std = g.op('Sqrt', [g.op('Add', [variance, constF(g, eps)])]);
  const normed = g.op('Div', [centred, std]);
  return g.op('Add', [g.op('Mul', [normed, ref(p, `${prefix}.weight`)]), ref(p, `${prefix}.bias`)]);
}

/** One pre-norm block: y = attn(LN(x)) + residual(x); out = y + FFN(LN(y)). */
/** Applied to each sub-layer output before its residual add (training-time dropout); identity when absent. */
export type SublayerHook = (g: GraphBuilder, x: string) => string;

export function addUseLiteBlock(g: GraphBuilder, config: UseLiteConfig, p: ParamRefs, index: number, x: string, attnBias: string, drop?: SublayerHook): string {
  const b = config.blocks[index];
  if (!b) throw new Error(`use-lite graph: no block ${index}`);
  const name = (part: string) => paramName.block(index, part);
  const h = addLayerNorm(g, p, x, name('attn_norm'), config.layerNormEps);
  const headsShape = constI64(g, [0, 0, b.heads, b.headDim]); // Reshape: 0 keeps batch and seq
  const split = (t: string, perm: number[]) => g.op('Transpose', [g.op('Reshape', [t, headsShape])], { perm });
  const q = g.op('Mul', [split(addLinear(g, p, h, name('attn.q')), [0, 2, 1, 3]), constF(g, b.attentionScale)]); // [b, H, s, dh]
  const kT = split(addLinear(g, p, h, name('attn.k')), [0, 2, 3, 1]); // [b, H, dh, s]
  const v = split(addLinear(g, p, h, name('attn.v')), [0, 2, 1, 3]);
  const logits = g.op('Add', [g.op('MatMul', [q, kT]), attnBias]);
  const weights = g.op('Softmax', [logits], { axis: -1 });
  const context = g.op('Reshape', [g.op('Transpose', [g.op('MatMul', [weights, v])], { perm: [0, 2, 1, 3] }), constI64(g, [0, 0, b.attentionWidth])]);
  const attnOut = addLinear(g, p, context, name('attn.out'));
  const dropped = (t: string) => (drop ? drop(g, t) : t);
  const residual = b.residualProjection ? addLinear(g, p, x, name('residual')) : x;
  const y = g.op('Add', [dropped(attnOut), residual]);
  const f = addLinear(g, p, g.op('Relu', [addLinear(g, p, addLayerNorm(g, p, y, name('ffn_norm'), config.layerNormEps), name('ffn.up'))]), name('ffn.down'));
  return g.op('Add', [dropped(f), y]);
}

/** Masked mean over tokens (count clamped to >= 1, as the original), then tanh(x @ W + b): [batch, 512]. */
export function addUseLitePooledFeatures(g: GraphBuilder, p: ParamRefs, hidden: string, maskF: string): string {
  const axis1 = constI64(g, [1]);
  const summed = g.op('ReduceSum', [g.op('Mul', [hidden, g.op('Unsqueeze', [maskF, constI64(g, [2])])]), axis1], { keepdims: 0 });
  const count = g.op('Max', [g.op('ReduceSum', [maskF, axis1], { keepdims: 1 }), constF(g, 1)]);
  return g.op('Tanh', [addLinear(g, p, g.op('Div', [summed, count]), 'pooler')]);
}

/** x / sqrt(max(sum(x^2), eps)) over the last axis. */
export function addL2Normalize(g: GraphBuilder, x: string, eps: number): string {
  const sq = g.op('ReduceSum', [g.op('Mul', [x, x]), constI64(g, [-1])], { keepdims: 1 });
  return g.op('Div', [x, g.op('Sqrt', [g.op('Max', [sq, constF(g, eps)])])]);
}

export interface UseLiteForward {
  /** Hidden state after each kept block, [batch, seq', width]. */
  hidden: string[];
  /** tanh features before L2 normalisation, [batch, outputWidth]: where classifier heads attach. */
  features: string;
  /** The USE embedding, [batch, outputWidth]. */
  embedding: string;
}

/** The whole encoder for the first `depth` blocks, from dense ids and mask. */
export function addUseLiteForward(
  g: GraphBuilder,
  config: UseLiteConfig,
  p: ParamRefs,
  depth: number,
  inputIds: string,
  attentionMask: string,
  drop?: SublayerHook,
): UseLiteForward {
  checkDepth(config, depth);
  const { hidden: h0, maskF, attnBias } = addUseLiteEmbeddings(g, config, p, inputIds, attentionMask);
  const hidden: string[] = [];
  let h = h0;
  for (let i = 0; i < depth; i++) hidden.push((h = addUseLiteBlock(g, config, p, i, h, attnBias, drop)));
  const features = addUseLitePooledFeatures(g, p, h, maskF);
  return { hidden, features, embedding: addL2Normalize(g, features, config.l2Eps) };
}

export interface EncoderGraphOptions extends AddParamsOptions {
  depth: number;
  /** Also output `features` and `hidden_<n>` for each kept block. */
  intermediates?: boolean;
}

/** A complete encoder graph: inputs input_ids/attention_mask, output `embedding` (+ intermediates). */
export function buildUseLiteEncoderGraph(ckpt: UseLiteCheckpoint, opts: EncoderGraphOptions): { graph: GraphBuilder; params: ParamSpec[] } {
  const { config } = ckpt;
  checkDepth(config, opts.depth);
  const g = new GraphBuilder(`use_lite_k${opts.depth}`);
  const ids = g.input(USE_LITE_IO.inputIds, 'int64', ['batch', 'seq']);
  const mask = g.input(USE_LITE_IO.attentionMask, 'int64', ['batch', 'seq']);
  const p = addUseLiteParameters(g, ckpt, opts.depth, opts);
  const fwd = addUseLiteForward(g, config, p, opts.depth, ids, mask);
  g.output(g.identity(fwd.embedding, USE_LITE_IO.embedding), 'float32', ['batch', config.outputWidth]);
  if (opts.intermediates) {
    g.output(g.identity(fwd.features, USE_LITE_IO.features), 'float32', ['batch', config.outputWidth]);
    fwd.hidden.forEach((h, i) => {
      g.output(g.identity(h, USE_LITE_IO.hidden(i + 1)), 'float32', ['batch', 'clipped_seq', config.blocks[i]!.width]);
    });
  }
  return { graph: g, params: useLiteParamSpecs(config, opts.depth) };
}
