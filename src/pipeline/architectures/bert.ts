// BERT (HF model_type "bert"): post-LN encoder, learned positions, token types (type 0 for
// single texts), GELU (erf), LayerNorm on the embeddings, nn.Linear weights [out, in].
import type { HfArchitecture, TensorSource } from './transformer.js';
import { num } from './transformer.js';

export const bert: HfArchitecture = {
  modelTypes: ['bert'],
  prefixes: ['bert.', ''],
  probe: 'embeddings.word_embeddings.weight',
  config(hf) {
    const W = num(hf, 'hidden_size'), heads = num(hf, 'num_attention_heads');
    const act = (hf.hidden_act as string | undefined) ?? 'gelu';
    if (act !== 'gelu' && act !== 'gelu_new' && act !== 'relu') throw new Error(`bert: hidden_act ${act} is not supported`);
    return {
      arch: 'bert',
      layers: num(hf, 'num_hidden_layers'),
      hidden: W,
      heads,
      kvHeads: heads,
      headDim: W / heads,
      ffn: num(hf, 'intermediate_size'),
      vocab: num(hf, 'vocab_size'),
      maxPositions: num(hf, 'max_position_embeddings', 512),
      positionOffset: 0,
      norm: 'layer',
      eps: num(hf, 'layer_norm_eps', 1e-12),
      postNorm: true,
      act: act === 'gelu' ? 'gelu' : act === 'relu' ? 'relu' : 'gelu_tanh',
      gated: false,
      positions: 'learned',
      ropeTheta: 0,
      causal: false,
      finalNorm: false,
      embedNorm: true,
      tokenTypes: true,
      tiedEmbeddings: true,
      padId: num(hf, 'pad_token_id', 0),
    };
  },
  source: (_c, name) => bertLikeSource(name),
  lmHead: () => undefined,
  // BertForSequenceClassification reads [CLS] (the first token); --pooling overrides.
  defaultPooling: () => 'cls',
};

/** BERT's tensor names (also RoBERTa's and XLM-R's), under the prefix the checkpoint uses. */
export function bertLikeSource(name: string): TensorSource | undefined {
  {
    if (name === 'embed.tokens') return { name: 'embeddings.word_embeddings.weight' };
    if (name === 'embed.positions') return { name: 'embeddings.position_embeddings.weight' };
    if (name === 'embed.token_type') return { name: 'embeddings.token_type_embeddings.weight', row: 0 };
    if (name.startsWith('embed.norm.')) return { name: `embeddings.LayerNorm.${name.split('.')[2]}` };
    const m = /^blocks\.(\d+)\.(.+)\.(weight|bias)$/.exec(name);
    if (!m) return undefined;
    const [, i, part, kind] = m;
    const l = `encoder.layer.${i}`;
    const norms: Record<string, string> = { attn_norm: 'attention.output.LayerNorm', ffn_norm: 'output.LayerNorm' };
    if (norms[part!]) return { name: `${l}.${norms[part!]}.${kind}` };
    const lin: Record<string, string> = {
      'attn.q': 'attention.self.query', 'attn.k': 'attention.self.key', 'attn.v': 'attention.self.value', 'attn.o': 'attention.output.dense',
      'ffn.up': 'intermediate.dense', 'ffn.down': 'output.dense',
    };
    return lin[part!] ? { name: `${l}.${lin[part!]}.${kind}`, transpose: kind === 'weight' } : undefined;
  }
}
