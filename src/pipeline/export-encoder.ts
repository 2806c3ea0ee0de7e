// Write the first k blocks of builtin:use-lite as a standalone ONNX encoder file.
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { loadUseLiteCheckpoint, USE_LITE_ID, USE_LITE_PACKAGE, type UseLiteCheckpoint } from './checkpoints/use-lite.js';
import { buildUseLiteEncoderGraph, checkDepth } from './architectures/use-lite.js';

export interface ExportEncoderOptions {
  /** An already loaded checkpoint (saves re-reading 28 MB when exporting several depths). */
  checkpoint?: UseLiteCheckpoint;
  /** Package directory override, used when `checkpoint` is absent. */
  dir?: string;
  /** Also output `features` and `hidden_<n>`. */
  intermediates?: boolean;
}

export interface ExportEncoderResult {
  file: string;
  depth: number;
  bytes: number;
  /** Wall time of graph construction and serialisation (plus checkpoint loading when it was not given). */
  seconds: number;
  parameters: number;
  nodes: number;
  outputs: string[];
}

export function exportUseLiteEncoder(depth: number, outFile: string, opts: ExportEncoderOptions = {}): ExportEncoderResult {
  const t0 = performance.now();
  const ckpt = opts.checkpoint ?? loadUseLiteCheckpoint(opts.dir);
  checkDepth(ckpt.config, depth);
  const { graph, params } = buildUseLiteEncoderGraph(ckpt, { depth, intermediates: opts.intermediates });
  const bytes = graph.toBytes({
    docString: `${USE_LITE_ID} (Universal Sentence Encoder lite from ${USE_LITE_PACKAGE}), first ${depth} of ${ckpt.config.blocks.length} blocks`,
    metadata: {
      'slim.base': USE_LITE_ID,
      'slim.arch': 'use-lite',
      'slim.depth': String(depth),
      'slim.layers': String(ckpt.config.blocks.length),
      'slim.maxLength': String(ckpt.config.maxLength),
    },
  });
  // Write beside the target and rename, so a reader never sees a half-written model.
  mkdirSync(dirname(outFile), { recursive: true });
  const tmp = `${outFile}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, bytes);
    renameSync(tmp, outFile);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new Error(`use-lite: cannot write encoder ${outFile}: ${(e as Error).message}`);
  }
  return {
    file: outFile,
    depth,
    bytes: bytes.length,
    seconds: (performance.now() - t0) / 1000,
    parameters: params.reduce((s, p) => s + p.dims.reduce((a, b) => a * b, 1), 0),
    nodes: graph.nodes.length,
    outputs: graph.outputs.map((o) => o.name),
  };
}
