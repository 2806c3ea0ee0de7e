// Qwen2 / Qwen2.5 (HF model_type "qwen2"): the llama layout with biases on q_proj, k_proj and
// v_proj (not o_proj), rope_theta 1e6, tied embeddings in the small sizes. The tokenizer
// (byte-level BPE) adds no BOS. use_sliding_window is false in every released config; a config
// that turns it on is refused (its per-layer rule, max_window_layers, is not implemented).
import type { HfArchitecture, TransformerConfig } from './transformer.js';
import { str, tokenIdOf } from './transformer.js';
import { llamaLikeConfig, llamaLikeSource } from './llama.js';
import { readRopeScaling } from './rope-scaling.js';
import { lmHeadUnlessTied } from './tensor-names.js';

/** The config.json keys Qwen2 and Qwen3 share with llama. */
export function qwenConfig(hf: Record<string, unknown>, family: 'qwen2' | 'qwen3'): TransformerConfig {
  const act = str(hf, ['hidden_act'], 'silu');
  if (act !== 'silu') throw new Error(`${family}: hidden_act ${act} is not supported`);
  if (hf.use_sliding_window === true) throw new Error(`${family}: use_sliding_window is not supported`);
  const ropeScaling = readRopeScaling(hf, family);
  return {
    ...llamaLikeConfig(hf, family, { maxPositions: 32768, eps: 1e-6, ropeTheta: 1e6 }),
    bosId: tokenIdOf(hf, 'bos_token_id'),
    eosId: tokenIdOf(hf, 'eos_token_id'),
    prependBos: false,
    ...(ropeScaling ? { ropeScaling } : {}),
  };
}

export const qwen2: HfArchitecture = {
  modelTypes: ['qwen2'],
  prefixes: ['model.', ''],
  probe: 'embed_tokens.weight',
  config: (hf) => qwenConfig(hf, 'qwen2'),
  // q/k/v biases come through llamaLikeSource's `.bias` names; o_proj has none and is skipped.
  source: (_c, name) => llamaLikeSource(name),
  lmHead: lmHeadUnlessTied,
  defaultPooling: () => 'last',
};
