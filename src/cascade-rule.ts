// The confidence cascade (early exit across exported depths), one implementation for the server
// (POST /classify with a cascade in the routing table) and for `slim eval --cascade`: every
// input runs on the first variant; inputs whose top probability is under the threshold go on to
// the next variant, and so on; the last variant decides whatever is left.
//
// Cost of an input = the sum of the depths (transformer layers) of every variant it ran on: a
// deterministic count of the work done, comparable across machines (a k1 -> k2 escalation costs
// 1 + 2 = 3). `slim eval` reports measured milliseconds beside it.
//
// Pure (no I/O, no server state): the offline pipeline imports it, and the server runs every
// request through it (a single-variant request is a one-stage cascade).
import { topProbability } from './probabilities.js';

export interface CascadeStage {
  name: string;
  depth: number;
}

/** Runs one stage on some inputs (by index) and returns their probabilities in that order. */
export type StageRunner = (stage: CascadeStage, stageIndex: number, inputs: number[]) => Promise<ArrayLike<number>[]>;

export interface CascadeResult {
  /** Per input: the probabilities of the variant that decided it. */
  probabilities: ArrayLike<number>[];
  /** Per input: index into the stages of the variant that decided it. */
  decidedBy: number[];
  /** Per input: sum of the depths it ran on. */
  cost: number[];
  /** Per stage: how many inputs ran on it. */
  ran: number[];
}

/** Run `count` inputs through the cascade. A stage's failure fails the whole call. */
export async function runCascade(stages: readonly CascadeStage[], threshold: number, count: number, run: StageRunner): Promise<CascadeResult> {
  if (stages.length === 0) throw new Error('a cascade needs at least one stage');
  const probabilities = new Array<ArrayLike<number>>(count);
  const decidedBy = new Array<number>(count).fill(-1);
  const cost = new Array<number>(count).fill(0);
  const ran = new Array<number>(stages.length).fill(0);
  let pending = Array.from({ length: count }, (_, i) => i);
  for (let s = 0; s < stages.length && pending.length > 0; s++) {
    const stage = stages[s]!;
    const out = await run(stage, s, pending);
    if (out.length !== pending.length) throw new Error(`cascade stage ${stage.name} answered ${out.length} of ${pending.length} inputs`);
    ran[s] = pending.length;
    const last = s === stages.length - 1;
    const next: number[] = [];
    pending.forEach((input, j) => {
      cost[input]! += stage.depth;
      const p = out[j]!;
      if (last || topProbability(p) >= threshold) {
        probabilities[input] = p;
        decidedBy[input] = s;
      } else {
        next.push(input);
      }
    });
    pending = next;
  }
  return { probabilities, decidedBy, cost, ran };
}

/** Inputs passed on from stage s to stage s+1 (ran[s+1]), as [from, to, count] triples. */
export function escalations(stages: readonly CascadeStage[], result: CascadeResult): [string, string, number][] {
  const out: [string, string, number][] = [];
  for (let s = 0; s + 1 < stages.length; s++) if (result.ran[s + 1]! > 0) out.push([stages[s]!.name, stages[s + 1]!.name, result.ran[s + 1]!]);
  return out;
}
