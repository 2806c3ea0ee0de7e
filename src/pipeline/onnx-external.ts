// ONNX external data: a model whose weights pass protobuf's 2 GB limit keeps its large
// initializers in a file beside model.onnx (location relative to the model file, offset,
// length), and onnxruntime reads them from there when the model is loaded from its path.

import { onnx, type ModelProto } from './onnx-proto.js';

/** Initializer bytes above which weights go to external data: under protobuf's 2 GiB with room for the graph. */
export const EXTERNAL_DATA_THRESHOLD = 1.9e9;
/** Smaller initializers (shapes, constants) stay in the model file. */
const MIN_EXTERNAL_BYTES = 1024;
/** Each tensor starts at a multiple of this in the data file (mmap-friendly). */
const ALIGN = 64;

/** Bytes of the model's initializers. */
export function initializerBytes(model: ModelProto): number {
  return (model.graph?.initializer ?? []).reduce((s, t) => s + (t.rawData?.length ?? 0), 0);
}

/**
 * When the initializers exceed `threshold` bytes, move each of 1 KiB or more out of `model`
 * (which is changed in place) and return the data file's contents as chunks in order, padding
 * included; undefined when everything stays inside the model.
 */
export function moveToExternalData(model: ModelProto, location: string, threshold: number): Uint8Array[] | undefined {
  if (initializerBytes(model) <= threshold) return undefined;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const t of model.graph!.initializer ?? []) {
    const raw = t.rawData;
    if (!raw || raw.length < MIN_EXTERNAL_BYTES) continue;
    const pad = (ALIGN - (offset % ALIGN)) % ALIGN;
    if (pad) {
      chunks.push(new Uint8Array(pad));
      offset += pad;
    }
    chunks.push(raw);
    t.externalData = [
      { key: 'location', value: location },
      { key: 'offset', value: String(offset) },
      { key: 'length', value: String(raw.length) },
    ];
    t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    t.rawData = new Uint8Array(0);
    offset += raw.length;
  }
  return chunks;
}
