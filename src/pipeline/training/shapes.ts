// Static type and shape inference over a GraphBuilder's forward graph, so that the gradient
// rules can decide structurally which axes were broadcast, how many dimensions a value has, and
// how large a concatenated or sliced axis is. Dimensions may be symbolic ("batch", "seq"): a
// symbol stands for a size that is the same wherever the same symbol appears; sizes nobody can
// name statically get a fresh symbol "?N" that equals only itself. Small integer tensors
// (shape vectors, axes, constant scalars) also carry their values, so that Reshape targets and
// Slice bounds built from Shape/Gather/Concat chains are understood.
import type { AttrValue, Dim, GraphBuilder, GraphNode, TensorData, TypedArray } from '../graph.js';
import { DataType, type ElemType } from '../onnx-proto.js';

export interface ValueFacts {
  type?: ElemType;
  shape?: Dim[];
  /** Contents of a small tensor (at most MAX_TRACKED elements), row-major; symbols for unknown sizes. */
  value?: Dim[];
}

const MAX_TRACKED = 64;
const BIG = 2 ** 31 - 1; // Slice ends at or past this mean "to the end"

const ELEM_BY_CODE = new Map<number, ElemType>(Object.entries(DataType).map(([k, v]) => [v, k as ElemType]));

export function elemTypeFromCode(code: number): ElemType {
  const t = ELEM_BY_CODE.get(code);
  if (!t) throw new Error(`unsupported ONNX element type code ${code}`);
  return t;
}

export function isFloatType(t: ElemType | undefined): boolean {
  return t === 'float32' || t === 'float64' || t === 'float16';
}

export function attrInt(node: GraphNode, name: string, dflt: number): number {
  const v = node.attrs[name];
  if (v === undefined) return dflt;
  if (typeof v !== 'number') throw new Error(`${node.op} ${node.name}: attribute ${name} is not an integer`);
  return v;
}

export function attrInts(node: GraphNode, name: string): number[] | undefined {
  const v = node.attrs[name];
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) throw new Error(`${node.op} ${node.name}: attribute ${name} is not a list of integers`);
  return v as number[];
}

export function attrFloat(node: GraphNode, name: string, dflt: number): number {
  const v: AttrValue | undefined = node.attrs[name];
  if (v === undefined) return dflt;
  if (typeof v === 'number') return v;
  if (typeof v === 'object' && !Array.isArray(v) && 'float' in v) return v.float;
  throw new Error(`${node.op} ${node.name}: attribute ${name} is not a float`);
}

function tensorValues(data: TypedArray): number[] {
  if (data instanceof BigInt64Array) return Array.from(data, (v) => Number(v));
  return Array.from(data as ArrayLike<number>);
}

function factsOfTensor(t: TensorData): ValueFacts {
  const count = t.dims.reduce((a, b) => a * b, 1);
  return { type: t.type, shape: [...t.dims], value: count <= MAX_TRACKED ? tensorValues(t.data) : undefined };
}

export function isStatic(shape: Dim[] | undefined): shape is number[] {
  return shape !== undefined && shape.every((d) => typeof d === 'number');
}

export function product(dims: number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

function normAxis(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new Error(`axis ${axis} out of range for rank ${rank}`);
  return a;
}

export class ShapeInference {
  private readonly facts = new Map<string, ValueFacts>();
  private unknownCounter = 0;

  constructor(g: GraphBuilder) {
    for (const v of g.inputs) this.facts.set(v.name, { type: v.type, shape: [...v.shape] });
    for (const [name, t] of g.initializers) this.facts.set(name, factsOfTensor(t));
    for (const node of g.nodes) {
      let out: ValueFacts[];
      try {
        out = this.infer(node);
      } catch (e) {
        throw new Error(`shape inference, ${node.op} node ${node.name}: ${(e as Error).message}`);
      }
      node.outputs.forEach((name, i) => {
        if (name !== '') this.facts.set(name, out[i] ?? {});
      });
    }
  }

  get(name: string): ValueFacts {
    return this.facts.get(name) ?? {};
  }

  /** Record facts for a value created after inference (backward nodes whose shape a rule knows). */
  set(name: string, facts: ValueFacts): void {
    this.facts.set(name, facts);
  }

  unknownDim(): string {
    return `?${this.unknownCounter++}`;
  }

  broadcast(a: Dim[], b: Dim[]): Dim[] {
    const rank = Math.max(a.length, b.length);
    const out: Dim[] = [];
    for (let i = 0; i < rank; i++) {
      const da = a[a.length - rank + i];
      const db = b[b.length - rank + i];
      if (da === undefined) out.push(db!);
      else if (db === undefined) out.push(da);
      else if (da === db) out.push(da);
      else if (da === 1) out.push(db);
      else if (db === 1) out.push(da);
      else if (typeof da === 'number' && typeof db === 'number') throw new Error(`cannot broadcast [${a}] with [${b}]`);
      else if (typeof da === 'number') out.push(da);
      else if (typeof db === 'number') out.push(db);
      else out.push(this.unknownDim());
    }
    return out;
  }

  private inp(node: GraphNode, i: number): ValueFacts {
    const name = node.inputs[i];
    return name === undefined || name === '' ? {} : this.get(name);
  }

  /** Integer contents of an optional input, when statically known and free of symbols. */
  private intsOf(node: GraphNode, i: number): number[] | undefined {
    const v = this.inp(node, i).value;
    return v && v.every((d) => typeof d === 'number') ? (v as number[]) : undefined;
  }

  private reduceAxes(node: GraphNode, rank: number): number[] | undefined {
    // opset 13+ ReduceSum and opset 18+ others take axes as an input; earlier ones as an attribute.
    const fromAttr = attrInts(node, 'axes');
    if (fromAttr) return fromAttr.map((a) => normAxis(a, rank));
    if (node.inputs.length > 1 && node.inputs[1] !== '') {
      const v = this.intsOf(node, 1);
      if (!v) return undefined;
      if (v.length === 0) return attrInt(node, 'noop_with_empty_axes', 0) ? [] : [...Array(rank).keys()];
      return v.map((a) => normAxis(a, rank));
    }
    return attrInt(node, 'noop_with_empty_axes', 0) ? [] : [...Array(rank).keys()];
  }

  private infer(node: GraphNode): ValueFacts[] {
    const x = this.inp(node, 0);
    const same = (): ValueFacts[] => [{ type: x.type, shape: x.shape }];
    switch (node.op) {
      case 'Identity':
        return [{ ...x }];
      case 'Neg':
      case 'Sqrt':
      case 'Reciprocal':
      case 'Exp':
      case 'Log':
      case 'Tanh':
      case 'Relu':
      case 'Sigmoid':
      case 'Erf':
      case 'Softmax':
      case 'LogSoftmax':
      case 'Abs':
      case 'Sin':
      case 'Cos':
      case 'Floor':
      case 'Ceil':
      case 'Round':
      case 'Sign':
      case 'Clip':
      case 'CumSum':
      case 'Trilu':
      case 'LeakyRelu':
      case 'Elu':
      case 'Softplus':
      case 'HardSigmoid':
        return same();
      case 'Not':
        return [{ type: 'bool', shape: x.shape }];
      case 'IsNaN':
      case 'IsInf':
        return [{ type: 'bool', shape: x.shape }];
      case 'Dropout':
        return [
          { type: x.type, shape: x.shape },
          { type: 'bool', shape: x.shape },
        ];
      case 'Add':
      case 'Sub':
      case 'Mul':
      case 'Div':
      case 'Pow':
      case 'Mod':
      case 'Max':
      case 'Min':
      case 'Sum':
      case 'Equal':
      case 'Less':
      case 'Greater':
      case 'LessOrEqual':
      case 'GreaterOrEqual':
      case 'And':
      case 'Or':
      case 'Xor': {
        const ins = node.inputs.map((_, i) => this.inp(node, i));
        const shape = ins.every((f) => f.shape) ? ins.map((f) => f.shape!).reduce((a, b) => this.broadcast(a, b)) : undefined;
        const logical = ['Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual', 'And', 'Or', 'Xor'].includes(node.op);
        return [{ type: logical ? 'bool' : x.type, shape, value: this.foldArithmetic(node.op, ins) }];
      }
      case 'Where': {
        const ins = [0, 1, 2].map((i) => this.inp(node, i));
        const shape = ins.every((f) => f.shape) ? ins.map((f) => f.shape!).reduce((a, b) => this.broadcast(a, b)) : undefined;
        return [{ type: ins[1]!.type, shape }];
      }
      case 'Cast': {
        const type = elemTypeFromCode(attrInt(node, 'to', 1));
        return [{ type, shape: x.shape, value: x.value }];
      }
      case 'Shape': {
        if (!x.shape) return [{ type: 'int64' }];
        const rank = x.shape.length;
        const clamp = (v: number) => Math.min(rank, Math.max(0, v < 0 ? v + rank : v));
        const start = clamp(attrInt(node, 'start', 0));
        const end = clamp(attrInt(node, 'end', rank));
        const value = x.shape.slice(start, Math.max(start, end));
        return [{ type: 'int64', shape: [value.length], value }];
      }
      case 'Size':
        return [{ type: 'int64', shape: [], value: isStatic(x.shape) ? [product(x.shape)] : undefined }];
      case 'Constant': {
        const v = node.attrs.value;
        if (v && typeof v === 'object' && !Array.isArray(v) && 'tensor' in v) return [factsOfTensor(v.tensor)];
        if (typeof node.attrs.value_int === 'number') return [{ type: 'int64', shape: [], value: [node.attrs.value_int] }];
        const ints = attrInts(node, 'value_ints');
        if (ints) return [{ type: 'int64', shape: [ints.length], value: ints }];
        if (node.attrs.value_float !== undefined) return [{ type: 'float32', shape: [], value: [attrFloat(node, 'value_float', 0)] }];
        return [{}];
      }
      case 'ConstantOfShape': {
        const v = node.attrs.value;
        const type = v && typeof v === 'object' && !Array.isArray(v) && 'tensor' in v ? v.tensor.type : 'float32';
        const shape = x.value ? [...x.value] : isStatic(x.shape) ? Array.from({ length: x.shape[0]! }, () => this.unknownDim()) : undefined;
        return [{ type, shape }];
      }
      case 'Range': {
        const [s, l, d] = [0, 1, 2].map((i) => this.intsOf(node, i)?.[0]);
        const n = s !== undefined && l !== undefined && d !== undefined ? Math.max(0, Math.ceil((l - s) / d)) : this.unknownDim();
        return [{ type: x.type, shape: [n] }];
      }
      case 'Gather': {
        const ind = this.inp(node, 1);
        if (!x.shape || !ind.shape) return [{ type: x.type }];
        const axis = normAxis(attrInt(node, 'axis', 0), x.shape.length);
        const shape = [...x.shape.slice(0, axis), ...ind.shape, ...x.shape.slice(axis + 1)];
        let value: Dim[] | undefined;
        const idx = this.intsOf(node, 1);
        if (x.value && idx && x.shape.length === 1) value = idx.map((i) => x.value![i < 0 ? i + x.value!.length : i]!);
        return [{ type: x.type, shape, value }];
      }
      case 'GatherElements':
        return [{ type: x.type, shape: this.inp(node, 1).shape }];
      case 'ScatterND':
      case 'ScatterElements':
        return same();
      case 'Unsqueeze': {
        const axes = attrInts(node, 'axes') ?? this.intsOf(node, 1);
        if (!x.shape || !axes) return [{ type: x.type }];
        const rank = x.shape.length + axes.length;
        const norm = new Set(axes.map((a) => normAxis(a, rank)));
        const shape: Dim[] = [];
        let j = 0;
        for (let i = 0; i < rank; i++) shape.push(norm.has(i) ? 1 : x.shape[j++]!);
        return [{ type: x.type, shape, value: x.value }];
      }
      case 'Squeeze': {
        if (!x.shape) return [{ type: x.type }];
        const given = attrInts(node, 'axes') ?? (node.inputs[1] ? this.intsOf(node, 1) : undefined);
        if (node.inputs[1] && !given) return [{ type: x.type }];
        const axes = given ? new Set(given.map((a) => normAxis(a, x.shape!.length))) : new Set(x.shape.flatMap((d, i) => (d === 1 ? [i] : [])));
        return [{ type: x.type, shape: x.shape.filter((_, i) => !axes.has(i)), value: x.value }];
      }
      case 'Reshape': {
        const target = this.inp(node, 1).value;
        if (!target) {
          const s = this.inp(node, 1).shape;
          return [{ type: x.type, shape: isStatic(s) ? Array.from({ length: s[0]! }, () => this.unknownDim()) : undefined }];
        }
        const allowZero = attrInt(node, 'allowzero', 0) === 1;
        const shape: Dim[] = target.map((d, i) => (d === 0 && !allowZero ? (x.shape?.[i] ?? this.unknownDim()) : d));
        const minus = shape.indexOf(-1);
        if (minus >= 0) {
          const others = shape.filter((_, i) => i !== minus);
          shape[minus] = isStatic(x.shape) && isStatic(others) ? product(x.shape) / product(others) : this.unknownDim();
        }
        return [{ type: x.type, shape, value: x.value }];
      }
      case 'Flatten': {
        if (!x.shape) return [{ type: x.type }];
        const axis = attrInt(node, 'axis', 1);
        const a = axis < 0 ? axis + x.shape.length : axis;
        const lo = x.shape.slice(0, a),
          hi = x.shape.slice(a);
        return [{ type: x.type, shape: [isStatic(lo) ? product(lo) : this.unknownDim(), isStatic(hi) ? product(hi) : this.unknownDim()] }];
      }
      case 'Transpose': {
        if (!x.shape) return [{ type: x.type }];
        const perm = attrInts(node, 'perm') ?? [...Array(x.shape.length).keys()].reverse();
        return [{ type: x.type, shape: perm.map((p) => x.shape![p]!) }];
      }
      case 'Concat': {
        const ins = node.inputs.map((_, i) => this.inp(node, i));
        if (!ins.every((f) => f.shape)) return [{ type: x.type }];
        const axis = normAxis(attrInt(node, 'axis', 0), x.shape!.length);
        const sizes = ins.map((f) => f.shape![axis]!);
        const shape = [...x.shape!];
        shape[axis] = isStatic(sizes)
          ? sizes.reduce((a, b) => a + b, 0)
          : sizes.filter((s) => s !== 0).length === 1
            ? sizes.find((s) => s !== 0)!
            : this.unknownDim();
        const value = ins.every((f) => f.value) && shape.length === 1 ? ins.flatMap((f) => f.value!) : undefined;
        return [{ type: x.type, shape, value }];
      }
      case 'Split': {
        if (!x.shape) return node.outputs.map(() => ({ type: x.type }));
        const axis = normAxis(attrInt(node, 'axis', 0), x.shape.length);
        const sizes = attrInts(node, 'split') ?? (node.inputs[1] ? this.intsOf(node, 1) : undefined);
        const d = x.shape[axis]!;
        return node.outputs.map((_, i) => {
          const shape = [...x.shape!];
          shape[axis] = sizes ? sizes[i]! : typeof d === 'number' ? Math.ceil(d / node.outputs.length) : this.unknownDim();
          return { type: x.type, shape };
        });
      }
      case 'Slice': {
        if (!x.shape) return [{ type: x.type }];
        const starts = this.intsOf(node, 1),
          ends = this.intsOf(node, 2);
        const axes = node.inputs[3] ? this.intsOf(node, 3) : starts?.map((_, i) => i);
        const steps = node.inputs[4] ? this.intsOf(node, 4) : starts?.map(() => 1);
        if (!starts || !ends || !axes || !steps) return [{ type: x.type, shape: x.shape.map(() => this.unknownDim()) }];
        const shape = [...x.shape];
        let value = x.value && x.shape.length === 1 ? [...x.value] : undefined;
        axes.forEach((ax, i) => {
          const a = normAxis(ax, x.shape!.length);
          const d = x.shape![a]!;
          const range = sliceRange(d, starts[i]!, ends[i]!, steps[i]!);
          const whole = typeof d !== 'number' && steps[i] === 1 && starts[i] === 0 && ends[i]! >= BIG;
          shape[a] = range ? range.count : whole ? d : this.unknownDim();
          if (value && range && a === 0)
            value = value.filter((_, k) => k >= range.start && (range.step > 0 ? k < range.end : k > range.end) && (k - range.start) % range.step === 0);
          else value = undefined;
        });
        return [{ type: x.type, shape, value }];
      }
      case 'Expand': {
        const target = this.inp(node, 1).value;
        return [{ type: x.type, shape: x.shape && target ? this.broadcast(x.shape, target) : undefined }];
      }
      case 'Tile': {
        const reps = this.intsOf(node, 1);
        return [
          {
            type: x.type,
            shape: x.shape && reps ? x.shape.map((d, i) => (typeof d === 'number' ? d * reps[i]! : reps[i] === 1 ? d : this.unknownDim())) : undefined,
          },
        ];
      }
      case 'Pad': {
        const pads = this.intsOf(node, 1);
        if (!x.shape || !pads) return [{ type: x.type }];
        const r = x.shape.length;
        return [
          {
            type: x.type,
            shape: x.shape.map((d, i) => (pads[i]! + pads[i + r]! === 0 ? d : typeof d === 'number' ? d + pads[i]! + pads[i + r]! : this.unknownDim())),
          },
        ];
      }
      case 'MatMul': {
        const b = this.inp(node, 1);
        if (!x.shape || !b.shape) return [{ type: x.type }];
        const a2 = x.shape.length === 1 ? [1, x.shape[0]!] : x.shape;
        const b2 = b.shape.length === 1 ? [b.shape[0]!, 1] : b.shape;
        const batch = this.broadcast(a2.slice(0, -2), b2.slice(0, -2));
        const shape = [...batch, ...(x.shape.length === 1 ? [] : [a2[a2.length - 2]!]), ...(b.shape.length === 1 ? [] : [b2[b2.length - 1]!])];
        return [{ type: x.type, shape }];
      }
      case 'Gemm': {
        const b = this.inp(node, 1);
        if (!x.shape || !b.shape) return [{ type: x.type }];
        const m = attrInt(node, 'transA', 0) ? x.shape[1]! : x.shape[0]!;
        const n = attrInt(node, 'transB', 0) ? b.shape[0]! : b.shape[1]!;
        return [{ type: x.type, shape: [m, n] }];
      }
      case 'ReduceSum':
      case 'ReduceMean':
      case 'ReduceMax':
      case 'ReduceMin':
      case 'ReduceProd':
      case 'ReduceL2':
      case 'ReduceSumSquare':
      case 'ReduceLogSumExp':
      case 'ArgMax':
      case 'ArgMin': {
        const type = node.op.startsWith('Arg') ? 'int64' : x.type;
        if (!x.shape) return [{ type }];
        const axes = node.op.startsWith('Arg') ? [normAxis(attrInt(node, 'axis', 0), x.shape.length)] : this.reduceAxes(node, x.shape.length);
        if (!axes) return [{ type }];
        const keep = attrInt(node, 'keepdims', 1) === 1;
        const shape = keep ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !axes.includes(i));
        return [{ type, shape }];
      }
      case 'LayerNormalization': {
        if (!x.shape) return [{ type: x.type }, { type: 'float32' }, { type: 'float32' }];
        const axis = normAxis(attrInt(node, 'axis', -1), x.shape.length);
        const stat = x.shape.map((d, i) => (i >= axis ? 1 : d));
        // ONNX Runtime computes the statistics in float32 (stash_type 1) whatever the input type.
        return [
          { type: x.type, shape: x.shape },
          { type: 'float32', shape: stat },
          { type: 'float32', shape: stat },
        ];
      }
      case 'OneHot': {
        const values = this.inp(node, 2);
        const depth = this.intsOf(node, 1)?.[0] ?? this.unknownDim();
        if (!x.shape) return [{ type: values.type }];
        const rank = x.shape.length + 1;
        const axis = normAxis(attrInt(node, 'axis', -1), rank);
        const shape = [...x.shape];
        shape.splice(axis, 0, depth);
        return [{ type: values.type, shape }];
      }
      default:
        return node.outputs.map(() => ({}));
    }
  }

  private foldArithmetic(op: string, ins: ValueFacts[]): Dim[] | undefined {
    if (ins.length !== 2) return undefined;
    const [a, b] = [ins[0]!.value, ins[1]!.value];
    if (!a || !b || !a.every((d) => typeof d === 'number') || !b.every((d) => typeof d === 'number')) return undefined;
    if (a.length !== b.length && a.length !== 1 && b.length !== 1) return undefined;
    const n = Math.max(a.length, b.length);
    const f: Record<string, (p: number, q: number) => number> = {
      Add: (p, q) => p + q,
      Sub: (p, q) => p - q,
      Mul: (p, q) => p * q,
      Div: (p, q) => (ins[0]!.type === 'int64' || ins[0]!.type === 'int32' ? Math.trunc(p / q) : p / q),
    };
    const fn = f[op];
    if (!fn) return undefined;
    return Array.from({ length: n }, (_, i) => fn(a[a.length === 1 ? 0 : i] as number, b[b.length === 1 ? 0 : i] as number));
  }
}

/** Normalised Slice bounds on one axis, or undefined when the axis size is symbolic and the result depends on it. */
export function sliceRange(dim: Dim, start: number, end: number, step: number): { start: number; end: number; step: number; count: number } | undefined {
  if (step === 0) throw new Error('Slice step 0');
  if (typeof dim !== 'number') return undefined;
  const clampPos = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v < 0 ? v + dim : v));
  let s: number, e: number;
  if (step > 0) {
    s = clampPos(start, 0, dim);
    e = clampPos(end, 0, dim);
  } else {
    s = clampPos(start, -1, dim - 1);
    e = clampPos(end, -1, dim - 1);
  }
  const count = step > 0 ? Math.max(0, Math.ceil((e - s) / step)) : Math.max(0, Math.ceil((s - e) / -step));
  return { start: s, end: e, step, count };
}
