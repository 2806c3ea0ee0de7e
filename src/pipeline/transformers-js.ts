// What makes a variant directory loadable by transformers.js (@huggingface/transformers) as
//   pipeline('text-classification', 'models/<model>/<variant>', { local_files_only: true })
// besides the tokenizer files it already has:
//   config.json      model_type "bert" and id2label/label2id from the manifest. transformers.js
//                    picks the model class by model_type; BertForSequenceClassification runs an
//                    encoder-only forward (input_ids, attention_mask; token_type_ids only when
//                    the graph declares it, ours do not) and reads the "logits" output: exactly our
//                    ONNX contract, whatever the base architecture (use-lite, gpt2, llama, ...),
//                    since the head and any prompt template are inside the graph.
//   onnx/model.onnx  where transformers.js looks with its defaults (dtype fp32 on CPU): the same
//                    file as model.onnx (a hard link).
// and tokenizer_config.json adjusted (transformersJsTokenizerConfig) so that transformers.js
// truncates and pads where the server does.
import type { Manifest } from '../manifest.js';

export const TRANSFORMERS_JS_CONFIG_FILE = 'config.json';
export const TRANSFORMERS_JS_ONNX_FILE = 'onnx/model.onnx';

export function transformersJsConfig(manifest: Manifest): Record<string, unknown> {
  return {
    model_type: 'bert',
    architectures: ['BertForSequenceClassification'],
    problem_type: 'single_label_classification',
    id2label: Object.fromEntries(manifest.labels.map((label, i) => [String(i), label])),
    label2id: Object.fromEntries(manifest.labels.map((label, i) => [label, i])),
    max_position_embeddings: manifest.maxLength,
    // Not read by transformers.js: says what the directory really holds.
    slimserve: {
      model: manifest.model,
      variant: manifest.variant,
      depth: manifest.depth,
      base: manifest.base.id,
      arch: manifest.base.arch,
      head: manifest.head,
    },
  };
}

/**
 * tokenizer_config.json as transformers.js must read it to tokenize, pad and truncate the way the
 * server does (the server reads the same file, and these changes do not alter what it does):
 *  - model_max_length = the variant's maxLength, the longest input the server feeds;
 *  - tokenizer_class LlamaTokenizer[Fast] with right padding becomes PreTrainedTokenizerFast:
 *    transformers.js' LlamaTokenizer pads on the left whatever padding_side says (a class field
 *    that overrides the config), and it differs from the base class in nothing else.
 * Left as it is when nothing changes or it is not a JSON object.
 */
export function transformersJsTokenizerConfig(tokenizerConfig: string | object, maxLength: number): string | object {
  let value: unknown = tokenizerConfig;
  if (typeof tokenizerConfig === 'string') {
    try {
      value = JSON.parse(tokenizerConfig);
    } catch {
      return tokenizerConfig;
    }
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return tokenizerConfig;
  const config = value as Record<string, unknown>;
  const changes: Record<string, unknown> = {};
  if (config.model_max_length !== maxLength) changes.model_max_length = maxLength;
  if (typeof config.tokenizer_class === 'string' && /^LlamaTokenizer(?:Fast)?$/.test(config.tokenizer_class) && config.padding_side !== 'left') {
    changes.tokenizer_class = 'PreTrainedTokenizerFast';
  }
  return Object.keys(changes).length === 0 ? tokenizerConfig : { ...config, ...changes };
}
