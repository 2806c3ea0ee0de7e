// Dynamic batching per variant. Inputs (not requests) are the unit: a client's list can be
// split over several batches and is put back together in order. A batch is formed only when a
// worker can take it (idle, or one batch may wait behind its running one), so under load batches
// fill up by themselves; a batch that is not full waits at most maxQueueDelayMs for company.
//
// Grouping: the oldest queued input always goes into its variant's next batch (no input
// starves), and the rest of the batch is filled with inputs of the closest lengths, within a
// padding bound, so a 5-token text is not padded to 500 tokens beside a long one.
//
// Texts are queued untokenized: the worker that runs a batch tokenizes it (off the event loop).
// Lengths here are sizes from the text's bytes (textSize, tokenize.ts): inputs are grouped by
// size, and the token budget is kept with min(size, maxLength), an upper bound of the token
// count (estimateTokens), so both hold before any text is tokenized. The worker pads to the real
// longest row and reports each row's token count, from which too-long inputs are failed
// (truncate false: TEXT_TOO_LONG) or marked truncated.
import { epochMs } from './clock.js';
import type { Device } from './config.js';
import { CoreError } from './errors.js';
import type { BatchFact } from './observer.js';
import { textSize } from './tokenize.js';
import { BatchExpiredError, WorkerFailedError, type BatchOutput, type BatchTexts } from './worker-pool.js';

export interface BatchLimits {
  maxBatchSize: number;
  /** Budget of padded tokens: longest (estimated) length x batch size. A single input always runs. */
  maxBatchTokens: number;
  maxQueueDelayMs: number;
  /** Most inputs waiting per variant. */
  maxQueued: number;
}

/** What the batcher needs of the worker pool. */
export interface BatchRunner {
  /** Workers with nothing to do: any ready batch may go there. */
  readonly idleCount: number;
  /** Busy workers that can hold one more batch (it starts when the running one ends). */
  readonly pipelineSlots: number;
  readonly size: number;
  run(batch: BatchTexts): Promise<BatchOutput>;
  onIdle: () => void;
}

/** A variant as the batcher sees it. */
export interface BatchTarget {
  key: string;
  model: string;
  variant: string;
  device: Device;
  numLabels: number;
  /** Most tokens the variant reads (the cap of the length estimate, and the TEXT_TOO_LONG limit). */
  maxLength: number;
}

/**
 * A client that may go away before its answer: what the batcher needs of it. Cheaper per request
 * than an AbortController and its EventTarget (both showed in the main thread's profile).
 */
export interface ClientGone {
  readonly aborted: boolean;
  /** Call fn once if the client goes away; returns the function that stops listening. */
  onAbort(fn: () => void): () => void;
}

export interface SubmitOptions {
  /** epochMs() time after which the request fails with DEADLINE_EXCEEDED. */
  deadline: number;
  /** Fires when the client goes away: its queued inputs leave the queue (CLIENT_CLOSED). */
  signal?: ClientGone;
  /** Cut texts longer than maxLength (the outcome lists them); false fails the request with TEXT_TOO_LONG. */
  truncate: boolean;
}

export interface InferenceOutcome {
  /** Per input, in the order given: numLabels probabilities. */
  probabilities: Float32Array[];
  /** Per input, in the order given: the numLabels logits those probabilities are the softmax of. */
  logits: Float32Array[];
  /** Per input: enqueue to batch start, ms. */
  queueMs: number[];
  /** Per input: inference time of the batch that carried it, ms. */
  inferenceMs: number[];
  /** Indices of the inputs cut to maxLength, ascending. */
  truncated: number[];
}

/**
 * Two lengths may share a batch when the longer is at most twice the shorter, or only a few
 * tokens longer: the padding waste stays under about half of the batch's compute.
 */
export function similarLength(shortest: number, longest: number): boolean {
  return longest <= Math.max(2 * shortest, shortest + 8);
}

const QUEUED = 0;
const RUNNING = 1;
const DROPPED = 2;

interface QueuedInput {
  request: PendingRequest;
  index: number;
  text: string;
  /** textSize(text): what inputs are grouped by; min(length, maxLength) bounds its token count. */
  length: number;
  enqueuedAt: number;
  state: typeof QUEUED | typeof RUNNING | typeof DROPPED;
}

interface PendingRequest {
  queue: VariantQueue;
  deadline: number;
  truncate: boolean;
  items: QueuedInput[];
  remaining: number;
  outcome: InferenceOutcome;
  settled: boolean;
  resolve: (o: InferenceOutcome) => void;
  reject: (e: CoreError) => void;
  detach: () => void;
}

/** An array used as a FIFO whose entries may die in place; dead entries are skipped lazily. */
class LazyFifo {
  private items: QueuedInput[] = [];
  private head = 0;
  live = 0;

  push(item: QueuedInput): void {
    this.items.push(item);
    this.live++;
  }

  /** The oldest entry still queued. */
  peek(): QueuedInput | undefined {
    while (this.head < this.items.length && this.items[this.head]!.state !== QUEUED) this.head++;
    this.compact();
    return this.items[this.head];
  }

  /** Queued entries, oldest first, not removed (the caller changes their state). */
  *oldest(): Generator<QueuedInput> {
    this.peek(); // advances past dead entries at the front, so the array cannot grow without bound
    for (let i = this.head; i < this.items.length; i++) if (this.items[i]!.state === QUEUED) yield this.items[i]!;
  }

  private compact(): void {
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    if (this.head === this.items.length && this.head > 0) {
      this.items = [];
      this.head = 0;
    }
  }
}

class VariantQueue {
  readonly fifo = new LazyFifo();
  /** Queued inputs by token length. */
  readonly byLength = new Map<number, LazyFifo>();
  count = 0;
  tokenSum = 0;
  /** Inputs in batches that are running now. */
  running = 0;
  /** Smoothed batch inference time, for Retry-After. */
  avgBatchMs = 0;

  constructor(readonly target: BatchTarget) {}

  /** The upper bound of an input's token count (estimateTokens), from its size. */
  tokensOf(length: number): number {
    return Math.min(length, this.target.maxLength);
  }

  add(item: QueuedInput): void {
    this.fifo.push(item);
    let bucket = this.byLength.get(item.length);
    if (!bucket) this.byLength.set(item.length, (bucket = new LazyFifo()));
    bucket.push(item);
    this.count++;
    this.tokenSum += this.tokensOf(item.length);
  }

  /** Take an input out of the queued state (into a batch, or dropped). */
  leave(item: QueuedInput, state: typeof RUNNING | typeof DROPPED): void {
    item.state = state;
    this.fifo.live--;
    const bucket = this.byLength.get(item.length)!;
    bucket.live--;
    if (bucket.live === 0) this.byLength.delete(item.length);
    this.count--;
    this.tokenSum -= this.tokensOf(item.length);
  }

  /** Enough waiting for a full batch: no reason to wait for more. */
  full(limits: BatchLimits): boolean {
    return this.count >= limits.maxBatchSize || this.tokenSum >= limits.maxBatchTokens;
  }

  ready(now: number, limits: BatchLimits): boolean {
    if (this.count === 0) return false;
    return this.full(limits) || now - this.fifo.peek()!.enqueuedAt >= limits.maxQueueDelayMs;
  }

  /** The oldest input plus the closest-length inputs that fit the limits. */
  form(limits: BatchLimits): QueuedInput[] {
    const anchor = this.fifo.peek()!;
    const batch: QueuedInput[] = [];
    let shortest = anchor.length;
    let longest = anchor.length;
    const take = (item: QueuedInput): void => {
      this.leave(item, RUNNING);
      batch.push(item);
    };
    take(anchor);
    // Lengths in order of distance from the anchor's; at equal distance the shorter first,
    // since it does not raise the padded length.
    const lengths = [...this.byLength.keys()].sort((a, b) => Math.abs(a - anchor.length) - Math.abs(b - anchor.length) || a - b);
    for (const length of lengths) {
      if (batch.length >= limits.maxBatchSize) break;
      const lo = Math.min(shortest, length);
      const hi = Math.max(longest, length);
      if (!similarLength(lo, hi)) continue;
      const bucket = this.byLength.get(length);
      if (!bucket) continue;
      for (const item of bucket.oldest()) {
        if (batch.length >= limits.maxBatchSize || this.tokensOf(hi) * (batch.length + 1) > limits.maxBatchTokens) break;
        take(item);
        shortest = lo;
        longest = hi;
      }
    }
    return batch;
  }
}

export class Batcher {
  private readonly queues = new Map<string, VariantQueue>();
  private readonly pending = new Set<PendingRequest>();
  private drainWaiters: (() => void)[] = [];
  /** Wakes pump() when a queue's oldest input has waited maxQueueDelayMs. */
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  /**
   * One timer for every request's deadline, at the earliest one, instead of a setTimeout and
   * clearTimeout per request (each was a visible share of the main thread's time per request).
   */
  private deadlineTimer: NodeJS.Timeout | null = null;
  private deadlineAt = Infinity;

  constructor(
    private readonly runner: BatchRunner,
    private readonly limits: BatchLimits,
    private readonly onBatch: (fact: BatchFact) => void = () => {},
    private readonly now: () => number = epochMs,
  ) {
    runner.onIdle = () => this.pump();
  }

  register(target: BatchTarget): void {
    this.queues.set(target.key, new VariantQueue(target));
  }

  /** Hot reload: forget a variant whose queue has drained (false while inputs wait or run). */
  unregister(key: string): boolean {
    const queue = this.queues.get(key);
    if (queue && (queue.count > 0 || queue.running > 0)) return false;
    this.queues.delete(key);
    return true;
  }

  /** Inputs waiting (not running) for a variant. */
  queueDepth(key: string): number {
    return this.queues.get(key)?.count ?? 0;
  }

  /** Inputs of a variant in batches running now. */
  runningInputs(key: string): number {
    return this.queues.get(key)?.running ?? 0;
  }

  /** Requests accepted and not yet answered. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Resolves when every accepted request has been answered. */
  drained(): Promise<void> {
    if (this.pending.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /**
   * Throws QUEUE_FULL (with Retry-After) when `count` more inputs would not fit the variant's
   * queue. Callers check before tokenizing, so that shedding under overload stays cheap.
   */
  checkCapacity(key: string, count: number): void {
    const queue = this.queues.get(key);
    if (!queue) throw new Error(`batcher: unknown variant ${key}`);
    if (queue.count + count > this.limits.maxQueued) {
      throw new CoreError('QUEUE_FULL', `the queue of ${key} holds ${queue.count} inputs (maxQueued ${this.limits.maxQueued})`, {
        retryAfterS: this.retryAfterSeconds(queue),
      });
    }
  }

  /**
   * Queue a request's texts (bounded by boundText). Throws QUEUE_FULL (with Retry-After) when the
   * variant's queue cannot take them all; the promise fails with DEADLINE_EXCEEDED,
   * CLIENT_CLOSED, or TEXT_TOO_LONG (a text over maxLength and truncate false).
   */
  submit(key: string, inputs: readonly string[], opts: SubmitOptions): Promise<InferenceOutcome> {
    const queue = this.queues.get(key);
    if (!queue) throw new Error(`batcher: unknown variant ${key}`);
    this.checkCapacity(key, inputs.length);
    const now = this.now();
    if (opts.deadline <= now) throw new CoreError('DEADLINE_EXCEEDED');
    if (opts.signal?.aborted) throw new CoreError('CLIENT_CLOSED');
    return new Promise<InferenceOutcome>((resolve, reject) => {
      const n = inputs.length;
      const request: PendingRequest = {
        queue,
        deadline: opts.deadline,
        truncate: opts.truncate,
        items: [],
        remaining: n,
        outcome: {
          probabilities: new Array<Float32Array>(n),
          logits: new Array<Float32Array>(n),
          queueMs: new Array<number>(n).fill(0),
          inferenceMs: new Array<number>(n).fill(0),
          truncated: [],
        },
        settled: false,
        resolve,
        reject,
        detach: () => {},
      };
      const maxLength = queue.target.maxLength;
      inputs.forEach((text, index) => {
        const item: QueuedInput = { request, index, text, length: textSize(text, maxLength), enqueuedAt: now, state: QUEUED };
        request.items.push(item);
        queue.add(item);
      });
      if (opts.signal) request.detach = opts.signal.onAbort(() => this.fail(request, new CoreError('CLIENT_CLOSED')));
      this.pending.add(request);
      this.expireAt(request.deadline, now);
      this.pump();
    });
  }

  /** Fail every request not yet answered (the last step of a shutdown that ran out of time). */
  abortAll(err: CoreError): void {
    for (const req of [...this.pending]) this.fail(req, err);
  }

  /**
   * Hand ready batches (full, or their oldest input has waited maxQueueDelayMs) to workers: to an
   * idle one first, else into a busy one's pipeline slot, so that the batch starts the moment the
   * running one ends instead of after a round trip through this thread (postMessage, the event
   * loop, forming the batch, postMessage back): on a loaded server that round trip left the
   * worker idle about a tenth of the time. Waiting for the running batch to end would let the
   * next one grow, but on CPU an input costs about the same in a batch of 4 as in one of 32
   * (loadtest/results/*-ceiling.md), so a busy worker is worth more than a bigger batch.
   */
  private pump(): void {
    // A wake-up timer already set stays: firing when nothing is due costs one empty pass, while
    // clearing and setting it again on every submit cost two timer operations per request.
    const now = this.now();
    for (;;) {
      const idle = this.runner.idleCount > 0;
      if (!idle && this.runner.pipelineSlots === 0) return;
      let best: VariantQueue | null = null;
      let bestAt = Infinity;
      let nextReadyAt = Infinity;
      for (const q of this.queues.values()) {
        if (q.count === 0) continue;
        const oldest = q.fifo.peek()!.enqueuedAt;
        if (q.ready(now, this.limits)) {
          if (oldest < bestAt) {
            best = q;
            bestAt = oldest;
          }
        } else {
          nextReadyAt = Math.min(nextReadyAt, oldest + this.limits.maxQueueDelayMs);
        }
      }
      if (!best) {
        if (nextReadyAt < Infinity) this.wakeAt(nextReadyAt, now);
        return;
      }
      this.dispatch(best, best.form(this.limits), now);
    }
  }

  private wakeAt(at: number, now: number): void {
    if (this.timer && at >= this.timerAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(
      () => {
        this.timer = null;
        this.timerAt = Infinity;
        this.pump();
      },
      Math.max(0, Math.ceil(at - now)),
    );
  }

  /** Make sure the deadline timer fires by `at`. */
  private expireAt(at: number, now: number): void {
    if (this.deadlineTimer && at >= this.deadlineAt) return;
    if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
    this.deadlineAt = at;
    this.deadlineTimer = setTimeout(() => this.expire(), Math.max(1, Math.ceil(at - now)));
  }

  /** Fail the requests whose deadline has passed; set the timer for the next one. */
  private expire(): void {
    this.deadlineTimer = null;
    this.deadlineAt = Infinity;
    const now = this.now();
    let next = Infinity;
    for (const req of [...this.pending]) {
      if (req.deadline <= now) this.fail(req, new CoreError('DEADLINE_EXCEEDED', `no answer within the request deadline (${req.queue.target.key})`));
      else next = Math.min(next, req.deadline);
    }
    if (next < Infinity) this.expireAt(next, now);
  }

  private dispatch(queue: VariantQueue, items: QueuedInput[], now: number): void {
    const t = queue.target;
    const rows = items.length;
    // Until the worker says when it started: the time to hand-off.
    let queueMs = items.map((it) => now - it.enqueuedAt);
    const fact = (ok: boolean, out?: BatchOutput): BatchFact => {
      // The worker's real lengths (cut to maxLength; an empty text runs as one pad token); the
      // estimates when the batch failed before the worker counted.
      const lengths = out
        ? Array.from(out.tokenCounts, (c) => Math.max(1, c < 0 ? t.maxLength : Math.min(c, t.maxLength)))
        : items.map((it) => queue.tokensOf(it.length));
      const paddedLength = out?.paddedLength ?? Math.max(...lengths);
      return {
        model: t.model,
        variant: t.variant,
        device: t.device,
        workerIndex: out?.workerIndex ?? -1,
        size: rows,
        tokens: rows * paddedLength,
        realTokens: lengths.reduce((a, b) => a + b, 0),
        paddedLength,
        minLength: Math.min(...lengths),
        queueMs,
        inferenceMs: out?.inferenceMs ?? 0,
        ok,
      };
    };
    let expiresAt = 0;
    for (const it of items) expiresAt = Math.max(expiresAt, it.request.deadline);
    queue.running += rows;
    this.runner.run({ key: t.key, texts: items.map((it) => it.text), expiresAt }).then(
      (out) => {
        queue.running -= rows;
        queueMs = items.map((it) => Math.max(0, out.startedAt - it.enqueuedAt));
        queue.avgBatchMs = queue.avgBatchMs === 0 ? out.inferenceMs : 0.8 * queue.avgBatchMs + 0.2 * out.inferenceMs;
        items.forEach((it, r) => {
          const req = it.request;
          if (req.settled) return;
          const count = out.tokenCounts[r]!;
          if (count < 0 || count > t.maxLength) {
            if (!req.truncate) {
              const n = count < 0 ? `more than ${t.maxLength}` : `${count}`;
              const msg = `inputs[${it.index}] has ${n} tokens; ${t.key} takes at most ${t.maxLength} (send "truncate": true to cut it)`;
              this.fail(req, new CoreError('TEXT_TOO_LONG', msg));
              return;
            }
            req.outcome.truncated.push(it.index);
          }
          req.outcome.probabilities[it.index] = out.probabilities.subarray(r * out.numLabels, (r + 1) * out.numLabels);
          req.outcome.logits[it.index] = out.logits.subarray(r * out.numLabels, (r + 1) * out.numLabels);
          req.outcome.queueMs[it.index] = queueMs[r]!;
          req.outcome.inferenceMs[it.index] = out.inferenceMs;
          if (--req.remaining === 0) this.succeed(req);
        });
        this.onBatch(fact(true, out));
      },
      (err: Error) => {
        queue.running -= rows;
        if (err instanceof BatchExpiredError) {
          // Nothing ran: every request in it had already been answered 504 (or is, now).
          for (const it of items) this.fail(it.request, new CoreError('DEADLINE_EXCEEDED'));
          return;
        }
        // A crashed or hung worker is not the model's fault: 503, the client may retry at once.
        const failure =
          err instanceof WorkerFailedError
            ? new CoreError('WORKER_FAILED', `the inference worker running this batch of ${t.key} failed; it is being replaced`, { retryAfterS: 1 })
            : new CoreError('INFERENCE_FAILED', `inference failed on ${t.key}: ${err.message}`, { cause: err });
        for (const it of items) this.fail(it.request, failure);
        this.onBatch(fact(false));
      },
    );
  }

  private succeed(req: PendingRequest): void {
    this.finish(req);
    // Batches may come back in any order.
    if (req.outcome.truncated.length > 1) req.outcome.truncated.sort((a, b) => a - b);
    req.resolve(req.outcome);
  }

  /** Fail a request: its inputs still queued leave the queue; running ones are ignored later. */
  private fail(req: PendingRequest, err: CoreError): void {
    if (req.settled) return;
    for (const it of req.items) if (it.state === QUEUED) req.queue.leave(it, DROPPED);
    this.finish(req);
    req.reject(err);
  }

  private finish(req: PendingRequest): void {
    req.settled = true;
    req.detach();
    this.pending.delete(req);
    if (this.pending.size === 0 && this.deadlineTimer) {
      // Nothing left to expire: a pending timer must not hold the process open.
      clearTimeout(this.deadlineTimer);
      this.deadlineTimer = null;
      this.deadlineAt = Infinity;
    }
    if (this.pending.size === 0 && this.drainWaiters.length > 0) {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** Seconds until the queue has likely drained enough to take a new request. */
  private retryAfterSeconds(queue: VariantQueue): number {
    const batches = Math.ceil(queue.count / this.limits.maxBatchSize);
    const ms = (batches * (queue.avgBatchMs || 100)) / Math.max(1, this.runner.size);
    return Math.max(1, Math.ceil(ms / 1000));
  }
}
