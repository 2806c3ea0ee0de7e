// Timing facts the serving core emits. Metrics (prom-client), logs and tests subscribe here
// instead of the batcher or routes knowing about any of them. Every fact carries only bounded
// values (model, variant, device, endpoint, code), never request ids or texts.
import type { Device } from './config.js';

/** One batch that ran (or failed) on a worker. */
export interface BatchFact {
  model: string;
  variant: string;
  device: Device;
  workerIndex: number;
  /** Inputs in the batch. */
  size: number;
  /** Padded tokens: paddedLength x size (what the token budget counts). */
  tokens: number;
  /** Real tokens (sum of input lengths), to see padding waste. */
  realTokens: number;
  /** Length every input was padded to. */
  paddedLength: number;
  /** Shortest input's length in the batch. */
  minLength: number;
  /** Per input: enqueue to batch start, in ms. */
  queueMs: number[];
  /** session.run wall time inside the worker, in ms. */
  inferenceMs: number;
  ok: boolean;
}

/** One answered HTTP request of an inference or management endpoint. */
export interface RequestFact {
  /** Route pattern, e.g. "/classify" or "/v2/models/:model/infer" (bounded). */
  endpoint: string;
  method: string;
  /** HTTP status code. */
  code: number;
  /** Catalogue error code when it failed. */
  errorCode?: string;
  durationMs: number;
  model?: string;
  variant?: string;
  inputs?: number;
}

export interface ServeObserver {
  onBatch?(fact: BatchFact): void;
  onRequest?(fact: RequestFact): void;
}

/** Fan a fact out to every observer; one failing observer must not fail a request. */
export class ObserverSet implements Required<ServeObserver> {
  private readonly observers: ServeObserver[] = [];

  add(observer: ServeObserver): () => void {
    this.observers.push(observer);
    return () => {
      const at = this.observers.indexOf(observer);
      if (at >= 0) this.observers.splice(at, 1);
    };
  }

  // try/catch in the loop, not a closure per observer and fact: this runs for every request.
  onBatch(fact: BatchFact): void {
    for (const o of this.observers) {
      try {
        o.onBatch?.(fact);
      } catch {
        // An observer's bug is its own; the request goes on.
      }
    }
  }

  onRequest(fact: RequestFact): void {
    for (const o of this.observers) {
      try {
        o.onRequest?.(fact);
      } catch {
        // An observer's bug is its own; the request goes on.
      }
    }
  }
}
