// Export the first k blocks of a gpt2/opt/llama/bert checkpoint (Hugging Face directory or
// llama2.c .bin) as an ONNX file: hidden states, full-vocabulary LM logits, or a classifier on
// the last real token (a linear head, or the LM-head rows of label words). Files whose weights
// exceed protobuf's 2 GB limit keep their large initializers in `<file>.data` (ONNX external data).
import { closeSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { ModelProto } from './onnx-proto.js';
import { modelPieces } from './onnx-pieces.js';
import type { GraphBuilder } from './graph.js';
import {
  buildTransformerGraph,
  checkDepth,
  countParams,
  loadParams,
  paramSpecs,
  type FloatTensorValue,
  type GraphOutput,
  type Pooling,
  type PromptTemplateIds,
  type TransformerCheckpoint,
  type TransformerConfig,
} from './architectures/transformer.js';
import { gpt2 } from './architectures/gpt2.js';
import { mulberry32, randomNormal } from './random.js';
import { EXTERNAL_DATA_THRESHOLD, moveToExternalData } from './onnx-external.js';

export type ExportHead =
  | { kind: 'hidden' }
  | { kind: 'lm' }
  | { kind: 'last'; weight: FloatTensorValue; bias: FloatTensorValue }
  | { kind: 'label-words'; ids: number[]; bias?: FloatTensorValue };

export interface ExportTransformerOptions {
  depth: number;
  head: ExportHead;
  outFile: string;
  /** Longest accepted sequence (causal / RoPE tables); default min(max positions, 512). */
  tableLength?: number;
  /** Body parameters replacing the checkpoint's (fine-tuned values). */
  overrides?: ReadonlyMap<string, FloatTensorValue>;
  /** Initializer bytes above which weights go to external data (default 1.9 GB). */
  externalDataThreshold?: number;
  metadata?: Record<string, string>;
  /** Prompt template applied in the graph (label-words heads). */
  template?: PromptTemplateIds;
  /** Which vector a classifier head reads (default: the checkpoint family's, see HfArchitecture.defaultPooling). */
  pooling?: Pooling;
}

export interface ExportTransformerResult {
  file: string;
  /** External data file, when one was written. */
  dataFile?: string;
  bytes: number;
  params: number;
  seconds: number;
}

/** The full LM head as [W, V] (transposed once; the tied embedding when there is no separate head). */
export function lmHeadMatrix(ckpt: TransformerCheckpoint): FloatTensorValue {
  return ckpt.lmHeadColumns(Array.from({ length: ckpt.config.vocab }, (_, i) => i));
}

export function graphOutputFor(ckpt: TransformerCheckpoint, head: ExportHead): GraphOutput {
  switch (head.kind) {
    case 'hidden':
      return { kind: 'hidden' };
    case 'lm':
      return { kind: 'lm', weight: lmHeadMatrix(ckpt) };
    case 'last':
      return { kind: 'classifier', weight: head.weight, bias: head.bias };
    case 'label-words':
      return {
        kind: 'classifier',
        weight: ckpt.lmHeadColumns(head.ids),
        bias: head.bias ?? { dims: [head.ids.length], data: new Float32Array(head.ids.length) },
      };
  }
}

export function buildExportGraph(ckpt: TransformerCheckpoint, o: Omit<ExportTransformerOptions, 'outFile'>): { graph: GraphBuilder; params: number } {
  checkDepth(ckpt.config, o.depth);
  const body = loadParams(ckpt, o.depth);
  const { graph } = buildTransformerGraph(ckpt.config, body, {
    depth: o.depth,
    output: graphOutputFor(ckpt, o.head),
    tableLength: o.tableLength,
    overrides: o.overrides,
    template: o.template,
    pooling: o.pooling,
  });
  return { graph, params: countParams(body) };
}

export function exportTransformer(ckpt: TransformerCheckpoint, o: ExportTransformerOptions): ExportTransformerResult {
  const t0 = performance.now();
  const { graph, params } = buildExportGraph(ckpt, o);
  const c = ckpt.config;
  const model = graph.toModel({
    docString: `slimserve export of ${ckpt.id} (${c.arch}), first ${o.depth} of ${c.layers} layers, head ${o.head.kind}`,
    metadata: {
      'slim.base': ckpt.id,
      'slim.arch': c.arch,
      'slim.depth': String(o.depth),
      'slim.layers': String(c.layers),
      'slim.head': o.head.kind,
      ...o.metadata,
    },
  });
  const written = writeModel(model, o.outFile, o.externalDataThreshold ?? EXTERNAL_DATA_THRESHOLD);
  return { ...written, params, seconds: (performance.now() - t0) / 1000 };
}

/**
 * Serialise a model to `file` atomically. When the initializers exceed `threshold` bytes, each
 * initializer of 1 KiB or more is written to `<file>.data` and referenced by ONNX external data
 * (location relative to the model file, offset, length), keeping the protobuf small. Either file
 * is written piece by piece from the weights the model holds (onnx-pieces.ts): no second copy.
 */
export function writeModel(model: ModelProto, file: string, threshold: number): { file: string; dataFile?: string; bytes: number } {
  mkdirSync(dirname(file), { recursive: true });
  const chunks = moveToExternalData(model, basename(`${file}.data`), threshold);
  let dataFile: string | undefined;
  let dataBytes = 0;
  if (chunks) {
    dataFile = `${file}.data`;
    dataBytes = writeChunksAtomically(chunks, dataFile);
  }
  const { pieces } = modelPieces(model);
  let bytes: number;
  try {
    bytes = writeChunksAtomically(pieces, file);
  } catch (e) {
    throw new Error(`cannot write ${file}: ${(e as Error).message}`);
  }
  return { file, dataFile, bytes: bytes + dataBytes };
}

/** Write chunks to a temporary sibling, then rename it to `file`; returns the bytes written. */
function writeChunksAtomically(chunks: readonly Uint8Array[], file: string): number {
  const tmp = `${file}.tmp-${process.pid}`;
  let total = 0;
  try {
    const fd = openSync(tmp, 'w');
    try {
      for (const c of chunks) {
        let done = 0;
        while (done < c.length) done += writeSync(fd, c, done, Math.min(c.length - done, 1 << 30));
        total += c.length;
      }
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  return total;
}

/** A checkpoint held in memory under canonical names (random models, converted tensors). */
export class MemoryCheckpoint implements TransformerCheckpoint {
  constructor(
    readonly config: TransformerConfig,
    readonly tensors: Map<string, FloatTensorValue>,
    readonly id = `memory:${config.arch}`,
    readonly source = 'memory',
  ) {}
  tensor(name: string): FloatTensorValue | undefined {
    return this.tensors.get(name);
  }
  lmHeadColumns(ids: readonly number[]): FloatTensorValue {
    const W = this.config.hidden;
    const head = this.tensors.get('lm_head.weight'); // [W, V]
    const emb = this.tensors.get('embed.tokens')!; // [V, W]
    const out = new Float32Array(W * ids.length);
    ids.forEach((id, j) => {
      for (let k = 0; k < W; k++) out[k * ids.length + j] = head ? head.data[k * this.config.vocab + id]! : emb.data[id * W + k]!;
    });
    return { dims: [W, ids.length], data: out };
  }
}

export interface RandomGpt2ClassifierOptions {
  /** Layers to keep in the exported model (the depth k). */
  layers: number;
  width?: number;
  heads?: number;
  vocab?: number;
  numLabels?: number;
  maxPositions?: number;
  outPath: string;
  seed?: number;
}

/**
 * A GPT-2-shaped classifier with random weights (default GPT-2 small: 768 wide, 12 heads, vocab
 * 50257), cut to `layers` blocks, with the spec's I/O: input_ids, attention_mask -> logits
 * [batch, numLabels] read at the last real token (right padding). Weights are seeded per tensor,
 * so a k-layer model's blocks equal the first k blocks of a deeper one with the same seed.
 */
export function exportRandomGpt2Classifier(o: RandomGpt2ClassifierOptions): ExportTransformerResult {
  const W = o.width ?? 768,
    H = o.heads ?? 12,
    V = o.vocab ?? 50257,
    L = o.numLabels ?? 2,
    P = o.maxPositions ?? 1024;
  // GPT-2's own config reader, fed the HF keys, so this model is what `slim build` makes of such a checkpoint.
  const config = gpt2.config({ n_embd: W, n_head: H, n_layer: o.layers, vocab_size: V, n_positions: P });
  const tensors = new Map<string, FloatTensorValue>();
  const seed = o.seed ?? 7;
  paramSpecs(config, o.layers).forEach((s) => {
    const n = s.dims.reduce((a, b) => a * b, 1);
    let h = seed;
    for (const ch of s.name) h = (Math.imul(h, 31) + ch.charCodeAt(0)) | 0;
    const rng = mulberry32(h);
    const data = new Float32Array(n);
    const base = s.kind === 'norm' && s.name.endsWith('.weight') ? 1 : 0;
    for (let i = 0; i < n; i++) data[i] = base + 0.02 * randomNormal(rng);
    tensors.set(s.name, { dims: s.dims, data });
  });
  const ckpt = new MemoryCheckpoint(config, tensors, 'random:gpt2');
  const rng = mulberry32(seed + 1);
  const weight = { dims: [W, L], data: Float32Array.from({ length: W * L }, () => 0.02 * randomNormal(rng)) };
  return exportTransformer(ckpt, {
    depth: o.layers,
    head: { kind: 'last', weight, bias: { dims: [L], data: new Float32Array(L) } },
    outFile: o.outPath,
    tableLength: Math.min(P, 512),
    metadata: { 'slim.random': 'true' },
  });
}
