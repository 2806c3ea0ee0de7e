// The shape of the depth report, models/<model>/report.json: one result per variant built (what
// each depth, training mode and precision costs and buys) and the recommended one.
import type { Precision } from '../../manifest.js';

export interface DepthResult {
  variant: string;
  depth: number;
  /** Training mode: head, top:N, full. */
  mode: string;
  /** fp32 when absent (reports written before precision variants). */
  precision?: Precision;
  accuracy: number;
  macroF1: number;
  params: number;
  /** Size of model.onnx in bytes. */
  fileBytes: number;
  /** Median milliseconds per run (not per example). */
  latencyMs: { batch1: number; batch32: number };
  train: { stepsPerSecond: number; examplesPerSecond: number; seconds?: number; epochsRun?: number; bestEpoch?: number };
  /** A student trained with --distill-from: its teacher, recipe, and the same depth without distillation. */
  distillation?: DistillationRecord;
}

export interface DistillationRecord {
  /** The teacher variant's directory and depth. */
  teacher: string;
  teacherDepth: number;
  temperature: number;
  /** Weight of the true labels (1 - alpha on the teacher's soft labels). */
  alpha: number;
  /** --transfer-data file (unlabelled texts), or null. */
  transferData: string | null;
  transferExamples: number;
  /** Time to compute the teacher's logits over training and transfer texts. */
  teacherSeconds: number;
  /** Training seconds per epoch (validation included) with distillation... */
  secondsPerEpoch: number;
  /** ...and the same depth and settings trained on the true labels alone. */
  withoutDistillation: { accuracy: number; macroF1: number; secondsPerEpoch: number; source: string };
}

export interface DepthReport {
  model: string;
  base: { id: string; arch: string; layers: number };
  /** The dataset and the held-out data the accuracies were measured on. */
  data: { train: string; eval: string; evalExamples: number };
  /** How latency was measured. */
  latency: { threads: number; seqLength: number; runs: number };
  createdAt: string;
  version: string;
  results: DepthResult[];
  recommended: { variant: string; depth: number; mode: string; precision?: Precision; rule: string } | null;
}
