// The decoder/encoder transformer families (gpt2, opt, llama, bert) as ONNX nodes. One forward
// description covers them all; what differs is a handful of switches in TransformerConfig (norm
// kind and placement, activation, gating, position scheme, causal or not) that each
// architecture file derives from its Hugging Face config.json, and the tensor names it maps onto
// the canonical parameter names below.
//
// Canonical parameters (linear weights are stored [in, out] so that y = x @ W + b):
//   embed.tokens [V, W]   embed.positions [P, W] (learned)   embed.token_type [W] (bert, type 0)
//   embed.norm.{weight,bias} (bert)
//   blocks.i.attn_norm.{weight,bias}  blocks.i.attn.{q,k,v,o}.{weight,bias}
//   blocks.i.ffn_norm.{weight,bias}   blocks.i.ffn.{up,gate,down}.{weight,bias}
//   final_norm.{weight,bias}          lm_head.weight [W, V]
// Biases are optional (llama has none); a missing bias means no Add.
//
// Inputs are right-padded: `input_ids` int64 [batch, seq], `attention_mask` int64 [batch, seq]
// with 1 for tokens. Positions are 0..seq-1, so real tokens sit where they would without padding;
// decoders combine the causal mask with the padding mask, and read "the last real token" at
// index sum(mask) - 1. Only ops with backward rules in training/vjp-rules.ts are used: RMSNorm,
// RoPE and SwiGLU are decomposed into Mul/ReduceMean/Sqrt/Div/Slice/Concat/Neg/Sigmoid.
import { GraphBuilder, type Dim } from '../graph.js';
import { graphConstants } from './graph-constants.js';
import type { ParamSpec } from './param-spec.js';

export type Arch = 'gpt2' | 'opt' | 'llama' | 'bert' | 'qwen2' | 'qwen3' | 'gemma2' | 'gemma3' | 'phi3' | 'roberta' | 'distilbert' | 'modernbert';

/** How a classifier reads one vector per row: the last real token, the first (CLS), or the masked mean. */
export type Pooling = 'last' | 'cls' | 'mean';

/** RoPE frequency scaling (HF rope_scaling) that a static table can honour at the configured length. */
export type RopeScaling =
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMax: number }
  /** Phi-3 longrope: per-frequency factors (short ones up to originalMax) and a cos/sin scale. */
  | { type: 'longrope'; factors: number[]; attentionFactor: number; originalMax: number };

export interface TransformerConfig {
  arch: Arch;
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ffn: number;
  vocab: number;
  /** Rows of the learned position table, or the RoPE context length. */
  maxPositions: number;
  /** OPT: learned position rows start at 2. */
  positionOffset: number;
  norm: 'layer' | 'rms';
  eps: number;
  /** bert (and OPT with do_layer_norm_before=false): normalise after each residual add. */
  postNorm: boolean;
  act: 'gelu_tanh' | 'gelu' | 'relu' | 'silu';
  /** SwiGLU: down(act(gate(x)) * up(x)). */
  gated: boolean;
  positions: 'learned' | 'rope';
  ropeTheta: number;
  causal: boolean;
  /** Decoders: a norm after the last block (applied after the k-th kept block too). */
  finalNorm: boolean;
  /** bert: LayerNorm on the embeddings, token-type row 0 added. */
  embedNorm: boolean;
  tokenTypes: boolean;
  /** LM head shares the token embedding. */
  tiedEmbeddings: boolean;
  bosId?: number;
  eosId?: number;
  padId?: number;

  // Switches of the newer families; absent means off, so the graphs of the families above are
  // unchanged by them.
  /** Decoders whose tokenizer prepends BOS (llama, opt, gemma): the template starts with bosId. */
  prependBos?: boolean;
  /** Encoders: the tokens the tokenizer's post-processor puts around a text ([CLS]/[SEP], <s>/</s>). */
  encoderMarks?: { cls: string; sep: string };
  /** Pooling a classifier head reads when the graph options name none (default 'last'). */
  pooling?: Pooling;
  /** false: LayerNorm without a bias (modernbert). */
  normBias?: boolean;
  /** Block 0 has no attention norm (modernbert: nn.Identity). */
  skipFirstAttnNorm?: boolean;
  /** Per-head RMSNorm of q and k over head_dim before RoPE (qwen3, gemma3): blocks.i.attn.{q,k}_norm.weight. */
  qkNorm?: boolean;
  /** gemma2/3: a norm on the attention and MLP outputs before each residual add (blocks.i.{attn,ffn}_post_norm). */
  sandwichNorm?: boolean;
  /** Token embeddings are multiplied by this (gemma: sqrt(hidden_size)). */
  embedScale?: number;
  /** Attention score scale instead of 1/sqrt(headDim) (gemma: query_pre_attn_scalar^-0.5). */
  attnScale?: number;
  /** cap * tanh(scores / cap) before the mask (gemma2 attn_logit_softcapping). */
  attnSoftcap?: number;
  /** cap * tanh(logits / cap) on LM and classifier logits (gemma2 final_logit_softcapping). */
  finalSoftcap?: number;
  /** Blocks with local (sliding-window) attention, by index; the rest attend globally. */
  localLayers?: boolean[];
  /** Causal: key j is seen from query i when i - j < window. Symmetric (modernbert): when |i - j| <= window. */
  window?: number;
  windowSymmetric?: boolean;
  /** RoPE base of the local blocks (gemma3 rope_local_base_freq, modernbert local_rope_theta); unscaled. */
  localRopeTheta?: number;
  /** RoPE scaling of the global blocks. */
  ropeScaling?: RopeScaling;
}

/** Where a canonical tensor lives in a Hugging Face checkpoint. */
export interface TensorSource {
  name: string;
  /** Linear weight stored [out, in] (torch.nn.Linear): transpose to [in, out]. */
  transpose?: boolean;
  /** Keep columns [begin, end) of the last axis (GPT-2's fused c_attn). */
  columns?: [number, number];
  /** Keep row `row` of the first axis as a vector (BERT token type 0). */
  row?: number;
  /** Keep rows [begin, end) of the first axis (fused nn.Linear: phi3 qkv_proj, gate_up_proj; modernbert Wqkv, Wi), before transposing. */
  rows?: [number, number];
  /** Add this to every value (gemma's RMSNorm stores w and scales by 1 + w). */
  plus?: number;
}

/** Maps a Hugging Face model_type onto TransformerConfig and canonical tensors. */
export interface HfArchitecture {
  modelTypes: string[];
  config(hf: Record<string, unknown>): TransformerConfig;
  /** Candidate prefixes ("", "transformer.", ...); the first under which `probe` exists is used. */
  prefixes: string[];
  probe: string;
  /** Source of a canonical tensor, or undefined if the architecture has none (a bias). */
  source(c: TransformerConfig, name: string): TensorSource | undefined;
  /** LM head matrix [V, W] (untied), or undefined when tied to embed.tokens. */
  lmHead(c: TransformerConfig): string | undefined;
  /** Pooling this family's users expect (decoders: last token; encoders: CLS, or mean). Default 'last'. */
  defaultPooling?(c: TransformerConfig, hf: Record<string, unknown>): Pooling;
}

/** config.json value helpers. */
export function num(hf: Record<string, unknown>, key: string, fallback?: number): number {
  const v = hf[key];
  if (typeof v === 'number') return v;
  if (fallback !== undefined) return fallback;
  throw new Error(`config.json: ${key} is missing or not a number`);
}

/** A token id key that may be a list (Llama 3.1: eos_token_id [128001, 128008, 128009]): the first one. */
export function tokenIdOf(hf: Record<string, unknown>, key: string, fallback?: number): number | undefined {
  const v = hf[key];
  if (typeof v === 'number') return v;
  if (Array.isArray(v) && typeof v[0] === 'number') return v[0];
  return fallback;
}

/** A key among alternatives (hidden_activation / hidden_act), as a string, or the fallback. */
export function str(hf: Record<string, unknown>, keys: string[], fallback: string): string {
  for (const k of keys) if (typeof hf[k] === 'string') return hf[k] as string;
  return fallback;
}

export interface FloatTensorValue {
  dims: number[];
  data: Float32Array;
}

/**
 * A checkpoint seen through canonical names. `tensor` returns undefined for an optional tensor
 * the checkpoint does not have (a bias); it reads from disk on each call.
 */
export interface TransformerCheckpoint {
  config: TransformerConfig;
  /** e.g. "hf:/path/to/dir" or "llama2c:/path/model.bin". */
  id: string;
  source: string;
  tensor(name: string): FloatTensorValue | undefined;
  /** Rows of the LM head (or the tied embedding) for these token ids, as [W, ids.length]. */
  lmHeadColumns(ids: readonly number[]): FloatTensorValue;
  close?(): void;
}

export const IO = { inputIds: 'input_ids', attentionMask: 'attention_mask', hidden: 'hidden', logits: 'logits' } as const;
export const HEAD_WEIGHT = 'head.weight';
export const HEAD_BIAS = 'head.bias';

export function checkDepth(config: TransformerConfig, depth: number): void {
  if (!Number.isInteger(depth) || depth < 1 || depth > config.layers) {
    throw new Error(`${config.arch} checkpoint has ${config.layers} layers; depth ${depth} is not available (use 1..${config.layers})`);
  }
}

/** Canonical parameter names a depth-`depth` body needs (optional biases included; filtered on load). */
export function paramSpecs(c: TransformerConfig, depth: number): ParamSpec[] {
  checkDepth(c, depth);
  const W = c.hidden,
    kvW = c.kvHeads * c.headDim,
    qW = c.heads * c.headDim;
  const specs: ParamSpec[] = [{ name: 'embed.tokens', dims: [c.vocab, W], kind: 'embedding', block: null }];
  if (c.positions === 'learned') specs.push({ name: 'embed.positions', dims: [c.maxPositions + c.positionOffset, W], kind: 'embedding', block: null });
  if (c.tokenTypes) specs.push({ name: 'embed.token_type', dims: [W], kind: 'embedding', block: null });
  const norm = (name: string, block: number | null, width = W) => {
    specs.push({ name: `${name}.weight`, dims: [width], kind: 'norm', block });
    if (c.norm === 'layer' && c.normBias !== false) specs.push({ name: `${name}.bias`, dims: [width], kind: 'norm', block });
  };
  if (c.embedNorm) norm('embed.norm', null);
  for (let i = 0; i < depth; i++) {
    const b = `blocks.${i}`;
    const linear = (part: string, inW: number, outW: number) => {
      specs.push({ name: `${b}.${part}.weight`, dims: [inW, outW], kind: 'matrix', block: i });
      specs.push({ name: `${b}.${part}.bias`, dims: [outW], kind: 'bias', block: i });
    };
    if (!(c.skipFirstAttnNorm && i === 0)) norm(`${b}.attn_norm`, i);
    linear('attn.q', W, qW);
    linear('attn.k', W, kvW);
    linear('attn.v', W, kvW);
    if (c.qkNorm) {
      norm(`${b}.attn.q_norm`, i, c.headDim);
      norm(`${b}.attn.k_norm`, i, c.headDim);
    }
    linear('attn.o', qW, W);
    if (c.sandwichNorm) norm(`${b}.attn_post_norm`, i);
    norm(`${b}.ffn_norm`, i);
    linear('ffn.up', W, c.ffn);
    if (c.gated) linear('ffn.gate', W, c.ffn);
    linear('ffn.down', c.ffn, W);
    if (c.sandwichNorm) norm(`${b}.ffn_post_norm`, i);
  }
  if (c.finalNorm) norm('final_norm', null);
  return specs;
}

/** Read the body parameters of a depth-k model (only those tensors). Missing optional biases are skipped. */
export function loadParams(ckpt: TransformerCheckpoint, depth: number): Map<string, FloatTensorValue> {
  const out = new Map<string, FloatTensorValue>();
  for (const s of paramSpecs(ckpt.config, depth)) {
    const t = ckpt.tensor(s.name);
    if (!t) {
      if (s.kind === 'bias') continue;
      throw new Error(`${ckpt.id}: missing tensor for ${s.name}`);
    }
    const n = s.dims.reduce((a, b) => a * b, 1);
    if (t.data.length !== n) throw new Error(`${ckpt.id}: ${s.name} has ${t.data.length} values, expected [${s.dims}]`);
    out.set(s.name, { dims: s.dims, data: t.data });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Graph pieces

const constant = graphConstants('tf.');
export const cf = (g: GraphBuilder, v: number) => constant(g, Float32Array.of(v), []);
export const ci = (g: GraphBuilder, v: number[]) => constant(g, BigInt64Array.from(v.map(BigInt)), [v.length]);

export type Refs = Readonly<Record<string, string>>;

function linear(g: GraphBuilder, p: Refs, x: string, prefix: string): string {
  const y = g.op('MatMul', [x, must(p, `${prefix}.weight`)]);
  const b = p[`${prefix}.bias`];
  return b ? g.op('Add', [y, b]) : y;
}

function must(p: Refs, name: string): string {
  const v = p[name];
  if (v === undefined) throw new Error(`transformer graph: parameter ${name} was not declared`);
  return v;
}

function norm(g: GraphBuilder, c: TransformerConfig, p: Refs, x: string, prefix: string): string {
  if (c.norm === 'rms') {
    // x / sqrt(mean(x^2) + eps) * weight (HF LlamaRMSNorm, computed in fp32).
    const ms = g.op('ReduceMean', [g.op('Mul', [x, x])], { axes: [-1], keepdims: 1 });
    const normed = g.op('Div', [x, g.op('Sqrt', [g.op('Add', [ms, cf(g, c.eps)])])]);
    return g.op('Mul', [normed, must(p, `${prefix}.weight`)]);
  }
  const mean = g.op('ReduceMean', [x], { axes: [-1], keepdims: 1 });
  const centred = g.op('Sub', [x, mean]);
  const variance = g.op('ReduceMean', [g.op('Mul', [centred, centred])], { axes: [-1], keepdims: 1 });
  const normed = g.op('Div', [centred, g.op('Sqrt', [g.op('Add', [variance, cf(g, c.eps)])])]);
  if (c.normBias === false) return g.op('Mul', [normed, must(p, `${prefix}.weight`)]);
  return g.op('Add', [g.op('Mul', [normed, must(p, `${prefix}.weight`)]), must(p, `${prefix}.bias`)]);
}

function activation(g: GraphBuilder, act: TransformerConfig['act'], x: string): string {
  switch (act) {
    case 'relu':
      return g.op('Relu', [x]);
    case 'silu':
      return g.op('Mul', [x, g.op('Sigmoid', [x])]);
    case 'gelu': // 0.5 x (1 + erf(x / sqrt 2))
      return g.op('Mul', [g.op('Mul', [x, cf(g, 0.5)]), g.op('Add', [g.op('Erf', [g.op('Mul', [x, cf(g, Math.SQRT1_2)])]), cf(g, 1)])]);
    case 'gelu_tanh': {
      // HF gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
      const cube = g.op('Mul', [g.op('Mul', [x, x]), x]);
      const inner = g.op('Mul', [g.op('Add', [x, g.op('Mul', [cube, cf(g, 0.044715)])]), cf(g, Math.sqrt(2 / Math.PI))]);
      return g.op('Mul', [g.op('Mul', [x, cf(g, 0.5)]), g.op('Add', [g.op('Tanh', [inner]), cf(g, 1)])]);
    }
  }
}

/** Non-trainable tables sized for `tableLength` positions: causal bias and RoPE cos/sin. */
export const TABLES = {
  causal: 'tables.causal_bias',
  cos: 'tables.rope_cos',
  sin: 'tables.rope_sin',
  positionsF: 'tables.positions',
  local: 'tables.local_bias',
  localCos: 'tables.rope_local_cos',
  localSin: 'tables.rope_local_sin',
} as const;

const MASK_BIAS = -1e9;

/** HF's inv_freq of RoPE (fp32 values), with rope_scaling applied as _compute_*_parameters do. */
export function ropeInverseFrequencies(headDim: number, theta: number, scaling?: RopeScaling): number[] {
  const half = headDim / 2;
  const inv = Array.from({ length: half }, (_, j) => Math.fround(1 / Math.pow(theta, (2 * j) / headDim)));
  if (!scaling) return inv;
  switch (scaling.type) {
    case 'linear':
      return inv.map((f) => Math.fround(f / scaling.factor));
    case 'longrope':
      return inv.map((_, j) => Math.fround(1 / (scaling.factors[j]! * Math.pow(theta, (2 * j) / headDim))));
    case 'llama3': {
      // _compute_llama3_parameters: long wavelengths divided by factor, short kept, smooth in between.
      const { factor, lowFreqFactor: lo, highFreqFactor: hi, originalMax } = scaling;
      const lowWavelen = originalMax / lo,
        highWavelen = originalMax / hi;
      return inv.map((f) => {
        const wavelen = (2 * Math.PI) / f;
        if (wavelen < highWavelen) return f;
        if (wavelen > lowWavelen) return Math.fround(f / factor);
        const smooth = (originalMax / wavelen - lo) / (hi - lo);
        return Math.fround((1 - smooth) * (f / factor) + smooth * f);
      });
    }
  }
}

/** RoPE cos/sin [length, headDim]; `scaling` null for none (a local table: not the config's global scaling). */
export function ropeTables(
  c: TransformerConfig,
  length: number,
  theta = c.ropeTheta,
  scaling: RopeScaling | null = c.ropeScaling ?? null,
): { cos: Float32Array; sin: Float32Array } {
  // HF LlamaRotaryEmbedding: inv_freq[j] = theta^(-2j/d), emb = cat(freqs, freqs); cos/sin in fp32.
  const d = c.headDim,
    half = d / 2;
  const inv = ropeInverseFrequencies(d, theta, scaling ?? undefined);
  const scale = scaling?.type === 'longrope' ? scaling.attentionFactor : 1;
  const cos = new Float32Array(length * d),
    sin = new Float32Array(length * d);
  for (let pos = 0; pos < length; pos++) {
    for (let j = 0; j < half; j++) {
      const angle = Math.fround(pos * inv[j]!);
      cos[pos * d + j] = cos[pos * d + j + half] = scale === 1 ? Math.cos(angle) : Math.cos(angle) * scale;
      sin[pos * d + j] = sin[pos * d + j + half] = scale === 1 ? Math.sin(angle) : Math.sin(angle) * scale;
    }
  }
  return { cos, sin };
}

/** Whether the local blocks' window hides any key at sequences up to `length` (else they attend as global blocks). */
export function windowBites(c: TransformerConfig, length: number): boolean {
  if (!c.localLayers?.some(Boolean) || c.window === undefined) return false;
  return c.windowSymmetric ? length - 1 > c.window : length > c.window;
}

export interface AddParamsOptions {
  /** Parameters that become graph inputs (fed per run) instead of initializers. */
  asInputs?: (name: string) => boolean;
  /** Longest sequence the graph accepts (sizes the causal/RoPE tables). */
  tableLength: number;
}

export function addParameters(g: GraphBuilder, c: TransformerConfig, values: ReadonlyMap<string, FloatTensorValue>, opts: AddParamsOptions): Refs {
  const refs: Record<string, string> = {};
  for (const [name, t] of values) {
    refs[name] = opts.asInputs?.(name) ? g.input(name, 'float32', t.dims) : g.initializer(name, t.data, t.dims);
  }
  const L = opts.tableLength;
  if (c.causal) {
    const causal = new Float32Array(L * L);
    for (let i = 0; i < L; i++) for (let j = i + 1; j < L; j++) causal[i * L + j] = MASK_BIAS;
    refs[TABLES.causal] = g.initializer(TABLES.causal, causal, [L, L]);
  }
  if (c.positions === 'rope') {
    if (c.ropeScaling?.type === 'longrope' && L > c.ropeScaling.originalMax) {
      // HF switches to the long factors once a sequence passes original_max_position_embeddings: no one static table.
      throw new Error(
        `${c.arch}: longrope tables past original_max_position_embeddings ${c.ropeScaling.originalMax} are not supported (asked for ${L} positions)`,
      );
    }
    const { cos, sin } = ropeTables(c, L);
    refs[TABLES.cos] = g.initializer(TABLES.cos, cos, [L, c.headDim]);
    refs[TABLES.sin] = g.initializer(TABLES.sin, sin, [L, c.headDim]);
    if (c.localRopeTheta !== undefined && c.localLayers?.some(Boolean)) {
      const local = ropeTables(c, L, c.localRopeTheta, null);
      refs[TABLES.localCos] = g.initializer(TABLES.localCos, local.cos, [L, c.headDim]);
      refs[TABLES.localSin] = g.initializer(TABLES.localSin, local.sin, [L, c.headDim]);
    }
  }
  if (windowBites(c, L)) {
    // Local blocks: causal (or not) and within the window; HF sliding_window_overlay / modernbert window_mask.
    const local = new Float32Array(L * L);
    for (let i = 0; i < L; i++) {
      for (let j = 0; j < L; j++) {
        const seen = c.windowSymmetric ? Math.abs(i - j) <= c.window! : j <= i && i - j < c.window!;
        if (!seen) local[i * L + j] = MASK_BIAS;
      }
    }
    refs[TABLES.local] = g.initializer(TABLES.local, local, [L, L]);
  }
  refs[TABLES.positionsF] = g.initializer(
    TABLES.positionsF,
    Float32Array.from({ length: L }, (_, i) => i),
    [L],
  );
  return refs;
}

interface Embedded {
  hidden: string;
  maskF: string;
  /** Additive attention bias [batch, 1, 1, seq, seq] (or [batch,1,1,1,seq] for encoders). */
  attnBias: string;
  /** The same for local (sliding-window) blocks, when the window bites at this table length. */
  localBias?: string;
  seqLen: string;
}

function addEmbeddings(g: GraphBuilder, c: TransformerConfig, p: Refs, ids: string, mask: string): Embedded {
  const seqLen = g.op('Shape', [ids], { start: 1, end: 2 });
  let h = g.op('Gather', [must(p, 'embed.tokens'), ids], { axis: 0 });
  if (c.embedScale !== undefined) h = g.op('Mul', [h, cf(g, c.embedScale)]);
  if (c.positions === 'learned') {
    const start = ci(g, [c.positionOffset]);
    const pos = g.op('Slice', [must(p, 'embed.positions'), start, g.op('Add', [seqLen, start]), ci(g, [0])]);
    h = g.op('Add', [h, pos]);
  }
  if (c.tokenTypes) h = g.op('Add', [h, must(p, 'embed.token_type')]);
  if (c.embedNorm) h = norm(g, c, p, h, 'embed.norm');
  const maskF = g.op('Cast', [mask], { to: 1 });
  const pad = g.op('Unsqueeze', [g.op('Mul', [g.op('Sub', [cf(g, 1), maskF]), cf(g, MASK_BIAS)]), ci(g, [1, 2, 3])]); // [B,1,1,1,S]
  let attnBias = pad;
  if (c.causal) {
    const causal = g.op('Slice', [must(p, TABLES.causal), ci(g, [0, 0]), g.op('Concat', [seqLen, seqLen], { axis: 0 }), ci(g, [0, 1])]); // [S,S]
    attnBias = g.op('Add', [pad, causal]);
  }
  let localBias: string | undefined;
  if (p[TABLES.local]) {
    const local = g.op('Slice', [must(p, TABLES.local), ci(g, [0, 0]), g.op('Concat', [seqLen, seqLen], { axis: 0 }), ci(g, [0, 1])]); // [S,S]
    localBias = g.op('Add', [pad, local]);
  }
  return { hidden: h, maskF, attnBias, localBias, seqLen };
}

/** rotate_half RoPE on x [B, S, H, d] with cos/sin [S, 1, d]. */
function rope(g: GraphBuilder, c: TransformerConfig, x: string, cos: string, sin: string): string {
  const half = c.headDim / 2;
  const x1 = g.op('Slice', [x, ci(g, [0]), ci(g, [half]), ci(g, [3])]);
  const x2 = g.op('Slice', [x, ci(g, [half]), ci(g, [c.headDim]), ci(g, [3])]);
  const rotated = g.op('Concat', [g.op('Neg', [x2]), x1], { axis: 3 });
  return g.op('Add', [g.op('Mul', [x, cos]), g.op('Mul', [rotated, sin])]);
}

function addAttention(g: GraphBuilder, c: TransformerConfig, p: Refs, i: number, x: string, e: Embedded, ropeCS?: { cos: string; sin: string }): string {
  const b = `blocks.${i}`;
  const rep = c.heads / c.kvHeads;
  let q = g.op('Reshape', [linear(g, p, x, `${b}.attn.q`), ci(g, [0, 0, c.heads, c.headDim])]); // [B,S,H,d]
  let k = g.op('Reshape', [linear(g, p, x, `${b}.attn.k`), ci(g, [0, 0, c.kvHeads, c.headDim])]); // [B,S,KV,d]
  const v = g.op('Reshape', [linear(g, p, x, `${b}.attn.v`), ci(g, [0, 0, c.kvHeads, c.headDim])]);
  if (c.qkNorm) {
    q = norm(g, c, p, q, `${b}.attn.q_norm`);
    k = norm(g, c, p, k, `${b}.attn.k_norm`);
  }
  if (ropeCS) {
    q = rope(g, c, q, ropeCS.cos, ropeCS.sin);
    k = rope(g, c, k, ropeCS.cos, ropeCS.sin);
  }
  // Grouped-query attention without copying K/V: query head h = kv * rep + r (HF repeat_kv order).
  const q5 = g.op('Transpose', [g.op('Reshape', [q, ci(g, [0, 0, c.kvHeads, rep, c.headDim])])], { perm: [0, 2, 3, 1, 4] }); // [B,KV,rep,S,d]
  const qs = g.op('Mul', [q5, cf(g, c.attnScale ?? 1 / Math.sqrt(c.headDim))]);
  const kT = g.op('Unsqueeze', [g.op('Transpose', [k], { perm: [0, 2, 3, 1] }), ci(g, [2])]); // [B,KV,1,d,S]
  const v5 = g.op('Unsqueeze', [g.op('Transpose', [v], { perm: [0, 2, 1, 3] }), ci(g, [2])]); // [B,KV,1,S,d]
  let raw = g.op('MatMul', [qs, kT]); // [B,KV,rep,S,S]
  if (c.attnSoftcap !== undefined) raw = softcap(g, raw, c.attnSoftcap);
  const local = c.localLayers?.[i] === true;
  const scores = g.op('Add', [raw, local && e.localBias ? e.localBias : e.attnBias]);
  const probs = g.op('Softmax', [scores], { axis: -1 });
  const ctx = g.op('Transpose', [g.op('MatMul', [probs, v5])], { perm: [0, 3, 1, 2, 4] }); // [B,S,KV,rep,d]
  return linear(g, p, g.op('Reshape', [ctx, ci(g, [0, 0, c.heads * c.headDim])]), `${b}.attn.o`);
}

function addFfn(g: GraphBuilder, c: TransformerConfig, p: Refs, i: number, x: string): string {
  const b = `blocks.${i}`;
  const inner = c.gated
    ? g.op('Mul', [activation(g, c.act, linear(g, p, x, `${b}.ffn.gate`)), linear(g, p, x, `${b}.ffn.up`)])
    : activation(g, c.act, linear(g, p, x, `${b}.ffn.up`));
  return linear(g, p, inner, `${b}.ffn.down`);
}

export interface ForwardResult {
  /** Hidden state after the kept blocks (and the final norm for decoders): [B, S, W]. */
  hidden: string;
  maskF: string;
}

export function addForward(g: GraphBuilder, c: TransformerConfig, p: Refs, depth: number, ids: string, mask: string): ForwardResult {
  checkDepth(c, depth);
  const e = addEmbeddings(g, c, p, ids, mask);
  let ropeCS: { cos: string; sin: string } | undefined;
  let localCS: { cos: string; sin: string } | undefined;
  if (c.positions === 'rope') {
    const slice = (t: string) => g.op('Unsqueeze', [g.op('Slice', [must(p, t), ci(g, [0]), e.seqLen, ci(g, [0])]), ci(g, [1])]); // [S,1,d]
    ropeCS = { cos: slice(TABLES.cos), sin: slice(TABLES.sin) };
    if (p[TABLES.localCos]) localCS = { cos: slice(TABLES.localCos), sin: slice(TABLES.localSin) };
  }
  let h = e.hidden;
  for (let i = 0; i < depth; i++) {
    const b = `blocks.${i}`;
    const cs = localCS && c.localLayers?.[i] ? localCS : ropeCS;
    if (c.postNorm) {
      h = norm(g, c, p, g.op('Add', [h, addAttention(g, c, p, i, h, e, cs)]), `${b}.attn_norm`);
      h = norm(g, c, p, g.op('Add', [h, addFfn(g, c, p, i, h)]), `${b}.ffn_norm`);
    } else {
      const post = (y: string, name: string) => (c.sandwichNorm ? norm(g, c, p, y, `${b}.${name}`) : y);
      const a = c.skipFirstAttnNorm && i === 0 ? h : norm(g, c, p, h, `${b}.attn_norm`);
      h = g.op('Add', [h, post(addAttention(g, c, p, i, a, e, cs), 'attn_post_norm')]);
      h = g.op('Add', [h, post(addFfn(g, c, p, i, norm(g, c, p, h, `${b}.ffn_norm`)), 'ffn_post_norm')]);
    }
  }
  if (c.finalNorm) h = norm(g, c, p, h, 'final_norm');
  return { hidden: h, maskF: e.maskF };
}

/** cap * tanh(x / cap) (gemma2 soft-capping of attention scores and final logits). */
function softcap(g: GraphBuilder, x: string, cap: number): string {
  return g.op('Mul', [g.op('Tanh', [g.op('Mul', [x, cf(g, 1 / cap)])]), cf(g, cap)]);
}

/** One vector per row [B, W]: the last real token, the first token (CLS), or the mean over real tokens. */
export function addPooling(g: GraphBuilder, p: Refs, hidden: string, maskF: string, pooling: Pooling): string {
  if (pooling === 'last') return addLastToken(g, p, hidden, maskF);
  if (pooling === 'cls') return g.op('Squeeze', [g.op('Slice', [hidden, ci(g, [0]), ci(g, [1]), ci(g, [1])]), ci(g, [1])]);
  // HF ModernBertForSequenceClassification "mean": sum(h * mask) / sum(mask).
  const summed = g.op('ReduceSum', [g.op('Mul', [hidden, g.op('Unsqueeze', [maskF, ci(g, [2])])]), ci(g, [1])], { keepdims: 0 });
  return g.op('Div', [summed, g.op('ReduceSum', [maskF, ci(g, [1])], { keepdims: 1 })]);
}

/** The hidden state of the last real token of each row: [B, W] (right padding: index sum(mask)-1). */
export function addLastToken(g: GraphBuilder, p: Refs, hidden: string, maskF: string): string {
  const last = g.op('Sub', [g.op('ReduceSum', [maskF, ci(g, [1])], { keepdims: 1 }), cf(g, 1)]); // [B,1]
  const seqLen = g.op('Shape', [maskF], { start: 1, end: 2 });
  const positions = g.op('Slice', [must(p, TABLES.positionsF), ci(g, [0]), seqLen, ci(g, [0])]); // [S]
  const onehot = g.op('Cast', [g.op('Equal', [positions, last])], { to: 1 }); // [B,S]
  return g.op('ReduceSum', [g.op('Mul', [hidden, g.op('Unsqueeze', [onehot, ci(g, [2])])]), ci(g, [1])], { keepdims: 0 });
}

export type GraphOutput =
  | { kind: 'hidden' }
  | { kind: 'features' }
  | { kind: 'lm'; weight: FloatTensorValue }
  | { kind: 'classifier'; weight: FloatTensorValue; bias: FloatTensorValue };

export interface TransformerGraphOptions {
  depth: number;
  output: GraphOutput;
  tableLength?: number;
  asInputs?: (name: string) => boolean;
  batch?: Dim;
  seq?: Dim;
  /** Body parameter values overriding the checkpoint's (e.g. after fine-tuning). */
  overrides?: ReadonlyMap<string, FloatTensorValue>;
  /** A prompt template applied inside the graph around each row's real tokens. */
  template?: PromptTemplateIds;
  /** Which vector the features/classifier outputs read (default: the config's pooling, else the last token). */
  pooling?: Pooling;
}

/** Token ids placed before (BOS + template head) and after (template tail) each text. */
export interface PromptTemplateIds {
  prefix: number[];
  suffix: number[];
  padId: number;
}

/**
 * Wrap each right-padded row's real tokens in the template, inside the graph: row b with n real
 * tokens becomes prefix ++ ids[b, :n] ++ suffix, right-padded to seq + |prefix| + |suffix|.
 * So a served variant takes the plain text's ids, and the prompt is part of the model.
 */
export function addTemplate(g: GraphBuilder, t: PromptTemplateIds, ids: string, mask: string, tableLength: number): { ids: string; mask: string } {
  const P = t.prefix.length,
    Q = t.suffix.length;
  const arange = g.initializer(
    'tables.positions_i64',
    BigInt64Array.from({ length: tableLength }, (_, i) => BigInt(i)),
    [tableLength],
  );
  const S = g.op('Shape', [ids], { start: 1, end: 2 });
  const pos = g.op('Slice', [arange, ci(g, [0]), g.op('Add', [S, ci(g, [P + Q])]), ci(g, [0])]); // [T]
  const n = g.op('ReduceSum', [mask, ci(g, [1])], { keepdims: 1 }); // [B,1]
  const rel = g.op('Sub', [pos, ci(g, [P])]); // [T]
  const relN = g.op('Sub', [rel, n]); // [B,T]
  const extIds = g.op('Pad', [ids, ci(g, [0, P, 0, Q])]); // [B,T]: ids[b, t-P] at P <= t < P+S
  const isText = g.op('And', [g.op('Not', [g.op('Less', [rel, ci(g, [0])])]), g.op('Less', [rel, n])]);
  let out = g.op('Where', [isText, extIds, ci(g, [t.padId])]);
  if (Q > 0) {
    const suffixTok = g.op('Gather', [ci(g, t.suffix), g.op('Max', [g.op('Min', [relN, ci(g, [Q - 1])]), ci(g, [0])])], { axis: 0 });
    const isSuffix = g.op('And', [g.op('Not', [g.op('Less', [relN, ci(g, [0])])]), g.op('Less', [relN, ci(g, [Q])])]);
    out = g.op('Where', [isSuffix, suffixTok, out]);
  }
  if (P > 0) {
    const prefixTok = g.op('Gather', [ci(g, t.prefix), g.op('Min', [pos, ci(g, [P - 1])])], { axis: 0 });
    out = g.op('Where', [g.op('Less', [pos, ci(g, [P])]), prefixTok, out]);
  }
  const newMask = g.op('Cast', [g.op('Less', [pos, g.op('Add', [n, ci(g, [P + Q])])])], { to: 7 });
  return { ids: out, mask: newMask };
}

/**
 * A complete graph input_ids/attention_mask -> `hidden` [B,S,W], or `logits` [B,S,V] (lm), or
 * `logits` [B,L] (classifier on the last real token: head.weight [W,L], head.bias [L]).
 */
export function buildTransformerGraph(
  c: TransformerConfig,
  body: ReadonlyMap<string, FloatTensorValue>,
  opts: TransformerGraphOptions,
): { graph: GraphBuilder; raw: string } {
  const batch = opts.batch ?? 'batch',
    seq = opts.seq ?? 'seq';
  const g = new GraphBuilder(`${c.arch}_k${opts.depth}`);
  let ids = g.input(IO.inputIds, 'int64', [batch, seq]);
  let mask = g.input(IO.attentionMask, 'int64', [batch, seq]);
  const values = new Map(body);
  for (const [k, v] of opts.overrides ?? []) values.set(k, v);
  const tableLength = opts.tableLength ?? Math.min(c.maxPositions, 512);
  const p = addParameters(g, c, values, { asInputs: opts.asInputs, tableLength });
  if (opts.template) ({ ids, mask } = addTemplate(g, opts.template, ids, mask, tableLength));
  const fwd = addForward(g, c, p, opts.depth, ids, mask);
  const o = opts.output;
  const pooling = opts.pooling ?? c.pooling ?? 'last';
  const pool = () => (pooling === 'last' ? addLastToken(g, p, fwd.hidden, fwd.maskF) : addPooling(g, p, fwd.hidden, fwd.maskF, pooling));
  const capped = (x: string) => (c.finalSoftcap !== undefined ? softcap(g, x, c.finalSoftcap) : x);
  let raw: string;
  if (o.kind === 'hidden') {
    raw = fwd.hidden;
    g.output(g.identity(raw, IO.hidden), 'float32', [batch, seq, c.hidden]);
  } else if (o.kind === 'features') {
    raw = pool();
    g.output(g.identity(raw, 'features'), 'float32', [batch, c.hidden]);
  } else if (o.kind === 'lm') {
    raw = capped(g.op('MatMul', [fwd.hidden, g.initializer('lm_head.weight', o.weight.data, o.weight.dims)]));
    g.output(g.identity(raw, IO.logits), 'float32', [batch, seq, c.vocab]);
  } else {
    const L = o.weight.dims[1]!;
    const param = (name: string, t: FloatTensorValue) => (opts.asInputs?.(name) ? g.input(name, 'float32', t.dims) : g.initializer(name, t.data, t.dims));
    const w = param(HEAD_WEIGHT, o.weight),
      bias = param(HEAD_BIAS, o.bias);
    raw = g.op('Add', [capped(g.op('MatMul', [pool(), w])), bias]);
    g.output(g.identity(raw, IO.logits), 'float32', [batch, L]);
  }
  return { graph: g, raw };
}

/** Number of body parameters (embeddings included) of a depth-k model. */
export function countParams(body: ReadonlyMap<string, FloatTensorValue>): number {
  let n = 0;
  for (const t of body.values()) n += t.data.length;
  return n;
}
