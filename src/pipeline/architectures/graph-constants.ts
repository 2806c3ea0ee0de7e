// Small constants of a graph, shared per graph by value: asking twice for the same value gives
// the same initializer (GraphBuilder.constF/constI64 make a new one per call). Names are
// `<prefix>const_<n>`; each architecture keeps its own prefix and cache, so the initializer
// names of its graphs do not depend on the other.
import type { GraphBuilder } from '../graph.js';

/** A constant(g, data, dims) that names new initializers `${prefix}const_${n}`, n counting per graph. */
export function graphConstants(prefix: string): (g: GraphBuilder, data: Float32Array | BigInt64Array, dims: number[]) => string {
  const perGraph = new WeakMap<GraphBuilder, Map<string, string>>();
  return (g, data, dims) => {
    let known = perGraph.get(g);
    if (!known) perGraph.set(g, (known = new Map<string, string>()));
    const key = `${data instanceof Float32Array ? 'f32' : 'i64'}[${dims}]:${Array.from(data as ArrayLike<number | bigint>).join(',')}`;
    let name = known.get(key);
    if (!name) {
      name = g.initializer(`${prefix}const_${known.size}`, data, dims);
      known.set(key, name);
    }
    return name;
  };
}
