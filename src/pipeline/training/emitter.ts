// The toolbox the gradient rules build backward nodes with: typed constants, shape vectors,
// broadcast reduction, gradient sums. It knows the forward graph's inferred facts, so that a
// rule can ask "which axes of this value were broadcast?" and get a static answer.
import type { AttrValue, Dim, GraphBuilder } from '../graph.js';
import { DataType, type ElemType } from '../onnx-proto.js';
import { isFloatType, isStatic, product, type ShapeInference, type ValueFacts } from './shapes.js';

export class GradEmitter {
  private readonly constants = new Map<string, string>();
  private readonly shapeVectors = new Map<string, string>();
  /** Backward nodes emitted so far (for reports and tests). */
  emitted = 0;

  constructor(
    readonly g: GraphBuilder,
    readonly facts: ShapeInference,
  ) {}

  op(op: string, inputs: string[], attrs: Record<string, AttrValue> = {}, facts?: ValueFacts): string {
    this.emitted++;
    const out = this.g.op(op, inputs, attrs);
    if (facts) this.facts.set(out, facts);
    return out;
  }

  /** Forward facts of a value; throws with a useful message when its shape is unknown. */
  shape(x: string): Dim[] {
    const s = this.facts.get(x).shape;
    if (!s)
      throw new Error(`autodiff: the shape of ${x} is unknown (its producer is an op shape inference does not cover, or its shape depends on runtime values)`);
    return s;
  }

  rank(x: string): number {
    return this.shape(x).length;
  }

  dtype(x: string): ElemType {
    const t = this.facts.get(x).type;
    if (!isFloatType(t)) throw new Error(`autodiff: ${x} has element type ${t ?? 'unknown'}, expected a float type`);
    return t!;
  }

  /** A Constant node (cached): nodes rather than initializers, so that names come from g.fresh alone. */
  constant(type: ElemType, values: number | number[], dims?: number[]): string {
    const arr = typeof values === 'number' ? [values] : values;
    const shape = dims ?? (typeof values === 'number' ? [] : [arr.length]);
    const key = `${type}|${shape.join(',')}|${arr.join(',')}`;
    const hit = this.constants.get(key);
    if (hit) return hit;
    const data =
      type === 'int64'
        ? BigInt64Array.from(arr.map((v) => BigInt(v)))
        : type === 'float64'
          ? Float64Array.from(arr)
          : type === 'float32'
            ? Float32Array.from(arr)
            : type === 'int32'
              ? Int32Array.from(arr)
              : type === 'bool'
                ? Uint8Array.from(arr)
                : undefined;
    if (!data) throw new Error(`autodiff: no constants of type ${type}`);
    const out = this.op('Constant', [], { value: { tensor: { type, dims: shape, data } } }, { type, shape, value: arr.length <= 64 ? arr : undefined });
    this.constants.set(key, out);
    return out;
  }

  scalar(like: string, value: number): string {
    return this.constant(this.dtype(like), value);
  }

  ints(values: number[]): string {
    return this.constant('int64', values);
  }

  /** The runtime shape of a forward value: a constant when static, else one cached Shape node. */
  shapeOf(x: string): string {
    const s = this.facts.get(x).shape;
    if (isStatic(s)) return this.ints(s);
    let v = this.shapeVectors.get(x);
    if (!v) {
      v = this.op('Shape', [x]);
      this.shapeVectors.set(x, v);
    }
    return v;
  }

  /** Zeros with the runtime shape and type of a forward value. */
  zerosLike(x: string): string {
    const type = this.dtype(x);
    const zero = type === 'float64' ? Float64Array.from([0]) : Float32Array.from([0]);
    return this.op('ConstantOfShape', [this.shapeOf(x)], { value: { tensor: { type, dims: [1], data: zero } } });
  }

  cast(x: string, type: ElemType): string {
    return this.op('Cast', [x], { to: DataType[type] });
  }

  /** Sum of gradient contributions that meet at one tensor (same shapes by construction). */
  sum(parts: string[]): string {
    if (parts.length === 1) return parts[0]!;
    if (parts.length === 2) return this.op('Add', parts);
    return this.op('Sum', parts);
  }

  reduceSum(x: string, axes: number[], keepdims: boolean): string {
    return this.op('ReduceSum', [x, this.ints(axes)], { keepdims: keepdims ? 1 : 0 });
  }

  /**
   * Undo broadcasting: `grad` has shape `gradShape` (the broadcast result); sum it down to the
   * shape of forward value `target`. Leading extra axes and axes where the target has size 1
   * (and the result does not) are summed. A symbolic target axis is taken to match.
   */
  unbroadcast(grad: string, gradShape: Dim[], target: string): string {
    const ts = this.shape(target);
    const lead = gradShape.length - ts.length;
    if (lead < 0) throw new Error(`autodiff: gradient of rank ${gradShape.length} for ${target} of rank ${ts.length}`);
    const inner: number[] = [];
    ts.forEach((d, i) => {
      if (d === 1 && gradShape[lead + i] !== 1) inner.push(lead + i);
    });
    const leading = [...Array(lead).keys()];
    if (inner.length === 0 && lead === 0) return grad;
    if (inner.length === 0) return this.reduceSum(grad, leading, false);
    const reduced = this.reduceSum(grad, [...leading, ...inner], true);
    return lead === 0 ? reduced : this.op('Reshape', [reduced, this.shapeOf(target)]);
  }

  /** Number of elements of forward value x over `axes`, as a scalar of x's type (static when possible). */
  countOver(x: string, axes: number[]): string {
    const s = this.shape(x);
    const dims = axes.map((a) => s[a]!);
    if (isStatic(dims)) return this.scalar(x, product(dims));
    const sizes = this.op('Gather', [this.op('Shape', [x]), this.ints(axes)]);
    return this.cast(this.op('ReduceProd', [sizes], { keepdims: 0 }), this.dtype(x));
  }

  /** Reshape to 2-D [-1, last dim of `like`]: lets a batched weight gradient run as one Gemm. */
  flattenTo2D(x: string, like: string): string {
    const s = this.shape(like);
    const last = s[s.length - 1]!;
    const target =
      typeof last === 'number' ? this.ints([-1, last]) : this.op('Concat', [this.ints([-1]), this.op('Shape', [like], { start: -1 })], { axis: 0 });
    return this.op('Reshape', [x, target]);
  }
}
