// RoBERTa and XLM-RoBERTa (HF model_type "roberta", "xlm-roberta"): BERT's layout and tensor
// names under `roberta.`, with positions counted from padding_idx + 1 (HF
// create_position_ids_from_input_ids: cumsum(mask) * mask + padding_idx, so the first real token
// of a right-padded row is at padding_idx + 1) and one token type. max_position_embeddings (514)
// counts those offset rows, so max_position_embeddings - padding_idx - 1 tokens fit.
// Classifiers read <s> (the CLS position), as RobertaForSequenceClassification does.
import type { HfArchitecture } from './transformer.js';
import { num, str, tokenIdOf } from './transformer.js';
import { BERT_TENSOR_NAMES, bertLikeConfig } from './bert.js';
import { mapTensorName } from './tensor-names.js';

export const roberta: HfArchitecture = {
  modelTypes: ['roberta', 'xlm-roberta'],
  prefixes: ['roberta.', ''],
  probe: 'embeddings.word_embeddings.weight',
  config(hf) {
    const family = String(hf.model_type);
    const pad = tokenIdOf(hf, 'pad_token_id', 1)!;
    const ptype = str(hf, ['position_embedding_type'], 'absolute');
    if (ptype !== 'absolute') throw new Error(`${family}: position_embedding_type ${ptype} is not supported`);
    const positions = { maxPositions: num(hf, 'max_position_embeddings', 514) - pad - 1, positionOffset: pad + 1, eps: 1e-5 };
    return {
      ...bertLikeConfig(hf, family, 'roberta', str(hf, ['hidden_act'], 'gelu'), positions),
      bosId: tokenIdOf(hf, 'bos_token_id', 0),
      eosId: tokenIdOf(hf, 'eos_token_id', 2),
      padId: pad,
      encoderMarks: { cls: '<s>', sep: '</s>' },
    };
  },
  source: (_c, name) => mapTensorName(BERT_TENSOR_NAMES, name),
  lmHead: () => undefined,
  defaultPooling: () => 'cls',
};
