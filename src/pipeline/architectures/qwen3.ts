// Qwen3 (HF model_type "qwen3"): the Qwen2 layout without the q/k/v biases (attention_bias
// false), an explicit head_dim, and an RMSNorm over head_dim on each query and key head before
// RoPE (self_attn.q_norm / k_norm, HF Qwen3Attention).
import type { HfArchitecture } from './transformer.js';
import { llamaLikeSource } from './llama.js';
import { qwenConfig } from './qwen2.js';
import { lmHeadUnlessTied } from './tensor-names.js';

export const qwen3: HfArchitecture = {
  modelTypes: ['qwen3'],
  prefixes: ['model.', ''],
  probe: 'embed_tokens.weight',
  config: (hf) => ({ ...qwenConfig(hf, 'qwen3'), qkNorm: true }),
  source(_c, name) {
    const m = /^blocks\.(\d+)\.attn\.([qk])_norm\.weight$/.exec(name);
    if (m) return { name: `layers.${m[1]}.self_attn.${m[2]}_norm.weight` };
    return llamaLikeSource(name);
  },
  lmHead: lmHeadUnlessTied,
  defaultPooling: () => 'last',
};
