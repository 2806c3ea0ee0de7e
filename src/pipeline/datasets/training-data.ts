// Checks that depend on a dataset's role (training data needs two classes, validation data no
// unseen labels), and the training/validation pair a build trains on.
import { DatasetError, type Example } from './example.js';
import { loadDataset } from './load.js';
import { labelSet, splitDataset } from './splits.js';

/** Training data must hold at least two classes, or there is nothing to classify. */
export function checkTrainingSet(examples: Example[], source: string): void {
  if (examples.length === 0) throw new DatasetError(source, 'no training examples');
  const labels = labelSet(examples);
  if (labels.length < 2) {
    throw new DatasetError(source, `the training data has a single class (${JSON.stringify(labels[0])}); a classifier needs at least two`);
  }
}

/**
 * Every label must be one the model knows (validation or evaluation data against the
 * training labels, or any data against --labels); names the first offending line.
 */
export function checkLabelsKnown(examples: Example[], known: readonly string[], source: string, knownFrom = 'the training data'): void {
  const allowed = new Set(known);
  const bad = examples.find((e) => !allowed.has(e.label));
  if (bad) {
    throw new DatasetError(
      source,
      `label ${JSON.stringify(bad.label)} does not occur in ${knownFrom} (labels: ${known.map((l) => JSON.stringify(l)).join(', ')})`,
      bad.line,
    );
  }
}

export interface TrainingData {
  train: Example[];
  val: Example[];
  /** Logit order: --labels when given, else labelSet(train). */
  labels: string[];
  /** What the validation data is, for the manifest's eval.split. */
  evalSplit: string;
}

/**
 * The training and validation examples of a build, with every role check applied: --labels
 * (if given) cover the training labels, training has two classes at least, validation
 * labels occur in training. Validation comes from `val` when given, else from a stratified
 * split of the data (`valSplit`, default 0.1) with `seed`.
 */
export async function prepareTrainingData(options: {
  data: string;
  val?: string;
  valSplit?: number;
  seed: number;
  labels?: readonly string[];
}): Promise<TrainingData> {
  const all = await loadDataset(options.data);
  if (options.labels) checkLabelsKnown(all, options.labels, options.data, '--labels');
  checkTrainingSet(all, options.data);
  const labels = options.labels ? [...options.labels] : labelSet(all);
  if (options.val !== undefined) {
    const val = await loadDataset(options.val);
    checkLabelsKnown(val, labels, options.val);
    return { train: all, val, labels, evalSplit: `file:${options.val}` };
  }
  const fraction = options.valSplit ?? 0.1;
  const { train, val } = splitDataset(all, fraction, options.seed);
  if (val.length === 0) {
    throw new DatasetError(options.data, `too few examples per label to hold out a validation split (${all.length} examples); pass a validation file`);
  }
  return { train, val, labels, evalSplit: `val-split:${fraction}:seed:${options.seed}` };
}
