// Softmax cross-entropy as one fused op: the loss comes from LogSoftmax (stable), and the
// gradient of the logits is registered directly as (softmax - onehot) / batch, rather than
// differentiated through LogSoftmax, the one-hot product and the mean.
import type { GraphBuilder } from '../graph.js';
import { DataType } from '../onnx-proto.js';
import { withCustomGradient } from './autodiff.js';
import { isStatic, ShapeInference } from './shapes.js';
import { constant, ints, type FloatType } from './ops.js';

export interface CrossEntropyOptions {
  /** Name of the scalar loss value; default "loss". */
  name?: string;
}

/**
 * Mean softmax cross-entropy of logits [B, C] against labels: int64 class ids [B], or float
 * targets [B, C] (one-hot or soft, rows summing to 1). Returns the loss value's name.
 */
export function softmaxCrossEntropy(g: GraphBuilder, logits: string, labels: string, opts: CrossEntropyOptions = {}): string {
  const facts = new ShapeInference(g);
  const lf = facts.get(logits);
  const type = lf.type as FloatType;
  if (type !== 'float32' && type !== 'float64') throw new Error(`softmaxCrossEntropy: logits ${logits} must be float32 or float64`);
  if (lf.shape && lf.shape.length !== 2) throw new Error(`softmaxCrossEntropy: logits must be [batch, classes], got [${lf.shape}]`);
  const labelType = facts.get(labels).type;
  const [batchDim, classDim] = lf.shape ?? ['?', '?'];

  let logProbs = '',
    targets = '',
    batch = '';
  const [loss] = withCustomGradient(
    g,
    [logits],
    () => {
      logProbs = g.op('LogSoftmax', [logits], { axis: -1 });
      if (labelType === 'int64' || labelType === 'int32') {
        const ids = labelType === 'int64' ? labels : g.op('Cast', [labels], { to: DataType.int64 });
        const classes = typeof classDim === 'number' ? constant(g, 'int64', classDim) : g.op('Gather', [g.op('Shape', [logits]), constant(g, 'int64', -1)]);
        const range = g.op('Range', [constant(g, 'int64', 0), classes, constant(g, 'int64', 1)]);
        targets = g.op('Cast', [g.op('Equal', [g.op('Unsqueeze', [ids, ints(g, [1])]), range])], { to: DataType[type] });
      } else {
        targets = labels;
      }
      batch =
        typeof batchDim === 'number' && isStatic([batchDim])
          ? constant(g, type, batchDim)
          : g.op('Cast', [g.op('Gather', [g.op('Shape', [logits]), constant(g, 'int64', 0)])], { to: DataType[type] });
      const total = g.op('ReduceSum', [g.op('Mul', [targets, logProbs])], { keepdims: 0 });
      return [g.op('Div', [g.op('Neg', [total]), batch], {}, opts.name ?? 'loss')];
    },
    (e, [gy]) => {
      const scale = e.op('Div', [gy!, batch]);
      return [e.op('Mul', [e.op('Sub', [e.op('Exp', [logProbs]), targets]), scale])];
    },
  );
  return loss!;
}

export interface DistillationLossInputs {
  /** int64 class ids [B]; rows without a label (transfer text) may hold any valid id, with hardWeight 0. */
  labels: string;
  /** float [B, C]: log softmax(teacher logits / T), computed outside the graph (the teacher is fixed). */
  teacherLogProbs: string;
  /** float [B]: per-row weight of the cross-entropy with the true label (alpha; 0 for transfer rows). */
  hardWeight: string;
  /** float [B]: per-row weight of the soft term (1 - alpha; 1 for transfer rows). */
  softWeight: string;
  /** Softmax temperature T of both teacher and student in the soft term. */
  temperature: number;
  /** Name of the scalar loss value; default "loss". */
  name?: string;
}

/**
 * Knowledge-distillation loss over student logits s [B, C], one fused op:
 *   mean_b [ hard_b * CE(onehot_b, softmax(s_b)) + soft_b * T^2 * KL(p_b || softmax(s_b / T)) ],
 * p_b = softmax(teacher_b / T) (Hinton et al.: T^2 keeps the soft term's gradient scale
 * independent of T). Its gradient is registered directly:
 *   d/ds_b = [ hard_b * (softmax(s_b) - onehot_b) + soft_b * T * (softmax(s_b / T) - p_b) ] / B.
 */
export function distillationLoss(g: GraphBuilder, logits: string, inp: DistillationLossInputs): string {
  const facts = new ShapeInference(g);
  const lf = facts.get(logits);
  const type = lf.type as FloatType;
  if (type !== 'float32' && type !== 'float64') throw new Error(`distillationLoss: logits ${logits} must be float32 or float64`);
  if (!lf.shape || lf.shape.length !== 2 || !isStatic(lf.shape))
    throw new Error(`distillationLoss: logits must be a static [batch, classes], got [${lf.shape}]`);
  if (!(inp.temperature > 0)) throw new Error(`distillationLoss: temperature must be > 0 (got ${inp.temperature})`);
  const [batchDim, classDim] = lf.shape as number[];
  const T = inp.temperature;

  let logProbs = '',
    logProbsT = '',
    onehot = '',
    teacherProbs = '',
    hard = '',
    soft = '';
  const [loss] = withCustomGradient(
    g,
    [logits],
    () => {
      logProbs = g.op('LogSoftmax', [logits], { axis: -1 });
      logProbsT = g.op('LogSoftmax', [g.op('Div', [logits, constant(g, type, T)])], { axis: -1 });
      const range = g.op('Range', [constant(g, 'int64', 0), constant(g, 'int64', classDim!), constant(g, 'int64', 1)]);
      onehot = g.op('Cast', [g.op('Equal', [g.op('Unsqueeze', [inp.labels, ints(g, [1])]), range])], { to: DataType[type] });
      teacherProbs = g.op('Exp', [inp.teacherLogProbs]);
      hard = g.op('Unsqueeze', [inp.hardWeight, ints(g, [1])]);
      soft = g.op('Unsqueeze', [inp.softWeight, ints(g, [1])]);
      // Per element: hard * (-onehot * logp) + soft * T^2 * p * (log p - log q_T), summed over rows and classes.
      const ce = g.op('Mul', [hard, g.op('Neg', [g.op('Mul', [onehot, logProbs])])]);
      const kl = g.op('Mul', [g.op('Mul', [soft, constant(g, type, T * T)]), g.op('Mul', [teacherProbs, g.op('Sub', [inp.teacherLogProbs, logProbsT])])]);
      const total = g.op('ReduceSum', [g.op('Add', [ce, kl])], { keepdims: 0 });
      return [g.op('Div', [total, constant(g, type, batchDim!)], {}, inp.name ?? 'loss')];
    },
    (e, [gy]) => {
      const scale = e.op('Div', [gy!, e.constant(type, batchDim!)]);
      const dHard = e.op('Mul', [hard, e.op('Sub', [e.op('Exp', [logProbs]), onehot])]);
      const dSoft = e.op('Mul', [e.op('Mul', [soft, e.constant(type, T)]), e.op('Sub', [e.op('Exp', [logProbsT]), teacherProbs])]);
      return [e.op('Mul', [e.op('Add', [dHard, dSoft]), scale])];
    },
  );
  return loss!;
}
