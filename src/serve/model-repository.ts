// One variant directory of the model repository as the server reads it: models/<model>/
// <variant>/{model.onnx, tokenizer.json, manifest.json}, every file there, the manifest valid
// and matching the directory, model.onnx matching its checksum; plus the model-level files
// (routing.json, report.json). The model store (model-store.ts) walks the repository and calls
// these; a broken variant fails the start, or a hot reload of it, naming the file and field.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MANIFEST_FILE, ONNX_FILE, TOKENIZER_FILE, VARIANT_NAME, type ServedManifest } from '../manifest.js';

// The variant-name pattern and manifest shape are shared with the build (../manifest.ts).
export { VARIANT_NAME };
export type Manifest = ServedManifest;

export interface VariantEntry {
  model: string;
  variant: string;
  depth: number;
  dir: string;
  onnxPath: string;
  manifest: Manifest;
}

export class RepositoryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RepositoryError';
  }
}

type Check = (v: unknown) => boolean;
const isString: Check = (v) => typeof v === 'string' && v.length > 0;
const isNumber: Check = (v) => typeof v === 'number' && Number.isFinite(v);
const isPositiveInt: Check = (v) => typeof v === 'number' && Number.isInteger(v) && v >= 1;
const isObject: Check = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/** The fields the spec says every manifest has, with the shape each must have. */
const MANIFEST_FIELDS: [string, Check, string][] = [
  ['model', isString, 'a non-empty string'],
  ['variant', isString, 'a non-empty string'],
  ['depth', isPositiveInt, 'an integer >= 1'],
  ['base', isObject, 'an object'],
  ['base.id', isString, 'a non-empty string'],
  ['base.arch', isString, 'a non-empty string'],
  ['base.layers', isPositiveInt, 'an integer >= 1'],
  ['base.source', isString, 'a non-empty string'],
  ['labels', (v) => Array.isArray(v) && v.length >= 2 && v.every(isString) && new Set(v).size === v.length, 'at least two distinct non-empty strings'],
  ['head', isString, 'a non-empty string'],
  ['maxLength', isPositiveInt, 'an integer >= 1'],
  ['train', isObject, 'an object'],
  ['eval', isObject, 'an object'],
  ['eval.split', isString, 'a non-empty string'],
  ['eval.examples', (v) => typeof v === 'number' && Number.isInteger(v) && v >= 0, 'an integer >= 0'],
  ['eval.accuracy', isNumber, 'a number'],
  ['eval.macroF1', isNumber, 'a number'],
  ['params', isNumber, 'a number'],
  ['onnxSha256', (v) => typeof v === 'string' && /^(sha256:)?[0-9a-f]{64}$/.test(v), '64 lowercase hex digits'],
  ['createdAt', isString, 'a non-empty string'],
  ['version', isString, 'a non-empty string'],
];

function field(obj: unknown, path: string): unknown {
  let v: unknown = obj;
  for (const p of path.split('.')) v = isObject(v) ? (v as Record<string, unknown>)[p] : undefined;
  return v;
}

/** Validate one manifest against the spec and against the directory it lies in. */
export function validateManifest(raw: unknown, where: { file: string; model: string; variant: string }): Manifest {
  const problems: string[] = [];
  if (!isObject(raw)) throw new RepositoryError(`${where.file}: expected a JSON object`);
  for (const [path, check, expected] of MANIFEST_FIELDS) {
    const v = field(raw, path);
    if (!check(v)) problems.push(`"${path}" must be ${expected}, got ${v === undefined ? 'nothing' : JSON.stringify(v)}`);
  }
  const m = raw as Manifest;
  if (problems.length === 0) {
    if (m.model !== where.model) problems.push(`"model" is ${JSON.stringify(m.model)} but the directory is ${where.model}`);
    if (m.variant !== where.variant) problems.push(`"variant" is ${JSON.stringify(m.variant)} but the directory is ${where.variant}`);
    const depth = Number(VARIANT_NAME.exec(where.variant)?.[1]);
    if (m.depth !== depth) problems.push(`"depth" is ${m.depth} but the variant name ${where.variant} says ${depth}`);
    if (m.depth > m.base.layers) problems.push(`"depth" ${m.depth} is more than base.layers ${m.base.layers}`);
  }
  if (problems.length > 0) throw new RepositoryError(`${where.file}: ${problems.join('; ')}`);
  return m;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Subdirectories of `dir`, sorted, without hidden ones (a build's temporary output starts with a dot). */
export function subdirectories(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && !d.name.startsWith('.'))
    .map((d) => d.name)
    .sort();
}

export interface ReadOptions {
  /** Compare model.onnx against the manifest's onnxSha256 (default true). */
  verifyChecksums?: boolean;
}

/** The files of a variant directory, all required. */
export const VARIANT_FILES = [ONNX_FILE, TOKENIZER_FILE, MANIFEST_FILE] as const;

/**
 * Read and check one variant directory models/<model>/<variant>: every file there, the manifest
 * valid and matching the directory, model.onnx matching its onnxSha256. Throws a
 * RepositoryError naming the file. The start and hot reload both use it.
 */
export async function readVariant(modelDir: string, model: string, variant: string, opts: ReadOptions = {}): Promise<VariantEntry> {
  const vdir = join(modelDir, variant);
  for (const f of VARIANT_FILES) {
    if (!existsSync(join(vdir, f))) throw new RepositoryError(`${vdir}: ${f} is missing`);
  }
  const file = join(vdir, MANIFEST_FILE);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new RepositoryError(`${file}: ${(err as Error).message}`);
  }
  const manifest = validateManifest(raw, { file, model, variant });
  const onnxPath = join(vdir, ONNX_FILE);
  if (opts.verifyChecksums ?? true) {
    const want = manifest.onnxSha256.replace(/^sha256:/, '');
    const got = await sha256File(onnxPath);
    if (got !== want) throw new RepositoryError(`${onnxPath}: sha256 ${got} differs from the manifest's onnxSha256 ${want}`);
  }
  // Weights past 2 GB live beside model.onnx (ONNX external data); the manifest lists and hashes them.
  const external = Array.isArray(manifest.externalData) ? (manifest.externalData as { file?: unknown; sha256?: unknown }[]) : [];
  for (const e of external) {
    if (typeof e.file !== 'string' || /[/\\]/.test(e.file) || typeof e.sha256 !== 'string') throw new RepositoryError(`${file}: externalData entries must be {file, bytes, sha256}`);
    const path = join(vdir, e.file);
    if (!existsSync(path)) throw new RepositoryError(`${vdir}: ${e.file} (external data of ${ONNX_FILE}) is missing`);
    if (opts.verifyChecksums ?? true) {
      const got = await sha256File(path);
      if (got !== e.sha256) throw new RepositoryError(`${path}: sha256 ${got} differs from the manifest's externalData sha256 ${e.sha256}`);
    }
  }
  return { model, variant, depth: manifest.depth, dir: vdir, onnxPath, manifest };
}

/**
 * What hot reload compares to see a new or rebuilt variant without reading it: size, mtime and
 * inode of each of its files (a build replaces the directory by rename, which changes the
 * inodes even when sizes and times happen to match). null when a file is missing.
 */
export function variantFingerprint(vdir: string): string | null {
  const parts: string[] = [];
  for (const f of VARIANT_FILES) {
    try {
      const st = statSync(join(vdir, f));
      parts.push(`${st.ino}:${st.size}:${st.mtimeMs}`);
    } catch {
      return null;
    }
  }
  return parts.join('|');
}

/** models/<model>/routing.json as JSON, or null when absent. */
export function readRoutingFile(modelDir: string): unknown {
  const routingFile = join(modelDir, 'routing.json');
  if (!existsSync(routingFile)) return null;
  try {
    return JSON.parse(readFileSync(routingFile, 'utf8'));
  } catch (err) {
    throw new RepositoryError(`${routingFile}: ${(err as Error).message}`);
  }
}

/**
 * The variant models/<model>/report.json recommends (its "recommended.variant"), or null. The
 * report is advice written by the build, not part of the serving contract: a missing or
 * unreadable one only means the shallowest variant is the default.
 */
export function readRecommendedVariant(modelDir: string): string | null {
  try {
    const report = JSON.parse(readFileSync(join(modelDir, 'report.json'), 'utf8')) as { recommended?: { variant?: unknown } | null };
    const variant = report?.recommended?.variant;
    return typeof variant === 'string' ? variant : null;
  } catch {
    return null;
  }
}
