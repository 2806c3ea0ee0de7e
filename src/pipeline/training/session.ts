// Runs a training graph (forward + backward, parameters as inputs) in one onnxruntime-node
// session: the trainer owns the parameters as Float32Arrays and feeds them on every step;
// the session returns the loss and the gradients. Forward-only runs (validation) go to a
// second session over the pruned forward graph when one is given (see prune.ts): fetching
// only the loss from the training session still runs most of the backward pass.
import * as ort from 'onnxruntime-node';
import type { GraphBuilder } from '../graph.js';
import { createGraphSession } from './graph-session.js';

export interface ParamTensor {
  data: Float32Array;
  dims: number[];
}

export interface GradientSessionOptions {
  /** Parameter input names. */
  params: string[];
  /** Loss output name. */
  loss: string;
  /** param -> gradient output name. */
  grads: Map<string, string>;
  intraOpNumThreads?: number;
  /** Extra session options (execution providers, ...). */
  sessionOptions?: ort.InferenceSession.SessionOptions;
  /** Forward-only model (same input names), e.g. pruneToOutputs(g, ['loss', 'logits']). */
  forwardModel?: GraphBuilder;
}

export interface StepResult {
  loss: number;
  /** param -> gradient (a view of the session's output buffer: read it before the next run). */
  grads: Map<string, Float32Array>;
  outputs: Record<string, ort.Tensor>;
}

export class GradientSession {
  private constructor(
    readonly session: ort.InferenceSession,
    readonly forwardSession: ort.InferenceSession | undefined,
    readonly opts: GradientSessionOptions,
  ) {}

  /** `model`: the training graph; past 2 GB of frozen initializers it is opened through external data (graph-session.ts). */
  static async create(model: GraphBuilder, opts: GradientSessionOptions): Promise<GradientSession> {
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      intraOpNumThreads: opts.intraOpNumThreads ?? 2,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      logSeverityLevel: 3,
      ...opts.sessionOptions,
    };
    const session = await createGraphSession(model, sessionOptions);
    const forward = opts.forwardModel ? await createGraphSession(opts.forwardModel, sessionOptions) : undefined;
    return new GradientSession(session, forward, opts);
  }

  private feeds(batch: Record<string, ort.Tensor>, params: Map<string, ParamTensor>, session = this.session): Record<string, ort.Tensor> {
    const feeds: Record<string, ort.Tensor> = {};
    // Only the inputs this session declares: a pruned forward graph may not read every batch tensor.
    for (const name of session.inputNames) if (batch[name] && !params.has(name)) feeds[name] = batch[name]!;
    for (const name of this.opts.params) {
      if (!session.inputNames.includes(name)) continue;
      const p = params.get(name);
      if (!p) throw new Error(`GradientSession: no value for parameter ${name}`);
      // Wrapping a Float32Array does not copy it.
      feeds[name] = new ort.Tensor('float32', p.data, p.dims);
    }
    return feeds;
  }

  /** Forward and backward: loss, every gradient, and any `extra` outputs. */
  async step(batch: Record<string, ort.Tensor>, params: Map<string, ParamTensor>, extra: string[] = []): Promise<StepResult> {
    const fetches = [this.opts.loss, ...this.opts.grads.values(), ...extra];
    const out = await this.session.run(this.feeds(batch, params), fetches);
    const grads = new Map<string, Float32Array>();
    for (const [p, name] of this.opts.grads) grads.set(p, out[name]!.data as Float32Array);
    return { loss: Number((out[this.opts.loss]!.data as Float32Array)[0]), grads, outputs: out };
  }

  /** Forward only: the named outputs (e.g. the loss, or logits for evaluation). */
  async forward(batch: Record<string, ort.Tensor>, params: Map<string, ParamTensor>, fetches: string[]): Promise<Record<string, ort.Tensor>> {
    const session = this.forwardSession ?? this.session;
    return session.run(this.feeds(batch, params, session), fetches);
  }

  async release(): Promise<void> {
    await this.session.release();
    await this.forwardSession?.release();
  }
}
