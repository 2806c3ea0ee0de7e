// The flags of `slim build`: one table (name, value, default, help) that the parser and
// `slim build --help` (command-line.ts) and the validation below all read, and the validated
// BuildOptions the pipeline (pipeline.ts) runs on. Base-specific checks (a depth above the model's layers, a head
// the architecture has not got) happen when the base is opened (bases/open.ts).
import { basename, resolve } from 'node:path';
import { locateBase, type BaseLocation } from './bases/locate.js';
import { BaseError } from './bases/base.js';
import { splitTemplate } from './bases/prompt.js';
import { parseTrainMode, type TrainMode } from './training/loop.js';
import type { HeadKind } from '../manifest.js';
import type { Pooling } from './architectures/transformer.js';
import { EXTERNAL_DATA_THRESHOLD } from './onnx-external.js';
import type { FlagSpec, FlagValues } from '../command-line.js';
import { DEFAULT_PRECISIONS, parsePrecisions, type Precision } from './precision/variants.js';

export const BUILD_VERSION = '0.1.0';

/** --weights-dtype: the float type of a variant's weights. */
export type WeightsDtype = 'fp32' | 'fp16';

export const BUILD_DEFAULTS = {
  base: 'builtin:use-lite',
  depths: '1,2',
  train: 'full',
  // 4 epochs (was 3) with early stopping after 2 epochs without a better validation accuracy:
  // 3 stopped SST-2 k2 at 0.838 dev, the reference recipe's 5 cost 1.67x; see models/REPORT-public-sets.md.
  epochs: 4,
  maxLength: 64,
  batch: 32,
  seed: 42,
  lrBody: 1e-4,
  lrHead: 1e-3,
  threads: 2,
  template: 'Review: {text}\nSentiment:',
  /** --distill-from: softmax temperature of the soft labels, and the weight of the true labels. */
  distillTemperature: 2,
  distillAlpha: 0.5,
} as const;

/** A bad flag or value: printed as one line, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export interface BuildOptions {
  base: string;
  /** What `base` names on disk (builtin:use-lite, a Hugging Face directory, a llama2.c file). */
  location: BaseLocation;
  data: string;
  depths: number[];
  mode: TrainMode;
  /** Undefined: the base's default (pool for builtin:use-lite, label-words for decoders with an LM head, last otherwise). */
  head?: HeadKind;
  labels?: string[];
  /** head last: which vector the head reads (undefined: the family's default, e.g. cls for bert/roberta, mean for modernbert, last for decoders). */
  pooling?: Pooling;
  /** label-words: label -> word (default: each label is its own word), and the prompt around {text}. */
  verbalizer?: Record<string, string>;
  template?: string;
  epochs: number;
  lr: number;
  batch: number;
  maxLength: number;
  seed: number;
  val?: string;
  valSplit?: number;
  out: string;
  threads: number;
  trainEmbeddings: boolean;
  /** Initializer bytes past which a variant's weights go to model.onnx.data (ONNX external data). */
  externalDataThreshold: number;
  /**
   * fp16: each depth's variant is written in float16 (weights and arithmetic, named k<d>[-mode]-fp16, manifest precision fp16),
   * for GPU serving of fp16/bf16 checkpoints; training runs in float32 either way.
   */
  weightsDtype: WeightsDtype;
  /** fp32 plus the int8 / fp16 siblings written beside each depth (default fp32,int8 for builtin:use-lite, fp32 otherwise). */
  precisions: Precision[];
  quiet: boolean;
  /** A built variant directory, or a depth of this build (trained first, plain), to distil the other depths from. */
  distillFrom?: { dir: string } | { depth: number };
  /** --transfer-data: unlabelled texts the student also learns the teacher's soft labels on. */
  transferData?: string;
  temperature: number;
  alpha: number;
}

/** Every `slim build` flag, in the order --help lists them. */
export const BUILD_FLAGS: readonly FlagSpec[] = [
  { name: 'base', value: 'BASE', default: BUILD_DEFAULTS.base, help: 'the pretrained model to slim (see "Bases" below)' },
  { name: 'data', value: 'FILE', help: 'labelled training data: .jsonl ({"text","label"}), .csv/.tsv (text,label columns) or builtin:spam (required)' },
  { name: 'out', value: 'DIR', help: 'model directory to write, models/<model>; one variant k<depth>[-mode] per depth inside (required)' },
  { name: 'depths', value: 'K,K,..', default: BUILD_DEFAULTS.depths, help: 'depths (first-k layers) to build, comma-separated, each 1..layers of the base' },
  { name: 'train', value: 'MODE', default: BUILD_DEFAULTS.train, help: 'what trains: head (frozen body), top:N (top N kept layers + head), full' },
  {
    name: 'head',
    value: 'KIND',
    help: 'pool (builtin:use-lite), last (a linear layer on the last real token), label-words (LM-head rows of one word per label after --template); default: pool, label-words for decoders, last for encoders',
  },
  {
    name: 'pooling',
    value: 'KIND',
    help: "with --head last on a transformer base: last (last real token), cls (first token) or mean (masked mean); default: the family's (last for decoders, cls for bert/roberta/xlm-roberta/distilbert, mean for modernbert)",
  },
  { name: 'labels', value: 'A,B,..', help: 'label set and output order (default: the labels found in --data, sorted)' },
  { name: 'verbalizer', value: 'L=W,..', help: 'label-words: the word read for each label (default: the label itself)' },
  {
    name: 'template',
    value: 'TEXT',
    default: JSON.stringify(BUILD_DEFAULTS.template),
    help: 'prompt around the input, with {text} once (label-words default; optional with --head last)',
  },
  { name: 'epochs', value: 'N', default: String(BUILD_DEFAULTS.epochs), help: 'training epochs (early stopping keeps the best)' },
  {
    name: 'lr',
    value: 'X',
    default: `${BUILD_DEFAULTS.lrBody} (${BUILD_DEFAULTS.lrHead} with --train head)`,
    help: 'peak learning rate (AdamW, linear warm-up and decay)',
  },
  { name: 'batch', value: 'N', default: String(BUILD_DEFAULTS.batch), help: 'examples per training step' },
  {
    name: 'max-length',
    value: 'N',
    default: String(BUILD_DEFAULTS.maxLength),
    help: 'tokens of each text kept (1..128); also the manifest maxLength the server enforces',
  },
  {
    name: 'seed',
    value: 'N',
    default: String(BUILD_DEFAULTS.seed),
    help: 'seed of head init, shuffling, dropout and the validation split: same seed, same weights',
  },
  { name: 'val', value: 'FILE', help: 'validation file (default: hold out --val-split of --data)' },
  { name: 'val-split', value: 'X', default: '0.1', help: 'fraction of --data held out for validation when --val is absent' },
  { name: 'threads', value: 'N', default: String(BUILD_DEFAULTS.threads), help: 'onnxruntime threads for training and latency measurement' },
  {
    name: 'external-data-threshold',
    value: 'BYTES',
    default: String(EXTERNAL_DATA_THRESHOLD),
    help: 'weights past this many bytes are written to model.onnx.data beside model.onnx (ONNX external data; protobuf files stop at 2 GB)',
  },
  {
    name: 'weights-dtype',
    value: 'DTYPE',
    default: 'fp32',
    help: "fp16: write each depth's variant in float16 (k<depth>[-mode]-fp16; weights and arithmetic, float32 inputs and logits) for GPU serving, e.g. from an fp16/bf16 checkpoint; training runs in float32; transformer bases, not with --precision int8/fp16",
  },
  {
    name: 'precision',
    value: 'P,P,..',
    default: `${DEFAULT_PRECISIONS.join(',')} (fp32 for transformer bases)`,
    help: 'precisions written per depth: fp32 (k<d>), int8 (k<d>-int8: dynamic quantization, for CPUs), fp16 (k<d>-fp16: for GPU execution providers); fp32 is always built',
  },
  {
    name: 'distill-from',
    value: 'DIR|K',
    help: 'train the other depths as students of a teacher: a built variant directory with the same labels, or a depth of this build (trained first, plain); builtin:use-lite, --train full or top:N',
  },
  {
    name: 'transfer-data',
    value: 'FILE',
    help: 'with --distill-from: unlabelled texts (.jsonl with "text", or one text per line) the student also learns the teacher\'s soft labels on',
  },
  {
    name: 'temperature',
    value: 'T',
    default: String(BUILD_DEFAULTS.distillTemperature),
    help: "with --distill-from: softmax temperature of the teacher's soft labels",
  },
  {
    name: 'alpha',
    value: 'A',
    default: String(BUILD_DEFAULTS.distillAlpha),
    help: 'with --distill-from: weight of the true labels (1 - A on the soft labels), 0..1',
  },
  { name: 'train-embeddings', help: 'with --train full: also train the token embedding' },
  { name: 'quiet', help: 'no progress output' },
];

function intFlag(name: string, v: string | undefined, dflt: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (v === undefined) return dflt;
  if (!/^-?[0-9]+$/.test(v) || Number(v) < min || Number(v) > max)
    throw new UsageError(`--${name} must be an integer from ${min} to ${max} (got ${JSON.stringify(v)})`);
  return Number(v);
}

/** "neg=terrible,pos=great" -> {neg: "terrible", pos: "great"}. */
export function parseVerbalizer(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    const label = part.slice(0, eq).trim(),
      word = part.slice(eq + 1).trim();
    if (eq <= 0 || !label || !word) throw new UsageError(`--verbalizer entries are label=word, comma-separated (got ${JSON.stringify(part)})`);
    if (label in out) throw new UsageError(`--verbalizer names label ${JSON.stringify(label)} twice`);
    out[label] = word;
  }
  return out;
}

/** The parsed flag values (strings, or true for a switch) -> BuildOptions; UsageError on a bad value. */
export function validateBuildFlags(values: FlagValues): BuildOptions {
  const str = (k: string) => values[k] as string | undefined;
  const base = str('base') ?? BUILD_DEFAULTS.base;
  let location: BaseLocation;
  try {
    location = locateBase(base);
  } catch (err) {
    if (err instanceof BaseError) throw new UsageError(err.message);
    throw err;
  }
  const useLite = location.kind === 'use-lite';
  const data = str('data');
  if (!data) throw new UsageError('--data <FILE|builtin:spam> is required');
  const out = str('out');
  if (!out) throw new UsageError('--out models/<model> is required');
  const depthsText = str('depths') ?? BUILD_DEFAULTS.depths;
  const depths = depthsText.split(',').map((d) => intFlag('depths', d.trim(), 0, 1, 10_000));
  if (new Set(depths).size !== depths.length) throw new UsageError(`--depths has a repeated depth (${depthsText})`);
  let mode: TrainMode;
  try {
    mode = parseTrainMode(str('train') ?? BUILD_DEFAULTS.train);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const headText = str('head');
  if (headText !== undefined && headText !== 'pool' && headText !== 'last' && headText !== 'label-words') {
    throw new UsageError(`--head must be pool, last or label-words (got ${JSON.stringify(headText)})`);
  }
  const head = headText as HeadKind | undefined;
  if (useLite && head !== undefined && head !== 'pool') throw new UsageError(`--head ${head} is not available for ${base} (an encoder: use --head pool)`);
  if (!useLite && head === 'pool') throw new UsageError(`--head pool is not available for ${base} (use last or label-words)`);
  if (useLite && str('template') !== undefined)
    throw new UsageError(`--template needs a transformer base (a Hugging Face directory or a llama2.c file), not ${base}`);
  const template = str('template');
  if (template !== undefined) {
    const parts = splitTemplate(template);
    if (typeof parts === 'string') throw new UsageError(parts);
  }
  const poolingText = str('pooling');
  if (poolingText !== undefined && poolingText !== 'last' && poolingText !== 'cls' && poolingText !== 'mean')
    throw new UsageError(`--pooling must be last, cls or mean (got ${JSON.stringify(poolingText)})`);
  if (poolingText !== undefined && useLite) throw new UsageError(`--pooling needs a transformer base; ${base} pools with its own encoder`);
  const pooling = poolingText as Pooling | undefined;
  let verbalizer: Record<string, string> | undefined;
  if (str('verbalizer') !== undefined) {
    if (useLite || head === 'last') throw new UsageError('--verbalizer needs --head label-words');
    verbalizer = parseVerbalizer(str('verbalizer')!);
  }
  const labels = str('labels')
    ?.split(',')
    .map((l) => l.trim());
  if (labels && (labels.length < 2 || labels.some((l) => l === '') || new Set(labels).size !== labels.length)) {
    throw new UsageError('--labels must list at least two distinct non-empty labels, comma-separated');
  }
  const lrText = str('lr');
  const lr = lrText === undefined ? (mode.kind === 'head' ? BUILD_DEFAULTS.lrHead : BUILD_DEFAULTS.lrBody) : Number(lrText);
  if (!(Number.isFinite(lr) && lr > 0 && lr < 1)) throw new UsageError(`--lr must be a number between 0 and 1 (got ${JSON.stringify(lrText)})`);
  if (str('val') !== undefined && str('val-split') !== undefined) throw new UsageError('--val and --val-split cannot be combined');
  let valSplit: number | undefined;
  if (str('val-split') !== undefined) {
    valSplit = Number(str('val-split'));
    if (!(valSplit > 0 && valSplit < 1)) throw new UsageError(`--val-split must be between 0 and 1 (got ${JSON.stringify(str('val-split'))})`);
  }
  const distill = parseDistillFlags(str, depths, mode, useLite);
  const model = basename(resolve(out));
  if (!model || /[^A-Za-z0-9._-]/.test(model)) throw new UsageError(`--out ${out}: the model name "${model}" may use letters, digits, ".", "_" and "-" only`);
  return {
    base,
    location,
    data,
    depths,
    mode,
    head,
    pooling,
    labels,
    verbalizer,
    template,
    epochs: intFlag('epochs', str('epochs'), BUILD_DEFAULTS.epochs, 1, 1000),
    lr,
    batch: intFlag('batch', str('batch'), BUILD_DEFAULTS.batch, 1, 4096),
    maxLength: intFlag('max-length', str('max-length'), BUILD_DEFAULTS.maxLength, 1, 128),
    seed: intFlag('seed', str('seed'), BUILD_DEFAULTS.seed, 0, 2 ** 31 - 1),
    val: str('val'),
    valSplit,
    out,
    threads: intFlag('threads', str('threads'), BUILD_DEFAULTS.threads, 1, 256),
    trainEmbeddings: values['train-embeddings'] === true,
    externalDataThreshold: intFlag('external-data-threshold', str('external-data-threshold'), EXTERNAL_DATA_THRESHOLD, 0, EXTERNAL_DATA_THRESHOLD),
    ...weightsDtypeFlag(str('weights-dtype'), str('precision'), base, useLite),
    quiet: values.quiet === true,
    ...distill,
  };
}

/** --weights-dtype and --precision together: the int8 / fp16 siblings are converted from an fp32 variant, which an fp16 build does not write. */
function weightsDtypeFlag(
  text: string | undefined,
  precisionText: string | undefined,
  base: string,
  useLite: boolean,
): Pick<BuildOptions, 'weightsDtype' | 'precisions'> {
  if (text === undefined || text === 'fp32') return { weightsDtype: 'fp32', precisions: precisionFlag(precisionText, useLite) };
  if (text !== 'fp16') throw new UsageError(`--weights-dtype must be fp32 or fp16 (got ${JSON.stringify(text)})`);
  if (useLite)
    throw new UsageError(
      `--weights-dtype fp16 needs a transformer base (a Hugging Face directory or a llama2.c file); for ${base} use --precision fp32,fp16 (an fp16 sibling of each variant)`,
    );
  const precisions = precisionFlag(precisionText, useLite);
  if (precisions.some((p) => p !== 'fp32'))
    throw new UsageError(
      `--weights-dtype fp16 cannot be combined with --precision ${precisionText}: the int8/fp16 siblings are converted from an fp32 variant, which an fp16 build does not write`,
    );
  return { weightsDtype: 'fp16', precisions };
}

/** `--precision fp32,int8[,fp16]`; without it, fp32,int8 for builtin:use-lite and fp32 for transformer bases (int8 on request). */
function precisionFlag(text: string | undefined, useLite: boolean): Precision[] {
  if (text === undefined && !useLite) return ['fp32'];
  try {
    return parsePrecisions(text);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** --distill-from, --transfer-data, --temperature, --alpha: checked together (the last three need the first). */
function parseDistillFlags(
  str: (k: string) => string | undefined,
  depths: number[],
  mode: TrainMode,
  useLite: boolean,
): Pick<BuildOptions, 'distillFrom' | 'transferData' | 'temperature' | 'alpha'> {
  const from = str('distill-from');
  const num = (name: string, dflt: number, ok: (x: number) => boolean, range: string) => {
    const v = str(name);
    if (v === undefined) return dflt;
    if (from === undefined) throw new UsageError(`--${name} needs --distill-from`);
    const x = Number(v);
    if (v.trim() === '' || !ok(x)) throw new UsageError(`--${name} must be ${range} (got ${JSON.stringify(v)})`);
    return x;
  };
  const temperature = num('temperature', BUILD_DEFAULTS.distillTemperature, (x) => x > 0 && x <= 100, 'a number above 0, at most 100');
  const alpha = num('alpha', BUILD_DEFAULTS.distillAlpha, (x) => x >= 0 && x <= 1, 'a number from 0 to 1');
  const transferData = str('transfer-data');
  if (from === undefined) {
    if (transferData !== undefined) throw new UsageError('--transfer-data needs --distill-from');
    return { temperature, alpha };
  }
  if (!useLite) throw new UsageError(`--distill-from is available for ${BUILD_DEFAULTS.base} only`);
  if (mode.kind === 'head') throw new UsageError('--distill-from needs --train full or top:N (head-only training has no distillation)');
  if (/^[0-9]+$/.test(from)) {
    const depth = Number(from);
    if (!depths.includes(depth)) throw new UsageError(`--distill-from ${from}: depth ${depth} is not in --depths (${depths.join(',')})`);
    if (depths.length < 2) throw new UsageError(`--distill-from ${from}: --depths needs a student depth besides the teacher's`);
    return { distillFrom: { depth }, transferData, temperature, alpha };
  }
  return { distillFrom: { dir: from }, transferData, temperature, alpha };
}
