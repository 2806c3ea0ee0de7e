// Depth at realistic width: a GPT-2-small-shaped classifier (768 wide, 12 heads, 3072 MLP,
// 50257-token vocabulary) with random weights, cut to k layers by the project's own exporter
// (src/pipeline/export-transformer.ts, exportRandomGpt2Classifier). Each depth is timed two ways:
//   - session.run in a tight loop (no HTTP; the same session options and threads as the ceiling);
//   - optionally through our server (the caller's `serve`), from a throw-away model repository
//     whose variant borrows the default model's tokenizer: its ids are all below 50257, so they
//     are valid GPT-2 ids, and the server needs a tokenizer.json to take text.
// Speed only: random weights classify nothing, but they cost exactly what trained ones do.
import { copyFileSync, createReadStream, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { exportRandomGpt2Classifier } from '../../src/pipeline/export-transformer.js';
import { createSession, timeLoop, type SessionThreads } from './ceiling.js';

export interface Gpt2DepthPoint<S = unknown> {
  layers: number;
  parameters: number;
  batchSize: number;
  seqLength: number;
  msPerBatch: number;
  inputsPerSec: number;
  /** What `serve` returned for this depth (through our server), when given. */
  server?: S;
  /** Which code built the graph. */
  builder: string;
}

export const GPT2_MODEL = 'gpt2-random';

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** models/<GPT2_MODEL>/k<layers>/ with a manifest the server accepts. */
async function writeVariant(repo: string, layers: number, onnxPath: string, params: number, tokenizerFrom: string, maxLength: number): Promise<void> {
  const dir = join(repo, GPT2_MODEL, `k${layers}`);
  mkdirSync(dir, { recursive: true });
  copyFileSync(onnxPath, join(dir, 'model.onnx'));
  copyFileSync(join(tokenizerFrom, 'tokenizer.json'), join(dir, 'tokenizer.json'));
  if (existsSync(join(tokenizerFrom, 'tokenizer_config.json'))) copyFileSync(join(tokenizerFrom, 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
  const manifest = {
    model: GPT2_MODEL,
    variant: `k${layers}`,
    depth: layers,
    base: { id: 'random:gpt2-small-shape', arch: 'gpt2', layers: 12, source: 'loadtest (random weights, speed only)' },
    labels: ['a', 'b'],
    head: 'last',
    maxLength,
    // Random weights, never trained; the record has the shape the manifest validator (src/manifest.ts) asks for.
    train: { mode: 'head', epochs: 0, lr: 0, seed: 0, examples: 1, dataSha256: '0'.repeat(64), seconds: 0 },
    eval: { split: 'none', examples: 0, accuracy: 0, macroF1: 0 },
    params,
    onnxSha256: await sha256File(join(dir, 'model.onnx')),
    createdAt: new Date().toISOString(),
    version: '0.0.0',
  };
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2));
}

export async function measureGpt2Depths<S>(o: {
  layers: readonly number[];
  batchSize: number;
  seqLength: number;
  seconds: number;
  threads: SessionThreads;
  vocab?: number;
  /** Also serve each depth: called with a model repository holding GPT2_MODEL/k<layers> only. */
  serve?: { tokenizerFrom: string; maxLength: number; run: (modelsDir: string, variant: string) => Promise<S> };
}): Promise<Gpt2DepthPoint<S>[]> {
  const dir = mkdtempSync(join(tmpdir(), 'slim-loadtest-gpt2-'));
  const vocab = o.vocab ?? 50257;
  const points: Gpt2DepthPoint<S>[] = [];
  try {
    // One depth at a time, deleted before the next: the 12-layer file alone is about 500 MB.
    for (const layers of o.layers) {
      const path = join(dir, `gpt2-k${layers}.onnx`);
      const model = exportRandomGpt2Classifier({ layers, vocab, outPath: path });
      const session = await createSession(path, o.threads);
      let point: Gpt2DepthPoint<S>;
      try {
        // Deterministic ids spread over the vocabulary; every position is a real token.
        const size = o.batchSize * o.seqLength;
        const ids = BigInt64Array.from({ length: size }, (_, i) => BigInt((i * 7919) % vocab));
        const mask = new BigInt64Array(size).fill(1n);
        const dims = [o.batchSize, o.seqLength];
        const feeds = { input_ids: new ort.Tensor('int64', ids, dims), attention_mask: new ort.Tensor('int64', mask, dims) };
        const t = await timeLoop(() => session.run(feeds), o.seconds, 2, 0);
        point = {
          layers,
          parameters: model.params,
          batchSize: o.batchSize,
          seqLength: o.seqLength,
          msPerBatch: t.msPerRun,
          inputsPerSec: (o.batchSize * 1000) / t.msPerRun,
          builder: `exportRandomGpt2Classifier (src/pipeline/export-transformer.ts), vocab ${vocab}`,
        };
      } finally {
        await session.release();
      }
      if (o.serve) {
        const repo = join(dir, `repo-k${layers}`);
        await writeVariant(repo, layers, path, model.params, o.serve.tokenizerFrom, o.serve.maxLength);
        rmSync(path, { force: true });
        try {
          point.server = await o.serve.run(repo, `k${layers}`);
        } finally {
          rmSync(repo, { recursive: true, force: true });
        }
      }
      rmSync(path, { force: true });
      if (model.dataFile) rmSync(model.dataFile, { force: true });
      points.push(point);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return points;
}
