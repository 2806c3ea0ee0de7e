// int8 dynamic quantization of an exported ONNX graph, written here (no Python tools).
//
// Every MatMul (and plain Gemm) whose right operand is a 2-D float32 weight becomes one
// com.microsoft DynamicQuantizeMatMul: the weight is stored in 8 bits with one scale per output
// column (symmetric), the activation is quantized to uint8 at run time per
// tensor, and a following `Add(bias)` is folded into the node's bias input. Products of two
// activations (attention scores, attention times values) stay float32: they have no weight.
//
// Why DynamicQuantizeMatMul: onnxruntime-node 1.30's CPU kernel quantizes the activation,
// runs MLAS's 8-bit GEMM and rescales per column in one node. The spelled-out form
// (DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul -> Add) is kept as
// `kernel: 'matmul-integer'` for bench/precision.ts; onnxruntime fuses it back into nearly the
// same kernels, and the two timed alike here (within this shared machine's noise).
//
// Weight storage (int8 with zero point 0, or the same integers + 128 as uint8 with zero point
// 128) picks MLAS's kernel, and which one is fast and exact depends on the CPU: int8-weights.ts
// says which, and the build passes its own CPU's choice. 7-bit weights (onnxruntime's
// `reduce_range`) stay as an option: they avoid the int16 saturation of int8 weights on x86
// without VNNI, but lose a bit; the server's lossless rewrite to uint8 does better there.
//
// Token embedding tables (a 2-D float32 weight read only by Gather on axis 0) become int8 with
// one scale per row by default: the table is half of a k1 USE-lite file, a gather costs no
// arithmetic either way, and a per-row scale keeps every token's vector to within 0.4% of its
// largest component (measured: quantizing the table alone moved k2 probabilities by at most
// 0.005). `embeddings: 'fp32'` leaves them as they are.
import { DataType, type ModelProto, type NodeProto, type TensorProto } from '../onnx-proto.js';
import { onnx } from '../onnx-proto.js';
import {
  attrFloat,
  attrInt,
  consumerCounts,
  consumersOf,
  ensureOpset,
  floatInitializer,
  floatTensor,
  initializerMap,
  makeTensor,
  nameAllocator,
  type IAttributeProto,
  type INodeProto,
} from './onnx-edit.js';

export interface QuantizeInt8Options {
  /** Bits per weight: 8 (default) or 7 (onnxruntime's reduce_range). */
  weightBits?: 7 | 8;
  /** Storage of the 8-bit weights: int8 (default; zero point 0, MLAS's u8s8 kernel) or uint8 (+128, zero point 128, u8u8). */
  weightType?: 'int8' | 'uint8';
  /** One scale per output column (default) or one per matrix. */
  perChannel?: boolean;
  /** Token embedding tables: int8 per-row (default) or left float32. */
  embeddings?: 'int8' | 'fp32';
  /** The node form: 'dynamic-quantize-matmul' (default, fastest here) or 'matmul-integer'. */
  kernel?: 'dynamic-quantize-matmul' | 'matmul-integer';
  /** Weights (by initializer name) to leave float32. */
  keepFloat?: (weight: string) => boolean;
}

export interface QuantizeInt8Summary {
  /** Weight initializers now stored as int8, by original name. */
  matrices: string[];
  embeddings: string[];
  /** Float weights left as they were (MatMul/Gemm operands that are not plain 2-D initializers). */
  skipped: string[];
}

const MS_DOMAIN = 'com.microsoft';

/** Symmetric quantization of a [K, N] matrix with one scale per column (or one for all). */
export function quantizeColumns(w: Float32Array, k: number, n: number, qmax: number, perChannel: boolean): { q: Int8Array; scales: Float32Array } {
  const absMax = new Float32Array(perChannel ? n : 1);
  for (let r = 0; r < k; r++) {
    for (let c = 0; c < n; c++) {
      const a = Math.abs(w[r * n + c]!);
      const j = perChannel ? c : 0;
      if (a > absMax[j]!) absMax[j] = a;
    }
  }
  const scales = Float32Array.from(absMax, (m) => (m > 0 ? m / qmax : 1));
  const q = new Int8Array(k * n);
  for (let r = 0; r < k; r++) {
    for (let c = 0; c < n; c++) {
      const v = Math.round(w[r * n + c]! / scales[perChannel ? c : 0]!);
      q[r * n + c] = Math.max(-qmax, Math.min(qmax, v));
    }
  }
  return { q, scales };
}

/** Symmetric quantization of each row of a [V, D] table (embeddings): int8 rows and a [V, 1] scale. */
export function quantizeRows(w: Float32Array, v: number, d: number, qmax = 127): { q: Int8Array; scales: Float32Array } {
  const q = new Int8Array(v * d);
  const scales = new Float32Array(v);
  for (let r = 0; r < v; r++) {
    let m = 0;
    for (let c = 0; c < d; c++) m = Math.max(m, Math.abs(w[r * d + c]!));
    const s = m > 0 ? m / qmax : 1;
    scales[r] = s;
    for (let c = 0; c < d; c++) q[r * d + c] = Math.max(-qmax, Math.min(qmax, Math.round(w[r * d + c]! / s)));
  }
  return { q, scales };
}

function transpose(w: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = w[r * cols + c]!;
  return t;
}

function node(opType: string, input: string[], output: string[], name: string, domain = '', attribute: IAttributeProto[] = []): NodeProto {
  return onnx.NodeProto.create({ opType, input, output, name, domain, attribute });
}

/**
 * Rewrite `model` (decoded, modified in place) to int8 weights. Returns what was quantized.
 * The inputs, outputs and their dtypes are unchanged, so a caller sees the same interface.
 */
export function quantizeInt8(model: ModelProto, options: QuantizeInt8Options = {}): QuantizeInt8Summary {
  const unsigned = (options.weightType ?? 'int8') === 'uint8';
  const qmax = (options.weightBits ?? 8) === 7 ? 63 : 127;
  const perChannel = options.perChannel ?? true;
  const kernel = options.kernel ?? 'dynamic-quantize-matmul';
  const graph = model.graph;
  if (!graph) throw new Error('quantize int8: the model has no graph');
  const inits = initializerMap(graph);
  const uses = consumerCounts(graph);
  const fresh = nameAllocator(graph);
  const added: TensorProto[] = [];
  const removedNodes = new Set<INodeProto>();
  const replaced = new Map<INodeProto, NodeProto[]>();
  const summary: QuantizeInt8Summary = { matrices: [], embeddings: [], skipped: [] };
  const quantizedWeights = new Map<string, { q: string; scale: string; zero: string }>();

  const quantizedWeight = (name: string, w: Float32Array, k: number, n: number) => {
    const key = name;
    const existing = quantizedWeights.get(key);
    if (existing) return existing;
    const { q, scales } = quantizeColumns(w, k, n, qmax, perChannel);
    const names = { q: fresh(`${name}_q8`), scale: fresh(`${name}_scale`), zero: fresh(`${name}_zero_point`) };
    const zeros = perChannel ? n : 1;
    if (unsigned) {
      // A plain loop: Uint8Array.from with a map function goes through the iterator protocol per
      // element and took 3 of the 3.3 s of quantizing a 4.3M-parameter k1 (build's precisions step).
      const u = new Uint8Array(q.length);
      for (let i = 0; i < q.length; i++) u[i] = q[i]! + 128;
      added.push(makeTensor(names.q, [k, n], DataType.uint8, u));
      added.push(makeTensor(names.zero, perChannel ? [n] : [], DataType.uint8, new Uint8Array(zeros).fill(128)));
    } else {
      added.push(makeTensor(names.q, [k, n], DataType.int8, q));
      added.push(makeTensor(names.zero, perChannel ? [n] : [], DataType.int8, new Int8Array(zeros)));
    }
    added.push(floatTensor(names.scale, perChannel ? [n] : [], scales));
    quantizedWeights.set(key, names);
    summary.matrices.push(name);
    return names;
  };

  for (const nd of graph.node ?? []) {
    const isMatMul = nd.opType === 'MatMul' && !nd.domain;
    const isGemm = nd.opType === 'Gemm' && !nd.domain;
    if (!isMatMul && !isGemm) continue;
    const [a, b, c] = nd.input ?? [];
    const weight = b ? floatInitializer(inits, b) : undefined;
    if (!weight) continue; // activation x activation: stays float
    if (options.keepFloat?.(b!)) continue;
    if (weight.dims.length !== 2) {
      summary.skipped.push(b!);
      continue;
    }
    let [k, n] = weight.dims as [number, number];
    let w = weight.data;
    let bias: string | undefined;
    let output = nd.output![0]!;
    const drop: INodeProto[] = [];
    if (isGemm) {
      if (attrInt(nd, 'transA', 0) !== 0 || attrFloat(nd, 'alpha', 1) !== 1 || (c && attrFloat(nd, 'beta', 1) !== 1)) {
        summary.skipped.push(b!);
        continue;
      }
      if (attrInt(nd, 'transB', 0) === 1) {
        w = transpose(w, k, n);
        [k, n] = [n, k];
      }
      if (c) {
        const cv = floatInitializer(inits, c);
        if (!cv || cv.data.length !== n) {
          summary.skipped.push(b!);
          continue;
        }
        bias = c;
      }
    } else {
      // Fold `Add(MatMul(a, W), bias)` (either operand order) when the MatMul feeds only that Add.
      const readers = consumersOf(graph, output);
      const add = readers.length === 1 && uses.get(output) === 1 ? readers[0]! : undefined;
      if (add && add.opType === 'Add' && !add.domain) {
        const other = add.input![0] === output ? add.input![1]! : add.input![0]!;
        const bv = floatInitializer(inits, other);
        if (bv && bv.dims.length === 1 && bv.dims[0] === n) {
          bias = other;
          output = add.output![0]!;
          drop.push(add);
        }
      }
    }
    const qw = quantizedWeight(b!, w, k, n);
    const base = nd.name || fresh('matmul');
    let nodes: NodeProto[];
    if (kernel === 'dynamic-quantize-matmul') {
      nodes = [node('DynamicQuantizeMatMul', [a!, qw.q, qw.scale, qw.zero, ...(bias ? [bias] : [])], [output], fresh(`${base}_quant`), MS_DOMAIN)];
    } else {
      const aq = fresh(`${a}_quant`);
      const as = fresh(`${a}_scale`);
      const az = fresh(`${a}_zero_point`);
      const acc = fresh(`${base}_int32`);
      const accF = fresh(`${base}_float`);
      const scale = fresh(`${base}_scale`);
      const scaled = bias ? fresh(`${base}_scaled`) : output;
      nodes = [
        node('DynamicQuantizeLinear', [a!], [aq, as, az], fresh(`${base}_dql`)),
        node('MatMulInteger', [aq, qw.q, az, qw.zero], [acc], fresh(`${base}_mmi`)),
        node('Cast', [acc], [accF], fresh(`${base}_cast`), '', [{ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: DataType.float32 }]),
        node('Mul', [as, qw.scale], [scale], fresh(`${base}_scale_mul`)),
        node('Mul', [accF, scale], [scaled], fresh(`${base}_rescale`)),
        ...(bias ? [node('Add', [scaled, bias], [output], fresh(`${base}_bias`))] : []),
      ];
    }
    replaced.set(nd, nodes);
    for (const d of drop) removedNodes.add(d);
  }

  if ((options.embeddings ?? 'int8') === 'int8') {
    for (const nd of graph.node ?? []) {
      if (nd.opType !== 'Gather' || nd.domain || attrInt(nd, 'axis', 0) !== 0) continue;
      const table = nd.input![0]!;
      const t = floatInitializer(inits, table);
      if (!t || t.dims.length !== 2 || quantizedWeights.has(table)) continue;
      // Only tables read by row gathers alone (a tied LM head would also read it in a MatMul).
      const readers = consumersOf(graph, table);
      if (readers.some((r) => r.opType !== 'Gather' || attrInt(r, 'axis', 0) !== 0 || r.input![0] !== table)) continue;
      const [v, d] = t.dims as [number, number];
      const { q, scales } = quantizeRows(t.data, v, d);
      const qName = fresh(`${table}_int8`);
      const sName = fresh(`${table}_row_scale`);
      added.push(makeTensor(qName, [v, d], DataType.int8, q));
      added.push(floatTensor(sName, [v, 1], scales));
      const ids = nd.input![1]!;
      const out = nd.output![0]!;
      const base = nd.name || fresh('gather');
      const gq = fresh(`${base}_int8`);
      const gf = fresh(`${base}_float`);
      const gs = fresh(`${base}_row_scale`);
      replaced.set(nd, [
        node('Gather', [qName, ids], [gq], fresh(`${base}_q`), '', [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 0 }]),
        node('Cast', [gq], [gf], fresh(`${base}_cast`), '', [{ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: DataType.float32 }]),
        node('Gather', [sName, ids], [gs], fresh(`${base}_s`), '', [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 0 }]),
        node('Mul', [gf, gs], [out], fresh(`${base}_dequant`)),
      ]);
      if (!summary.embeddings.includes(table)) summary.embeddings.push(table);
    }
  }

  graph.node = (graph.node ?? []).flatMap((nd) => (removedNodes.has(nd) ? [] : (replaced.get(nd) ?? [nd])));
  // Drop float weights nothing reads any more; keep the rest (biases are still read).
  const stillRead = new Set<string>();
  for (const nd of graph.node) for (const i of nd.input ?? []) stillRead.add(i);
  for (const o of graph.output ?? []) stillRead.add(o.name!);
  graph.initializer = [...(graph.initializer ?? []).filter((t) => stillRead.has(t.name!)), ...added];
  ensureOpset(model, MS_DOMAIN, 1);
  return summary;
}
