// Gemma 2 (HF model_type "gemma2") and Gemma 3 text (model_type "gemma3_text"): the llama
// layout with
//   - RMSNorm scaling by (1 + w): the stored w is read as w + 1 (same product, in fp32 as HF);
//   - GeGLU: gelu_pytorch_tanh(gate) * up;
//   - token embeddings times sqrt(hidden_size);
//   - four norms per block: input_layernorm, post_attention_layernorm (on the attention output,
//     before the residual add), pre_feedforward_layernorm, post_feedforward_layernorm;
//   - scores scaled by query_pre_attn_scalar^-0.5, not head_dim^-0.5;
//   - local (sliding-window) and global blocks alternating: gemma2 even blocks local, gemma3
//     every sliding_window_pattern-th block global (or config layer_types where present);
//   - gemma2: attention and final logit soft-capping (cap * tanh(x / cap));
//   - gemma3: per-head q/k RMSNorm (also 1 + w), local blocks with RoPE base rope_local_base_freq
//     (unscaled), global blocks with rope_theta and rope_scaling.
// Embeddings are tied. The tokenizer (SentencePiece BPE with byte fallback) prepends <bos>.
import type { HfArchitecture, TensorSource, TransformerConfig } from './transformer.js';
import { num, str, tokenIdOf } from './transformer.js';
import { llamaLikeSource } from './llama.js';
import { readRopeScaling } from './rope-scaling.js';
import { lmHeadUnlessTied } from './tensor-names.js';

function localLayersOf(hf: Record<string, unknown>, layers: number, isLocal: (i: number) => boolean): boolean[] {
  const types = hf.layer_types;
  if (Array.isArray(types) && types.length >= layers) return types.slice(0, layers).map((t) => t === 'sliding_attention');
  return Array.from({ length: layers }, (_, i) => isLocal(i));
}

function gemmaConfig(hf: Record<string, unknown>, family: 'gemma2' | 'gemma3'): TransformerConfig {
  const W = num(hf, 'hidden_size'),
    heads = num(hf, 'num_attention_heads');
  const act = str(hf, ['hidden_activation', 'hidden_act'], 'gelu_pytorch_tanh');
  if (act !== 'gelu_pytorch_tanh' && act !== 'gelu_new') throw new Error(`${family}: hidden_activation ${act} is not supported`);
  const layers = num(hf, 'num_hidden_layers');
  const headDim = num(hf, 'head_dim', 256);
  const cap = (key: string) => (typeof hf[key] === 'number' ? (hf[key] as number) : undefined);
  const pattern = num(hf, 'sliding_window_pattern', 6);
  const localLayers = family === 'gemma2' ? localLayersOf(hf, layers, (i) => i % 2 === 0) : localLayersOf(hf, layers, (i) => (i + 1) % pattern !== 0);
  const window = num(hf, 'sliding_window', 4096);
  const ropeScaling = readRopeScaling(hf, family);
  const config: TransformerConfig = {
    arch: family,
    layers,
    hidden: W,
    heads,
    kvHeads: num(hf, 'num_key_value_heads', heads),
    headDim,
    ffn: num(hf, 'intermediate_size'),
    vocab: num(hf, 'vocab_size'),
    maxPositions: num(hf, 'max_position_embeddings', 8192),
    positionOffset: 0,
    norm: 'rms',
    eps: num(hf, 'rms_norm_eps', 1e-6),
    postNorm: false,
    act: 'gelu_tanh',
    gated: true,
    positions: 'rope',
    ropeTheta: num(hf, 'rope_theta', family === 'gemma2' ? 10000 : 1e6),
    causal: true,
    finalNorm: true,
    embedNorm: false,
    tokenTypes: false,
    tiedEmbeddings: hf.tie_word_embeddings !== false,
    bosId: tokenIdOf(hf, 'bos_token_id', 2),
    eosId: tokenIdOf(hf, 'eos_token_id', 1),
    padId: tokenIdOf(hf, 'pad_token_id', 0),
    prependBos: true,
    sandwichNorm: true,
    embedScale: Math.fround(Math.sqrt(W)),
    attnScale: Math.pow(num(hf, 'query_pre_attn_scalar', headDim), -0.5),
    localLayers,
    window,
    ...(ropeScaling ? { ropeScaling } : {}),
  };
  const attnCap = cap('attn_logit_softcapping'),
    finalCap = cap('final_logit_softcapping');
  if (attnCap !== undefined) config.attnSoftcap = attnCap;
  if (finalCap !== undefined) config.finalSoftcap = finalCap;
  if (family === 'gemma3') {
    config.qkNorm = true;
    config.localRopeTheta = num(hf, 'rope_local_base_freq', 10000);
  }
  return config;
}

function gemmaSource(name: string): TensorSource | undefined {
  const qk = /^blocks\.(\d+)\.attn\.([qk])_norm\.weight$/.exec(name);
  if (qk) return { name: `layers.${qk[1]}.self_attn.${qk[2]}_norm.weight`, plus: 1 };
  const s = llamaLikeSource(name, {
    attn_post_norm: 'post_attention_layernorm',
    ffn_norm: 'pre_feedforward_layernorm',
    ffn_post_norm: 'post_feedforward_layernorm',
  });
  // Every Gemma norm computes x_normed * (1 + w).
  if (s && (name.endsWith('norm.weight') || name === 'final_norm.weight')) return { ...s, plus: 1 };
  return s;
}

export const gemma2: HfArchitecture = {
  modelTypes: ['gemma2'],
  prefixes: ['model.', ''],
  probe: 'embed_tokens.weight',
  config: (hf) => gemmaConfig(hf, 'gemma2'),
  source: (_c, name) => gemmaSource(name),
  lmHead: lmHeadUnlessTied,
  defaultPooling: () => 'last',
};

export const gemma3: HfArchitecture = {
  modelTypes: ['gemma3_text'],
  prefixes: ['model.', ''],
  probe: 'embed_tokens.weight',
  config: (hf) => gemmaConfig(hf, 'gemma3'),
  source: (_c, name) => gemmaSource(name),
  lmHead: lmHeadUnlessTied,
  defaultPooling: () => 'last',
};

/**
 * Gemma3TextConfig's defaults: the text_config of the multimodal checkpoints (gemma-3-4b and up)
 * lists only what differs from them (gemma-3-4b: hidden_size, intermediate_size,
 * num_hidden_layers, rope_scaling, sliding_window).
 */
const GEMMA3_TEXT_DEFAULTS: Record<string, unknown> = {
  vocab_size: 262208,
  hidden_size: 2304,
  intermediate_size: 9216,
  num_hidden_layers: 26,
  num_attention_heads: 8,
  num_key_value_heads: 4,
  head_dim: 256,
  hidden_activation: 'gelu_pytorch_tanh',
  max_position_embeddings: 131072,
  rms_norm_eps: 1e-6,
  rope_theta: 1_000_000,
  query_pre_attn_scalar: 256,
  sliding_window: 4096,
  final_logit_softcapping: null,
  attn_logit_softcapping: null,
  rope_scaling: null,
  rope_local_base_freq: 10000,
  sliding_window_pattern: 6,
  bos_token_id: 2,
  eos_token_id: 1,
  pad_token_id: 0,
  tie_word_embeddings: true,
};

/** Gemma 3 multimodal checkpoints (model_type "gemma3", 4b and up): the language model only; the vision tower is never read. */
export const gemma3Multimodal: HfArchitecture = {
  modelTypes: ['gemma3'],
  // transformers 4.50 saved language_model.model.*; 4.52 and later save model.language_model.*.
  prefixes: ['language_model.model.', 'model.language_model.'],
  probe: 'embed_tokens.weight',
  config(hf) {
    const text = (hf.text_config ?? {}) as Record<string, unknown>;
    const top: Record<string, unknown> = {};
    for (const k of ['bos_token_id', 'eos_token_id', 'pad_token_id']) if (hf[k] !== undefined && text[k] === undefined) top[k] = hf[k];
    return gemmaConfig({ ...GEMMA3_TEXT_DEFAULTS, ...top, ...text }, 'gemma3');
  },
  source: (_c, name) => gemmaSource(name),
  lmHead: () => undefined,
  defaultPooling: () => 'last',
};
