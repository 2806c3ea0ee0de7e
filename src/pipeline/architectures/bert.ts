// BERT (HF model_type "bert"): post-LN encoder, learned positions, token types (type 0 for
// single texts), GELU (erf), LayerNorm on the embeddings, nn.Linear weights [out, in].
import type { HfArchitecture, TransformerConfig } from './transformer.js';
import { num } from './transformer.js';
import { mapTensorName, type TensorNames } from './tensor-names.js';

export const bert: HfArchitecture = {
  modelTypes: ['bert'],
  prefixes: ['bert.', ''],
  probe: 'embeddings.word_embeddings.weight',
  config(hf) {
    const act = (hf.hidden_act as string | undefined) ?? 'gelu';
    return {
      ...bertLikeConfig(hf, 'bert', 'bert', act, { maxPositions: num(hf, 'max_position_embeddings', 512), positionOffset: 0, eps: 1e-12 }),
      padId: num(hf, 'pad_token_id', 0),
    };
  },
  source: (_c, name) => mapTensorName(BERT_TENSOR_NAMES, name),
  lmHead: () => undefined,
  // BertForSequenceClassification reads [CLS] (the first token); --pooling overrides.
  defaultPooling: () => 'cls',
};

/**
 * The TransformerConfig of BERT's post-LN encoder layout, which RoBERTa shares: learned positions
 * (`maxPositions` rows from `positionOffset`), LayerNorm on the embeddings and after each sublayer,
 * GELU or ReLU, token types, tied embeddings. `family` names the model_type in errors.
 */
export function bertLikeConfig(
  hf: Record<string, unknown>,
  family: string,
  arch: TransformerConfig['arch'],
  act: string,
  o: { maxPositions: number; positionOffset: number; eps: number },
): TransformerConfig {
  if (act !== 'gelu' && act !== 'gelu_new' && act !== 'relu') throw new Error(`${family}: hidden_act ${act} is not supported`);
  const W = num(hf, 'hidden_size'),
    heads = num(hf, 'num_attention_heads');
  return {
    arch,
    layers: num(hf, 'num_hidden_layers'),
    hidden: W,
    heads,
    kvHeads: heads,
    headDim: W / heads,
    ffn: num(hf, 'intermediate_size'),
    vocab: num(hf, 'vocab_size'),
    maxPositions: o.maxPositions,
    positionOffset: o.positionOffset,
    norm: 'layer',
    eps: num(hf, 'layer_norm_eps', o.eps),
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
  };
}

/** The embeddings of BERT and its descendants (DistilBERT too): tokens, learned positions, LayerNorm. */
export const BERT_EMBEDDING_NAMES: TensorNames['outside'] = {
  'embed.tokens': { name: 'embeddings.word_embeddings.weight' },
  'embed.positions': { name: 'embeddings.position_embeddings.weight' },
  'embed.norm.weight': { name: 'embeddings.LayerNorm.weight' },
  'embed.norm.bias': { name: 'embeddings.LayerNorm.bias' },
};

/** BERT's tensor names (also RoBERTa's and XLM-R's), under the prefix the checkpoint uses. */
export const BERT_TENSOR_NAMES: TensorNames = {
  outside: { ...BERT_EMBEDDING_NAMES, 'embed.token_type': { name: 'embeddings.token_type_embeddings.weight', row: 0 } },
  block: (i) => `encoder.layer.${i}`,
  norms: { attn_norm: 'attention.output.LayerNorm', ffn_norm: 'output.LayerNorm' },
  linears: {
    'attn.q': 'attention.self.query',
    'attn.k': 'attention.self.key',
    'attn.v': 'attention.self.value',
    'attn.o': 'attention.output.dense',
    'ffn.up': 'intermediate.dense',
    'ffn.down': 'output.dense',
  },
};
