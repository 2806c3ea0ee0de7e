// Per-request facts the routes note down for the response hooks (timing headers, observers),
// and the helpers inference routes share.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ServerResponse } from 'node:http';
import { epochMs } from '../clock.js';
import type { ClientGone } from '../batcher.js';
import type { ClassifyResult } from '../core.js';

export interface RequestNotes {
  /** The matched route's pattern (read once in onRequest; undefined when no route matched). */
  endpoint?: string;
  model?: string;
  variant?: string;
  inputs?: number;
  errorCode?: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    notes: RequestNotes;
  }
  interface FastifyContextConfig {
    /** Inference routes answer 503 until every variant is loaded, and while shutting down. */
    inference?: boolean;
    /** Open Inference Protocol routes answer errors as {"error": "<message>"}. */
    v2?: boolean;
  }
}

/**
 * Fires when the client goes away before the answer is written. One 'close' listener and one
 * small object per request: an AbortController with its EventTarget cost more (main-thread
 * profile); a class, not an object literal with a getter and closures (issue 17).
 */
class ResponseGone implements ClientGone {
  aborted = false;
  private listeners: (() => void)[] = [];

  constructor(res: ServerResponse) {
    // 'close' is emitted once: on(), not once() and its wrapper.
    res.on('close', () => {
      if (res.writableEnded) return;
      this.aborted = true;
      const now = this.listeners;
      this.listeners = [];
      for (const fn of now) fn();
    });
  }

  onAbort(fn: () => void): () => void {
    this.listeners.push(fn);
    return () => {
      this.listeners = this.listeners.filter((x) => x !== fn);
    };
  }
}

export function clientGone(reply: FastifyReply): ClientGone {
  return new ResponseGone(reply.raw);
}

/** epochMs() time at which this request's deadline passes (counted from its arrival). */
export function deadlineOf(reply: FastifyReply, requestTimeoutMs: number): number {
  return epochMs() - reply.elapsedTime + requestTimeoutMs;
}

const ms = (v: number): string => v.toFixed(3);

/** x-slim-* headers every answered inference carries. */
export function setInferenceHeaders(request: FastifyRequest, reply: FastifyReply, outcome: ClassifyResult): void {
  request.notes.model = outcome.model.name;
  request.notes.variant = outcome.variant.name;
  reply.header('x-slim-variant', outcome.variant.name);
  reply.header('x-slim-queue-ms', ms(outcome.queueMs));
  reply.header('x-slim-inference-ms', ms(outcome.inferenceMs));
  // How many inputs were cut to the variant's maxLength (each result says which).
  reply.header('x-slim-truncated-inputs', String(outcome.truncated.length));
  reply.header('x-slim-total-ms', ms(reply.elapsedTime));
}

/** The sticky routing key: the body's, else the x-slim-key header. */
export function routingKey(request: FastifyRequest, fromBody: string | undefined): string | undefined {
  if (fromBody !== undefined) return fromBody;
  const h = request.headers['x-slim-key'];
  return typeof h === 'string' ? h : undefined;
}
