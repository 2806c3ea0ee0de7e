// An onnxruntime session over a graph built in memory, whatever the size of its initializers.
// A small graph is serialised and handed over as bytes. A graph with more than
// SESSION_FILE_BYTES of initializers is written to a temporary model.onnx + model.onnx.data
// (ONNX external data, every weight of 1 KiB or more in the data file) and opened from its
// path: protobuf cannot encode a message of 2 GB or more, and handing bytes over costs two more
// copies of the weights (the encoded buffer, and onnxruntime's parsed copy of it) where the
// data file is written from the weights themselves and mapped by onnxruntime. The temporary
// files are removed as soon as the session holds the weights.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { GraphBuilder } from '../graph.js';
import { onnx } from '../onnx-proto.js';
import { initializerBytes } from '../onnx-external.js';
import { writeModel } from '../export-transformer.js';
import { collectGarbage } from '../collect-garbage.js';

/** Initializer bytes past which a session's graph goes through a file with external data (memory, and protobuf's 2 GB). */
export const SESSION_FILE_BYTES = 16 * 2 ** 20;

export async function createGraphSession(
  graph: GraphBuilder,
  options: ort.InferenceSession.SessionOptions,
  threshold = SESSION_FILE_BYTES,
): Promise<ort.InferenceSession> {
  const model = graph.toModel();
  if (initializerBytes(model) <= threshold) return ort.InferenceSession.create(onnx.ModelProto.encode(model).finish(), options);
  // Garbage from reading the weights (nn.Linear weights are transposed on load: the read buffers
  // are left for V8) is freed before onnxruntime allocates its copy of them, which does not prompt
  // a collection: at 4 GB of checkpoint, k = 1, 46 MB off the build's peak (docs/checkpoints.md).
  collectGarbage();
  const dir = mkdtempSync(join(tmpdir(), 'slim-session-'));
  try {
    const { file } = writeModel(model, join(dir, 'model.onnx'), 0);
    return await ort.InferenceSession.create(file, options);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
