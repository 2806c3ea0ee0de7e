// Llama family (HF model_type "llama", also mistral-style configs): RMSNorm, RoPE (rotate_half
// as HF), SwiGLU MLP, grouped-query attention (num_key_value_heads), no biases unless
// attention_bias/mlp_bias, nn.Linear weights [out, in], untied LM head unless tie_word_embeddings.
import type { HfArchitecture } from './transformer.js';
import { num } from './transformer.js';

export const llama: HfArchitecture = {
  modelTypes: ['llama', 'mistral', 'qwen2'],
  prefixes: ['model.', ''],
  probe: 'embed_tokens.weight',
  config(hf) {
    const W = num(hf, 'hidden_size'), heads = num(hf, 'num_attention_heads');
    const act = (hf.hidden_act as string | undefined) ?? 'silu';
    if (act !== 'silu') throw new Error(`llama: hidden_act ${act} is not supported`);
    if (hf.rope_scaling) throw new Error('llama: rope_scaling is not supported');
    return {
      arch: 'llama',
      layers: num(hf, 'num_hidden_layers'),
      hidden: W,
      heads,
      kvHeads: num(hf, 'num_key_value_heads', heads),
      headDim: num(hf, 'head_dim', W / heads),
      ffn: num(hf, 'intermediate_size'),
      vocab: num(hf, 'vocab_size'),
      maxPositions: num(hf, 'max_position_embeddings', 2048),
      positionOffset: 0,
      norm: 'rms',
      eps: num(hf, 'rms_norm_eps', 1e-6),
      postNorm: false,
      act: 'silu',
      gated: true,
      positions: 'rope',
      ropeTheta: num(hf, 'rope_theta', 10000),
      causal: true,
      finalNorm: true,
      embedNorm: false,
      tokenTypes: false,
      tiedEmbeddings: hf.tie_word_embeddings === true,
      bosId: num(hf, 'bos_token_id', 1),
      eosId: num(hf, 'eos_token_id', 2),
    };
  },
  source(_c, name) {
    if (name === 'embed.tokens') return { name: 'embed_tokens.weight' };
    if (name === 'final_norm.weight') return { name: 'norm.weight' };
    const m = /^blocks\.(\d+)\.(.+)\.(weight|bias)$/.exec(name);
    if (!m) return undefined;
    const [, i, part, kind] = m;
    const norms: Record<string, string> = { attn_norm: 'input_layernorm', ffn_norm: 'post_attention_layernorm' };
    if (norms[part!]) return kind === 'weight' ? { name: `layers.${i}.${norms[part!]}.weight` } : undefined;
    const lin: Record<string, string> = {
      'attn.q': 'self_attn.q_proj', 'attn.k': 'self_attn.k_proj', 'attn.v': 'self_attn.v_proj', 'attn.o': 'self_attn.o_proj',
      'ffn.up': 'mlp.up_proj', 'ffn.gate': 'mlp.gate_proj', 'ffn.down': 'mlp.down_proj',
    };
    return lin[part!] ? { name: `layers.${i}.${lin[part!]}.${kind}`, transpose: kind === 'weight' } : undefined;
  },
  lmHead: (c) => (c.tiedEmbeddings ? undefined : 'lm_head.weight'),
};
