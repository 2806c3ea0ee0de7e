// Which storage of an int8 variant's weights runs fastest and exactly on this CPU, and the
// lossless rewrite between the two storages.
//
// quantize-int8.ts quantizes symmetrically: every weight is an integer in -127..127 with zero
// point 0. onnxruntime can hold the same integers two ways, and MLAS picks its GEMM by them:
// - int8 (zero point 0): the u8s8 kernel. With VNNI (x86 avx512_vnni, avx_vnni, amx_int8) it
//   runs VPDPBUSD, exact, and it is the fast one: k2 USE-lite at batch 32, 2.2x fp32 where u8u8
//   gives 1.24x (loadtest/results/2026-12-07-int8-weights.md). Without VNNI (AVX2 only) it adds
//   pairs of products in int16 (VPMADDUBSW), which saturates: measured on a USE-lite k2, it moved
//   probabilities by up to 0.085 where the exact result moves them by 0.022.
// - uint8 (value + 128, zero point 128): the u8u8 kernel, exact on every x86 CPU.
// So the build writes the form its own CPU prefers, and the server rewrites a variant to the form
// of the CPU it runs on when that differs (same integers, same scales: the answers do not change).
// On other CPUs (ARM64: MLAS's dot-product kernels take either) a variant runs as written.
import { readFileSync } from 'node:fs';
import { DataType, onnx, type ModelProto, type TensorProto } from '../onnx-proto.js';
import { initializerMap, makeTensor } from './onnx-edit.js';

export type Int8Weights = 'int8' | 'uint8';

export interface Int8WeightsChoice {
  /** The storage to run; undefined: run a variant as written. */
  weights?: Int8Weights;
  why: string;
}

const VNNI_FLAGS = ['avx512_vnni', 'avx_vnni', 'amx_int8'];

/** The storage this CPU runs fastest without saturation, from /proc/cpuinfo's flags (x86 Linux). */
export function cpuInt8Weights(cpuinfo?: string, arch: string = process.arch): Int8WeightsChoice {
  if (arch !== 'x64' && arch !== 'ia32') return { why: `${arch}: onnxruntime's int8 kernels take either storage; run as written` };
  let text = cpuinfo;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      return { why: 'no /proc/cpuinfo to read the CPU flags from; run as written' };
    }
  }
  const flags = new Set((/^flags\s*:(.*)$/m.exec(text)?.[1] ?? '').trim().split(/\s+/));
  if (!flags.has('avx2')) return { why: 'x86 without AVX2 (or no flags line): run as written' };
  const vnni = VNNI_FLAGS.find((f) => flags.has(f));
  if (vnni) return { weights: 'int8', why: `x86 with ${vnni}: int8 weights run the exact VNNI u8s8 kernel` };
  return { weights: 'uint8', why: 'x86 without VNNI: uint8 weights (u8u8 kernel) avoid the int16 saturation of u8s8' };
}

/** The inputs of the int8 GEMM nodes that hold weights: [weight, zero point] by node kind. */
function weightInputs(model: ModelProto): { weight: string; zeroPoint?: string; scale?: string }[] {
  const found: { weight: string; zeroPoint?: string; scale?: string }[] = [];
  for (const nd of model.graph?.node ?? []) {
    const ins = nd.input ?? [];
    if (nd.opType === 'DynamicQuantizeMatMul' && nd.domain === 'com.microsoft') found.push({ weight: ins[1]!, scale: ins[2], zeroPoint: ins[3] || undefined });
    else if (nd.opType === 'MatMulInteger' && !nd.domain) found.push({ weight: ins[1]!, zeroPoint: ins[3] || undefined });
  }
  return found;
}

function isExternal(t: TensorProto): boolean {
  return t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL || (t.externalData?.length ?? 0) > 0;
}

/** The bytes of an 8-bit initializer (raw data, or int32_data as the ONNX spec also allows). */
function bytesOf(t: TensorProto): Uint8Array {
  if (t.rawData && t.rawData.length > 0) return t.rawData;
  return Uint8Array.from(t.int32Data ?? [], (v) => v & 0xff);
}

/** The storage of a model's int8 GEMM weights, or undefined when it has none (or a mix). */
export function int8WeightsOf(model: ModelProto): Int8Weights | undefined {
  const inits = initializerMap(model.graph!);
  const types = new Set(weightInputs(model).map((w) => inits.get(w.weight)?.dataType));
  if (types.size !== 1) return undefined;
  const [t] = types;
  return t === DataType.int8 ? 'int8' : t === DataType.uint8 ? 'uint8' : undefined;
}

export interface Int8Rewrite {
  /** Weight matrices rewritten. */
  rewritten: number;
  /** Matrices left as they were, and why (external data, an asymmetric zero point). */
  kept: string[];
}

/**
 * Rewrite (in place) every int8 GEMM weight of `model` to the storage `to`: int8 q <-> uint8
 * q + 128 with the zero point 0 <-> 128. Exact: the same integers reach the same products.
 * A uint8 matrix whose zero point is not 128 everywhere has no int8 twin and stays as it is.
 */
export function setInt8Weights(model: ModelProto, to: Int8Weights): Int8Rewrite {
  const graph = model.graph!;
  const inits = initializerMap(graph);
  const result: Int8Rewrite = { rewritten: 0, kept: [] };
  const from = to === 'int8' ? DataType.uint8 : DataType.int8;
  const done = new Set<string>();
  const added: TensorProto[] = [];
  const addedZeroPoints = new Map<string, string>(); // weight -> the zero point added for it (it had none)
  for (const { weight, zeroPoint, scale } of weightInputs(model)) {
    if (done.has(weight)) continue;
    const w = inits.get(weight);
    if (!w || w.dataType !== from) continue;
    const zp = zeroPoint ? inits.get(zeroPoint) : undefined;
    if ((zeroPoint && !zp) || isExternal(w) || (zp && isExternal(zp))) {
      result.kept.push(`${weight}: ${isExternal(w) ? 'external data' : 'its zero point is not an initializer'}`);
      continue;
    }
    const zeros = zp ? bytesOf(zp) : undefined;
    const symmetric = to === 'int8' ? zeros !== undefined && zeros.every((z) => z === 128) : zeros === undefined || zeros.every((z) => z === 0);
    if (!symmetric) {
      result.kept.push(`${weight}: zero point is not ${to === 'int8' ? 128 : 0}`);
      continue;
    }
    const q = bytesOf(w);
    const out = new Uint8Array(q.length);
    for (let i = 0; i < q.length; i++) out[i] = (q[i]! + 128) & 0xff; // int8 <-> uint8 both add 128 mod 256
    w.rawData = out;
    w.int32Data = [];
    w.dataType = to === 'int8' ? DataType.int8 : DataType.uint8;
    const zeroValue = to === 'int8' ? 0 : 128;
    if (zp) {
      zp.rawData = new Uint8Array(zeros!.length).fill(zeroValue);
      zp.int32Data = [];
      zp.dataType = w.dataType;
    } else {
      // No zero point input (0 by default): int8 -> uint8 needs an explicit 128, shaped as the scale.
      const dims = (scale ? inits.get(scale)?.dims : undefined) ?? [];
      const name = `${weight}_zero_point_u8`;
      const count = dims.reduce<number>((a, d) => a * Number(d), 1);
      added.push(makeTensor(name, dims.map(Number), DataType.uint8, new Uint8Array(count).fill(zeroValue)));
      addedZeroPoints.set(weight, name);
    }
    done.add(weight);
    result.rewritten++;
  }
  if (addedZeroPoints.size > 0) {
    for (const nd of graph.node ?? []) {
      const name = addedZeroPoints.get(nd.input?.[1] ?? '');
      if (!name) continue;
      const ins = [...nd.input!];
      while (ins.length < 4) ins.push('');
      ins[3] = name;
      nd.input = ins;
    }
    graph.initializer = [...(graph.initializer ?? []), ...added];
  }
  return result;
}
