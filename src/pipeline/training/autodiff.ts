// Reverse-mode differentiation over a GraphBuilder's node list. The forward graph is built as
// usual; `addGradients` then walks it backwards from a scalar loss, emits backward nodes with
// standard ONNX ops (vjp-rules.ts), and declares `grad/<param>` outputs, so one onnxruntime
// session.run returns the loss and every requested gradient.
//
// Shapes: rules decide from statically inferred shapes (shapes.ts) which axes were broadcast
// and how ranks line up, and take runtime sizes from Shape nodes wherever a size is symbolic.
// So a graph with dynamic batch/sequence axes works, provided broadcast axes are statically 1
// (as they are for biases, masks [B,1,1,S] and keepdims reductions). Static shapes (one
// training session per (batch, seq) bucket) give the leanest graphs: every shape is a constant.
import type { GraphBuilder, GraphNode, TensorData } from '../graph.js';
import { GradEmitter } from './emitter.js';
import { isFloatType, ShapeInference } from './shapes.js';
import { NON_DIFFERENTIABLE, VJP_RULES, type VjpRule } from './vjp-rules.js';

export const GRAD_PREFIX = 'grad/';

/** Name of the graph output that carries the gradient of `param`. */
export function gradName(param: string, prefix = GRAD_PREFIX): string {
  return `${prefix}${param}`;
}

/**
 * Turn initializers into graph inputs of the same name, type and shape (trainable parameters
 * are fed on every run). Returns their current values, for the trainer to own.
 */
export function promoteToInputs(g: GraphBuilder, names: Iterable<string>): Map<string, TensorData> {
  const taken = new Map<string, TensorData>();
  for (const name of names) {
    const t = g.initializers.get(name);
    if (!t) throw new Error(`promoteToInputs: ${name} is not an initializer of graph ${g.name}`);
    g.initializers.delete(name);
    // The name stays claimed in the builder: push the input directly rather than via g.input().
    g.inputs.push({ name, type: t.type, shape: [...t.dims] });
    taken.set(name, t);
  }
  return taken;
}

/** A fused region's gradient: outputs' gradients in, inputs' gradients out. */
export type FusedVjp = (e: GradEmitter, outGrads: (string | undefined)[], wants: boolean[]) => (string | undefined)[];

interface FusedRegion {
  nodes: Set<GraphNode>;
  inputs: string[];
  outputs: string[];
  vjp: FusedVjp;
}

const fusedRegions = new WeakMap<GraphBuilder, FusedRegion[]>();

/**
 * Build a piece of forward graph whose gradient is given directly rather than derived from its
 * nodes (e.g. softmax cross-entropy: (softmax - onehot) / batch). `build` emits the forward
 * nodes and returns the region's outputs; gradients flow only to `inputs`. Values inside the
 * region must not be differentiated through from outside it.
 */
export function withCustomGradient(g: GraphBuilder, inputs: string[], build: () => string[], vjp: FusedVjp): string[] {
  const start = g.nodes.length;
  const outputs = build();
  const nodes = new Set(g.nodes.slice(start));
  const list = fusedRegions.get(g) ?? [];
  list.push({ nodes, inputs, outputs, vjp });
  fusedRegions.set(g, list);
  return outputs;
}

export interface GradientOptions {
  /** Scalar loss value (any float type). Declared as a graph output named as is, if it is not one already. */
  loss: string;
  /** Graph inputs (float) to differentiate with respect to. */
  params: string[];
  /** Output name prefix; default "grad/". */
  prefix?: string;
}

export interface GradientResult {
  loss: string;
  /** param name -> graph output carrying its gradient. */
  grads: Map<string, string>;
  /** Params the loss does not depend on: their gradient outputs are zeros. */
  unreachable: string[];
  backwardNodes: number;
}

export function addGradients(g: GraphBuilder, opts: GradientOptions): GradientResult {
  const prefix = opts.prefix ?? GRAD_PREFIX;
  const facts = new ShapeInference(g);
  const e = new GradEmitter(g, facts);
  const forward = [...g.nodes];
  checkTopologicalOrder(g, forward);

  const inputNames = new Set(g.inputs.map((v) => v.name));
  for (const p of opts.params) {
    if (!inputNames.has(p)) {
      const hint = g.initializers.has(p) ? ' (it is an initializer: call promoteToInputs first)' : '';
      throw new Error(`addGradients: parameter ${p} is not a graph input${hint}`);
    }
    if (!isFloatType(facts.get(p).type)) throw new Error(`addGradients: parameter ${p} is not a float tensor`);
  }
  const lossFacts = facts.get(opts.loss);
  if (!isFloatType(lossFacts.type)) throw new Error(`addGradients: loss ${opts.loss} is not a float value`);

  // Values that depend differentiably on a parameter: only they receive gradients.
  const requiresGrad = new Set(opts.params);
  for (const node of forward) {
    if (NON_DIFFERENTIABLE.has(node.op) || !node.inputs.some((i) => requiresGrad.has(i))) continue;
    for (const out of node.outputs) if (out !== '' && isFloatType(facts.get(out).type)) requiresGrad.add(out);
  }

  const regionOf = new Map<GraphNode, FusedRegion>();
  for (const r of fusedRegions.get(g) ?? []) for (const n of r.nodes) regionOf.set(n, r);

  const contributions = new Map<string, string[]>();
  const accumulate = (value: string, grad: string | undefined) => {
    if (grad === undefined || !requiresGrad.has(value)) return;
    const list = contributions.get(value) ?? [];
    list.push(grad);
    contributions.set(value, list);
  };
  // Summed lazily, once every consumer has contributed (reverse topological order guarantees it).
  const gradOf = (value: string): string | undefined => {
    const list = contributions.get(value);
    if (!list || list.length === 0) return undefined;
    const total = e.sum(list);
    contributions.set(value, [total]);
    return total;
  };

  if (requiresGrad.has(opts.loss)) {
    const shape = lossFacts.shape ?? [];
    const one = e.constant(lossFacts.type!, 1);
    accumulate(opts.loss, shape.length === 0 ? one : e.op('Expand', [one, e.shapeOf(opts.loss)]));
  }

  const doneRegions = new Set<FusedRegion>();
  for (let i = forward.length - 1; i >= 0; i--) {
    const node = forward[i]!;
    const region = regionOf.get(node);
    if (region) {
      if (doneRegions.has(region)) continue;
      doneRegions.add(region);
      const outGrads = region.outputs.map(gradOf);
      for (const n of region.nodes) {
        for (const out of n.outputs) {
          if (!region.outputs.includes(out) && contributions.has(out)) {
            throw new Error(`addGradients: ${out} lies inside a fused region and cannot be differentiated through`);
          }
        }
      }
      if (outGrads.every((x) => x === undefined)) continue;
      const wants = region.inputs.map((x) => requiresGrad.has(x));
      if (!wants.some(Boolean)) continue;
      region.vjp(e, outGrads, wants).forEach((gIn, k) => wants[k] && accumulate(region.inputs[k]!, gIn));
      continue;
    }
    if (NON_DIFFERENTIABLE.has(node.op)) continue;
    const gys = node.outputs.map((o) => (o === '' ? undefined : gradOf(o)));
    if (gys.every((x) => x === undefined)) continue;
    const wants = node.inputs.map((x) => x !== '' && requiresGrad.has(x));
    if (!wants.some(Boolean)) continue;
    const rule: VjpRule | undefined = VJP_RULES[node.op];
    if (!rule) throw new Error(`addGradients: no gradient rule for op ${node.op} (node ${node.name})`);
    let grads: (string | undefined)[];
    try {
      grads = rule(e, node, gys, wants);
    } catch (err) {
      throw new Error(`addGradients: ${node.op} node ${node.name}: ${(err as Error).message}`);
    }
    grads.forEach((gIn, k) => wants[k] && accumulate(node.inputs[k]!, gIn));
  }

  if (!g.outputs.some((o) => o.name === opts.loss)) g.output(opts.loss, lossFacts.type!, lossFacts.shape ?? []);
  const grads = new Map<string, string>();
  const unreachable: string[] = [];
  for (const p of opts.params) {
    const name = gradName(p, prefix);
    const total = gradOf(p);
    if (total === undefined) {
      unreachable.push(p);
      const zeros = e.zerosLike(p);
      g.op('Identity', [zeros], {}, name);
    } else {
      g.op('Identity', [total], {}, name);
    }
    const pf = facts.get(p);
    g.output(name, pf.type!, pf.shape!);
    grads.set(p, name);
  }
  return { loss: opts.loss, grads, unreachable, backwardNodes: e.emitted + opts.params.length };
}

function checkTopologicalOrder(g: GraphBuilder, nodes: GraphNode[]): void {
  const defined = new Set<string>([...g.inputs.map((v) => v.name), ...g.initializers.keys(), '']);
  for (const n of nodes) {
    for (const i of n.inputs) {
      if (!defined.has(i)) throw new Error(`addGradients: node ${n.name} (${n.op}) reads ${i} before any node produces it`);
    }
    for (const o of n.outputs) defined.add(o);
  }
}
