// A variant directory on disk, as the build writes it (pipeline/model-writer.ts) and the server
// reads it (serve/model-repository.ts): the file names, the variant-name pattern, the manifest
// shape (docs/spec.md) and its validator, defined once so the two sides cannot drift apart.

export const MANIFEST_FILE = 'manifest.json';
export const ONNX_FILE = 'model.onnx';
/** model.onnx's external data (the weights of a variant past protobuf's 2 GB), beside it. */
export const ONNX_DATA_FILE = 'model.onnx.data';
export const TOKENIZER_FILE = 'tokenizer.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';

/** k<depth>, optionally with training-mode and precision suffixes: k1, k12, k2-head, k2-top1, k2-int8, k1-head-fp16. */
export const VARIANT_NAME = /^k([1-9][0-9]*)(?:-([a-z0-9][a-z0-9-]*))?$/;

export interface ExternalDataFile {
  /** File name in the variant directory (as model.onnx's tensors name their location). */
  file: string;
  bytes: number;
  sha256: string;
}

/** Numeric precision of a variant's weights and arithmetic (src/pipeline/precision/). */
export type Precision = 'fp32' | 'int8' | 'fp16';
export const PRECISIONS: readonly Precision[] = ['fp32', 'int8', 'fp16'];

/** The precision a manifest declares; manifests written before precisions existed are fp32. */
export function precisionOf(manifest: { precision?: unknown }): Precision {
  return PRECISIONS.includes(manifest.precision as Precision) ? (manifest.precision as Precision) : 'fp32';
}

export type HeadKind = 'pool' | 'last' | 'label-words';
export const HEAD_KINDS: readonly HeadKind[] = ['pool', 'last', 'label-words'];

export interface Manifest {
  model: string;
  variant: string;
  depth: number;
  base: { id: string; arch: string; layers: number; source: string };
  /** Output order of the logits. */
  labels: string[];
  head: HeadKind;
  /** head "label-words": the prompt, with {text} where the input goes (the exported graph adds it around the tokens; recorded here, not read by the server). */
  template?: string;
  /** head "label-words": the word read for each label, in `labels` order. */
  labelWords?: string[];
  maxLength: number;
  /** fp32 when absent. An int8 or fp16 variant's name ends in -int8 / -fp16. */
  precision?: Precision;
  /** int8 / fp16 variants: the float32 variant they were converted from. */
  convertedFrom?: { variant: string; onnxSha256: string };
  train: { mode: string; epochs: number; lr: number; seed: number; examples: number; dataSha256: string; seconds: number };
  eval: { split: string; examples: number; accuracy: number; macroF1: number };
  /** Parameters in the exported graph. */
  params: number;
  onnxSha256: string;
  /** The files holding model.onnx's external data, when its weights are kept outside it (large variants). */
  externalData?: ExternalDataFile[];
  /** ISO 8601 time of the build. */
  createdAt: string;
  /** Version of the build tool that wrote the variant. */
  version: string;
}

/** A manifest that cannot be used; the message names the file and every bad field. */
export class ManifestError extends Error {
  override readonly name = 'ManifestError';

  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(`${file}: ${problems.length === 1 ? problems[0] : `invalid manifest:\n  - ${problems.join('\n  - ')}`}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Validation

const SHA256_HEX = /^[0-9a-f]{64}$/;
const TRAIN_MODE = /^(?:head|full|top:[1-9][0-9]*)$/;

/**
 * Check a parsed manifest and return it typed: the one check of the manifest shape, used where
 * the build writes a variant (model-writer.ts writeVariant), where build and eval read one
 * (readManifest) and where the server loads one (serve/model-repository.ts readVariant). Every
 * problem is listed (not just the first), each by its field path, so one look at the message
 * fixes the file. Unknown fields are allowed: newer build tools may add some. With `directory`,
 * the manifest must also name the model and variant directories it lies in, so a copied or
 * renamed directory cannot be served under a name its manifest contradicts.
 */
export function validateManifest(value: unknown, file: string, directory?: { model: string; variant: string }): Manifest {
  const problems: string[] = [];
  const describe = (v: unknown) => (v === undefined ? 'missing' : `got ${JSON.stringify(v)}`);
  const at = (path: string): unknown =>
    path
      .split('.')
      .reduce<unknown>((o, k) => (o !== null && typeof o === 'object' && !Array.isArray(o) ? (o as Record<string, unknown>)[k] : undefined), value);
  const check = (path: string, ok: (v: unknown) => boolean, expected: string) => {
    const v = at(path);
    if (!ok(v)) problems.push(`${path} must be ${expected} (${describe(v)})`);
  };
  const isString = (v: unknown): v is string => typeof v === 'string' && v.trim() !== '';
  const isInt = (min: number) => (v: unknown) => Number.isInteger(v) && (v as number) >= min;
  const isNumber =
    (min: number, max = Infinity) =>
    (v: unknown) =>
      typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max;

  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ManifestError(file, ['must be a JSON object']);
  }
  check('model', (v) => isString(v) && !/[/\\]/.test(v), 'a model name (a non-empty string without slashes)');
  check('variant', (v) => typeof v === 'string' && VARIANT_NAME.test(v), 'a variant name like "k1" or "k2-head"');
  check('depth', isInt(1), 'a positive integer');
  for (const key of ['id', 'arch', 'source']) check(`base.${key}`, isString, 'a non-empty string');
  check('base.layers', isInt(1), 'a positive integer');
  check(
    'labels',
    (v) => Array.isArray(v) && v.length >= 2 && v.every(isString) && new Set(v).size === v.length,
    'an array of at least two distinct non-empty strings',
  );
  check('head', (v) => HEAD_KINDS.includes(v as HeadKind), `one of ${HEAD_KINDS.map((h) => `"${h}"`).join(', ')}`);
  if (at('head') === 'label-words') {
    check('template', (v) => typeof v === 'string' && v.includes('{text}'), 'a prompt template containing {text} for the label-words head');
  }
  if (at('labelWords') !== undefined) {
    const labels = at('labels');
    check(
      'labelWords',
      (v) => Array.isArray(v) && v.every(isString) && (!Array.isArray(labels) || v.length === labels.length),
      'an array of strings, one per label',
    );
  }
  check('maxLength', isInt(1), 'a positive integer');
  if (at('precision') !== undefined) {
    check('precision', (v) => PRECISIONS.includes(v as Manifest['precision'] & string), `one of ${PRECISIONS.map((p) => `"${p}"`).join(', ')}`);
  }
  check('train.mode', (v) => typeof v === 'string' && TRAIN_MODE.test(v), '"head", "full" or "top:N"');
  check('train.epochs', isInt(0), 'a non-negative integer');
  check('train.lr', isNumber(0), 'a non-negative number');
  check('train.seed', isInt(Number.MIN_SAFE_INTEGER), 'an integer');
  check('train.examples', isInt(1), 'a positive integer');
  check('train.dataSha256', (v) => typeof v === 'string' && SHA256_HEX.test(v), 'a SHA-256 as 64 lower-case hex digits');
  check('train.seconds', isNumber(0), 'a non-negative number');
  check('eval.split', isString, 'a non-empty string naming the validation data');
  check('eval.examples', isInt(0), 'a non-negative integer');
  check('eval.accuracy', isNumber(0, 1), 'a number from 0 to 1');
  check('eval.macroF1', isNumber(0, 1), 'a number from 0 to 1');
  check('params', isInt(1), 'a positive integer');
  check('onnxSha256', (v) => typeof v === 'string' && SHA256_HEX.test(v), 'a SHA-256 as 64 lower-case hex digits');
  if (at('externalData') !== undefined) {
    check(
      'externalData',
      (v) =>
        Array.isArray(v) &&
        v.every(
          (e: Record<string, unknown> | null) =>
            e !== null &&
            typeof e === 'object' &&
            isString(e.file) &&
            !/[/\\]/.test(e.file) &&
            isInt(0)(e.bytes) &&
            typeof e.sha256 === 'string' &&
            SHA256_HEX.test(e.sha256),
        ),
      'an array of {file (a name in the variant directory), bytes, sha256}',
    );
  }
  check('createdAt', (v) => typeof v === 'string' && /^\d{4}-\d{2}-\d{2}T/.test(v) && !Number.isNaN(Date.parse(v)), 'an ISO 8601 date-time');
  check('version', isString, 'a non-empty string');

  // Consistency between fields, once each field is well-formed by itself.
  const m = value as Manifest;
  const variantDepth = typeof m.variant === 'string' ? VARIANT_NAME.exec(m.variant)?.[1] : undefined;
  if (variantDepth !== undefined && Number.isInteger(m.depth) && Number(variantDepth) !== m.depth) {
    problems.push(`depth ${m.depth} does not match variant "${m.variant}"`);
  }
  // The name says the precision: k2-int8 is int8 and an int8 variant is named ...-int8.
  if (typeof m.variant === 'string' && (m.precision === undefined || PRECISIONS.includes(m.precision))) {
    const precision = m.precision ?? 'fp32';
    const suffix = PRECISIONS.find((p) => p !== 'fp32' && m.variant.endsWith(`-${p}`));
    if (suffix !== undefined && suffix !== precision) problems.push(`variant "${m.variant}" is named ${suffix} but precision is ${precision}`);
    if (precision !== 'fp32' && suffix !== precision) problems.push(`precision ${precision} needs a variant name ending in -${precision} (got "${m.variant}")`);
  }
  if (Number.isInteger(m.depth) && Number.isInteger(m.base?.layers) && m.depth > m.base.layers) {
    problems.push(`depth ${m.depth} exceeds base.layers ${m.base.layers}`);
  }
  if (directory && problems.length === 0) {
    if (m.variant !== directory.variant) problems.push(`variant "${m.variant}" does not match its directory name "${directory.variant}"`);
    if (m.model !== directory.model) problems.push(`model "${m.model}" does not match the model directory name "${directory.model}"`);
  }
  if (problems.length > 0) throw new ManifestError(file, problems);
  return m;
}
