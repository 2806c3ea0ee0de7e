// Phi-3 / Phi-3.5 (HF model_type "phi3"): the llama layout with fused projections, split here
// by rows before the usual transpose: self_attn.qkv_proj [(H + 2 KV) d, W] is q | k | v, and
// mlp.gate_up_proj [2 F, W] is gate | up (HF Phi3MLP: up * silu(gate)). sliding_window (2047 in
// Phi-3-mini-4k) masks keys that far back in every block when sequences can be that long;
// longrope (the 128k variants, Phi-3.5) uses its short factors and attention factor up to
// original_max_position_embeddings. partial_rotary_factor < 1 (Phi-4-mini) is refused.
import type { HfArchitecture } from './transformer.js';
import { num, str, tokenIdOf } from './transformer.js';
import { llamaLikeConfig, llamaLikeSource, slidingEverywhere } from './llama.js';
import { readRopeScaling } from './rope-scaling.js';
import { lmHeadUnlessTied } from './tensor-names.js';

export const phi3: HfArchitecture = {
  modelTypes: ['phi3'],
  prefixes: ['model.', ''],
  probe: 'embed_tokens.weight',
  config(hf) {
    const act = str(hf, ['hidden_act'], 'silu');
    if (act !== 'silu') throw new Error(`phi3: hidden_act ${act} is not supported`);
    const partial = num(hf, 'partial_rotary_factor', 1);
    if (partial !== 1) throw new Error(`phi3: partial_rotary_factor ${partial} is not supported`);
    const layers = num(hf, 'num_hidden_layers');
    const ropeScaling = readRopeScaling(hf, 'phi3', { longrope: true });
    return {
      ...llamaLikeConfig(hf, 'phi3', { maxPositions: 4096, eps: 1e-5, ropeTheta: 10000 }),
      bosId: tokenIdOf(hf, 'bos_token_id', 1),
      eosId: tokenIdOf(hf, 'eos_token_id', 32000),
      padId: tokenIdOf(hf, 'pad_token_id'),
      prependBos: false,
      ...slidingEverywhere(hf, layers),
      ...(ropeScaling ? { ropeScaling } : {}),
    };
  },
  source(c, name) {
    const m = /^blocks\.(\d+)\.(attn\.[qkv]|ffn\.gate|ffn\.up)\.weight$/.exec(name);
    if (!m) {
      if (/\.(attn\.[qkv]|ffn\.(gate|up))\.bias$/.test(name)) return undefined;
      return llamaLikeSource(name);
    }
    const [, i, part] = m;
    const q = c.heads * c.headDim,
      kv = c.kvHeads * c.headDim,
      F = c.ffn;
    const rows: Record<string, [string, [number, number]]> = {
      'attn.q': ['self_attn.qkv_proj', [0, q]],
      'attn.k': ['self_attn.qkv_proj', [q, q + kv]],
      'attn.v': ['self_attn.qkv_proj', [q + kv, q + 2 * kv]],
      'ffn.gate': ['mlp.gate_up_proj', [0, F]],
      'ffn.up': ['mlp.gate_up_proj', [F, 2 * F]],
    };
    const [tensor, range] = rows[part!]!;
    return { name: `layers.${i}.${tensor}.weight`, rows: range, transpose: true };
  },
  lmHead: lmHeadUnlessTied,
  defaultPooling: () => 'last',
};
