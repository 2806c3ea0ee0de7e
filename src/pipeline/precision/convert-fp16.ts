// fp16 conversion of an exported ONNX graph: every float32 weight, constant and intermediate
// value becomes float16, for GPU execution providers (CUDA, DirectML, WebGPU) where half
// precision halves memory traffic and uses tensor cores. The graph's interface is unchanged:
// float32 inputs are cast to float16 on entry and float32 outputs (logits) are cast back on
// exit, so the server and `slim eval` feed and read exactly what they do for fp32.
//
// On the CPU execution provider this is not the fast path: onnxruntime has float16 kernels for
// few CPU ops and inserts Cast nodes around the others (its InsertCastTransformer), so an fp16
// file loads and answers there, a little slower than fp32; only its size is halved.
import { DataType, type ModelProto, type TensorProto } from '../onnx-proto.js';
import { onnx } from '../onnx-proto.js';
import { makeTensor, nameAllocator, toNumber, type INodeProto, type ITensorProto } from './onnx-edit.js';
import { tensorToFloat32 } from '../onnx-proto.js';

/** Largest finite float16. */
export const FP16_MAX = 65504;
/**
 * Constants at or beyond the float16 range are stand-ins for infinity (a -1e9 attention mask
 * bias): they become +-16384, which still zeroes a softmax term yet leaves room to add a score
 * without overflowing to -inf (and -inf + inf = NaN for a row that is all padding).
 */
export const FP16_INFINITY_STANDIN = 16384;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE 754 binary16 bits of a number, rounded to nearest even (subnormals included). */
export function float16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // inf, NaN
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow -> inf
  if (e <= 0) {
    if (e < -10) return sign; // underflow -> signed zero
    mant |= 0x800000; // implicit leading 1
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let m = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    if (rest > half || (rest === half && (m & 1) === 1)) m++;
    return sign | m; // may carry into the smallest normal, which is correct
  }
  const m = mant >>> 13;
  const rest = mant & 0x1fff;
  let out = sign | (e << 10) | m;
  if (rest > 0x1000 || (rest === 0x1000 && (m & 1) === 1)) out++; // carry may bump the exponent: correct rounding
  return out;
}

/** The number a float16 bit pattern stands for. */
export function float16Value(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** float32 values as float16 bits, with infinity stand-ins clamped (see FP16_INFINITY_STANDIN). */
export function toFloat16Array(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    const clamped = Number.isFinite(v) && Math.abs(v) >= FP16_MAX ? Math.sign(v) * FP16_INFINITY_STANDIN : v;
    out[i] = float16Bits(clamped);
  }
  return out;
}

function tensorToFp16(t: TensorProto | ITensorProto): TensorProto {
  const data = tensorToFloat32(t as TensorProto);
  return makeTensor(t.name ?? '', (t.dims ?? []).map(toNumber), DataType.float16, toFloat16Array(data));
}

export interface ConvertFp16Summary {
  initializers: number;
  castsInserted: number;
}

/** Rewrite `model` (decoded, modified in place) to float16 inside, float32 at its boundary. */
export function convertFp16(model: ModelProto): ConvertFp16Summary {
  const graph = model.graph;
  if (!graph) throw new Error('convert fp16: the model has no graph');
  const contrib = (graph.node ?? []).find((n) => n.domain && n.domain !== 'ai.onnx');
  if (contrib) throw new Error(`convert fp16: node ${contrib.name} (${contrib.domain}.${contrib.opType}) is not a standard op; convert the float32 model`);
  const fresh = nameAllocator(graph);
  let initializers = 0;
  graph.initializer = (graph.initializer ?? []).map((t) => {
    if (t.dataType !== DataType.float32) return t;
    initializers++;
    return tensorToFp16(t);
  });
  for (const nd of graph.node ?? []) {
    for (const a of nd.attribute ?? []) {
      if (nd.opType === 'Cast' && a.name === 'to' && toNumber(a.i) === DataType.float32) a.i = DataType.float16;
      if (a.t && a.t.dataType === DataType.float32) a.t = tensorToFp16(a.t); // Constant, ConstantOfShape
      if (a.name === 'dtype' && toNumber(a.i) === DataType.float32) a.i = DataType.float16; // RandomNormal & co.
    }
  }
  for (const v of graph.valueInfo ?? []) {
    const tt = v.type?.tensorType;
    if (tt && tt.elemType === DataType.float32) tt.elemType = DataType.float16;
  }
  const head: INodeProto[] = [];
  const tail: INodeProto[] = [];
  const castTo = (to: number) => [{ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: to }];
  for (const input of graph.input ?? []) {
    if (input.type?.tensorType?.elemType !== DataType.float32) continue;
    const inside = fresh(`${input.name}_fp16`);
    for (const nd of graph.node ?? []) nd.input = (nd.input ?? []).map((i) => (i === input.name ? inside : i));
    head.push(
      onnx.NodeProto.create({
        opType: 'Cast',
        input: [input.name!],
        output: [inside],
        name: fresh(`${input.name}_to_fp16`),
        attribute: castTo(DataType.float16),
      }),
    );
  }
  for (const output of graph.output ?? []) {
    if (output.type?.tensorType?.elemType !== DataType.float32) continue;
    const inside = fresh(`${output.name}_fp16`);
    for (const nd of graph.node ?? []) {
      nd.output = (nd.output ?? []).map((o) => (o === output.name ? inside : o));
      nd.input = (nd.input ?? []).map((i) => (i === output.name ? inside : i));
    }
    tail.push(
      onnx.NodeProto.create({
        opType: 'Cast',
        input: [inside],
        output: [output.name!],
        name: fresh(`${output.name}_to_fp32`),
        attribute: castTo(DataType.float32),
      }),
    );
  }
  graph.node = [...head, ...(graph.node ?? []), ...tail];
  return { initializers, castsInserted: head.length + tail.length };
}
