// Lay out one of our variant directories the way transformers.js' from_pretrained expects a local
// model, so a plain `pipeline('text-classification')` server runs the very same model.onnx. The
// layout is the build's own (src/pipeline/transformers-js.ts: config.json, tokenizer_config.json
// adjusted to truncate and pad as our server does, onnx/model.onnx); this copies it under a name
// of our choosing, with model.onnx symlinked (same bytes), so it works for a variant written
// before the build added those files too.
import { copyFileSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { MANIFEST_FILE, ONNX_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, validateManifest } from '../../src/manifest.js';
import {
  TRANSFORMERS_JS_CONFIG_FILE,
  TRANSFORMERS_JS_ONNX_FILE,
  transformersJsConfig,
  transformersJsTokenizerConfig,
} from '../../src/pipeline/transformers-js.js';

export interface TransformersModelDir {
  /** Set env.localModelPath to this. */
  root: string;
  /** The model id to pass to pipeline(). */
  name: string;
}

export function makeTransformersModelDir(variantDir: string, root: string, name = 'slim-variant'): TransformersModelDir {
  const src = resolve(variantDir);
  const manifestFile = join(src, MANIFEST_FILE);
  const manifest = validateManifest(JSON.parse(readFileSync(manifestFile, 'utf8')), manifestFile);
  const dir = join(resolve(root), name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dirname(join(dir, TRANSFORMERS_JS_ONNX_FILE)), { recursive: true });
  writeFileSync(join(dir, TRANSFORMERS_JS_CONFIG_FILE), JSON.stringify(transformersJsConfig(manifest), null, 2));
  copyFileSync(join(src, TOKENIZER_FILE), join(dir, TOKENIZER_FILE));
  let tokenizerConfig = '{}';
  try {
    tokenizerConfig = readFileSync(join(src, TOKENIZER_CONFIG_FILE), 'utf8');
  } catch {
    // no tokenizer_config.json: transformers.js defaults apply, with our maxLength
  }
  const adjusted = transformersJsTokenizerConfig(tokenizerConfig, manifest.maxLength);
  writeFileSync(join(dir, TOKENIZER_CONFIG_FILE), typeof adjusted === 'string' ? adjusted : JSON.stringify(adjusted, null, 2));
  symlinkSync(join(src, ONNX_FILE), join(dir, TRANSFORMERS_JS_ONNX_FILE));
  return { root: resolve(root), name };
}
