// An inference worker thread. onnxruntime-node's session.run blocks the thread that calls it,
// so it lives here, off the event loop that answers HTTP; so does tokenization. Each worker opens
// one session and loads one tokenizer per variant, warms each session up, and then runs one batch
// at a time as the pool sends them: texts in, tokenized and padded here, probabilities out.
import { parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { readFile } from 'node:fs/promises';
import { softmaxRows } from '../probabilities.js';
import { decodeModel, encodeModel } from '../pipeline/precision/onnx-edit.js';
import { cpuInt8Weights, int8WeightsOf, setInt8Weights, type Int8Weights } from '../pipeline/precision/int8-weights.js';
import { epochMs } from './clock.js';
import { encodeBatch, loadTextTokenizer, type TextTokenizer } from './tokenize.js';
import type { Device } from './config.js';
import type { AddSessionsRequest, LoadedSession, MainToWorker, RunRequest, SessionSpec, WorkerInit, WorkerToMain } from './worker-protocol.js';

const init = workerData as WorkerInit;
const port = parentPort!;
// ORT prints its own error line when an execution provider library is missing; the pool logs
// one clear warning about the fallback instead, and real failures still throw.
ort.env.logLevel = 'fatal';

const sessions = new Map<string, { session: ort.InferenceSession; numLabels: number; tokenizer: TextTokenizer; maxLength: number }>();
/** Devices that failed in this worker already: do not probe them again for the next variant. */
const unavailable = new Map<Device, string>();
const sleeper = new Int32Array(new SharedArrayBuffer(4));

/**
 * TEST ONLY: SLIM_FAULT_INJECT=<crash|throw|hang>:<variant>:<n> makes this worker fail on its
 * n-th batch (1-based) of <variant> (a variant name such as k1, or model/variant): `crash` exits
 * the thread, `throw` raises an uncaught exception, `hang` never answers. Only worker 0 as
 * started with the server (generation 0) fails, so its replacement and the other workers serve
 * and a test knows which worker dies. Read nowhere else. Unset, it costs one test per batch.
 */
interface Fault {
  kind: 'crash' | 'throw' | 'hang';
  variant: string;
  nth: number;
}
function parseFault(raw: string | undefined): Fault | null {
  if (!raw || init.generation !== 0 || init.workerIndex !== 0) return null;
  const m = /^(crash|throw|hang):([^:]+):([1-9]\d*)$/.exec(raw.trim());
  if (!m) throw new Error(`SLIM_FAULT_INJECT: expected <crash|throw|hang>:<variant>:<n>, got ${JSON.stringify(raw)}`);
  return { kind: m[1] as Fault['kind'], variant: m[2]!, nth: Number(m[3]) };
}
const fault = parseFault(process.env.SLIM_FAULT_INJECT);
const faultRuns = new Map<string, number>();

/** True when the batch must not be answered (the thread is about to die). */
function injectFault(key: string): boolean {
  if (!fault || (key !== fault.variant && !key.endsWith(`/${fault.variant}`))) return false;
  const n = (faultRuns.get(key) ?? 0) + 1;
  faultRuns.set(key, n);
  if (n !== fault.nth) return false;
  if (fault.kind === 'crash') process.exit(70); // in a worker: ends this thread only
  if (fault.kind === 'hang') for (;;) Atomics.wait(sleeper, 0, 0, 60_000); // never answers
  // Uncaught (outside run's try/catch): the thread's 'error' event, then its exit.
  queueMicrotask(() => {
    throw new Error(`injected fault: ${key} batch ${n}`);
  });
  return true;
}

function post(msg: WorkerToMain, transfer: ArrayBuffer[] = []): void {
  port.postMessage(msg, transfer);
}

function sessionOptions(device: Device): ort.InferenceSession.SessionOptions {
  return {
    // Only the requested provider (plus cpu for ops it lacks). onnxruntime-node throws rather than
    // falling back when a provider's libraries are missing; we catch that below.
    executionProviders: device === 'cpu' ? ['cpu'] : [device, 'cpu'],
    intraOpNumThreads: init.intraOpThreads,
    interOpNumThreads: init.interOpThreads,
    graphOptimizationLevel: init.graphOptimization,
    executionMode: 'sequential',
    // `run` (default): threads spin during a run and stop when it returns (force_spinning_stop),
    // so this session's threads do not take the cores from the next session's run or the
    // HTTP thread; onnxruntime's default keeps them spinning for a while after the run.
    extra: { session: { intra_op: { allow_spinning: init.spinning === 'off' ? '0' : '1' }, force_spinning_stop: init.spinning === 'run' ? '1' : '0' } },
  };
}

function inputs(rows: number, cols: number, ids: BigInt64Array, mask: BigInt64Array): Record<string, ort.Tensor> {
  return {
    input_ids: new ort.Tensor('int64', ids, [rows, cols]),
    attention_mask: new ort.Tensor('int64', mask, [rows, cols]),
  };
}

/** One batch's model outputs: the raw logits and their softmax, both rows x numLabels. */
interface SessionOutput {
  logits: Float32Array;
  probabilities: Float32Array;
}

async function runSession(key: string, rows: number, cols: number, ids: BigInt64Array, mask: BigInt64Array): Promise<SessionOutput> {
  const entry = sessions.get(key);
  if (!entry) throw new Error(`no session for ${key}`);
  const out = await entry.session.run(inputs(rows, cols, ids, mask));
  const logits = out.logits;
  if (!logits || logits.type !== 'float32') throw new Error(`${key}: the model has no float32 "logits" output`);
  const dims = logits.dims;
  if (dims.length !== 2 || dims[0] !== rows || dims[1] !== entry.numLabels) {
    throw new Error(`${key}: logits have shape [${dims.join(', ')}], expected [${rows}, ${entry.numLabels}] (one column per manifest label)`);
  }
  // A copy: onnxruntime's output buffer is not ours to transfer. The logits travel beside the
  // probabilities for the client routes that answer them (HF function_to_apply, TEI raw_scores).
  const raw = Float32Array.from(logits.data as Float32Array);
  return { logits: raw, probabilities: softmaxRows(raw, rows, entry.numLabels) };
}

/** The int8 weight storage this worker runs (--int8-weights; auto: the one this CPU runs fastest exactly). */
const int8Target: Int8Weights | undefined =
  init.int8Weights === 'auto' ? cpuInt8Weights().weights : init.int8Weights === 'as-written' ? undefined : init.int8Weights;

/**
 * What a session opens: the file itself, or for an int8 variant whose weights are stored the
 * other way than this CPU wants (int8-weights.ts), the model rewritten to that storage in
 * memory: the same integers, so the same answers, on the kernel that is fast and exact here.
 */
async function sessionSource(spec: SessionSpec): Promise<{ source: string | Uint8Array; int8Weights?: LoadedSession['int8Weights'] }> {
  if (spec.precision !== 'int8') return { source: spec.onnxPath };
  let model;
  try {
    model = decodeModel(await readFile(spec.onnxPath));
  } catch {
    return { source: spec.onnxPath }; // unreadable here: onnxruntime opens the path and says why, naming the file
  }
  const written = model.graph ? int8WeightsOf(model) : undefined;
  if (!written || !int8Target || written === int8Target) return { source: spec.onnxPath, ...(written ? { int8Weights: { file: written, run: written } } : {}) };
  const { rewritten, kept } = setInt8Weights(model, int8Target);
  if (rewritten === 0 || kept.length > 0) return { source: spec.onnxPath, int8Weights: { file: written, run: written } };
  return { source: encodeModel(model), int8Weights: { file: written, run: int8Target } };
}

async function openSession(spec: SessionSpec): Promise<LoadedSession> {
  const started = performance.now();
  // The tokenizer first: a broken tokenizer.json fails the variant before a session is opened.
  const tokenizer = await loadTextTokenizer(spec.tokenizerDir);
  const { source, int8Weights } = await sessionSource(spec);
  const create = (options: ort.InferenceSession.SessionOptions) =>
    typeof source === 'string' ? ort.InferenceSession.create(source, options) : ort.InferenceSession.create(source, options);
  let device = spec.device;
  let fallbackReason = unavailable.get(device);
  let session: ort.InferenceSession | undefined;
  if (device !== 'cpu' && fallbackReason === undefined) {
    try {
      session = await create(sessionOptions(device));
    } catch (err) {
      fallbackReason = (err as Error).message.split('\n')[0]!.slice(0, 300);
      unavailable.set(device, fallbackReason);
    }
  }
  if (!session) {
    device = 'cpu';
    try {
      session = await create(sessionOptions('cpu'));
    } catch (err) {
      // onnxruntime's message (a truncated or corrupt file) does not always say which file.
      const why = (err as Error).message;
      throw new Error(why.includes(spec.onnxPath) ? why : `${spec.onnxPath}: onnxruntime cannot load the model: ${why}`);
    }
  }
  for (const name of ['input_ids', 'attention_mask']) {
    if (!session.inputNames.includes(name)) throw new Error(`${spec.onnxPath}: no input named ${name} (inputs: ${session.inputNames.join(', ')})`);
  }
  if (!session.outputNames.includes('logits')) throw new Error(`${spec.onnxPath}: no output named logits (outputs: ${session.outputNames.join(', ')})`);
  sessions.set(spec.key, { session, numLabels: spec.numLabels, tokenizer, maxLength: spec.maxLength });
  tokenizer.encode('warm up'); // the first encode compiles the tokenizer's code paths
  const loaded = performance.now();
  for (const [rows, cols] of spec.warmupShapes) {
    const ids = new BigInt64Array(rows * cols).fill(1n);
    const mask = new BigInt64Array(rows * cols).fill(1n);
    await runSession(spec.key, rows, cols, ids, mask);
  }
  return {
    key: spec.key,
    requested: spec.device,
    device,
    ...(device !== spec.device ? { fallbackReason: fallbackReason ?? 'unknown' } : {}),
    ...(int8Weights ? { int8Weights } : {}),
    loadMs: loaded - started,
    warmupMs: performance.now() - loaded,
  };
}

async function load(): Promise<void> {
  try {
    const loaded: LoadedSession[] = [];
    for (const spec of init.sessions) loaded.push(await openSession(spec));
    post({ type: 'loaded', sessions: loaded });
  } catch (err) {
    post({ type: 'load-failed', message: (err as Error).message });
  }
}

async function run(msg: RunRequest): Promise<void> {
  // A batch that waited behind another may have outlived every request in it.
  if (epochMs() > msg.expiresAt) {
    post({ type: 'run-expired', jobId: msg.jobId });
    return;
  }
  try {
    const startedAt = epochMs();
    const entry = sessions.get(msg.key);
    if (!entry) throw new Error(`no session for ${msg.key}`);
    const tokenizeStarted = performance.now();
    const { inputIds, attentionMask, paddedLength, tokenCounts } = encodeBatch(entry.tokenizer, msg.texts, entry.maxLength);
    const started = performance.now();
    // Test-only slowdown; blocks like a long session.run would, and counts as inference time.
    if (init.testDelayMs > 0) Atomics.wait(sleeper, 0, 0, init.testDelayMs);
    if (fault && injectFault(msg.key)) return;
    const rows = msg.texts.length;
    const { logits, probabilities } = await runSession(msg.key, rows, paddedLength, inputIds, attentionMask);
    const inferenceMs = performance.now() - started;
    post(
      {
        type: 'result',
        jobId: msg.jobId,
        probabilities,
        logits,
        numLabels: entry.numLabels,
        tokenCounts,
        paddedLength,
        tokenizeMs: started - tokenizeStarted,
        inferenceMs,
        startedAt,
      },
      [probabilities.buffer as ArrayBuffer, logits.buffer as ArrayBuffer, tokenCounts.buffer as ArrayBuffer],
    );
  } catch (err) {
    post({ type: 'run-failed', jobId: msg.jobId, message: (err as Error).message });
  }
}

/** Hot reload: open and warm more sessions; on any failure none of them stays open. */
async function addSessions(msg: AddSessionsRequest): Promise<void> {
  try {
    const loaded: LoadedSession[] = [];
    for (const spec of msg.sessions) loaded.push(await openSession(spec));
    post({ type: 'sessions-loaded', requestId: msg.requestId, sessions: loaded });
  } catch (err) {
    await dropSessions(msg.sessions.map((s) => s.key));
    post({ type: 'sessions-failed', requestId: msg.requestId, message: (err as Error).message });
  }
}

/** Release sessions (unknown keys are ignored: a replacement worker may never have had them). */
async function dropSessions(keys: string[]): Promise<void> {
  for (const key of keys) {
    const entry = sessions.get(key);
    if (!entry) continue;
    sessions.delete(key);
    await entry.session.release().catch(() => {});
  }
}

async function close(): Promise<void> {
  for (const { session } of sessions.values()) await session.release();
  sessions.clear();
  port.close(); // nothing left to wait for: the thread ends
}

// Messages are handled strictly one after another. session.run defers its native call to a
// setImmediate, so without this chain a second message could start (or a close release the
// session) before the first run has even begun.
let chain: Promise<void> = Promise.resolve();
port.on('message', (msg: MainToWorker) => {
  chain = chain.then(() => {
    switch (msg.type) {
      case 'run':
        return run(msg);
      case 'add-sessions':
        return addSessions(msg);
      case 'drop-sessions':
        return dropSessions(msg.keys);
      default:
        return close();
    }
  });
});

void load();
