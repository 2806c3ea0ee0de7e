// An onnxruntime session over a graph built in memory, whatever the size of its initializers.
// A graph up to EXTERNAL_DATA_THRESHOLD bytes of initializers is serialised and handed over as
// bytes; a larger one (a frozen body past protobuf's 2 GB: a big embedding, wide layers) is
// written to a temporary model.onnx + model.onnx.data (ONNX external data) and opened from its
// path, because protobuf cannot encode a message of 2 GB or more. The temporary files are
// removed as soon as the session holds the weights.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { GraphBuilder } from '../graph.js';
import { onnx } from '../onnx-proto.js';
import { EXTERNAL_DATA_THRESHOLD, initializerBytes } from '../onnx-external.js';
import { writeModel } from '../export-transformer.js';

export async function createGraphSession(
  graph: GraphBuilder,
  options: ort.InferenceSession.SessionOptions,
  threshold = EXTERNAL_DATA_THRESHOLD,
): Promise<ort.InferenceSession> {
  const model = graph.toModel();
  if (initializerBytes(model) <= threshold) return ort.InferenceSession.create(onnx.ModelProto.encode(model).finish(), options);
  const dir = mkdtempSync(join(tmpdir(), 'slim-session-'));
  try {
    const { file } = writeModel(model, join(dir, 'model.onnx'), threshold);
    return await ort.InferenceSession.create(file, options);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
