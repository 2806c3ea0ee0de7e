// Classification metrics from true and predicted labels: accuracy, macro-F1 and the
// confusion matrix. `slim eval` prints `evaluate(...)` as JSON; the build writes the same
// numbers into each manifest's `eval` block and the depth report.

/** The JSON shape of `slim eval`. */
export interface EvalReport {
  accuracy: number;
  macroF1: number;
  examples: number;
  labels: string[];
  /** confusion[t][p] = examples whose true label is labels[t] and predicted label labels[p]. */
  confusion: number[][];
}

/** Per-label precision, recall and F1 (for reports and debugging). */
export interface LabelScores {
  label: string;
  precision: number;
  recall: number;
  f1: number;
  support: number;
}

/** Rows are true labels, columns predicted labels, both in the order of `labels`. */
export function confusionMatrix(truth: readonly string[], predicted: readonly string[], labels: readonly string[]): number[][] {
  if (truth.length !== predicted.length) {
    throw new RangeError(`${truth.length} true labels but ${predicted.length} predictions`);
  }
  const index = new Map(labels.map((l, i) => [l, i] as const));
  if (index.size !== labels.length) throw new RangeError(`duplicate labels in [${labels.join(', ')}]`);
  const matrix = labels.map(() => labels.map(() => 0));
  for (let i = 0; i < truth.length; i++) {
    const t = index.get(truth[i]!);
    const p = index.get(predicted[i]!);
    if (t === undefined) throw new RangeError(`true label ${JSON.stringify(truth[i])} is not one of [${labels.join(', ')}]`);
    if (p === undefined) throw new RangeError(`predicted label ${JSON.stringify(predicted[i])} is not one of [${labels.join(', ')}]`);
    matrix[t]![p]!++;
  }
  return matrix;
}

/** Fraction of examples on the diagonal; 0 for no examples. */
export function accuracyOf(confusion: readonly (readonly number[])[]): number {
  let correct = 0;
  let total = 0;
  confusion.forEach((row, t) =>
    row.forEach((count, p) => {
      total += count;
      if (t === p) correct += count;
    }),
  );
  return total === 0 ? 0 : correct / total;
}

export function labelScores(confusion: readonly (readonly number[])[], labels: readonly string[]): LabelScores[] {
  return labels.map((label, k) => {
    const tp = confusion[k]![k]!;
    const support = confusion[k]!.reduce((a, b) => a + b, 0);
    const predictedK = confusion.reduce((a, row) => a + row[k]!, 0);
    const precision = predictedK === 0 ? 0 : tp / predictedK;
    const recall = support === 0 ? 0 : tp / support;
    const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
    return { label, precision, recall, f1, support };
  });
}

/**
 * Unweighted mean of per-label F1 over the labels that occur among the true or the
 * predicted labels (scikit-learn's default label set): a label the model knows but that
 * neither occurs in this data nor is ever predicted says nothing about the model and would
 * only pull the mean towards 0. A label that is predicted but never true counts, with F1 0.
 */
export function macroF1Of(confusion: readonly (readonly number[])[], labels: readonly string[]): number {
  const scores = labelScores(confusion, labels).filter((_, k) => confusion[k]!.some((c) => c > 0) || confusion.some((row) => row[k]! > 0));
  return scores.length === 0 ? 0 : scores.reduce((a, s) => a + s.f1, 0) / scores.length;
}

export function accuracy(truth: readonly string[], predicted: readonly string[]): number {
  if (truth.length !== predicted.length) throw new RangeError(`${truth.length} true labels but ${predicted.length} predictions`);
  let correct = 0;
  for (let i = 0; i < truth.length; i++) if (truth[i] === predicted[i]) correct++;
  return truth.length === 0 ? 0 : correct / truth.length;
}

export function macroF1(truth: readonly string[], predicted: readonly string[], labels: readonly string[]): number {
  return macroF1Of(confusionMatrix(truth, predicted, labels), labels);
}

/** Everything `slim eval` reports, for the model's labels in the model's order. */
export function evaluate(truth: readonly string[], predicted: readonly string[], labels: readonly string[]): EvalReport {
  const confusion = confusionMatrix(truth, predicted, labels);
  return {
    accuracy: accuracyOf(confusion),
    macroF1: macroF1Of(confusion, labels),
    examples: truth.length,
    labels: [...labels],
    confusion,
  };
}
