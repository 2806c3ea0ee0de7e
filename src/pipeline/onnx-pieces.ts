// A model's protobuf encoding as a list of pieces whose concatenation is the model file, with
// every initializer's raw bytes a view of the weights it already holds. protobufjs' encode()
// builds the whole file in one buffer: for a variant of N bytes of weights that is a second N
// bytes at the moment of writing (and an onnxruntime session handed bytes parses a third copy).
// Written piece by piece, a model file costs no memory beyond its weights.
//
// The pieces are a valid encoding in another field order than protobufjs': the model's fields
// less `graph`, then `graph` (its fields less `initializer`, then each initializer: its fields
// less `raw_data`, then `raw_data`). Protobuf parsers accept fields in any order (onnxruntime,
// protobufjs' decode); the decoded model is the same.
import { onnx, type ModelProto, type TensorProto } from './onnx-proto.js';

const GRAPH_FIELD = 7; // ModelProto.graph
const INITIALIZER_FIELD = 5; // GraphProto.initializer
const RAW_DATA_FIELD = 9; // TensorProto.raw_data
const LENGTH_DELIMITED = 2;

function varint(n: number): Uint8Array {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return Uint8Array.from(out);
}

/** Tag and length of a length-delimited field of `length` bytes. */
function fieldHeader(field: number, length: number): Uint8Array {
  const tag = varint((field << 3) | LENGTH_DELIMITED),
    len = varint(length);
  const out = new Uint8Array(tag.length + len.length);
  out.set(tag);
  out.set(len, tag.length);
  return out;
}

/** Encode `message` with `field` left out for the time of the call (protobufjs skips a null field). */
function encodeWithout<T extends object>(message: T, field: keyof T, encode: (m: T) => Uint8Array): Uint8Array {
  const own = Object.prototype.hasOwnProperty.call(message, field);
  const value = message[field];
  (message as Record<keyof T, unknown>)[field] = null;
  try {
    return encode(message);
  } finally {
    if (own) (message as Record<keyof T, unknown>)[field] = value;
    else delete (message as Record<keyof T, unknown>)[field];
  }
}

/** The pieces of `model`'s encoding (see above); their total length is `bytes`. */
export function modelPieces(model: ModelProto): { pieces: Uint8Array[]; bytes: number } {
  const graph = model.graph;
  if (!graph) {
    const all = onnx.ModelProto.encode(model).finish();
    return { pieces: [all], bytes: all.length };
  }
  const head = encodeWithout(model, 'graph', (m) => onnx.ModelProto.encode(m).finish());
  const graphHead = encodeWithout(graph, 'initializer', (g) => onnx.GraphProto.encode(g).finish());
  const tensors: Uint8Array[][] = [];
  let graphBytes = graphHead.length;
  for (const t of graph.initializer ?? []) {
    const raw = (t as TensorProto).rawData;
    const parts = [encodeWithout(t as TensorProto, 'rawData', (x) => onnx.TensorProto.encode(x).finish())];
    if (raw && raw.length > 0) parts.push(fieldHeader(RAW_DATA_FIELD, raw.length), raw);
    const length = parts.reduce((s, p) => s + p.length, 0);
    parts.unshift(fieldHeader(INITIALIZER_FIELD, length));
    graphBytes += parts[0]!.length + length;
    tensors.push(parts);
  }
  const pieces = coalesce([head, fieldHeader(GRAPH_FIELD, graphBytes), graphHead, ...tensors.flat()]);
  return { pieces, bytes: pieces.reduce((s, p) => s + p.length, 0) };
}

/** Runs of small pieces (tags, lengths, tensor headers, small constants) joined: fewer writes. */
function coalesce(pieces: Uint8Array[], small = 1 << 16): Uint8Array[] {
  const out: Uint8Array[] = [];
  let run: Uint8Array[] = [];
  const flush = () => {
    if (run.length === 1) out.push(run[0]!);
    else if (run.length > 1) {
      const joined = new Uint8Array(run.reduce((s, p) => s + p.length, 0));
      let at = 0;
      for (const p of run) {
        joined.set(p, at);
        at += p.length;
      }
      out.push(joined);
    }
    run = [];
  };
  for (const p of pieces) {
    if (p.length < small) run.push(p);
    else {
      flush();
      out.push(p);
    }
  }
  flush();
  return out;
}
