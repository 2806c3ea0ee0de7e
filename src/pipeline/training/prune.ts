// A forward-only view of a training graph: keep just the nodes the requested outputs need,
// found by walking back from those outputs (never by name prefix: shared mask and shape
// subgraphs sit anywhere). Used for evaluation sessions that skip the backward pass, which
// ONNX Runtime would otherwise run even when only the loss or logits are fetched.
import { GraphBuilder } from '../graph.js';

export function pruneToOutputs(g: GraphBuilder, outputs: string[], name = `${g.name}-forward`): GraphBuilder {
  const producer = new Map<string, number>();
  g.nodes.forEach((n, i) => n.outputs.forEach((o) => o !== '' && producer.set(o, i)));
  const needed = new Set<string>();
  const keep = new Set<number>();
  const stack = [...outputs];
  while (stack.length > 0) {
    const v = stack.pop()!;
    if (needed.has(v)) continue;
    needed.add(v);
    const i = producer.get(v);
    if (i === undefined || keep.has(i)) continue;
    keep.add(i);
    for (const inp of g.nodes[i]!.inputs) if (inp !== '') stack.push(inp);
  }
  const out = new GraphBuilder(name);
  out.inputs.push(...g.inputs.filter((v) => needed.has(v.name)));
  for (const [k, t] of g.initializers) if (needed.has(k)) out.initializers.set(k, t);
  out.nodes.push(...g.nodes.filter((_, i) => keep.has(i)));
  for (const o of outputs) {
    const declared = g.outputs.find((v) => v.name === o);
    const asInput = g.inputs.find((v) => v.name === o);
    const info = declared ?? asInput;
    if (!info) throw new Error(`pruneToOutputs: ${o} is not a declared output or input of graph ${g.name}`);
    out.outputs.push(info);
  }
  return out;
}
