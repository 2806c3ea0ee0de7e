// Llama family (HF model_type "llama" and "mistral"): RMSNorm, RoPE (rotate_half as HF), SwiGLU
// MLP, grouped-query attention (num_key_value_heads), no biases unless attention_bias/mlp_bias,
// nn.Linear weights [out, in], untied LM head unless tie_word_embeddings. Llama 3.x rope_scaling
// (llama3, linear, dynamic) rescales the RoPE table; Mistral's sliding_window masks keys more
// than that many positions back in every block, when sequences can be that long.
import type { HfArchitecture, TensorSource, TransformerConfig } from './transformer.js';
import { num, tokenIdOf } from './transformer.js';
import { readRopeScaling } from './rope-scaling.js';
import { lmHeadUnlessTied, mapTensorName, type TensorNames } from './tensor-names.js';

/** The decoder layout HF's llama descendants share (model.layers.i.self_attn.q_proj, mlp.gate_proj, ...). */
export const LLAMA_TENSOR_NAMES: TensorNames = {
  outside: { 'embed.tokens': { name: 'embed_tokens.weight' }, 'final_norm.weight': { name: 'norm.weight' } },
  block: (i) => `layers.${i}`,
  norms: { attn_norm: 'input_layernorm', ffn_norm: 'post_attention_layernorm' },
  linears: {
    'attn.q': 'self_attn.q_proj',
    'attn.k': 'self_attn.k_proj',
    'attn.v': 'self_attn.v_proj',
    'attn.o': 'self_attn.o_proj',
    'ffn.up': 'mlp.up_proj',
    'ffn.gate': 'mlp.gate_proj',
    'ffn.down': 'mlp.down_proj',
  },
  normWeightOnly: true,
};

/** Where a llama-like checkpoint keeps our parameter `name`; `extraNorms` adds or renames block norms (gemma's sandwich norms). */
export function llamaLikeSource(name: string, extraNorms: Record<string, string> = {}): TensorSource | undefined {
  const names = Object.keys(extraNorms).length === 0 ? LLAMA_TENSOR_NAMES : { ...LLAMA_TENSOR_NAMES, norms: { ...LLAMA_TENSOR_NAMES.norms, ...extraNorms } };
  return mapTensorName(names, name);
}

/**
 * The TransformerConfig fields llama and its descendants (qwen2, qwen3, phi3) read alike from
 * config.json: RMSNorm, RoPE, SwiGLU, grouped-query attention, untied LM head unless
 * tie_word_embeddings; `defaults` are the family's for keys a config may leave out. Each family
 * adds its token ids and extras.
 */
export function llamaLikeConfig(
  hf: Record<string, unknown>,
  arch: TransformerConfig['arch'],
  defaults: { maxPositions: number; eps: number; ropeTheta: number },
): TransformerConfig {
  const W = num(hf, 'hidden_size'),
    heads = num(hf, 'num_attention_heads');
  return {
    arch,
    layers: num(hf, 'num_hidden_layers'),
    hidden: W,
    heads,
    kvHeads: num(hf, 'num_key_value_heads', heads),
    headDim: num(hf, 'head_dim', W / heads),
    ffn: num(hf, 'intermediate_size'),
    vocab: num(hf, 'vocab_size'),
    maxPositions: num(hf, 'max_position_embeddings', defaults.maxPositions),
    positionOffset: 0,
    norm: 'rms',
    eps: num(hf, 'rms_norm_eps', defaults.eps),
    postNorm: false,
    act: 'silu',
    gated: true,
    positions: 'rope',
    ropeTheta: num(hf, 'rope_theta', defaults.ropeTheta),
    causal: true,
    finalNorm: true,
    embedNorm: false,
    tokenTypes: false,
    tiedEmbeddings: hf.tie_word_embeddings === true,
  };
}

/** Every block local with this window (mistral, phi3 sliding_window), or nothing when the config has none. */
export function slidingEverywhere(hf: Record<string, unknown>, layers: number): Partial<TransformerConfig> {
  const w = hf.sliding_window;
  if (typeof w !== 'number' || w <= 0) return {};
  return { localLayers: Array.from({ length: layers }, () => true), window: w };
}

export const llama: HfArchitecture = {
  modelTypes: ['llama', 'mistral'],
  prefixes: ['model.', ''],
  probe: 'embed_tokens.weight',
  config(hf) {
    const act = (hf.hidden_act as string | undefined) ?? 'silu';
    if (act !== 'silu') throw new Error(`llama: hidden_act ${act} is not supported`);
    const ropeScaling = readRopeScaling(hf, String((hf.model_type as string | undefined) ?? 'llama'));
    const layers = num(hf, 'num_hidden_layers');
    // Mistral and Llama configs that carry a sliding_window (Mistral 7B v0.1: 4096) use it in every block.
    const window = hf.model_type === 'mistral' ? slidingEverywhere(hf, layers) : {};
    return {
      ...llamaLikeConfig(hf, 'llama', { maxPositions: 2048, eps: 1e-6, ropeTheta: 10000 }),
      bosId: tokenIdOf(hf, 'bos_token_id', 1),
      eosId: tokenIdOf(hf, 'eos_token_id', 2),
      ...(ropeScaling ? { ropeScaling } : {}),
      ...window,
    };
  },
  source: (_c, name) => llamaLikeSource(name),
  lmHead: lmHeadUnlessTied,
};
