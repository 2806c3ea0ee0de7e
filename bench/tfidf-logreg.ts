// The classical baseline the slim variants are held against: TF-IDF over word unigrams and
// bigrams (sublinear tf, smoothed idf, L2-normalised rows) + multinomial logistic regression
// with L2 regularisation, trained by full-batch-free minibatch AdamW-style SGD in plain
// TypeScript (no dependency). The regularisation strength is picked on the validation split
// from a small grid; the chosen model is then scored on the held-out split.
import { mulberry32, shuffleInPlace } from '../src/pipeline/random.js';

export interface LabelledText {
  text: string;
  label: string;
}

/** Lower-cased word tokens: letters/digits runs and single punctuation marks ("n't" stays whole). */
export function words(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}']+|[^\s\p{L}\p{N}]/gu) ?? [];
}

function features(text: string): string[] {
  const w = words(text);
  const out = [...w];
  for (let i = 0; i + 1 < w.length; i++) out.push(`${w[i]} ${w[i + 1]}`);
  return out;
}

interface SparseRow {
  idx: Int32Array;
  val: Float64Array;
}

export class TfidfVectorizer {
  private readonly vocab = new Map<string, number>();
  private idf = new Float64Array(0);

  /** Vocabulary: every unigram/bigram seen in at least `minCount` training documents. */
  fit(texts: readonly string[], minCount = 1): this {
    const df = new Map<string, number>();
    for (const t of texts) for (const f of new Set(features(t))) df.set(f, (df.get(f) ?? 0) + 1);
    for (const [f, n] of df) if (n >= minCount) this.vocab.set(f, this.vocab.size);
    this.idf = new Float64Array(this.vocab.size);
    for (const [f, i] of this.vocab) this.idf[i] = Math.log((1 + texts.length) / (1 + df.get(f)!)) + 1;
    return this;
  }

  get size(): number {
    return this.vocab.size;
  }

  transform(text: string): SparseRow {
    const tf = new Map<number, number>();
    for (const f of features(text)) {
      const i = this.vocab.get(f);
      if (i !== undefined) tf.set(i, (tf.get(i) ?? 0) + 1);
    }
    const idx = Int32Array.from([...tf.keys()].sort((a, b) => a - b));
    const val = Float64Array.from(idx, (i) => (1 + Math.log(tf.get(i)!)) * this.idf[i]!);
    const norm = Math.hypot(...val) || 1;
    for (let k = 0; k < val.length; k++) val[k]! /= norm;
    return { idx, val };
  }
}

export class LogisticRegression {
  readonly w: Float64Array;
  readonly b: Float64Array;
  constructor(
    readonly dim: number,
    readonly classes: number,
  ) {
    this.w = new Float64Array(dim * classes);
    this.b = new Float64Array(classes);
  }

  scores(x: SparseRow): Float64Array {
    const s = Float64Array.from(this.b);
    for (let k = 0; k < x.idx.length; k++) {
      const base = x.idx[k]! * this.classes,
        v = x.val[k]!;
      for (let c = 0; c < this.classes; c++) s[c]! += this.w[base + c]! * v;
    }
    return s;
  }

  predict(x: SparseRow): number {
    const s = this.scores(x);
    let best = 0;
    for (let c = 1; c < s.length; c++) if (s[c]! > s[best]!) best = c;
    return best;
  }

  /**
   * Minimise mean cross-entropy + l2/2 |w|^2 by SGD with a 1/sqrt(t) step on shuffled examples;
   * the L2 shrink is applied lazily per touched weight (exact for plain SGD between touches).
   */
  fit(xs: readonly SparseRow[], ys: readonly number[], opts: { l2: number; epochs: number; lr?: number; seed?: number }): this {
    const rng = mulberry32(opts.seed ?? 1);
    const lr0 = opts.lr ?? 0.5;
    const n = xs.length,
      C = this.classes;
    // Lazy decay: weights of feature j were last brought up to date at step last[j].
    const last = new Float64Array(this.dim);
    let t = 0,
      logScale = 0; // cumulative log of the shrink factors applied so far
    const shrinkLog: number[] = [0];
    const order = xs.map((_, i) => i);
    const p = new Float64Array(C);
    for (let epoch = 0; epoch < opts.epochs; epoch++) {
      for (const i of shuffleInPlace(order, rng)) {
        const lr = lr0 / Math.sqrt(1 + t / n);
        const x = xs[i]!;
        // Bring the touched weights up to date with the shrinks since their last update.
        for (let k = 0; k < x.idx.length; k++) {
          const j = x.idx[k]!;
          const f = Math.exp(logScale - shrinkLog[last[j]!]!);
          for (let c = 0; c < C; c++) this.w[j * C + c]! *= f;
          last[j] = t;
        }
        const s = this.scores(x);
        const m = Math.max(...s);
        let z = 0;
        for (let c = 0; c < C; c++) z += p[c] = Math.exp(s[c]! - m);
        for (let c = 0; c < C; c++) {
          const g = p[c]! / z - (c === ys[i] ? 1 : 0);
          this.b[c]! -= lr * g;
          for (let k = 0; k < x.idx.length; k++) this.w[x.idx[k]! * C + c]! -= lr * g * x.val[k]!;
        }
        logScale += Math.log(Math.max(1e-12, 1 - lr * opts.l2));
        t++;
        shrinkLog.push(logScale);
        for (let k = 0; k < x.idx.length; k++) last[x.idx[k]!] = t;
      }
    }
    for (let j = 0; j < this.dim; j++) {
      const f = Math.exp(logScale - shrinkLog[last[j]!]!);
      for (let c = 0; c < C; c++) this.w[j * C + c]! *= f;
    }
    return this;
  }
}

export interface BaselineResult {
  accuracy: number;
  valAccuracy: number;
  l2: number;
  epochs: number;
  features: number;
}

/** Fit on `train`, pick (l2, epochs) on `val` by accuracy, report accuracy on `test`. */
export function tfidfLogisticBaseline(train: readonly LabelledText[], val: readonly LabelledText[], test: readonly LabelledText[]): BaselineResult {
  const labels = [...new Set(train.map((e) => e.label))].sort();
  const index = new Map(labels.map((l, i) => [l, i]));
  const vec = new TfidfVectorizer().fit(train.map((e) => e.text));
  const xs = train.map((e) => vec.transform(e.text)),
    ys = train.map((e) => index.get(e.label)!);
  const acc = (m: LogisticRegression, set: readonly LabelledText[]) =>
    set.filter((e) => labels[m.predict(vec.transform(e.text))] === e.label).length / Math.max(1, set.length);
  let best: { model: LogisticRegression; val: number; l2: number; epochs: number } | undefined;
  for (const l2 of [1e-4, 3e-5, 1e-5, 3e-6]) {
    for (const epochs of [5, 10, 20]) {
      const m = new LogisticRegression(vec.size, labels.length).fit(xs, ys, { l2, epochs });
      const v = acc(m, val);
      if (!best || v > best.val) best = { model: m, val: v, l2, epochs };
    }
  }
  return { accuracy: acc(best!.model, test), valAccuracy: best!.val, l2: best!.l2, epochs: best!.epochs, features: vec.size };
}
