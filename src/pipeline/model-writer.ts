// The model repository's variant directories as the build and eval see them: reading a manifest
// (readManifest), and the atomic writer that makes a variant directory complete or absent, never
// half-written. The layout, the manifest type and its validator (shared with the server) are
// ../manifest.ts.
import { createHash, randomBytes } from 'node:crypto';
import { link, mkdir, open, readFile, readdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { sha256File } from '../sha256-file.js';
import { writeFileSynced } from '../atomic-write.js';
import { jsonErrorOffset } from './datasets/index.js';
import { TRANSFORMERS_JS_CONFIG_FILE, TRANSFORMERS_JS_ONNX_FILE, transformersJsConfig, transformersJsTokenizerConfig } from './transformers-js.js';
import {
  MANIFEST_FILE,
  ManifestError,
  ONNX_DATA_FILE,
  ONNX_FILE,
  TOKENIZER_CONFIG_FILE,
  TOKENIZER_FILE,
  VARIANT_NAME,
  validateManifest,
  type Manifest,
} from '../manifest.js';

// The layout, the manifest and its validator, for build code that reaches them through here.
export {
  HEAD_KINDS,
  MANIFEST_FILE,
  ManifestError,
  ONNX_DATA_FILE,
  ONNX_FILE,
  TOKENIZER_CONFIG_FILE,
  TOKENIZER_FILE,
  VARIANT_NAME,
  validateManifest,
  type HeadKind,
  type Manifest,
} from '../manifest.js';

/** Temporary and set-aside directories start with a dot, so listings of variants skip them. */
const TEMP_PREFIX = '.tmp-';
const OLD_PREFIX = '.old-';

export function variantName(depth: number, suffix?: string): string {
  const name = suffix ? `k${depth}-${suffix}` : `k${depth}`;
  if (!VARIANT_NAME.test(name)) throw new RangeError(`invalid variant name ${JSON.stringify(name)} (expected k<depth>[-suffix], lower case)`);
  return name;
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
  const absolute = resolve(dir);
  const manifest = validateManifest(value, file, { model: basename(dirname(absolute)), variant: basename(absolute) });
  const problems: string[] = [];
  if (options.verifyOnnx) {
    const onnxFile = join(dir, ONNX_FILE);
    try {
      const digest = await sha256File(onnxFile);
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
  /** model.onnx: its bytes, or pieces whose concatenation it is (onnx-pieces.ts: the weights without a second copy). */
  onnx: Uint8Array | readonly Uint8Array[];
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
  const onnxChunks = files.onnx instanceof Uint8Array ? [files.onnx] : files.onnx;
  const manifest: Manifest = { ...draft, onnxSha256: sha256Chunks(onnxChunks).sha256 };
  if (files.onnxData) {
    const { sha256, bytes } = sha256Chunks(files.onnxData);
    manifest.externalData = [{ file: ONNX_DATA_FILE, bytes, sha256 }];
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
    await writeChunksDurable(join(tempDir, ONNX_FILE), onnxChunks);
    if (files.onnxData) await writeChunksDurable(join(tempDir, ONNX_DATA_FILE), files.onnxData);
    await writeFileSynced(join(tempDir, TOKENIZER_FILE), asJsonText(files.tokenizer));
    await writeFileSynced(join(tempDir, TOKENIZER_CONFIG_FILE), asJsonText(transformersJsTokenizerConfig(files.tokenizerConfig, manifest.maxLength)));
    await writeFileSynced(join(tempDir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
    // What transformers.js' pipeline('text-classification', <variant dir>) reads: config.json,
    // and the same model.onnx under onnx/ (its default file), hard-linked so it costs no space.
    await writeFileSynced(join(tempDir, TRANSFORMERS_JS_CONFIG_FILE), `${JSON.stringify(transformersJsConfig(manifest), null, 2)}\n`);
    await mkdir(join(tempDir, dirname(TRANSFORMERS_JS_ONNX_FILE)));
    await linkOrCopy(join(tempDir, ONNX_FILE), join(tempDir, TRANSFORMERS_JS_ONNX_FILE), onnxChunks);
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

/** SHA-256 and length of chunks, in slices: Hash.update refuses one input of 2 GiB or more (a large embedding is one chunk). */
function sha256Chunks(chunks: readonly Uint8Array[]): { sha256: string; bytes: number } {
  const hash = createHash('sha256');
  let bytes = 0;
  for (const c of chunks) {
    for (let at = 0; at < c.length; at += 1 << 30) hash.update(c.subarray(at, Math.min(c.length, at + (1 << 30))));
    bytes += c.length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

/** A hard link where the file system allows one (no second copy of the weights), else a copy. */
async function linkOrCopy(existing: string, path: string, data: readonly Uint8Array[]): Promise<void> {
  try {
    await link(existing, path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EMLINK' && code !== 'EXDEV') throw err;
    await writeChunksDurable(path, data);
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
