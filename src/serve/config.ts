// Configuration of `slim serve`: one JSON file (--config), overridden by flags, overridden by
// SLIM_* environment variables. Every key is declared once in OPTIONS with its three spellings,
// so the parser, the error messages, `--help` and docs/serving.md cannot disagree.
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';

export const DEVICES = ['cpu', 'cuda', 'webgpu'] as const;
export type Device = (typeof DEVICES)[number];

export const GRAPH_OPTIMIZATION_LEVELS = ['disabled', 'basic', 'extended', 'all'] as const;
export type GraphOptimizationLevel = (typeof GRAPH_OPTIMIZATION_LEVELS)[number];
export const SPINNING_MODES = ['run', 'always', 'off'] as const;
export type SpinningMode = (typeof SPINNING_MODES)[number];
export const INT8_WEIGHTS_MODES = ['auto', 'int8', 'uint8', 'as-written'] as const;
export type Int8WeightsMode = (typeof INT8_WEIGHTS_MODES)[number];

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const LOG_FORMATS = ['json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export interface ServeConfig {
  port: number;
  host: string;
  /** The model repository directory (absolute after loading). */
  models: string;
  device: Device;
  /** Per-model device overrides: model name -> device. */
  devices: Record<string, Device>;
  /**
   * onnxruntime threads per session. spinning: when a session's intra-op threads busy-wait for
   * work: `run` during a run only (they stop when it returns), `always` also after it
   * (onnxruntime's default), `off` never. A worker holds one session per variant and runs them in
   * turn; with `always`, one session's spinning threads slowed the next session's run 1.7-2.2x.
   */
  threads: { intraOp: number; interOp: number; spinning: SpinningMode };
  graphOptimization: GraphOptimizationLevel;
  /** int8 variants' weight storage in the sessions (src/pipeline/precision/int8-weights.ts): auto picks this CPU's fast exact kernel. */
  int8Weights: Int8WeightsMode;
  /** Server processes on the one port (node:cluster), each with its own inference workers (1: no cluster). */
  processes: number;
  workers: number;
  batching: { maxBatchSize: number; maxBatchTokens: number; maxQueueDelayMs: number; maxQueued: number };
  requestTimeoutMs: number;
  maxInputs: number;
  bodyLimit: number;
  /** Most open client connections; past it a new connection gets 429 TOO_MANY_CONNECTIONS and is closed (0: no limit). */
  maxConnections: number;
  /** Most open connections from one client address (IPv6: per /64); past it 429 TOO_MANY_CONNECTIONS (0: no limit). */
  maxConnectionsPerClient: number;
  /** A request's headers and body must arrive within this long of its first byte; else 408 REQUEST_TIMEOUT, closed. */
  receiveTimeoutMs: number;
  adminToken: string | null;
  /** HMAC key that signs /classify request ids so feedback works on any replica (null: ids kept in memory). */
  feedbackSecret: string | null;
  /** Bearer token POST /feedback requires (null: none). */
  feedbackToken: string | null;
  /**
   * How long an answered request takes feedback, how many are kept in memory, the online-accuracy
   * window, and POST /feedback requests per client per rateLimit.windowMs (0: no limit).
   */
  feedback: { ttlMs: number; capacity: number; window: number; rateLimit: number };
  /** How often models/<model>/routing.json is re-read (0: never). */
  routingReloadMs: number;
  /** How often the model repository is polled for new, rebuilt or removed variants (0: only POST /admin/reload). */
  modelReloadMs: number;
  logLevel: LogLevel;
  /** json: one JSON object per line (for collectors); pretty: coloured, readable lines (pino-pretty) for a terminal. */
  logFormat: LogFormat;
  /** One log line per answered request (method, URL, status, time, model, variant). */
  accessLog: boolean;
  /** Where routing.json files live: <routingDir>/<model>/routing.json (null: models/<model>/routing.json). */
  routingDir: string | null;
  shutdownTimeoutMs: number;
  /** A batch unanswered this long after it started means its worker hangs: replaced, 503. */
  batchTimeoutMs: number;
  /**
   * Per-client (IP) request limits per time window, by @fastify/rate-limit. max 0: off.
   * routes: per-route overrides, "<url>" or "<METHOD> <url>" as registered -> max (0: exempt).
   */
  rateLimit: { max: number; windowMs: number; routes: Record<string, number> };
}

/** A value that could not be read: the message says what was expected. */
class BadValue extends Error {}

type Parse = (raw: unknown) => unknown;

interface OptionSpec {
  key: string;
  flag: string;
  env: string;
  description: string;
  /** Shown in help; the real default comes from defaultConfig(). */
  defaultText: string;
  /** Reads a value from JSON (any type) or from a flag/env string. */
  parse: Parse;
}

function integer(min: number, max = Number.MAX_SAFE_INTEGER): Parse {
  return (raw) => {
    const n = typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw.trim()) : raw;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
      throw new BadValue(`expected an integer from ${min}${max === Number.MAX_SAFE_INTEGER ? ' up' : ` to ${max}`}`);
    }
    return n;
  };
}

function oneOf<T extends string>(values: readonly T[]): Parse {
  return (raw) => {
    if (typeof raw !== 'string' || !values.includes(raw as T)) throw new BadValue(`expected one of ${values.join(', ')}`);
    return raw;
  };
}

function nonEmptyString(raw: unknown): string {
  if (typeof raw !== 'string' || raw.trim() === '') throw new BadValue('expected a non-empty string');
  return raw;
}

/** true/false in the file; true, false, 1 or 0 as a value; a boolean flag alone means true. */
function boolean(raw: unknown): boolean {
  if (typeof raw === 'boolean') return raw;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw new BadValue('expected true or false');
}

function directoryOrNone(raw: unknown): string | null {
  return raw === null ? null : nonEmptyString(raw);
}

function token(raw: unknown): string | null {
  if (raw === null) return null;
  const s = nonEmptyString(raw);
  if (s.length < 8) throw new BadValue('expected a token of at least 8 characters');
  return s;
}

/** `{"/classify": 100}` in the file; `/classify=100,PUT /routing/:model=5` as a flag or variable. */
function routeLimits(raw: unknown): Record<string, number> {
  const count = integer(0);
  let entries: [string, unknown][];
  if (typeof raw === 'string') {
    entries = raw
      .split(',')
      .filter((s) => s.trim() !== '')
      .map((pair) => {
        const eq = pair.lastIndexOf('=');
        if (eq <= 0) throw new BadValue('expected route=max pairs separated by commas');
        return [pair.slice(0, eq).trim(), pair.slice(eq + 1).trim()];
      });
  } else if (raw !== null && typeof raw === 'object' && !Array.isArray(raw)) {
    entries = Object.entries(raw);
  } else {
    throw new BadValue('expected an object of route -> max requests per window');
  }
  const out: Record<string, number> = {};
  for (const [route, max] of entries) {
    if (!/^([A-Z]+ )?\/\S*$/.test(route)) throw new BadValue(`route "${route}" is not "/path" or "METHOD /path"`);
    out[route] = count(max) as number;
  }
  return out;
}

/** `{"spam": "cuda"}` in the file; `spam=cuda,news=cpu` as a flag or variable. */
function deviceMap(raw: unknown): Record<string, Device> {
  const parseDevice = oneOf(DEVICES);
  let entries: [string, unknown][];
  if (typeof raw === 'string') {
    entries = raw
      .split(',')
      .filter((s) => s.trim() !== '')
      .map((pair) => {
        const eq = pair.indexOf('=');
        if (eq <= 0) throw new BadValue('expected model=device pairs separated by commas');
        return [pair.slice(0, eq).trim(), pair.slice(eq + 1).trim()];
      });
  } else if (raw !== null && typeof raw === 'object' && !Array.isArray(raw)) {
    entries = Object.entries(raw);
  } else {
    throw new BadValue('expected an object of model -> device');
  }
  const out: Record<string, Device> = {};
  for (const [model, device] of entries) out[model] = parseDevice(device) as Device;
  return out;
}

export const OPTIONS: readonly OptionSpec[] = [
  { key: 'port', flag: '--port', env: 'SLIM_PORT', parse: integer(0, 65535), defaultText: '8080', description: 'TCP port (0 picks a free one)' },
  { key: 'host', flag: '--host', env: 'SLIM_HOST', parse: nonEmptyString, defaultText: '127.0.0.1', description: 'interface to listen on (0.0.0.0 for all)' },
  {
    key: 'models',
    flag: '--models',
    env: 'SLIM_MODELS',
    parse: nonEmptyString,
    defaultText: 'models',
    description: 'model repository directory (relative to the working directory)',
  },
  {
    key: 'device',
    flag: '--device',
    env: 'SLIM_DEVICE',
    parse: oneOf(DEVICES),
    defaultText: 'cpu',
    description: 'execution provider for every model: cpu, cuda or webgpu (falls back to cpu with one warning)',
  },
  {
    key: 'devices',
    flag: '--devices',
    env: 'SLIM_DEVICES',
    parse: deviceMap,
    defaultText: '{}',
    description: 'per-model device overrides: {"spam":"cuda"} or spam=cuda,news=cpu',
  },
  {
    key: 'threads.intraOp',
    flag: '--intra-op-threads',
    env: 'SLIM_INTRA_OP_THREADS',
    parse: integer(1, 256),
    defaultText: 'cores / workers',
    description: 'onnxruntime intra-op threads per session',
  },
  {
    key: 'threads.interOp',
    flag: '--inter-op-threads',
    env: 'SLIM_INTER_OP_THREADS',
    parse: integer(1, 256),
    defaultText: '1',
    description: 'onnxruntime inter-op threads per session',
  },
  {
    key: 'threads.spinning',
    flag: '--intra-op-spinning',
    env: 'SLIM_INTRA_OP_SPINNING',
    parse: oneOf(SPINNING_MODES),
    defaultText: 'run',
    description:
      "when a session's intra-op threads busy-wait for work: run = during a run only (stopped when it returns, so they do not slow the next variant's run or the HTTP thread), always = also after it (onnxruntime's default), off = never",
  },
  {
    key: 'graphOptimization',
    flag: '--graph-optimization',
    env: 'SLIM_GRAPH_OPTIMIZATION',
    parse: oneOf(GRAPH_OPTIMIZATION_LEVELS),
    defaultText: 'all',
    description: 'onnxruntime graph optimisation level',
  },
  {
    key: 'int8Weights',
    flag: '--int8-weights',
    env: 'SLIM_INT8_WEIGHTS',
    parse: oneOf(INT8_WEIGHTS_MODES),
    defaultText: 'auto',
    description:
      "int8 variants' weight storage in memory: auto = int8 on x86 with VNNI (exact, fastest), uint8 on x86 without it (int8 would saturate there), as written elsewhere; int8/uint8 force one; as-written never rewrites (the answers are the same either way)",
  },
  {
    key: 'processes',
    flag: '--processes',
    env: 'SLIM_PROCESSES',
    parse: integer(1, 256),
    defaultText: 'max(1, cores / 2)',
    description: 'server processes sharing the port (node:cluster), each parsing HTTP and running its own workers; metrics, routing and feedback are shared',
  },
  {
    key: 'workers',
    flag: '--workers',
    env: 'SLIM_WORKERS',
    parse: integer(1, 64),
    defaultText: 'max(1, cores / 2 / processes)',
    description: 'worker threads per process; each holds one session per variant and runs one batch at a time',
  },
  {
    key: 'batching.maxBatchSize',
    flag: '--max-batch-size',
    env: 'SLIM_MAX_BATCH_SIZE',
    parse: integer(1, 4096),
    defaultText: '32',
    description: 'most inputs in one batch',
  },
  {
    key: 'batching.maxBatchTokens',
    flag: '--max-batch-tokens',
    env: 'SLIM_MAX_BATCH_TOKENS',
    parse: integer(1),
    defaultText: '8192',
    description: 'most padded tokens (longest length x batch size) in one batch; a single input always runs',
  },
  {
    key: 'batching.maxQueueDelayMs',
    flag: '--max-queue-delay-ms',
    env: 'SLIM_MAX_QUEUE_DELAY_MS',
    parse: integer(0, 10_000),
    defaultText: '2',
    description: 'how long a batch that is not full waits for more inputs',
  },
  {
    key: 'batching.maxQueued',
    flag: '--max-queued',
    env: 'SLIM_MAX_QUEUED',
    parse: integer(1),
    defaultText: '1024',
    description: 'most inputs waiting per variant; past it requests get 429',
  },
  {
    key: 'requestTimeoutMs',
    flag: '--request-timeout-ms',
    env: 'SLIM_REQUEST_TIMEOUT_MS',
    parse: integer(1),
    defaultText: '10000',
    description: 'deadline of a request from arrival; past it 504',
  },
  {
    key: 'maxInputs',
    flag: '--max-inputs',
    env: 'SLIM_MAX_INPUTS',
    parse: integer(1),
    defaultText: '64',
    description: 'most inputs in one request; past it 413 (must be <= batching.maxQueued)',
  },
  {
    key: 'maxConnections',
    flag: '--max-connections',
    env: 'SLIM_MAX_CONNECTIONS',
    parse: integer(0),
    defaultText: '1024',
    description: 'most open client connections; a connection past it gets 429 and is closed before any request is read (0: no limit)',
  },
  {
    key: 'maxConnectionsPerClient',
    flag: '--max-connections-per-client',
    env: 'SLIM_MAX_CONNECTIONS_PER_CLIENT',
    parse: integer(0),
    defaultText: '256',
    description:
      'most open connections from one client address (IPv6: per /64); past it 429 like maxConnections (0: no limit; behind a proxy that is one address, so raise it or set 0 there)',
  },
  {
    key: 'receiveTimeoutMs',
    flag: '--receive-timeout-ms',
    env: 'SLIM_RECEIVE_TIMEOUT_MS',
    parse: integer(100, 3_600_000),
    defaultText: '30000',
    description: "a request's headers and body must arrive within this long; a slower client gets 408 REQUEST_TIMEOUT and is disconnected",
  },
  {
    key: 'bodyLimit',
    flag: '--body-limit',
    env: 'SLIM_BODY_LIMIT',
    parse: integer(64),
    defaultText: '1048576',
    description: 'largest request body in bytes; past it 413',
  },
  {
    key: 'adminToken',
    flag: '--admin-token',
    env: 'SLIM_ADMIN_TOKEN',
    parse: token,
    defaultText: 'none',
    description: 'bearer token for admin endpoints (PUT /routing); none disables them',
  },
  {
    key: 'feedbackSecret',
    flag: '--feedback-secret',
    env: 'SLIM_FEEDBACK_SECRET',
    parse: token,
    defaultText: 'none',
    description: 'HMAC-SHA256 key: request ids carry the prediction, signed, so POST /feedback works on any replica; none keeps them in memory',
  },
  {
    key: 'feedbackToken',
    flag: '--feedback-token',
    env: 'SLIM_FEEDBACK_TOKEN',
    parse: token,
    defaultText: 'none',
    description: 'bearer token POST /feedback requires (feedback decides A/B comparisons); none: open to anyone who has a request_id',
  },
  {
    key: 'feedback.rateLimit',
    flag: '--feedback-rate-limit',
    env: 'SLIM_FEEDBACK_RATE_LIMIT',
    parse: integer(0),
    defaultText: '600',
    description: 'POST /feedback requests per client address per rateLimit.windowMs; past it 429 (0: no limit; rateLimit.routes "POST /feedback" overrides it)',
  },
  {
    key: 'feedback.ttlMs',
    flag: '--feedback-ttl-ms',
    env: 'SLIM_FEEDBACK_TTL_MS',
    parse: integer(1),
    defaultText: '3600000',
    description: 'feedback is accepted this long after the answer (then 404)',
  },
  {
    key: 'feedback.capacity',
    flag: '--feedback-capacity',
    env: 'SLIM_FEEDBACK_CAPACITY',
    parse: integer(1),
    defaultText: '100000',
    description: 'answered requests kept in memory for feedback (oldest evicted)',
  },
  {
    key: 'feedback.window',
    flag: '--feedback-window',
    env: 'SLIM_FEEDBACK_WINDOW',
    parse: integer(1),
    defaultText: '1000',
    description: 'online accuracy: the last N feedback outcomes per variant',
  },
  {
    key: 'routingReloadMs',
    flag: '--routing-reload-ms',
    env: 'SLIM_ROUTING_RELOAD_MS',
    parse: integer(0),
    defaultText: '1000',
    description: 'how often models/<model>/routing.json is re-read; a changed valid file replaces the table (0: never)',
  },
  {
    key: 'modelReloadMs',
    flag: '--model-reload-ms',
    env: 'SLIM_MODEL_RELOAD_MS',
    parse: integer(0),
    defaultText: '0 (off)',
    description: 'how often the model repository is polled for new, rebuilt or removed variants (hot reload); 0: only POST /admin/reload',
  },
  {
    key: 'logLevel',
    flag: '--log-level',
    env: 'SLIM_LOG_LEVEL',
    parse: oneOf(LOG_LEVELS),
    defaultText: 'info',
    description: 'log level (JSON lines on stdout)',
  },
  {
    key: 'logFormat',
    flag: '--log-format',
    env: 'SLIM_LOG_FORMAT',
    parse: oneOf(LOG_FORMATS),
    defaultText: 'json',
    description: 'json: one JSON object per line (log collectors); pretty: readable coloured lines for a terminal',
  },
  {
    key: 'accessLog',
    flag: '--access-log',
    env: 'SLIM_ACCESS_LOG',
    parse: boolean,
    defaultText: 'false',
    description: 'one log line per answered request: method, URL, status, milliseconds, model, variant (the flag alone turns it on)',
  },
  {
    key: 'routingDir',
    flag: '--routing-dir',
    env: 'SLIM_ROUTING_DIR',
    parse: directoryOrNone,
    defaultText: 'none',
    description: 'read and write routing files as <dir>/<model>/routing.json instead of models/<model>/routing.json (e.g. a mounted ConfigMap)',
  },
  {
    key: 'batchTimeoutMs',
    flag: '--batch-timeout-ms',
    env: 'SLIM_BATCH_TIMEOUT_MS',
    parse: integer(1),
    defaultText: '30000',
    description: 'a batch unanswered this long means its worker hangs: the worker is replaced and the batch answered 503',
  },
  {
    key: 'rateLimit.max',
    flag: '--rate-limit-max',
    env: 'SLIM_RATE_LIMIT_MAX',
    parse: integer(0),
    defaultText: '0 (off)',
    description: 'requests per client IP per window on every route except health; past it 429 (0: no limit)',
  },
  {
    key: 'rateLimit.windowMs',
    flag: '--rate-limit-window-ms',
    env: 'SLIM_RATE_LIMIT_WINDOW_MS',
    parse: integer(1),
    defaultText: '60000',
    description: 'the rate-limit window',
  },
  {
    key: 'rateLimit.routes',
    flag: '--rate-limit-routes',
    env: 'SLIM_RATE_LIMIT_ROUTES',
    parse: routeLimits,
    defaultText: '{}',
    description: 'per-route limits: {"/classify":100,"PUT /routing/:model":5} or /classify=100,...; 0 exempts a route',
  },
  {
    key: 'shutdownTimeoutMs',
    flag: '--shutdown-timeout-ms',
    env: 'SLIM_SHUTDOWN_TIMEOUT_MS',
    parse: integer(0),
    defaultText: 'requestTimeoutMs + 5000',
    description: 'on SIGTERM, longest wait for accepted requests before exiting anyway',
  },
];

/** Flags that may stand alone (`--access-log` = `--access-log true`). */
const BOOLEAN_FLAGS = new Set(OPTIONS.filter((o) => o.parse === boolean).map((o) => o.flag));

export const CONFIG_FLAG = '--config';
export const CONFIG_ENV = 'SLIM_CONFIG';

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`slim serve: configuration refused:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export function defaultConfig(cores = availableParallelism()): ServeConfig {
  const processes = defaultProcesses(cores);
  const workers = defaultWorkers(cores, processes);
  return {
    port: 8080,
    host: '127.0.0.1',
    models: 'models',
    device: 'cpu',
    devices: {},
    threads: { intraOp: Math.max(1, Math.floor(cores / (workers * processes))), interOp: 1, spinning: 'run' },
    graphOptimization: 'all',
    int8Weights: 'auto',
    processes,
    workers,
    batching: { maxBatchSize: 32, maxBatchTokens: 8192, maxQueueDelayMs: 2, maxQueued: 1024 },
    requestTimeoutMs: 10_000,
    maxInputs: 64,
    bodyLimit: 1_048_576,
    maxConnections: 1024,
    maxConnectionsPerClient: 256,
    receiveTimeoutMs: 30_000,
    adminToken: null,
    feedbackSecret: null,
    feedbackToken: null,
    feedback: { ttlMs: 3_600_000, capacity: 100_000, window: 1000, rateLimit: 600 },
    routingReloadMs: 1000,
    modelReloadMs: 0,
    logLevel: 'info',
    logFormat: 'json',
    accessLog: false,
    routingDir: null,
    shutdownTimeoutMs: -1, // resolved from requestTimeoutMs below unless set
    batchTimeoutMs: 30_000,
    rateLimit: { max: 0, windowMs: 60_000, routes: {} },
  };
}

/**
 * One server process per 2 cores: each process's event loop parses HTTP and JSON for its share of
 * the connections, and its inference workers take the other core (measured in
 * loadtest/results/processes.md). On 2 cores that is 1: the same single process as before.
 */
export function defaultProcesses(cores: number): number {
  return Math.max(1, Math.floor(cores / 2));
}

/** Inference workers per process: the cores / 2 workers of one process, shared among the processes. */
export function defaultWorkers(cores: number, processes: number): number {
  return Math.max(1, Math.floor(cores / 2 / processes));
}

/** Keys whose value is an object in the file but a single option (not a group of options). */
const LEAF_OBJECT_KEYS = new Set(['devices']);

function setPath(target: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split('.');
  let node = target;
  for (const p of parts.slice(0, -1)) node = node[p] as Record<string, unknown>;
  node[parts.at(-1)!] = value;
}

/** Flatten a config file object to dotted keys, naming every key that is not an option. */
function flattenFile(obj: unknown, prefix: string, out: Map<string, unknown>, problems: string[], file: string): void {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    problems.push(`${file}: expected a JSON object${prefix ? ` at ${prefix.slice(0, -1)}` : ''}`);
    return;
  }
  const known = new Set(OPTIONS.map((o) => o.key));
  const groups = new Set(OPTIONS.map((o) => o.key.split('.').slice(0, -1).join('.')).filter((g) => g !== ''));
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix + k;
    if (known.has(key)) out.set(key, v);
    else if (groups.has(key) && !LEAF_OBJECT_KEYS.has(key)) flattenFile(v, `${key}.`, out, problems, file);
    else problems.push(`unknown key "${key}" in ${file}`);
  }
}

export interface LoadConfigInput {
  argv?: readonly string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** In-process overrides (tests, embedding), applied last, by dotted key. */
  overrides?: Record<string, unknown>;
}

/**
 * Build the configuration from defaults < file < flags < environment < overrides. Every
 * problem is collected and reported at once, each naming the key and the form it came in.
 */
export function loadConfig(input: LoadConfigInput = {}): ServeConfig {
  const argv = input.argv ?? [];
  const env = input.env ?? process.env;
  const cwd = input.cwd ?? process.cwd();
  const problems: string[] = [];
  const byFlag = new Map(OPTIONS.map((o) => [o.flag, o]));

  // Flags: --name value | --name=value.
  const flagValues = new Map<string, string>();
  let configPath: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) {
      problems.push(`unexpected argument "${arg}"`);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    let value: string | undefined = eq > 0 ? arg.slice(eq + 1) : argv[i + 1];
    if (eq < 0) {
      if (BOOLEAN_FLAGS.has(name)) value = value === 'true' || value === 'false' ? (i++, value) : 'true';
      else if (value === undefined || value.startsWith('--')) value = undefined;
      else i++;
    }
    if (name !== CONFIG_FLAG && !byFlag.has(name)) {
      problems.push(`unknown flag ${name}`);
      continue;
    }
    if (value === undefined) {
      problems.push(`flag ${name} needs a value`);
      continue;
    }
    if (name === CONFIG_FLAG) configPath = value;
    else flagValues.set(name, value);
  }
  configPath = env[CONFIG_ENV] ?? configPath;

  const config = defaultConfig() as unknown as Record<string, unknown>;
  const explicit = new Set<string>();
  const apply = (opt: OptionSpec, raw: unknown, source: string): void => {
    try {
      setPath(config, opt.key, opt.parse(raw));
      explicit.add(opt.key);
    } catch (err) {
      if (!(err instanceof BadValue)) throw err;
      problems.push(`bad value for ${opt.key} (${source}): ${err.message}, got ${JSON.stringify(raw)}`);
    }
  };

  if (configPath !== undefined) {
    const file = resolve(cwd, configPath);
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      problems.push(`config file ${file}: ${(err as Error).message}`);
    }
    if (parsed !== undefined) {
      const values = new Map<string, unknown>();
      flattenFile(parsed, '', values, problems, file);
      for (const opt of OPTIONS) if (values.has(opt.key)) apply(opt, values.get(opt.key), `in ${file}`);
    }
  }
  for (const opt of OPTIONS) if (flagValues.has(opt.flag)) apply(opt, flagValues.get(opt.flag), `flag ${opt.flag}`);
  for (const opt of OPTIONS) if (env[opt.env] !== undefined) apply(opt, env[opt.env], `environment ${opt.env}`);
  const known = new Map(OPTIONS.map((o) => [o.key, o]));
  for (const [key, raw] of Object.entries(input.overrides ?? {})) {
    const opt = known.get(key);
    if (!opt) problems.push(`unknown key "${key}" in overrides`);
    else apply(opt, raw, 'override');
  }

  const result = config as unknown as ServeConfig;
  // Workers follow processes and threads follow both unless set: processes x workers x intraOp
  // should not oversubscribe the cores.
  if (!explicit.has('workers')) result.workers = defaultWorkers(availableParallelism(), result.processes);
  if (!explicit.has('threads.intraOp')) {
    result.threads.intraOp = Math.max(1, Math.floor(availableParallelism() / (result.workers * result.processes)));
  }
  if (!explicit.has('shutdownTimeoutMs')) result.shutdownTimeoutMs = result.requestTimeoutMs + 5_000;
  if (problems.length === 0 && result.maxInputs > result.batching.maxQueued) {
    problems.push(
      `bad value for maxInputs: ${result.maxInputs} is more than batching.maxQueued (${result.batching.maxQueued}); such a request could never be queued`,
    );
  }
  if (problems.length > 0) throw new ConfigError(problems);
  result.models = resolve(cwd, result.models);
  if (result.routingDir !== null) result.routingDir = resolve(cwd, result.routingDir);
  return result;
}

/** The configuration table as plain text, for `slim serve --help`. */
export function configHelp(): string {
  const rows = OPTIONS.map((o) => `  ${o.flag.padEnd(24)} ${o.env.padEnd(26)} ${o.key.padEnd(26)} ${o.description} (default ${o.defaultText})`);
  return [
    'usage: slim serve [--config FILE] [--models DIR] [--port N] [--host H] [options]',
    '',
    'Every option has a config-file key, a flag and an environment variable;',
    'the environment overrides flags, which override the file.',
    '',
    `  ${'flag'.padEnd(24)} ${'environment'.padEnd(26)} ${'file key'.padEnd(26)} meaning`,
    `  ${CONFIG_FLAG.padEnd(24)} ${CONFIG_ENV.padEnd(26)} ${'-'.padEnd(26)} JSON config file`,
    ...rows,
  ].join('\n');
}
