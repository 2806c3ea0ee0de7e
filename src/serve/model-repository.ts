// One variant directory of the model repository as the server reads it: models/<model>/
// <variant>/{model.onnx, tokenizer.json, manifest.json}, every file there, the manifest valid
// and matching the directory, model.onnx matching its checksum; plus the model-level files
// (routing.json, report.json). The model store (model-store.ts) walks the repository and calls
// these; a broken variant fails the start, or a hot reload of it, naming the file and field.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { sha256File } from '../sha256-file.js';
import {
  MANIFEST_FILE,
  ManifestError,
  ONNX_FILE,
  TOKENIZER_FILE,
  VARIANT_NAME,
  validateManifest as validateSharedManifest,
  type Manifest,
} from '../manifest.js';

// The variant-name pattern, manifest shape and validator are shared with the build (../manifest.ts).
export { VARIANT_NAME, type Manifest };

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

/**
 * Validate one manifest against the spec and against the directory it lies in, with the
 * validator the build uses (../manifest.ts); its problems become one RepositoryError line.
 */
export function validateManifest(raw: unknown, where: { file: string; model: string; variant: string }): Manifest {
  try {
    return validateSharedManifest(raw, where.file, { model: where.model, variant: where.variant });
  } catch (err) {
    if (err instanceof ManifestError) throw new RepositoryError(`${err.file}: ${err.problems.join('; ')}`);
    throw err;
  }
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
  /** Read routing files from <routingDir>/<model>/routing.json (default: the model directory). */
  routingDir?: string | null;
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
    const want = manifest.onnxSha256;
    const got = await sha256File(onnxPath);
    if (got !== want) throw new RepositoryError(`${onnxPath}: sha256 ${got} differs from the manifest's onnxSha256 ${want}`);
  }
  // Weights past 2 GB live beside model.onnx (ONNX external data); the manifest lists and hashes them.
  for (const e of manifest.externalData ?? []) {
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

/**
 * Where a model's routing table lives: models/<model>/routing.json, or
 * <routingDir>/<model>/routing.json when the server runs with --routing-dir (so the routing can
 * come from its own volume, e.g. a ConfigMap, while the model repository is shared read-only).
 */
export function routingFilePath(modelDir: string, routingDir: string | null = null): string {
  return routingDir === null ? join(modelDir, 'routing.json') : join(routingDir, basename(modelDir), 'routing.json');
}

/** The model's routing.json (see routingFilePath) as JSON, or null when absent. */
export function readRoutingFile(modelDir: string, routingDir: string | null = null): unknown {
  const routingFile = routingFilePath(modelDir, routingDir);
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
