// DistilBERT (HF model_type "distilbert"): a post-LN BERT without token types, with its own
// names: embeddings.{word,position}_embeddings + LayerNorm, transformer.layer.i.attention.
// {q,k,v,out}_lin, sa_layer_norm, ffn.lin1/lin2, output_layer_norm; LayerNorm eps 1e-12.
// Classifiers read [CLS], as DistilBertForSequenceClassification does.
import type { HfArchitecture } from './transformer.js';
import { num, str, tokenIdOf } from './transformer.js';
import { BERT_EMBEDDING_NAMES } from './bert.js';
import { mapTensorName, type TensorNames } from './tensor-names.js';

const DISTILBERT_TENSOR_NAMES: TensorNames = {
  outside: BERT_EMBEDDING_NAMES, // no token types
  block: (i) => `transformer.layer.${i}`,
  norms: { attn_norm: 'sa_layer_norm', ffn_norm: 'output_layer_norm' },
  linears: {
    'attn.q': 'attention.q_lin',
    'attn.k': 'attention.k_lin',
    'attn.v': 'attention.v_lin',
    'attn.o': 'attention.out_lin',
    'ffn.up': 'ffn.lin1',
    'ffn.down': 'ffn.lin2',
  },
};

export const distilbert: HfArchitecture = {
  modelTypes: ['distilbert'],
  prefixes: ['distilbert.', ''],
  probe: 'embeddings.word_embeddings.weight',
  config(hf) {
    const W = num(hf, 'dim'),
      heads = num(hf, 'n_heads');
    const act = str(hf, ['activation'], 'gelu');
    if (act !== 'gelu' && act !== 'relu') throw new Error(`distilbert: activation ${act} is not supported`);
    return {
      arch: 'distilbert',
      layers: num(hf, 'n_layers'),
      hidden: W,
      heads,
      kvHeads: heads,
      headDim: W / heads,
      ffn: num(hf, 'hidden_dim'),
      vocab: num(hf, 'vocab_size'),
      maxPositions: num(hf, 'max_position_embeddings', 512),
      positionOffset: 0,
      norm: 'layer',
      eps: 1e-12,
      postNorm: true,
      act: act === 'gelu' ? 'gelu' : 'relu',
      gated: false,
      positions: 'learned',
      ropeTheta: 0,
      causal: false,
      finalNorm: false,
      embedNorm: true,
      tokenTypes: false,
      tiedEmbeddings: true,
      padId: tokenIdOf(hf, 'pad_token_id', 0),
      encoderMarks: { cls: '[CLS]', sep: '[SEP]' },
    };
  },
  source: (_c, name) => mapTensorName(DISTILBERT_TENSOR_NAMES, name),
  lmHead: () => undefined,
  defaultPooling: () => 'cls',
};
