// OPT (HF model_type "opt"): learned positions with offset 2, ReLU, pre-LN unless
// do_layer_norm_before is false (opt-350m: post-LN and no final norm), nn.Linear weights [out, in].
import type { HfArchitecture } from './transformer.js';
import { num } from './transformer.js';
import { lmHeadUnlessTied, mapTensorName, type TensorNames } from './tensor-names.js';

const OPT_TENSOR_NAMES: TensorNames = {
  outside: {
    'embed.tokens': { name: 'embed_tokens.weight' },
    'embed.positions': { name: 'embed_positions.weight' },
    'final_norm.weight': { name: 'final_layer_norm.weight' },
    'final_norm.bias': { name: 'final_layer_norm.bias' },
  },
  block: (i) => `layers.${i}`,
  norms: { attn_norm: 'self_attn_layer_norm', ffn_norm: 'final_layer_norm' },
  linears: {
    'attn.q': 'self_attn.q_proj',
    'attn.k': 'self_attn.k_proj',
    'attn.v': 'self_attn.v_proj',
    'attn.o': 'self_attn.out_proj',
    'ffn.up': 'fc1',
    'ffn.down': 'fc2',
  },
};

export const opt: HfArchitecture = {
  modelTypes: ['opt'],
  prefixes: ['model.decoder.', 'decoder.', ''],
  probe: 'embed_tokens.weight',
  config(hf) {
    const W = num(hf, 'hidden_size'),
      heads = num(hf, 'num_attention_heads');
    if (typeof hf.word_embed_proj_dim === 'number' && hf.word_embed_proj_dim !== W) {
      throw new Error(`opt: word_embed_proj_dim ${hf.word_embed_proj_dim} != hidden_size ${W} (project_in/out) is not supported`);
    }
    const act = (hf.activation_function as string | undefined) ?? 'relu';
    if (act !== 'relu' && act !== 'gelu') throw new Error(`opt: activation_function ${act} is not supported`);
    const pre = hf.do_layer_norm_before !== false;
    return {
      arch: 'opt',
      layers: num(hf, 'num_hidden_layers'),
      hidden: W,
      heads,
      kvHeads: heads,
      headDim: W / heads,
      ffn: num(hf, 'ffn_dim'),
      vocab: num(hf, 'vocab_size'),
      maxPositions: num(hf, 'max_position_embeddings'),
      positionOffset: 2,
      norm: 'layer',
      eps: 1e-5,
      postNorm: !pre,
      act: act === 'gelu' ? 'gelu' : 'relu',
      gated: false,
      positions: 'learned',
      ropeTheta: 0,
      causal: true,
      finalNorm: pre && hf._remove_final_layer_norm !== true,
      embedNorm: false,
      tokenTypes: false,
      tiedEmbeddings: hf.tie_word_embeddings !== false,
      bosId: num(hf, 'bos_token_id', 2),
      eosId: num(hf, 'eos_token_id', 2),
      padId: num(hf, 'pad_token_id', 1),
    };
  },
  source: (_c, name) => mapTensorName(OPT_TENSOR_NAMES, name),
  lmHead: lmHeadUnlessTied,
};
