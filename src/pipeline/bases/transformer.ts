// The transformer families (architectures/*.ts on the shared graph of architectures/transformer.ts)
// as a build base, from a Hugging Face directory or a llama2.c file. Per depth k only the
// embeddings, the first k blocks, the final norm and the head rows are read. The head reads the
// last real token (first, [CLS], for encoders): `last` is a fresh linear layer, `label-words` the
// LM-head columns of one word per label after a prompt template, as in the paper. The exported
// graph adds the template itself, so the served model takes the plain text's ids.
import { HfCheckpoint } from '../checkpoints/hf.js';
import { Llama2cCheckpoint } from '../checkpoints/llama2c.js';
import {
  buildTransformerGraph,
  countParams,
  HEAD_BIAS,
  HEAD_WEIGHT,
  loadParams,
  paramSpecs,
  type FloatTensorValue,
  type TransformerCheckpoint,
} from '../architectures/transformer.js';
import { graphOutputFor } from '../export-transformer.js';
import { trainTransformerClassifier } from '../training/transformer-trainer.js';
import { mulberry32, randomNormal } from '../random.js';
import {
  checkpointSource,
  hfVariantTokenizer,
  labelWordIds,
  llama2cVariantTokenizer,
  templateIds,
  tokenId,
  tokenizerFromFiles,
  tokenString,
  type VariantTokenizer,
} from './prompt.js';
import { BaseError, type BuildBase } from './base.js';
import { BUILD_DEFAULTS, type BuildOptions } from '../build-options.js';
import type { BaseLocation } from './locate.js';

/** Open the checkpoint; one-line BaseErrors for what the user can fix (model_type, tensors, depth). */
function openCheckpoint(location: Exclude<BaseLocation, { kind: 'use-lite' }>, maxLength: number): { ckpt: TransformerCheckpoint; tok: VariantTokenizer } {
  const where = location.kind === 'hf' ? location.dir : location.file;
  let ckpt: TransformerCheckpoint;
  try {
    ckpt = location.kind === 'hf' ? new HfCheckpoint(location.dir) : new Llama2cCheckpoint(location.file);
  } catch (err) {
    const msg = (err as Error).message.split('\n')[0]!;
    const named = msg.startsWith(where) ? `--base ${msg}` : `--base ${where}: ${msg}`;
    // hf.ts names the unsupported model_type and the supported ones; say what to do as well.
    if (/model_type .* is not supported/.test(msg)) throw new BaseError(`${named}; use a checkpoint of a supported family (docs/checkpoints.md)`);
    throw new BaseError(named);
  }
  try {
    const tok =
      ckpt instanceof HfCheckpoint
        ? hfVariantTokenizer(ckpt, maxLength)
        : llama2cVariantTokenizer(ckpt as Llama2cCheckpoint, (location as { tokenizer: string }).tokenizer, maxLength);
    return { ckpt, tok };
  } catch (err) {
    ckpt.close?.();
    throw err;
  }
}

/** Every tensor a depth-`depth` body needs is there (named as the checkpoint names it), before any training. */
function checkTensors(ckpt: TransformerCheckpoint, depth: number): void {
  if (!(ckpt instanceof HfCheckpoint)) return;
  for (const s of paramSpecs(ckpt.config, depth)) {
    if (s.kind === 'bias') continue;
    const src = ckpt.arch.source(ckpt.config, s.name);
    if (!src || ckpt.store.has(ckpt.prefix + src.name) || ckpt.store.has(src.name)) continue;
    throw new BaseError(
      `--base ${ckpt.dir}: tensor ${ckpt.prefix}${src.name} (${s.name}, needed from depth ${s.block === null ? 1 : s.block + 1}) is not in the checkpoint; the download is incomplete or the weights are not those of this config.json: download the model's safetensors again`,
    );
  }
}

export async function openTransformerBase(o: BuildOptions, labels: readonly string[]): Promise<BuildBase> {
  if (o.location.kind === 'use-lite') throw new Error('openTransformerBase: builtin:use-lite is not a transformer checkpoint');
  const { ckpt, tok } = openCheckpoint(o.location, o.maxLength);
  try {
    return await prepare(o, labels, ckpt, tok);
  } catch (err) {
    ckpt.close?.();
    throw err;
  }
}

async function prepare(o: BuildOptions, labels: readonly string[], ckpt: TransformerCheckpoint, tok: VariantTokenizer): Promise<BuildBase> {
  // --pooling overrides the family's default (HfArchitecture.defaultPooling); training and export read c.
  const c = o.pooling ? { ...ckpt.config, pooling: o.pooling } : ckpt.config;
  for (const d of o.depths) if (d > c.layers) throw new BaseError(`--depths ${d}: ${o.base} has ${c.layers} layers (use 1..${c.layers})`);
  checkTensors(ckpt, Math.max(...o.depths));
  // label-words needs an LM head: decoders have one, encoders (bert) read a fresh linear head.
  const head = o.head ?? (c.causal ? 'label-words' : 'last');
  if (head === 'label-words' && !c.causal) throw new BaseError(`--head label-words needs a decoder LM head; ${c.arch} is an encoder: use --head last`);
  if (head === 'pool') throw new BaseError(`--head pool is not available for ${o.base} (use last or label-words)`);
  if (o.pooling && head === 'label-words') throw new BaseError('--pooling needs --head last (label-words reads the LM head at the last token)');
  if (o.verbalizer && head !== 'label-words') throw new BaseError('--verbalizer needs --head label-words');

  const tokenizerText = JSON.stringify(tok.tokenizerJson);
  const tokenizerConfigText = JSON.stringify(tok.tokenizerConfig, null, 2);
  const tokenizer = await tokenizerFromFiles(tokenizerText, tokenizerConfigText);
  const templateText = head === 'label-words' ? (o.template ?? BUILD_DEFAULTS.template) : o.template;
  let marks: { cls: number; sep: number } | undefined;
  if (!c.causal) {
    const idOf = tokenId(tok.tokenizerJson);
    const cls = idOf(c.encoderMarks?.cls ?? '[CLS]'),
      sep = idOf(c.encoderMarks?.sep ?? '[SEP]');
    if (cls !== undefined && sep !== undefined) marks = { cls, sep };
  }
  const template = templateIds(tokenizer, ckpt, templateText, tokenString(tok.tokenizerJson), marks);
  let words: string[] | undefined, wordIds: number[] | undefined;
  if (head === 'label-words') {
    if (o.verbalizer) {
      const missing = labels.filter((l) => !(l in o.verbalizer!));
      if (missing.length) throw new BaseError(`--verbalizer has no word for label(s) ${missing.join(', ')}`);
    }
    words = labels.map((l) => o.verbalizer?.[l] ?? l);
    wordIds = labelWordIds(tokenizer, ckpt, words, tokenString(tok.tokenizerJson));
    if (new Set(wordIds).size !== wordIds.length)
      throw new BaseError(`label words ${words.join(', ')} do not map to distinct tokens; choose other words with --verbalizer`);
  }
  const seqLimit = o.maxLength + template.prefix.length + template.suffix.length;
  if (seqLimit > c.maxPositions)
    throw new BaseError(`--max-length ${o.maxLength} plus the template's ${seqLimit - o.maxLength} tokens exceeds the model's ${c.maxPositions} positions`);
  const textIds = (text: string) => tokenizer.encode(text).slice(0, o.maxLength);

  // The body read for training is kept for the export of the same depth (one read per depth).
  let body: { depth: number; values: Map<string, FloatTensorValue> } | undefined;
  const bodyAt = (depth: number) => (body?.depth === depth ? body.values : (body = { depth, values: loadParams(ckpt, depth) }).values);
  const L = labels.length;

  return {
    info: { id: ckpt.id, arch: c.arch, layers: c.layers, source: checkpointSource(ckpt) },
    head,
    description: `${ckpt.id} (${c.arch}, ${c.layers} layers, width ${c.hidden}); head ${head}${head === 'label-words' ? '' : `, pooling ${c.pooling ?? 'last'}`}${words ? ` (words ${words.join(', ')} = ids ${wordIds!.join(', ')})` : ''}`,
    tokenizerFiles: { tokenizer: tokenizerText, tokenizerConfig: tokenizerConfigText },
    padId: tokenizer.padId,
    manifestFields: head === 'label-words' ? { template: templateText!, labelWords: words! } : {},
    textIds,
    trainingIds: (text) => [...template.prefix, ...textIds(text), ...template.suffix],
    paramSpecs: (depth) => paramSpecs(c, depth),
    train(depth, train, val, opts) {
      let headInit: { weight: FloatTensorValue; bias: FloatTensorValue };
      if (wordIds) headInit = { weight: ckpt.lmHeadColumns(wordIds), bias: { dims: [L], data: new Float32Array(L) } };
      else {
        const rng = mulberry32(opts.seed);
        headInit = {
          weight: { dims: [c.hidden, L], data: Float32Array.from({ length: c.hidden * L }, () => 0.02 * randomNormal(rng)) },
          bias: { dims: [L], data: new Float32Array(L) },
        };
      }
      return trainTransformerClassifier(c, bodyAt(depth), headInit, train, val, labels, { ...opts, depth, maxLength: seqLimit, padId: tokenizer.padId });
    },
    exportModel(depth, trained) {
      const weight = trained.params.get(HEAD_WEIGHT)!,
        bias = trained.params.get(HEAD_BIAS)!;
      const overrides = new Map<string, FloatTensorValue>();
      for (const [k, v] of trained.params) if (k !== HEAD_WEIGHT && k !== HEAD_BIAS) overrides.set(k, v);
      const values = bodyAt(depth);
      const { graph } = buildTransformerGraph(c, values, {
        depth,
        output: graphOutputFor(ckpt, { kind: 'last', weight, bias }),
        tableLength: seqLimit,
        overrides,
        template,
      });
      const model = graph.toModel({
        docString: `slimserve classifier on ${ckpt.id} (${c.arch}), first ${depth} of ${c.layers} layers, head ${head}, labels ${labels.join(',')}`,
        metadata: {
          'slim.base': ckpt.id,
          'slim.arch': c.arch,
          'slim.depth': String(depth),
          'slim.labels': JSON.stringify(labels),
          'slim.template': templateText ?? '',
          'slim.pooling': head === 'label-words' ? 'last' : (c.pooling ?? 'last'),
        },
      });
      return { model, params: countParams(values) + weight.data.length + bias.data.length };
    },
    releaseDepth(depth) {
      if (body?.depth === depth) body = undefined;
    },
    close() {
      body = undefined;
      ckpt.close?.();
    },
  };
}
