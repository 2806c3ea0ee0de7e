// The ceiling of this machine for one model: onnxruntime-node session.run in a tight loop, no
// HTTP, no queue, no event loop in between, with the same session options and thread count as
// our server's workers (src/serve/worker.ts). Swept over batch sizes; the best one is the
// ceiling. Tokenization (our tokenizer, encode + pad, on one thread) is measured separately for
// the same batches, so the report gives both "inference only" and "tokenize + inference".
import * as ort from 'onnxruntime-node';
import { performance } from 'node:perf_hooks';
import { loadTokenizer, type EncodedBatch, type TextTokenizer } from '../../src/tokenizer.js';

export interface CeilingPoint {
  batchSize: number;
  /** Mean padded length of the measured batches. */
  seqLength: number;
  runs: number;
  /** session.run only. */
  msPerBatch: number;
  /** encode + pad of the same batch. */
  tokenizeMsPerBatch: number;
  inferenceInputsPerSec: number;
  /** Tokenize then infer, one after the other on one thread. */
  withTokenizationInputsPerSec: number;
}

export interface CeilingResult {
  points: CeilingPoint[];
  best: CeilingPoint;
  /** Best by the tokenize + inference figure (may be another batch size). */
  bestWithTokenization: CeilingPoint;
}

export interface SessionThreads {
  intraOp: number;
  interOp: number;
}

/** 'cuda' asks for the CUDA provider only (ops it lacks run on the CPU); onnxruntime-node throws when its libraries are missing. */
export type SessionDevice = 'cpu' | 'cuda';

export async function createSession(onnxPath: string, threads: SessionThreads, device: SessionDevice = 'cpu'): Promise<ort.InferenceSession> {
  ort.env.logLevel = 'fatal';
  return ort.InferenceSession.create(onnxPath, {
    executionProviders: [device],
    intraOpNumThreads: threads.intraOp,
    interOpNumThreads: threads.interOp,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
  });
}

export function feeds(batch: Pick<EncodedBatch, 'inputIds' | 'attentionMask' | 'batchSize' | 'seqLength'>): Record<string, ort.Tensor> {
  const dims = [batch.batchSize, batch.seqLength];
  return { input_ids: new ort.Tensor('int64', batch.inputIds, dims), attention_mask: new ort.Tensor('int64', batch.attentionMask, dims) };
}

/**
 * Run fn repeatedly for about `seconds` (at least `minRuns` times); mean ms per call. The first
 * calls are not measured: the first run of a shape allocates, and JavaScript (the tokenizer) is
 * several times slower until the JIT has compiled it.
 */
export async function timeLoop(
  fn: () => unknown,
  seconds: number,
  minRuns = 3,
  warmupSeconds = Math.min(0.5, seconds / 4),
): Promise<{ runs: number; msPerRun: number }> {
  await fn();
  const warm = performance.now();
  while (performance.now() - warm < warmupSeconds * 1000) await fn();
  const started = performance.now();
  let runs = 0;
  while (runs < minRuns || performance.now() - started < seconds * 1000) {
    await fn();
    runs++;
  }
  return { runs, msPerRun: (performance.now() - started) / runs };
}

/** Consecutive slices of the texts, wrapping around, so batches have the lengths of the set. */
export function batchesOf(texts: readonly string[], batchSize: number, count: number): string[][] {
  return Array.from({ length: count }, (_, j) => Array.from({ length: batchSize }, (_, i) => texts[(j * batchSize + i) % texts.length]!));
}

export async function measureCeiling(o: {
  variantDir: string;
  maxLength: number;
  texts: readonly string[];
  batchSizes: readonly number[];
  secondsPerSize: number;
  threads: SessionThreads;
  device?: SessionDevice;
}): Promise<CeilingResult> {
  const session = await createSession(`${o.variantDir}/model.onnx`, o.threads, o.device);
  const tokenizer = await loadTokenizer(o.variantDir);
  const points: CeilingPoint[] = [];
  try {
    for (const batchSize of o.batchSizes) points.push(await measurePoint(session, tokenizer, o, batchSize));
  } finally {
    await session.release();
  }
  const best = points.reduce((a, b) => (b.inferenceInputsPerSec > a.inferenceInputsPerSec ? b : a));
  const bestWithTokenization = points.reduce((a, b) => (b.withTokenizationInputsPerSec > a.withTokenizationInputsPerSec ? b : a));
  return { points, best, bestWithTokenization };
}

async function measurePoint(
  session: ort.InferenceSession,
  tokenizer: TextTokenizer,
  o: { maxLength: number; texts: readonly string[]; secondsPerSize: number },
  batchSize: number,
): Promise<CeilingPoint> {
  const groups = batchesOf(o.texts, batchSize, Math.max(1, Math.min(16, Math.floor(o.texts.length / batchSize))));
  const encoded = groups.map((g) => tokenizer.encodeBatch(g, { maxLength: o.maxLength }));
  const inputs = encoded.map(feeds);
  let k = 0;
  const inference = await timeLoop(() => session.run(inputs[k++ % inputs.length]!), o.secondsPerSize);
  let t = 0;
  const tokenize = await timeLoop(
    () => tokenizer.encodeBatch(groups[t++ % groups.length]!, { maxLength: o.maxLength }),
    Math.min(0.5, o.secondsPerSize / 2),
    3,
    0.2,
  );
  const seqLength = encoded.reduce((s, e) => s + e.seqLength, 0) / encoded.length;
  return {
    batchSize,
    seqLength,
    runs: inference.runs,
    msPerBatch: inference.msPerRun,
    tokenizeMsPerBatch: tokenize.msPerRun,
    inferenceInputsPerSec: (batchSize * 1000) / inference.msPerRun,
    withTokenizationInputsPerSec: (batchSize * 1000) / (inference.msPerRun + tokenize.msPerRun),
  };
}

/** Tokenization alone, per text (encode + pad one at a time, as the server's event loop does). */
export async function measureTokenization(variantDir: string, maxLength: number, texts: readonly string[], seconds: number): Promise<{ usPerText: number }> {
  const tokenizer = await loadTokenizer(variantDir);
  let i = 0;
  const r = await timeLoop(() => tokenizer.encodeBatch([texts[i++ % texts.length]!], { maxLength }), seconds, 50, 0.3);
  return { usPerText: r.msPerRun * 1000 };
}
