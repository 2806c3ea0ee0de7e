// Transfer text for distillation generated from a training set's own sentences (no other
// corpus): for each sentence, `copies` variants, each either a contiguous span of 40-90% of its
// words (phrase-level, as SST-2's own phrase annotations are) or the sentence with each word
// dropped with probability 0.1. Seeded, so a bench run repeats exactly.
import { mulberry32, randomInt } from '../src/pipeline/random.js';

export function augmentSentences(texts: readonly string[], copies: number, seed: number): string[] {
  const rng = mulberry32(seed);
  const out: string[] = [];
  for (let c = 0; c < copies; c++) {
    for (const text of texts) {
      const w = text.split(/\s+/).filter((x) => x !== '');
      if (w.length < 3) continue;
      let v: string[];
      if (rng() < 0.5) {
        const len = Math.max(2, Math.round(w.length * (0.4 + 0.5 * rng())));
        const start = randomInt(rng, w.length - len + 1);
        v = w.slice(start, start + len);
      } else {
        v = w.filter(() => rng() >= 0.1);
        if (v.length === 0) v = w;
      }
      const t = v.join(' ');
      if (t !== text) out.push(t);
    }
  }
  return out;
}
