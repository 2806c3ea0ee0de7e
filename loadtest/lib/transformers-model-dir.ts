// Lay out one of our variant directories the way transformers.js' from_pretrained expects a local
// model, so a plain `pipeline('text-classification')` server runs the very same model.onnx:
//
//   <root>/<name>/config.json            model_type "bert" (transformers.js maps it to
//                                        BertForSequenceClassification: an encoder whose ONNX takes
//                                        input_ids + attention_mask and returns "logits"; it adds
//                                        token_type_ids only when the graph asks for it, ours does not)
//                                        and id2label from our manifest
//   <root>/<name>/tokenizer.json         ours, unchanged
//   <root>/<name>/tokenizer_config.json  ours, with model_max_length = the manifest's maxLength, so
//                                        the pipeline truncates where our server does
//   <root>/<name>/onnx/model.onnx        a symlink to ours (same bytes; dtype fp32 loads model.onnx)
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, copyFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export interface TransformersModelDir {
  /** Set env.localModelPath to this. */
  root: string;
  /** The model id to pass to pipeline(). */
  name: string;
}

export function makeTransformersModelDir(variantDir: string, root: string, name = 'slim-variant'): TransformersModelDir {
  const src = resolve(variantDir);
  const manifest = JSON.parse(readFileSync(join(src, 'manifest.json'), 'utf8')) as { labels: string[]; maxLength: number };
  const dir = join(resolve(root), name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'onnx'), { recursive: true });
  const id2label = Object.fromEntries(manifest.labels.map((l, i) => [String(i), l]));
  const label2id = Object.fromEntries(manifest.labels.map((l, i) => [l, i]));
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({ model_type: 'bert', architectures: ['BertForSequenceClassification'], id2label, label2id, problem_type: 'single_label_classification' }, null, 2),
  );
  copyFileSync(join(src, 'tokenizer.json'), join(dir, 'tokenizer.json'));
  let tokConfig: Record<string, unknown> = {};
  try {
    tokConfig = JSON.parse(readFileSync(join(src, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  } catch {
    // no tokenizer_config.json: transformers.js defaults apply
  }
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ ...tokConfig, model_max_length: manifest.maxLength }, null, 2));
  symlinkSync(join(src, 'model.onnx'), join(dir, 'onnx', 'model.onnx'));
  return { root: resolve(root), name };
}
