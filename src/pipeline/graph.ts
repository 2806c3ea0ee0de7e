// A small typed layer over the ONNX protobuf schema. Architectures describe their forward pass
// with it; the training code walks the same in-memory node list to emit backward nodes, then
// serialises the result. Nothing here knows about any particular model.
import { onnx, DataType, type ElemType, type ModelProto } from './onnx-proto.js';

/** A dimension: a fixed size, or a symbolic name for a dynamic axis ("batch", "seq"). */
export type Dim = number | string;

export type AttrValue = number | string | number[] | string[] | { tensor: TensorData } | { float: number } | { floats: number[] };

export type TypedArray = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Int8Array;

export interface TensorData {
  type: ElemType;
  dims: number[];
  data: TypedArray;
}

export interface GraphNode {
  op: string;
  inputs: string[];
  outputs: string[];
  attrs: Record<string, AttrValue>;
  name: string;
  domain?: string;
}

export interface ValueInfo {
  name: string;
  type: ElemType;
  shape: Dim[];
}

/** Default opset: 17 gives LayerNormalization; ONNX Runtime 1.30 runs up to 23. */
export const DEFAULT_OPSET = 17;

export class GraphBuilder {
  readonly inputs: ValueInfo[] = [];
  readonly outputs: ValueInfo[] = [];
  readonly nodes: GraphNode[] = [];
  readonly initializers = new Map<string, TensorData>();
  private readonly used = new Set<string>();
  private counter = 0;

  constructor(readonly name: string = 'graph') {}

  /** A fresh name with the given prefix, never clashing with an existing value. */
  fresh(prefix: string): string {
    let n = `${prefix}_${this.counter++}`;
    while (this.used.has(n)) n = `${prefix}_${this.counter++}`;
    this.used.add(n);
    return n;
  }

  /** A fresh name that is not yet reserved (the caller's definition reserves it). */
  private unclaimed(prefix: string): string {
    let n = `${prefix}_${this.counter++}`;
    while (this.used.has(n)) n = `${prefix}_${this.counter++}`;
    return n;
  }

  private claim(name: string): string {
    if (this.used.has(name)) throw new Error(`graph ${this.name}: value name ${name} is already defined`);
    this.used.add(name);
    return name;
  }

  input(name: string, type: ElemType, shape: Dim[]): string {
    this.inputs.push({ name: this.claim(name), type, shape });
    return name;
  }

  /** Declare an existing value as a graph output. */
  output(name: string, type: ElemType, shape: Dim[]): string {
    this.outputs.push({ name, type, shape });
    return name;
  }

  /** A named weight (initializer). */
  initializer(name: string, data: TypedArray, dims: number[], type?: ElemType): string {
    const t = type ?? elemTypeOf(data);
    const count = dims.reduce((a, b) => a * b, 1);
    if (data.length !== count) throw new Error(`initializer ${name}: ${data.length} values for dims [${dims}]`);
    this.initializers.set(this.claim(name), { type: t, dims, data });
    return name;
  }

  /** An anonymous constant (scalar or small tensor), stored as an initializer. */
  constF(values: number | number[], dims?: number[]): string {
    const arr = typeof values === 'number' ? [values] : values;
    return this.initializer(this.unclaimed('const'), Float32Array.from(arr), dims ?? (typeof values === 'number' ? [] : [arr.length]));
  }

  constI64(values: number | number[], dims?: number[]): string {
    const arr = typeof values === 'number' ? [values] : values;
    return this.initializer(this.unclaimed('const'), BigInt64Array.from(arr.map((v) => BigInt(v))), dims ?? (typeof values === 'number' ? [] : [arr.length]));
  }

  /** Add a node with `nOut` outputs (named automatically unless `outNames` is given). */
  node(op: string, inputs: string[], attrs: Record<string, AttrValue> = {}, outNames: number | string[] = 1, domain?: string): string[] {
    const outputs = typeof outNames === 'number' ? Array.from({ length: outNames }, () => this.fresh(op.toLowerCase())) : outNames.map((n) => this.claim(n));
    this.nodes.push({ op, inputs, outputs, attrs, name: this.fresh(`n_${op}`), domain });
    return outputs;
  }

  /** Single-output node. */
  op(op: string, inputs: string[], attrs: Record<string, AttrValue> = {}, outName?: string): string {
    return this.node(op, inputs, attrs, outName ? [outName] : 1)[0]!;
  }

  /** Rename a value's producer output so that it carries a public name (e.g. "logits"). */
  identity(input: string, outName: string): string {
    return this.op('Identity', [input], {}, outName);
  }

  toModel(opts: { opset?: number; producer?: string; docString?: string; metadata?: Record<string, string> } = {}): ModelProto {
    return onnx.ModelProto.create({
      irVersion: 8,
      producerName: opts.producer ?? 'slimserve',
      producerVersion: '0.1.0',
      docString: opts.docString ?? '',
      opsetImport: [
        { domain: '', version: opts.opset ?? DEFAULT_OPSET },
        { domain: 'com.microsoft', version: 1 },
      ],
      metadataProps: Object.entries(opts.metadata ?? {}).map(([key, value]) => ({ key, value })),
      graph: {
        name: this.name,
        input: this.inputs.map(valueInfoProto),
        output: this.outputs.map(valueInfoProto),
        initializer: [...this.initializers.entries()].map(([name, t]) => tensorProto(name, t)),
        node: this.nodes.map((n) => ({
          opType: n.op,
          input: n.inputs,
          output: n.outputs,
          name: n.name,
          domain: n.domain ?? '',
          attribute: Object.entries(n.attrs).map(([k, v]) => attributeProto(k, v)),
        })),
      },
    });
  }

  toBytes(opts?: Parameters<GraphBuilder['toModel']>[0]): Uint8Array {
    return onnx.ModelProto.encode(this.toModel(opts)).finish();
  }
}

export function elemTypeOf(data: TypedArray): ElemType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof BigInt64Array) return 'int64';
  if (data instanceof Int8Array) return 'int8';
  return 'uint8';
}

function valueInfoProto(v: ValueInfo) {
  return {
    name: v.name,
    type: {
      tensorType: {
        elemType: DataType[v.type],
        shape: { dim: v.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function tensorProto(name: string, t: TensorData) {
  // rawData is little-endian bytes of the typed array; every platform we run on is little-endian.
  const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  return { name, dims: t.dims, dataType: DataType[t.type], rawData: bytes };
}

function attributeProto(name: string, v: AttrValue) {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new Error(`attribute ${name}: ${v} is not an integer; use {float: x}`);
    return { name, type: T.INT, i: v };
  }
  if (typeof v === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) {
    if (v.length > 0 && typeof v[0] === 'string') {
      return { name, type: T.STRINGS, strings: (v as string[]).map((s) => new TextEncoder().encode(s)) };
    }
    return { name, type: T.INTS, ints: v as number[] };
  }
  if ('float' in v) return { name, type: T.FLOAT, f: v.float };
  if ('floats' in v) return { name, type: T.FLOATS, floats: v.floats };
  return { name, type: T.TENSOR, t: tensorProto(name, v.tensor) };
}
