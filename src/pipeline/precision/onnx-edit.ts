// Small helpers for rewriting a decoded ONNX model in place (the precision passes): reading
// and making initializers, naming new values without clashes, and finding a value's consumers.
import type onnxProto from 'onnx-proto';
import { onnx, DataType, tensorDims, tensorToFloat32, type ModelProto, type NodeProto, type TensorProto } from '../onnx-proto.js';

// The protobufjs interface types (plain objects as decoded or created).
export type GraphProto = onnxProto.onnx.IGraphProto;
export type INodeProto = onnxProto.onnx.INodeProto;
export type IAttributeProto = onnxProto.onnx.IAttributeProto;
export type ITensorProto = onnxProto.onnx.ITensorProto;

/** protobufjs decodes int64 fields as Long objects when long.js is installed, numbers otherwise. */
export function toNumber(v: number | { toString(): string } | null | undefined): number {
  return typeof v === 'number' ? v : Number(v?.toString() ?? 0);
}

export function decodeModel(bytes: Uint8Array): ModelProto {
  return onnx.ModelProto.decode(bytes);
}

export function encodeModel(model: ModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}

/** A float32, int8 or other initializer from a typed array (raw little-endian bytes). */
export function makeTensor(name: string, dims: number[], dataType: number, data: ArrayBufferView): TensorProto {
  const raw = new Uint8Array(data.byteLength);
  raw.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  return onnx.TensorProto.create({ name, dims, dataType, rawData: raw });
}

export function floatTensor(name: string, dims: number[], data: Float32Array): TensorProto {
  return makeTensor(name, dims, DataType.float32, data);
}

export function initializerMap(graph: GraphProto): Map<string, TensorProto> {
  return new Map((graph.initializer ?? []).map((t) => [t.name!, t as TensorProto]));
}

/** A float32 initializer's values and dims, or undefined when `name` is not one. */
export function floatInitializer(inits: Map<string, TensorProto>, name: string): { data: Float32Array; dims: number[] } | undefined {
  const t = inits.get(name);
  if (!t || t.dataType !== DataType.float32 || (t.externalData?.length ?? 0) > 0) return undefined;
  return { data: tensorToFloat32(t), dims: tensorDims(t) };
}

/** How many node inputs (plus graph outputs) read each value. */
export function consumerCounts(graph: GraphProto): Map<string, number> {
  const counts = new Map<string, number>();
  const bump = (n: string) => counts.set(n, (counts.get(n) ?? 0) + 1);
  for (const node of graph.node ?? []) for (const i of node.input ?? []) if (i) bump(i);
  for (const o of graph.output ?? []) bump(o.name!);
  return counts;
}

/** The nodes that read `value`. */
export function consumersOf(graph: GraphProto, value: string): NodeProto[] {
  return (graph.node ?? []).filter((n) => (n.input ?? []).includes(value)) as NodeProto[];
}

/** Fresh value names with a prefix, never equal to a name in the graph. */
export function nameAllocator(graph: GraphProto): (prefix: string) => string {
  const used = new Set<string>();
  for (const t of graph.initializer ?? []) used.add(t.name!);
  for (const v of [...(graph.input ?? []), ...(graph.output ?? []), ...(graph.valueInfo ?? [])]) used.add(v.name!);
  for (const n of graph.node ?? []) {
    for (const x of [...(n.input ?? []), ...(n.output ?? [])]) used.add(x);
    if (n.name) used.add(n.name);
  }
  let counter = 0;
  return (prefix: string) => {
    let name = prefix;
    while (used.has(name)) name = `${prefix}_${counter++}`;
    used.add(name);
    return name;
  };
}

export function attrInt(node: NodeProto | INodeProto, name: string, dflt: number): number {
  const a = (node.attribute ?? []).find((x) => x.name === name);
  return a ? toNumber(a.i) : dflt;
}

export function attrFloat(node: NodeProto | INodeProto, name: string, dflt: number): number {
  const a = (node.attribute ?? []).find((x) => x.name === name);
  return a ? (a.f ?? dflt) : dflt;
}

/** Make sure the model imports `domain` (com.microsoft contrib ops) at `version` or later. */
export function ensureOpset(model: ModelProto, domain: string, version: number): void {
  const imports = (model.opsetImport ??= []);
  const found = imports.find((o) => (o.domain ?? '') === domain);
  if (!found) imports.push(onnx.OperatorSetIdProto.create({ domain, version }));
  else if (toNumber(found.version) < version) found.version = version;
}
