// ModernBERT (HF model_type "modernbert"): a pre-LN encoder with
//   - LayerNorm without biases (norm_bias false) on the embeddings, before attention (none in
//     block 0: nn.Identity), before the MLP, and after the last block (final_norm);
//   - RoPE: global blocks (every global_attn_every_n_layers-th, from block 0) with
//     global_rope_theta, the others local with local_rope_theta and a window: key j is seen from
//     query i when |i - j| <= local_attention / 2 (HF window_mask);
//   - fused attn.Wqkv [3W, W] (q | k | v) and a GeGLU MLP from mlp.Wi [2F, W]:
//     Wo(gelu(input) * gate) with input the first half (HF ModernBertMLP);
//   - no biases (attention_bias, mlp_bias false).
// Classifiers pool as the config's classifier_pooling says ("cls" or "mean", HF
// ModernBertForSequenceClassification).
import type { HfArchitecture, Pooling } from './transformer.js';
import { num, str, tokenIdOf } from './transformer.js';

export const modernbert: HfArchitecture = {
  modelTypes: ['modernbert'],
  prefixes: ['model.', ''],
  probe: 'embeddings.tok_embeddings.weight',
  config(hf) {
    const W = num(hf, 'hidden_size'),
      heads = num(hf, 'num_attention_heads');
    const act = str(hf, ['hidden_activation'], 'gelu');
    if (act !== 'gelu' && act !== 'gelu_pytorch_tanh' && act !== 'gelu_new') throw new Error(`modernbert: hidden_activation ${act} is not supported`);
    if (hf.norm_bias === true || hf.attention_bias === true || hf.mlp_bias === true)
      throw new Error('modernbert: norm_bias, attention_bias and mlp_bias must be false');
    const layers = num(hf, 'num_hidden_layers');
    const every = num(hf, 'global_attn_every_n_layers', 3);
    const local = num(hf, 'local_attention', 128);
    const localTheta = hf.local_rope_theta;
    return {
      arch: 'modernbert',
      layers,
      hidden: W,
      heads,
      kvHeads: heads,
      headDim: W / heads,
      ffn: num(hf, 'intermediate_size'),
      vocab: num(hf, 'vocab_size'),
      maxPositions: num(hf, 'max_position_embeddings', 8192),
      positionOffset: 0,
      norm: 'layer',
      normBias: false,
      eps: num(hf, 'norm_eps', 1e-5),
      postNorm: false,
      act: act === 'gelu' ? 'gelu' : 'gelu_tanh',
      gated: true,
      positions: 'rope',
      ropeTheta: num(hf, 'global_rope_theta', 160000),
      causal: false,
      finalNorm: true,
      embedNorm: true,
      tokenTypes: false,
      tiedEmbeddings: true,
      bosId: tokenIdOf(hf, 'bos_token_id'),
      eosId: tokenIdOf(hf, 'eos_token_id'),
      padId: tokenIdOf(hf, 'pad_token_id'),
      encoderMarks: { cls: '[CLS]', sep: '[SEP]' },
      skipFirstAttnNorm: true,
      localLayers: Array.from({ length: layers }, (_, i) => i % every !== 0),
      window: Math.floor(local / 2),
      windowSymmetric: true,
      ...(typeof localTheta === 'number' ? { localRopeTheta: localTheta } : {}),
    };
  },
  source(c, name) {
    if (name === 'embed.tokens') return { name: 'embeddings.tok_embeddings.weight' };
    if (name === 'embed.norm.weight') return { name: 'embeddings.norm.weight' };
    if (name === 'final_norm.weight') return { name: 'final_norm.weight' };
    const m = /^blocks\.(\d+)\.(.+)\.weight$/.exec(name);
    if (!m) return undefined;
    const [, i, part] = m;
    const l = `layers.${i}`;
    const W = c.hidden,
      F = c.ffn;
    const map: Record<string, { name: string; rows?: [number, number]; transpose?: boolean }> = {
      attn_norm: { name: `${l}.attn_norm.weight` },
      ffn_norm: { name: `${l}.mlp_norm.weight` },
      'attn.q': { name: `${l}.attn.Wqkv.weight`, rows: [0, W], transpose: true },
      'attn.k': { name: `${l}.attn.Wqkv.weight`, rows: [W, 2 * W], transpose: true },
      'attn.v': { name: `${l}.attn.Wqkv.weight`, rows: [2 * W, 3 * W], transpose: true },
      'attn.o': { name: `${l}.attn.Wo.weight`, transpose: true },
      'ffn.gate': { name: `${l}.mlp.Wi.weight`, rows: [0, F], transpose: true },
      'ffn.up': { name: `${l}.mlp.Wi.weight`, rows: [F, 2 * F], transpose: true },
      'ffn.down': { name: `${l}.mlp.Wo.weight`, transpose: true },
    };
    return map[part!];
  },
  lmHead: () => undefined,
  defaultPooling: (_c, hf): Pooling => (hf.classifier_pooling === 'mean' ? 'mean' : 'cls'),
};
