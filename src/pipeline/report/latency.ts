// The latency measurement the build runs for the report: median milliseconds per batch of
// session.run on the CPU, on batches cut from tokenized texts.
import * as ort from 'onnxruntime-node';

/** Token ids and attention mask, row-major [batchSize, seqLength], as the ONNX contract takes them. */
export interface TokenizedBatch {
  inputIds: BigInt64Array;
  attentionMask: BigInt64Array;
  batchSize: number;
  seqLength: number;
}

export interface LatencyMeasurement {
  batchSize: number;
  seqLength: number;
  medianMs: number;
  minMs: number;
  p90Ms: number;
  runs: number;
}

/**
 * A batch of `batchSize` rows from tokenized texts (cycled when there are fewer), each cut
 * or padded to `seqLength`.
 */
export function makeBatch(sequences: readonly (readonly number[])[], batchSize: number, seqLength: number, padId = 0): TokenizedBatch {
  if (sequences.length === 0) throw new RangeError('makeBatch needs at least one tokenized text');
  const inputIds = new BigInt64Array(batchSize * seqLength).fill(BigInt(padId));
  const attentionMask = new BigInt64Array(batchSize * seqLength);
  for (let b = 0; b < batchSize; b++) {
    const ids = sequences[b % sequences.length]!;
    for (let s = 0; s < Math.min(seqLength, ids.length); s++) {
      inputIds[b * seqLength + s] = BigInt(ids[s]!);
      attentionMask[b * seqLength + s] = 1n;
    }
  }
  return { inputIds, attentionMask, batchSize, seqLength };
}

/**
 * Median latency of `session.run` per batch on the CPU, with a fixed number of intra-op
 * threads (latency depends on it more than on anything else) and sequential execution.
 * Warm-up runs come first: the first runs allocate memory and pick kernels.
 */
export async function measureLatency(
  onnxFile: string | Uint8Array,
  batches: readonly TokenizedBatch[],
  options: { threads: number; warmup?: number; runs?: number },
): Promise<LatencyMeasurement[]> {
  const warmup = options.warmup ?? 3;
  const runs = options.runs ?? 20;
  if (!(runs >= 1)) throw new RangeError(`runs must be at least 1, got ${runs}`);
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: options.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  };
  const session =
    typeof onnxFile === 'string' ? await ort.InferenceSession.create(onnxFile, sessionOptions) : await ort.InferenceSession.create(onnxFile, sessionOptions);
  try {
    const results: LatencyMeasurement[] = [];
    for (const batch of batches) {
      const dims = [batch.batchSize, batch.seqLength];
      const feeds = {
        input_ids: new ort.Tensor('int64', batch.inputIds, dims),
        attention_mask: new ort.Tensor('int64', batch.attentionMask, dims),
      };
      for (let i = 0; i < warmup; i++) await session.run(feeds);
      const times: number[] = [];
      for (let i = 0; i < runs; i++) {
        const start = process.hrtime.bigint();
        await session.run(feeds);
        times.push(Number(process.hrtime.bigint() - start) / 1e6);
      }
      times.sort((a, b) => a - b);
      results.push({
        batchSize: batch.batchSize,
        seqLength: batch.seqLength,
        medianMs: median(times),
        minMs: times[0]!,
        p90Ms: times[Math.min(times.length - 1, Math.ceil(0.9 * times.length) - 1)]!,
        runs,
      });
    }
    return results;
  } finally {
    await session.release();
  }
}

function median(sorted: readonly number[]): number {
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
