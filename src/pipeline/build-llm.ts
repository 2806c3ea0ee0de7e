// `slim build` for gpt2/opt/llama/bert checkpoints (a Hugging Face directory or a llama2.c
// .bin): per depth k, read only what a k-layer model needs, fine-tune a last-token head (`last`:
// a fresh linear layer; `label-words`: the LM-head columns of one word per label, read after a
// prompt template, as in the paper), export the classifier with the template inside the graph
// (the served model takes the plain text's ids), and write variants and the depth report.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { datasetSha256, prepareTrainingData } from './datasets.js';
import { removeStaleTemporaries, variantName, writeVariant, type ManifestDraft } from './model-writer.js';
import { buildReport, makeBatch, measureLatency, writeReport, type DepthResult } from './report.js';
import { loadTokenizer, type TextTokenizer } from '../tokenizer.js';
import { HfCheckpoint, isHfCheckpointDir } from './checkpoints/hf.js';
import { Llama2cCheckpoint } from './checkpoints/llama2c.js';
import { Llama2cTokenizer, readLlama2cTokenizer } from './tokenizers/llama2c.js';
import { choosePadToken } from './tokenizers/hf-special.js';
import { HEAD_BIAS, HEAD_WEIGHT, loadParams, type FloatTensorValue, type PromptTemplateIds, type TransformerCheckpoint } from './architectures/transformer.js';
import { buildExportGraph } from './export-transformer.js';
import { trainTransformerClassifier } from './training/transformer-trainer.js';
import { formatTrainMode, modeSuffix, type EncodedExample } from './training/loop.js';
import type { BuildOptions } from './build-command.js';
import { mulberry32, randomNormal } from './random.js';

export const DEFAULT_TEMPLATE = 'Review: {text}\nSentiment:';

/** A user mistake in the LLM build inputs (label words, template, base): exit code 2. */
export class LlmBuildError extends Error {
  override readonly name = 'LlmBuildError';
}

/** The parsed `slim build` flags (build-command.ts) with an LLM head, and the build tool's version. */
export type LlmBuildOptions = Omit<BuildOptions, 'head'> & { head: 'last' | 'label-words'; version: string };

/** "neg=terrible,pos=great" -> {neg: "terrible", pos: "great"}. */
export function parseVerbalizer(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    const label = part.slice(0, eq).trim(), word = part.slice(eq + 1).trim();
    if (eq <= 0 || !label || !word) throw new LlmBuildError(`--verbalizer entries are label=word, comma-separated (got ${JSON.stringify(part)})`);
    if (label in out) throw new LlmBuildError(`--verbalizer names label ${JSON.stringify(label)} twice`);
    out[label] = word;
  }
  return out;
}

/** True for a path `slim build --base` can read as a gpt2/opt/llama/bert checkpoint. */
export function isLlmBase(base: string): boolean {
  return (existsSync(base) && statSync(base).isFile() && base.endsWith('.bin')) || (existsSync(base) && statSync(base).isDirectory() && isHfCheckpointDir(base));
}

interface OpenedBase {
  ckpt: TransformerCheckpoint;
  /** tokenizer.json and tokenizer_config.json of the variants (no special tokens added: the template carries BOS). */
  tokenizerJson: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
  source: string;
}

function findLlama2cTokenizer(bin: string): string {
  const dir = dirname(resolve(bin));
  if (existsSync(join(dir, 'tokenizer.bin'))) return join(dir, 'tokenizer.bin');
  const tok = readdirSync(dir).filter((f) => /^tok.*\.bin$/.test(f)).sort();
  if (tok.length === 0) throw new LlmBuildError(`${bin}: no tokenizer.bin (or tok*.bin) beside the llama2.c checkpoint`);
  return join(dir, tok[0]!);
}

export function openLlmBase(base: string, maxLength: number): OpenedBase {
  if (base.endsWith('.bin')) {
    const ckpt = new Llama2cCheckpoint(base);
    const tok = new Llama2cTokenizer(readLlama2cTokenizer(findLlama2cTokenizer(base), ckpt.config.vocab));
    return { ckpt, tokenizerJson: tok.toTokenizerJson(), tokenizerConfig: tok.tokenizerConfigJson(maxLength), source: `llama2c:${resolve(base)}` };
  }
  const ckpt = new HfCheckpoint(base);
  if (!ckpt.tokenizerPath) throw new LlmBuildError(`${base}: no tokenizer.json`);
  const tokenizerJson = JSON.parse(readFileSync(ckpt.tokenizerPath, 'utf8')) as Record<string, unknown>;
  // The graph adds BOS and the template around the text: the tokenizer adds nothing.
  tokenizerJson.post_processor = null;
  tokenizerJson.truncation = null;
  tokenizerJson.padding = null;
  const pre = tokenizerJson.pre_tokenizer as Record<string, unknown> | null;
  // Byte-level BPE (gpt2, opt): the text follows the template's words, so it starts with a space.
  if (pre && pre.type === 'ByteLevel') pre.add_prefix_space = true;
  const cfgPath = join(ckpt.source, 'tokenizer_config.json');
  const tokenizerConfig = existsSync(cfgPath) ? (JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>) : {};
  for (const k of Object.keys(tokenizerConfig)) if (k.startsWith('auto_map') || k === 'chat_template') delete tokenizerConfig[k];
  Object.assign(tokenizerConfig, { padding_side: 'right', model_max_length: maxLength, add_bos_token: false, add_eos_token: false });
  // No pad token (Llama, Mistral, GPT-2): choose one and write it into the variant's tokenizer_config.json.
  const pad = choosePadToken(tokenizerJson, tokenizerConfig);
  if (pad && tokenizerConfig.pad_token !== pad.token) tokenizerConfig.pad_token = pad.token;
  return { ckpt, tokenizerJson, tokenizerConfig, source: ckpt.source };
}

/** Token ids of a piece of template or a label word, without special tokens. */
function pieceIds(tokenizer: TextTokenizer, text: string, special: Set<number>): number[] {
  return tokenizer.encode(text).filter((id) => !special.has(id));
}

/** The prompt's ids around {text}: BOS (decoders that have one) + head, and the tail. */
export function templateIds(
  tokenizer: TextTokenizer,
  ckpt: TransformerCheckpoint,
  template: string | undefined,
  piece: (id: number) => string = () => '',
  /** bert: [CLS] first and [SEP] last, as its tokenizer's post-processor would add them. */
  encoderMarks?: { cls: number; sep: number },
): PromptTemplateIds {
  const c = ckpt.config;
  const special = new Set([c.bosId, c.eosId, encoderMarks?.cls, encoderMarks?.sep].filter((x): x is number => x !== undefined));
  const bos = encoderMarks ? [encoderMarks.cls] : (c.prependBos ?? (c.arch === 'llama' || c.arch === 'opt')) && c.bosId !== undefined ? [c.bosId] : [];
  const eos = encoderMarks ? [encoderMarks.sep] : [];
  if (template === undefined) return { prefix: bos, suffix: eos, padId: tokenizer.padId };
  const at = template.indexOf('{text}');
  if (at < 0 || template.indexOf('{text}', at + 1) >= 0) throw new LlmBuildError(`--template must contain {text} exactly once (got ${JSON.stringify(template)})`);
  const head = template.slice(0, at).trimEnd(), tail = template.slice(at + '{text}'.length);
  let suffix = tail ? pieceIds(tokenizer, tail, special) : [];
  // SentencePiece-style ("▁" prepended) and byte-level with add_prefix_space ("Ġ") tokenizers
  // start every encoding with a space; the tail continues the text, so drop a lone leading one.
  if (suffix.length > 1 && !/^\s/.test(tail) && ['\u2581', '\u0120', ' '].includes(piece(suffix[0]!))) suffix = suffix.slice(1);
  return { prefix: [...bos, ...(head ? pieceIds(tokenizer, head, special) : [])], suffix: [...suffix, ...eos], padId: tokenizer.padId };
}

/** One token id per label word; a word that is several tokens is an error naming its pieces. */
export function labelWordIds(tokenizer: TextTokenizer, ckpt: TransformerCheckpoint, words: readonly string[], decode: (id: number) => string): number[] {
  const c = ckpt.config;
  const special = new Set([c.bosId, c.eosId].filter((x): x is number => x !== undefined));
  return words.map((w) => {
    const ids = pieceIds(tokenizer, w, special);
    if (ids.length !== 1) {
      throw new LlmBuildError(`label word ${JSON.stringify(w)} is ${ids.length} tokens (${ids.map((id) => `${JSON.stringify(decode(id))}=${id}`).join(', ')}); the label-words head needs one token per word: choose another word with --verbalizer`);
    }
    return ids[0]!;
  });
}

function tokenString(json: Record<string, unknown>): (id: number) => string {
  const vocab = ((json.model as Record<string, unknown> | undefined)?.vocab ?? {}) as Record<string, number> | [string, number][];
  const byId = new Map<number, string>();
  if (Array.isArray(vocab)) vocab.forEach(([p], i) => byId.set(i, p));
  else for (const [p, id] of Object.entries(vocab)) byId.set(id, p);
  return (id) => byId.get(id) ?? `#${id}`;
}

function tokenId(json: Record<string, unknown>): (piece: string) => number | undefined {
  const vocab = ((json.model as Record<string, unknown> | undefined)?.vocab ?? {}) as Record<string, number> | [string, number][];
  const map = new Map<string, number>(Array.isArray(vocab) ? vocab.map(([p], i) => [p, i] as [string, number]) : Object.entries(vocab));
  for (const t of (json.added_tokens ?? []) as { id: number; content: string }[]) map.set(t.content, t.id);
  return (piece) => map.get(piece);
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export async function runLlmBuild(o: LlmBuildOptions): Promise<{ modelDir: string; results: DepthResult[]; recommended: string | null; seconds: number }> {
  const t0 = performance.now();
  const log = (m: string) => {
    if (!o.quiet) process.stderr.write(`${m}\n`);
  };
  const opened = openLlmBase(o.base, o.maxLength);
  const { ckpt } = opened;
  const c = ckpt.config;
  for (const d of o.depths) if (d > c.layers) throw new LlmBuildError(`--depths ${d}: ${o.base} has ${c.layers} layers`);
  if (o.head === 'label-words' && !c.causal) throw new LlmBuildError(`--head label-words needs a decoder LM head; use --head last for ${c.arch}`);
  const data = await prepareTrainingData({ data: o.data, val: o.val, valSplit: o.valSplit, seed: o.seed, labels: o.labels ?? (o.verbalizer ? Object.keys(o.verbalizer) : undefined) });
  const tokenizerText = JSON.stringify(opened.tokenizerJson);
  const tokenizerConfigText = JSON.stringify(opened.tokenizerConfig, null, 2);
  const tokDir = await mkdtemp(join(tmpdir(), 'slim-tok-'));
  let tokenizer: TextTokenizer;
  try {
    await writeFile(join(tokDir, 'tokenizer.json'), tokenizerText);
    await writeFile(join(tokDir, 'tokenizer_config.json'), tokenizerConfigText);
    tokenizer = await loadTokenizer(tokDir);
  } finally {
    await rm(tokDir, { recursive: true, force: true });
  }
  const templateText = o.head === 'label-words' ? o.template ?? DEFAULT_TEMPLATE : o.template;
  let marks: { cls: number; sep: number } | undefined;
  if (!c.causal) {
    const idOf = tokenId(opened.tokenizerJson);
    const cls = idOf(c.encoderMarks?.cls ?? '[CLS]'), sep = idOf(c.encoderMarks?.sep ?? '[SEP]');
    if (cls !== undefined && sep !== undefined) marks = { cls, sep };
  }
  const template = templateIds(tokenizer, ckpt, templateText, tokenString(opened.tokenizerJson), marks);
  let words: string[] | undefined, wordIds: number[] | undefined;
  if (o.head === 'label-words') {
    if (o.verbalizer) {
      const missing = data.labels.filter((l) => !(l in o.verbalizer!));
      if (missing.length) throw new LlmBuildError(`--verbalizer has no word for label(s) ${missing.join(', ')}`);
    }
    words = data.labels.map((l) => o.verbalizer?.[l] ?? l);
    wordIds = labelWordIds(tokenizer, ckpt, words, tokenString(opened.tokenizerJson));
    if (new Set(wordIds).size !== wordIds.length) throw new LlmBuildError(`label words ${words.join(', ')} do not map to distinct tokens`);
  }
  const labelIndex = new Map(data.labels.map((l, i) => [l, i]));
  const textIds = (text: string) => tokenizer.encode(text).slice(0, o.maxLength);
  const wrap = (examples: typeof data.train): EncodedExample[] =>
    examples.map((e) => ({ ids: [...template.prefix, ...textIds(e.text), ...template.suffix], label: labelIndex.get(e.label)! }));
  const train = wrap(data.train);
  const val = wrap(data.val);
  const seqLimit = o.maxLength + template.prefix.length + template.suffix.length;
  if (seqLimit > c.maxPositions) throw new LlmBuildError(`--max-length ${o.maxLength} plus the template's ${seqLimit - o.maxLength} tokens exceeds the model's ${c.maxPositions} positions`);
  log(`slim build: ${ckpt.id} (${c.arch}, ${c.layers} layers, width ${c.hidden}); ${train.length} training and ${val.length} validation examples; head ${o.head}${words ? ` (words ${words.join(', ')} = ids ${wordIds!.join(', ')})` : ''}`);

  const modelDir = resolve(o.out);
  const model = basename(modelDir);
  await removeStaleTemporaries(modelDir);
  const dataSha256 = datasetSha256(data.train);
  const results: DepthResult[] = [];
  const sequences = (data.val.length > 0 ? data.val : data.train).map((e) => textIds(e.text));
  const mode = formatTrainMode(o.mode);
  const latencyRuns = 10;
  let recommended: string | null = null;
  const baseInfo = { id: ckpt.id, arch: c.arch, layers: c.layers, source: opened.source };
  try {
    for (const depth of o.depths) {
      const body = loadParams(ckpt, depth);
      const W = c.hidden, L = data.labels.length;
      let headInit: { weight: FloatTensorValue; bias: FloatTensorValue };
      if (wordIds) headInit = { weight: ckpt.lmHeadColumns(wordIds), bias: { dims: [L], data: new Float32Array(L) } };
      else {
        const rng = mulberry32(o.seed);
        headInit = { weight: { dims: [W, L], data: Float32Array.from({ length: W * L }, () => 0.02 * randomNormal(rng)) }, bias: { dims: [L], data: new Float32Array(L) } };
      }
      const res = await trainTransformerClassifier(c, body, headInit, train, val, data.labels, {
        depth, mode: o.mode, epochs: o.epochs, lr: o.lr, batchSize: o.batch, maxLength: seqLimit, seed: o.seed, padId: tokenizer.padId,
        trainEmbeddings: o.trainEmbeddings, threads: o.threads, progress: o.quiet ? null : undefined,
      });
      const overrides = new Map<string, FloatTensorValue>();
      for (const [k, v] of res.params) if (k !== HEAD_WEIGHT && k !== HEAD_BIAS) overrides.set(k, v);
      const { graph, params } = buildExportGraph(ckpt, {
        depth,
        head: { kind: 'last', weight: res.params.get(HEAD_WEIGHT)!, bias: res.params.get(HEAD_BIAS)! },
        tableLength: seqLimit,
        overrides,
        template,
      });
      const bytes = graph.toBytes({
        docString: `slimserve classifier on ${ckpt.id} (${c.arch}), first ${depth} of ${c.layers} layers, head ${o.head}, labels ${data.labels.join(',')}`,
        metadata: { 'slim.base': ckpt.id, 'slim.arch': c.arch, 'slim.depth': String(depth), 'slim.labels': JSON.stringify(data.labels), 'slim.template': templateText ?? '' },
      });
      const variant = variantName(depth, modeSuffix(o.mode));
      const draft: ManifestDraft = {
        model,
        variant,
        depth,
        base: baseInfo,
        labels: data.labels,
        head: o.head,
        ...(o.head === 'label-words' ? { template: templateText!, labelWords: words! } : {}),
        maxLength: o.maxLength,
        train: { mode, epochs: res.epochsRun, lr: o.lr, seed: o.seed, examples: train.length, dataSha256, seconds: round(res.seconds, 2) },
        eval: { split: data.evalSplit, examples: val.length, accuracy: res.eval.accuracy, macroF1: res.eval.macroF1 },
        params: params + res.params.get(HEAD_WEIGHT)!.data.length + res.params.get(HEAD_BIAS)!.data.length,
        createdAt: new Date().toISOString(),
        version: o.version,
      };
      const { dir } = await writeVariant(modelDir, draft, { onnx: bytes, tokenizer: tokenizerText, tokenizerConfig: tokenizerConfigText });
      const [b1, b32] = await measureLatency(bytes, [makeBatch(sequences, 1, o.maxLength, tokenizer.padId), makeBatch(sequences, 32, o.maxLength, tokenizer.padId)], { threads: o.threads, runs: latencyRuns });
      results.push({
        variant, depth, mode, accuracy: res.eval.accuracy, macroF1: res.eval.macroF1, params: draft.params,
        fileBytes: (await stat(join(dir, 'model.onnx'))).size,
        latencyMs: { batch1: round(b1!.medianMs, 3), batch32: round(b32!.medianMs, 3) },
        train: { stepsPerSecond: round(res.stepsPerSecond, 3), examplesPerSecond: round(res.examplesPerSecond, 1) },
      });
      const report = buildReport({
        model,
        base: { id: ckpt.id, arch: c.arch, layers: c.layers },
        data: { train: o.data, eval: data.evalSplit, evalExamples: val.length },
        latency: { threads: o.threads, seqLength: o.maxLength, runs: latencyRuns },
        createdAt: new Date().toISOString(),
        version: o.version,
        results,
      });
      await writeReport(modelDir, report);
      recommended = report.recommended?.variant ?? null;
      log(`slim build: ${variant}: accuracy ${res.eval.accuracy.toFixed(4)}, macro-F1 ${res.eval.macroF1.toFixed(4)}, ${res.seconds.toFixed(1)} s training, latency ${b1!.medianMs.toFixed(2)} ms (batch 1) / ${b32!.medianMs.toFixed(2)} ms (batch 32) -> ${dir}`);
    }
  } finally {
    ckpt.close?.();
  }
  return { modelDir, results, recommended, seconds: (performance.now() - t0) / 1000 };
}
