// The model repository's variant directories: the manifest validator (the server reads
// manifests through `readManifest` too), and the atomic writer that makes a variant directory
// complete or absent, never half-written. The layout and manifest type are ../manifest.ts.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { link, mkdir, open, readFile, readdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { jsonErrorOffset } from './datasets.js';
import { TRANSFORMERS_JS_CONFIG_FILE, TRANSFORMERS_JS_ONNX_FILE, transformersJsConfig, transformersJsTokenizerConfig } from './transformers-js.js';
import { HEAD_KINDS, PRECISIONS, MANIFEST_FILE, ONNX_DATA_FILE, ONNX_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, VARIANT_NAME, type HeadKind, type Manifest } from '../manifest.js';

export { HEAD_KINDS, MANIFEST_FILE, ONNX_DATA_FILE, ONNX_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, VARIANT_NAME, type HeadKind, type Manifest };

/** Temporary and set-aside directories start with a dot, so listings of variants skip them. */
const TEMP_PREFIX = '.tmp-';
const OLD_PREFIX = '.old-';

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

export function variantName(depth: number, suffix?: string): string {
  const name = suffix ? `k${depth}-${suffix}` : `k${depth}`;
  if (!VARIANT_NAME.test(name)) throw new RangeError(`invalid variant name ${JSON.stringify(name)} (expected k<depth>[-suffix], lower case)`);
  return name;
}

// ---------------------------------------------------------------------------------------------
// Validation

const SHA256_HEX = /^[0-9a-f]{64}$/;
const TRAIN_MODE = /^(?:head|full|top:[1-9][0-9]*)$/;

/**
 * Check a parsed manifest and return it typed. Every problem is listed (not just the first),
 * each by its field path, so one look at the message fixes the file. Unknown fields are
 * allowed: newer build tools may add some.
 */
export function validateManifest(value: unknown, file: string): Manifest {
  const problems: string[] = [];
  const describe = (v: unknown) => (v === undefined ? 'missing' : `got ${JSON.stringify(v)}`);
  const at = (path: string): unknown =>
    path.split('.').reduce<unknown>((o, k) => (o !== null && typeof o === 'object' && !Array.isArray(o) ? (o as Record<string, unknown>)[k] : undefined), value);
  const check = (path: string, ok: (v: unknown) => boolean, expected: string) => {
    const v = at(path);
    if (!ok(v)) problems.push(`${path} must be ${expected} (${describe(v)})`);
  };
  const isString = (v: unknown): v is string => typeof v === 'string' && v.trim() !== '';
  const isInt = (min: number) => (v: unknown) => Number.isInteger(v) && (v as number) >= min;
  const isNumber = (min: number, max = Infinity) => (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max;

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
      (v) => Array.isArray(v) && v.every((e: Record<string, unknown> | null) => e !== null && typeof e === 'object' && isString(e.file) && !/[/\\]/.test(e.file) && isInt(0)(e.bytes) && typeof e.sha256 === 'string' && SHA256_HEX.test(e.sha256)),
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
  if (problems.length > 0) throw new ManifestError(file, problems);
  return m;
}

/**
 * Read and validate `<dir>/manifest.json`, and check that it describes this directory: its
 * variant is the directory's name and its model the parent's, so a copied or renamed
 * directory cannot be served under a name its manifest contradicts.
 */
export async function readManifest(dir: string, options: { verifyOnnx?: boolean } = {}): Promise<Manifest> {
  const file = join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ManifestError(file, [code === 'ENOENT' ? 'missing: every variant directory needs a manifest.json' : `cannot read: ${(err as Error).message}`]);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ManifestError(jsonErrorLocation(file, text), [`malformed JSON: ${(err as Error).message}`]);
  }
  const manifest = validateManifest(value, file);
  const problems: string[] = [];
  const absolute = resolve(dir);
  if (manifest.variant !== basename(absolute)) {
    problems.push(`variant "${manifest.variant}" does not match its directory name "${basename(absolute)}"`);
  }
  if (manifest.model !== basename(dirname(absolute))) {
    problems.push(`model "${manifest.model}" does not match the model directory name "${basename(dirname(absolute))}"`);
  }
  if (options.verifyOnnx) {
    const onnxFile = join(dir, ONNX_FILE);
    try {
      const digest = createHash('sha256').update(await readFile(onnxFile)).digest('hex');
      if (digest !== manifest.onnxSha256) problems.push(`onnxSha256 ${manifest.onnxSha256} does not match ${ONNX_FILE} (sha256 ${digest})`);
    } catch (err) {
      problems.push(`cannot read ${onnxFile}: ${(err as Error).message}`);
    }
    for (const e of manifest.externalData ?? []) {
      try {
        const digest = await sha256File(join(dir, e.file));
        if (digest !== e.sha256) problems.push(`externalData ${e.file}: sha256 ${e.sha256} does not match the file (sha256 ${digest})`);
      } catch (err) {
        problems.push(`cannot read ${join(dir, e.file)}: ${(err as Error).message}`);
      }
    }
  }
  if (problems.length > 0) throw new ManifestError(file, problems);
  return manifest;
}

/** SHA-256 of a file of any size, streamed. */
async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** "file:line:column" of the first JSON syntax error. */
function jsonErrorLocation(file: string, text: string): string {
  const offset = jsonErrorOffset(text);
  if (offset < 0) return file;
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  return `${file}:${line}:${before.length - before.lastIndexOf('\n')}`;
}

// ---------------------------------------------------------------------------------------------
// Atomic writing

export interface VariantFiles {
  onnx: Uint8Array;
  /** tokenizer.json: text as is, or a value to serialise as JSON. */
  tokenizer: string | object;
  tokenizerConfig: string | object;
  /** model.onnx's external data (onnx-external.ts), in order: written to model.onnx.data and listed, hashed, in the manifest. */
  onnxData?: readonly Uint8Array[];
}

/** The manifest less what the writer computes from the files (hashes, external data). */
export type ManifestDraft = Omit<Manifest, 'onnxSha256' | 'externalData'>;

/**
 * Write `<modelDir>/<manifest.variant>/` so that it is complete or absent at every instant:
 * all files go into a temporary sibling (`.tmp-<variant>-<random>`), each fsynced, then the
 * directory is renamed into place. An older variant of the same name is renamed aside first
 * and removed only after the new one is in place; between those two renames the variant is
 * absent, never partial (Node offers no atomic directory exchange). On any failure the
 * temporary directory is removed and an older variant is left as it was.
 *
 * The writer computes `onnxSha256` (and the external data's hash) itself, so the manifest
 * cannot disagree with the files.
 */
export async function writeVariant(modelDir: string, draft: ManifestDraft, files: VariantFiles): Promise<{ dir: string; manifest: Manifest }> {
  const manifest: Manifest = { ...draft, onnxSha256: createHash('sha256').update(files.onnx).digest('hex') };
  if (files.onnxData) {
    const hash = createHash('sha256');
    let bytes = 0;
    // In slices: Hash.update refuses one input of 2 GiB or more (a large embedding is one chunk).
    for (const c of files.onnxData) {
      for (let at = 0; at < c.length; at += 1 << 30) hash.update(c.subarray(at, Math.min(c.length, at + (1 << 30))));
      bytes += c.length;
    }
    manifest.externalData = [{ file: ONNX_DATA_FILE, bytes, sha256: hash.digest('hex') }];
  }
  const finalDir = join(modelDir, manifest.variant);
  validateManifest(manifest, join(finalDir, MANIFEST_FILE));
  if (manifest.model !== basename(resolve(modelDir))) {
    throw new ManifestError(join(finalDir, MANIFEST_FILE), [
      `model "${manifest.model}" does not match the model directory name "${basename(resolve(modelDir))}"`,
    ]);
  }
  await mkdir(modelDir, { recursive: true });
  const tempDir = join(modelDir, `${TEMP_PREFIX}${manifest.variant}-${randomBytes(4).toString('hex')}`);
  await mkdir(tempDir);
  try {
    await writeDurable(join(tempDir, ONNX_FILE), files.onnx);
    if (files.onnxData) await writeChunksDurable(join(tempDir, ONNX_DATA_FILE), files.onnxData);
    await writeDurable(join(tempDir, TOKENIZER_FILE), asJsonText(files.tokenizer));
    await writeDurable(join(tempDir, TOKENIZER_CONFIG_FILE), asJsonText(transformersJsTokenizerConfig(files.tokenizerConfig, manifest.maxLength)));
    await writeDurable(join(tempDir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
    // What transformers.js' pipeline('text-classification', <variant dir>) reads: config.json,
    // and the same model.onnx under onnx/ (its default file), hard-linked so it costs no space.
    await writeDurable(join(tempDir, TRANSFORMERS_JS_CONFIG_FILE), `${JSON.stringify(transformersJsConfig(manifest), null, 2)}\n`);
    await mkdir(join(tempDir, dirname(TRANSFORMERS_JS_ONNX_FILE)));
    await linkOrCopy(join(tempDir, ONNX_FILE), join(tempDir, TRANSFORMERS_JS_ONNX_FILE), files.onnx);
    await fsyncDirectory(join(tempDir, dirname(TRANSFORMERS_JS_ONNX_FILE)));
    await fsyncDirectory(tempDir);
  } catch (err) {
    await rm(tempDir, { recursive: true, force: true });
    throw err;
  }

  const asideDir = join(modelDir, `${OLD_PREFIX}${manifest.variant}-${randomBytes(4).toString('hex')}`);
  let setAside = false;
  try {
    await rename(finalDir, asideDir);
    setAside = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      await rm(tempDir, { recursive: true, force: true });
      throw err;
    }
  }
  try {
    await rename(tempDir, finalDir);
  } catch (err) {
    if (setAside) await rename(asideDir, finalDir);
    await rm(tempDir, { recursive: true, force: true });
    throw err;
  }
  await fsyncDirectory(modelDir);
  if (setAside) await rm(asideDir, { recursive: true, force: true });
  return { dir: finalDir, manifest };
}

/**
 * Clean up after a build that was killed mid-write: remove `.tmp-*` directories and put
 * back a set-aside `.old-<variant>-*` whose replacement never arrived. Call it at the start
 * of a build, not while another build writes into the same model directory.
 */
export async function removeStaleTemporaries(modelDir: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(modelDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  for (const name of entries) {
    if (name.startsWith(TEMP_PREFIX)) {
      await rm(join(modelDir, name), { recursive: true, force: true });
    } else if (name.startsWith(OLD_PREFIX)) {
      const variant = name.slice(OLD_PREFIX.length).replace(/-[0-9a-f]{8}$/, '');
      if (VARIANT_NAME.test(variant) && !entries.includes(variant)) {
        await rename(join(modelDir, name), join(modelDir, variant));
        entries.push(variant);
      } else {
        await rm(join(modelDir, name), { recursive: true, force: true });
      }
    }
  }
}

function asJsonText(content: string | object): string {
  return typeof content === 'string' ? content : JSON.stringify(content);
}

/** A hard link where the file system allows one (no second copy of the weights), else a copy. */
async function linkOrCopy(existing: string, path: string, data: Uint8Array): Promise<void> {
  try {
    await link(existing, path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EMLINK' && code !== 'EXDEV') throw err;
    await writeDurable(path, data);
  }
}

async function writeDurable(path: string, data: string | Uint8Array): Promise<void> {
  const handle = await open(path, 'wx');
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A file of several gigabytes, written chunk by chunk (no single buffer holds it). */
async function writeChunksDurable(path: string, chunks: readonly Uint8Array[]): Promise<void> {
  const handle = await open(path, 'wx');
  try {
    for (const c of chunks) {
      let done = 0;
      while (done < c.length) done += (await handle.write(c, done, Math.min(c.length - done, 1 << 30))).bytesWritten;
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Make renames and new entries in a directory durable; some file systems refuse, which is harmless. */
async function fsyncDirectory(dir: string): Promise<void> {
  let handle;
  try {
    handle = await open(dir, 'r');
    await handle.sync();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EINVAL' && code !== 'EPERM' && code !== 'EBADF') throw err;
  } finally {
    await handle?.close();
  }
}
