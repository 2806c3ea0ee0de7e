// Messages between the main thread (worker-pool.ts) and an inference worker (worker.ts).
// A batch travels as its texts: the worker tokenizes them (tokenization is off the event loop)
// and pads them into the tensors itself. Results travel as transferred ArrayBuffers, never copied
// or serialised element by element.
import type { Precision } from '../manifest.js';
import type { Device, GraphOptimizationLevel, Int8WeightsMode, SpinningMode } from './config.js';

/** One variant a worker opens a session for. */
export interface SessionSpec {
  /** "<model>/<variant>": the key batches name. */
  key: string;
  onnxPath: string;
  /** The manifest's precision: an int8 variant may be rewritten to this CPU's int8 weight storage. */
  precision: Precision;
  device: Device;
  numLabels: number;
  /** The variant directory: the worker loads its tokenizer (tokenizer.json + tokenizer_config.json) from here. */
  tokenizerDir: string;
  /** Most tokens the model reads: longer texts are cut to their first maxLength ids. */
  maxLength: number;
  /** Input shapes [rows, cols] run once after loading so first requests do not pay for allocation. */
  warmupShapes: [number, number][];
}

/** workerData of every inference worker. */
export interface WorkerInit {
  workerIndex: number;
  sessions: SessionSpec[];
  intraOpThreads: number;
  interOpThreads: number;
  /** When intra-op threads busy-wait (--intra-op-spinning): a worker runs its sessions in turn, and one session's spinning threads slow the next. */
  spinning: SpinningMode;
  graphOptimization: GraphOptimizationLevel;
  /** int8 variants' weight storage: auto (this CPU's fast exact kernel), int8, uint8, or as-written. */
  int8Weights: Int8WeightsMode;
  /** Test-only: sleep this long before every run, to make queues observable. */
  testDelayMs: number;
  /** 0 for the workers started with the server, +1 for each replacement of a dead one. */
  generation: number;
}

export interface LoadedSession {
  key: string;
  requested: Device;
  /** The device the session actually runs on (cpu after a fallback). */
  device: Device;
  /** Why the requested device was not used, when it was not. */
  fallbackReason?: string;
  /** int8 variants: the weight storage of the file and the one the session runs (int8-weights.ts). */
  int8Weights?: { file: 'int8' | 'uint8'; run: 'int8' | 'uint8' };
  loadMs: number;
  warmupMs: number;
}

export interface RunRequest {
  type: 'run';
  jobId: number;
  key: string;
  /** One text per row, already bounded by boundText (tokenize.ts): the worker encodes and pads them. */
  texts: string[];
  /** epochMs() after which no input of the batch is wanted: the worker skips it then. */
  expiresAt: number;
}

/** Finish what was sent, release every session, exit. */
export interface CloseRequest {
  type: 'close';
}

/** Hot reload: open and warm up more sessions while serving; answered with sessions-loaded or -failed. */
export interface AddSessionsRequest {
  type: 'add-sessions';
  requestId: number;
  sessions: SessionSpec[];
}

/** Hot reload: release sessions whose variant was removed or replaced (after its queue drained). */
export interface DropSessionsRequest {
  type: 'drop-sessions';
  keys: string[];
}

export type MainToWorker = RunRequest | CloseRequest | AddSessionsRequest | DropSessionsRequest;

/** A batch's answer. */
export interface RunResult {
  type: 'result';
  jobId: number;
  /** rows x numLabels, row-major. */
  probabilities: Float32Array;
  /** The model's raw logits, same layout (HF function_to_apply none/sigmoid, TEI raw_scores). */
  logits: Float32Array;
  numLabels: number;
  /** Per row: the text's token count, or -1 for "more than maxLength" (too long to count in full). */
  tokenCounts: Int32Array;
  /** The length every row was padded to. */
  paddedLength: number;
  /** Tokenizing and padding the batch, ms. */
  tokenizeMs: number;
  /** session.run, ms. */
  inferenceMs: number;
  /** epochMs() when the worker started the batch (it may have waited behind another). */
  startedAt: number;
}

export type WorkerToMain =
  | { type: 'loaded'; sessions: LoadedSession[] }
  | { type: 'load-failed'; message: string }
  | RunResult
  | { type: 'run-failed'; jobId: number; message: string }
  | { type: 'run-expired'; jobId: number }
  | { type: 'sessions-loaded'; requestId: number; sessions: LoadedSession[] }
  | { type: 'sessions-failed'; requestId: number; message: string };
