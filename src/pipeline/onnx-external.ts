// ONNX external data: a model whose weights pass protobuf's 2 GB limit keeps its large
// initializers in a file beside model.onnx (location relative to the model file, offset,
// length), and onnxruntime reads them from there when the model is loaded from its path.

import { open, readFile } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { onnx, type ModelProto } from './onnx-proto.js';

/** Initializer bytes above which weights go to external data: under protobuf's 2 GiB with room for the graph. */
export const EXTERNAL_DATA_THRESHOLD = 1.9e9;
/** Smaller initializers (shapes, constants) stay in the model file. */
const MIN_EXTERNAL_BYTES = 1024;
/** Each tensor starts at a multiple of this in the data file (mmap-friendly). */
const ALIGN = 64;

/** Bytes of the model's initializers held in it (raw data), of those whose name passes `filter` if given. */
export function initializerBytes(model: ModelProto, filter: (name: string) => boolean = () => true): number {
  let sum = 0;
  for (const t of model.graph?.initializer ?? []) if (filter(t.name!)) sum += t.rawData?.length ?? 0;
  return sum;
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

/**
 * Decode `onnxFile` with every external initializer read back into it (rawData), as if it had
 * been written in one piece: what a converter that edits weights (src/pipeline/precision/)
 * needs. Read tensor by tensor at its offset (a data file may pass Node's 2 GiB readFile limit).
 */
export async function readModelInline(onnxFile: string): Promise<ModelProto> {
  const model = onnx.ModelProto.decode(await readFile(onnxFile));
  const base = dirname(resolve(onnxFile));
  const files = new Map<string, Awaited<ReturnType<typeof open>>>();
  try {
    for (const t of model.graph?.initializer ?? []) {
      if (t.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) continue;
      const entry = (key: string) => t.externalData?.find((e) => e.key === key)?.value ?? undefined;
      const location = entry('location');
      const file = location === undefined ? undefined : resolve(base, location);
      if (!file || !(file === base || file.startsWith(base + sep)))
        throw new Error(`${onnxFile}: initializer ${t.name} has external data outside the model's directory (${location})`);
      const offset = Number(entry('offset') ?? 0);
      const length = Number(entry('length'));
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || length < 0)
        throw new Error(`${onnxFile}: initializer ${t.name} has no valid external offset/length`);
      let handle = files.get(file);
      if (!handle) files.set(file, (handle = await open(file, 'r')));
      const raw = new Uint8Array(length);
      for (let done = 0; done < length;) {
        const { bytesRead } = await handle.read(raw, done, length - done, offset + done);
        if (bytesRead === 0) throw new Error(`${join(base, location!)}: ends before initializer ${t.name}'s ${length} bytes at offset ${offset}`);
        done += bytesRead;
      }
      t.rawData = raw;
      t.externalData = [];
      // Unset, not DEFAULT: a set field is encoded, and the model would differ from one written inline.
      delete (t as { dataLocation?: unknown }).dataLocation;
    }
  } finally {
    for (const h of files.values()) await h.close();
  }
  return model;
}
