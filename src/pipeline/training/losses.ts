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

  let logProbs = '', targets = '', batch = '';
  const [loss] = withCustomGradient(g, [logits], () => {
    logProbs = g.op('LogSoftmax', [logits], { axis: -1 });
    if (labelType === 'int64' || labelType === 'int32') {
      const ids = labelType === 'int64' ? labels : g.op('Cast', [labels], { to: DataType.int64 });
      const classes = typeof classDim === 'number'
        ? constant(g, 'int64', classDim)
        : g.op('Gather', [g.op('Shape', [logits]), constant(g, 'int64', -1)]);
      const range = g.op('Range', [constant(g, 'int64', 0), classes, constant(g, 'int64', 1)]);
      targets = g.op('Cast', [g.op('Equal', [g.op('Unsqueeze', [ids, ints(g, [1])]), range])], { to: DataType[type] });
    } else {
      targets = labels;
    }
    batch = typeof batchDim === 'number' && isStatic([batchDim])
      ? constant(g, type, batchDim)
      : g.op('Cast', [g.op('Gather', [g.op('Shape', [logits]), constant(g, 'int64', 0)])], { to: DataType[type] });
    const total = g.op('ReduceSum', [g.op('Mul', [targets, logProbs])], { keepdims: 0 });
    return [g.op('Div', [g.op('Neg', [total]), batch], {}, opts.name ?? 'loss')];
  }, (e, [gy]) => {
    const scale = e.op('Div', [gy!, batch]);
    return [e.op('Mul', [e.op('Sub', [e.op('Exp', [logProbs]), targets]), scale])];
  });
  return loss!;
}
