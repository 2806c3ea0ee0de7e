// What every architecture says about each of its parameters, so that trainers can pick what a
// training mode trains (training/loop.ts trainableParams) without knowing the architecture.

/** How a trainer should treat a parameter (e.g. no weight decay on biases and norms). */
export type ParamKind = 'embedding' | 'matrix' | 'bias' | 'norm';

export interface ParamSpec {
  name: string;
  dims: number[];
  kind: ParamKind;
  /** Block (layer) index, 0-based, or null for embeddings and parameters outside the blocks (pooler, final norm). */
  block: number | null;
}
