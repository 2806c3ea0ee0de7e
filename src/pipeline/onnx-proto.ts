// The ONNX protobuf schema (onnx-proto ships protobufjs static code generated from onnx.proto).
// Re-exported from one place so that every module agrees on the enums and the decode quirks.
import onnxProto from 'onnx-proto';

export const onnx = onnxProto.onnx;
export type onnx = typeof onnxProto.onnx;
export type ModelProto = onnxProto.onnx.ModelProto;
export type TensorProto = onnxProto.onnx.TensorProto;
export type NodeProto = onnxProto.onnx.NodeProto;

/** ONNX element types we use, by their TensorProto.DataType number. */
export const DataType = {
  float32: 1,
  uint8: 2,
  int8: 3,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
  float64: 11,
} as const;
export type ElemType = keyof typeof DataType;

/**
 * Float32 values of an initializer or constant tensor.
 * protobufjs decodes `rawData` as a view into the whole file's buffer, usually at an
 * offset that is not 4-byte aligned: copy the bytes before reinterpreting them.
 */
export function tensorToFloat32(t: TensorProto): Float32Array {
  if (t.dataType !== DataType.float32) throw new Error(`tensor ${t.name}: expected float32, got data type ${t.dataType}`);
  if (t.rawData && t.rawData.length > 0) {
    const copy = new Uint8Array(t.rawData.length);
    copy.set(t.rawData);
    return new Float32Array(copy.buffer);
  }
  return Float32Array.from(t.floatData ?? []);
}

export function tensorDims(t: TensorProto): number[] {
  return (t.dims ?? []).map((d) => Number(d));
}
