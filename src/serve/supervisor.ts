// The primary of `slim serve --processes N` (N > 1): it serves no HTTP itself. It forks N server
// processes that share the port through node:cluster (the primary accepts and hands connections
// round-robin), replaces one that exits unexpectedly (with a log line, a restart counter and a
// back-off when it keeps failing), drains them all on SIGTERM or SIGINT, and is the one place
// where what must agree across processes meets (cluster-peer.ts has the process side):
//   /metrics: every process's registry merged (prom-client's AggregatorRegistry.aggregate);
//   GET /routing: served counts summed; POST /feedback: counted once, here (feedback-ledger.ts);
//   PUT /routing, POST /admin/reload: every other process re-reads before the PUT is answered.
// The request-id HMAC key must be the same everywhere: without a configured feedbackSecret the
// primary generates one and hands it to every process it forks.
import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { hostname } from 'node:os';
import { AggregatorRegistry, Counter, Gauge, Registry } from 'prom-client';
import { CLUSTER_SECRET_ENV, type PeerRequest, type PrimaryQuestion, type ToPeer, type ToPrimary } from './cluster-peer.js';
import type { LogLevel, ServeConfig } from './config.js';
import { CoreError } from './errors.js';
import { sumSnapshots, type StatsSnapshot } from './routing/cluster-stats.js';
import { FeedbackLedger } from './routing/feedback-ledger.js';
import type { FeedbackClaim } from './routing/statistics.js';

/** A process that exits sooner than this after its start counts as a crash loop: the next start waits. */
const STABLE_MS = 10_000;
/** Back-off of a crash loop: 1 s, 2 s, 4 s, ... at most 30 s. */
const BACKOFF_BASE_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;
/** How long the primary waits for the processes' answers when it collects (a hung one is left out). */
const COLLECT_TIMEOUT_MS = 3_000;

interface Member {
  worker: Worker;
  /** 1..N: which of the N processes this is (a replacement takes its predecessor's slot). */
  slot: number;
  startedAt: number;
  attached: boolean;
  ready: boolean;
}

/** A process's registry as JSON (Registry.getMetricsAsJSON()) and its routing counters. */
type MetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;
type CollectReply = { metrics?: MetricsJson[]; stats?: StatsSnapshot };

const LEVELS: Record<Exclude<LogLevel, 'silent'>, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };

/** JSON log lines in the processes' (pino's) shape, so one collector reads both. */
function primaryLogger(level: LogLevel): (at: 'info' | 'warn' | 'error', obj: object, msg: string) => void {
  const min = level === 'silent' ? Infinity : LEVELS[level];
  const host = hostname();
  return (at, obj, msg) => {
    if (LEVELS[at] < min) return;
    process.stdout.write(`${JSON.stringify({ level: LEVELS[at], time: Date.now(), pid: process.pid, hostname: host, role: 'primary', ...obj, msg })}\n`);
  };
}

/**
 * Run the primary until every process has stopped; the exit code of `slim serve`. A port that
 * cannot be bound fails here, before any process is forked (a forked process would find out only
 * after loading its modules, seconds later on a busy machine).
 */
export async function superviseCluster(config: ServeConfig): Promise<number> {
  const unusable = await cannotListen(config.host, config.port);
  if (unusable) {
    console.error(`slim serve: could not listen on ${config.host}:${config.port}: ${unusable}`);
    return 1;
  }
  return supervise(config);
}

/** Why host:port cannot be listened on now, or null (port 0 always can). */
function cannotListen(host: string, port: number): Promise<string | null> {
  if (port === 0) return Promise.resolve(null);
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', (err) => resolve(err.message));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(null)));
  });
}

function supervise(config: ServeConfig): Promise<number> {
  const log = primaryLogger(config.logLevel);
  const count = config.processes;
  const env: NodeJS.ProcessEnv = {};
  if (config.feedbackSecret === null) env[CLUSTER_SECRET_ENV] = randomBytes(32).toString('base64url');
  const ledger = new FeedbackLedger({ ttlMs: config.feedback.ttlMs, capacity: config.feedback.capacity, window: config.feedback.window });
  const members = new Map<number, Member>(); // by worker id
  const restartTimers = new Set<NodeJS.Timeout>();
  let restarts = 0;
  let fastExits = 0;
  let startingUp = true;
  let stopping = false;
  let worstExit = 0;
  let resolveExit!: (code: number) => void;
  const exited = new Promise<number>((resolve) => (resolveExit = resolve));

  const registry = primaryRegistry(
    () => members.size,
    () => restarts,
    ledger,
  );

  // Requests of the primary to its processes, answered by { slim: 'reply' }.
  let nextRequest = 0;
  const waiting = new Map<number, (reply: { body?: unknown; error?: string } | null) => void>();
  const request = (m: Member, what: PeerRequest, body?: unknown): Promise<{ body?: unknown; error?: string } | null> => {
    const id = nextRequest++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        waiting.delete(id);
        resolve(null);
      }, COLLECT_TIMEOUT_MS);
      waiting.set(id, (reply) => {
        clearTimeout(timer);
        waiting.delete(id);
        resolve(reply);
      });
      try {
        m.worker.send({ slim: 'request', id, what, body } satisfies ToPeer);
      } catch {
        waiting.get(id)?.(null);
      }
    });
  };
  const attachedMembers = (except?: Member): Member[] => [...members.values()].filter((m) => m.attached && m !== except && m.worker.isConnected());
  const collect = async (body: { metrics: boolean; stats: boolean }): Promise<CollectReply[]> => {
    const replies = await Promise.all(attachedMembers().map((m) => request(m, 'collect', body)));
    return replies.filter((r): r is { body: CollectReply } => r !== null && r.error === undefined).map((r) => r.body);
  };

  const answerQuestion = async (from: Member, what: PrimaryQuestion, body: unknown): Promise<unknown> => {
    switch (what) {
      case 'metrics': {
        const replies = await collect({ metrics: true, stats: false });
        const merged = AggregatorRegistry.aggregate([...replies.flatMap((r) => r.metrics ?? []), await registry.getMetricsAsJSON()]);
        return merged.metrics();
      }
      case 'routing-stats': {
        const model = (body as { model: string }).model;
        const replies = await collect({ metrics: false, stats: true });
        return {
          counters: sumSnapshots(
            replies.map((r) => r.stats ?? {}),
            model,
          ),
          feedback: ledger.of(model),
        };
      }
      case 'feedback': {
        const { claim, client } = body as { claim: FeedbackClaim; client: string };
        return ledger.count(claim, client);
      }
      case 'routing-changed':
        await Promise.all(attachedMembers(from).map((m) => request(m, 'poll-routing', body)));
        return null;
      case 'reloaded':
        // Not awaited: a reload loads models; the other processes report their own result in their logs.
        for (const m of attachedMembers(from)) void request(m, 'reload');
        return null;
    }
  };

  const fork = (slot: number): void => {
    const worker = cluster.fork(env);
    const member: Member = { worker, slot, startedAt: Date.now(), attached: false, ready: false };
    members.set(worker.id, member);
    log('info', { process: slot, workerPid: worker.process.pid }, `server process ${slot} started`);
    worker.on('message', (m: ToPrimary) => {
      if (!m || typeof m !== 'object' || !('slim' in m)) return;
      if (m.slim === 'attached') member.attached = true;
      else if (m.slim === 'ready') onReady(member, m.url);
      else if (m.slim === 'reply') waiting.get(m.id)?.(m);
      else if (m.slim === 'ask') {
        answerQuestion(member, m.what, m.body).then(
          (answer) => send(member, { slim: 'answer', id: m.id, body: answer }),
          (err: unknown) => {
            const e = err instanceof CoreError ? err : new CoreError('INTERNAL', err instanceof Error ? err.message : String(err));
            send(member, { slim: 'answer', id: m.id, error: { code: e.code, message: e.message } });
          },
        );
      }
    });
    worker.on('exit', (code, signal) => onExit(member, code, signal as NodeJS.Signals | null));
  };
  const send = (m: Member, message: ToPeer): void => {
    if (m.worker.isConnected()) m.worker.send(message);
  };

  const onReady = (member: Member, url: string | undefined): void => {
    member.ready = true;
    if (startingUp && [...members.values()].filter((m) => m.ready).length === count) {
      startingUp = false;
      log('info', { url, processes: count }, `ready on ${url} (${count} processes)`);
    } else if (!startingUp) {
      log('info', { process: member.slot, workerPid: member.worker.process.pid, restarts }, `server process ${member.slot} replaced and ready`);
    }
  };

  const onExit = (member: Member, code: number | null, signal: NodeJS.Signals | null): void => {
    members.delete(member.worker.id);
    if (stopping) {
      // A process stopped before it had signal handlers dies of the SIGTERM it was sent: not a failure.
      if (code !== 0 && !(code === null && signal === 'SIGTERM')) worstExit = 1;
      if (members.size === 0) {
        log('info', { exitCode: worstExit }, 'stopped');
        resolveExit(worstExit);
      }
      return;
    }
    if (startingUp && !member.ready) {
      // A bad repository, a port in use: every replacement would fail the same way.
      log('error', { process: member.slot, code, signal }, `server process ${member.slot} exited during startup (code ${code ?? signal}): stopping`);
      stopAll(code === 0 || code === null ? 1 : code);
      return;
    }
    restarts++;
    const lived = Date.now() - member.startedAt;
    fastExits = lived < STABLE_MS || !member.ready ? fastExits + 1 : 0;
    const delayMs = fastExits === 0 ? 0 : Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (fastExits - 1));
    log(
      'error',
      { process: member.slot, workerPid: member.worker.process.pid, code, signal, restarts, livedMs: lived, delayMs },
      `server process ${member.slot} exited unexpectedly (${signal ?? `code ${code}`}); replacing it${delayMs > 0 ? ` in ${delayMs} ms (it exited soon after its start)` : ''}`,
    );
    const timer = setTimeout(() => {
      restartTimers.delete(timer);
      if (!stopping) fork(member.slot);
    }, delayMs);
    restartTimers.add(timer);
  };

  const stopAll = (code: number): void => {
    stopping = true;
    worstExit = Math.max(worstExit, code);
    for (const t of restartTimers) clearTimeout(t);
    restartTimers.clear();
    if (members.size === 0) {
      resolveExit(worstExit);
      return;
    }
    for (const m of members.values()) {
      // Attached processes drain (command.ts); one still starting has nothing accepted yet.
      if (m.attached) send(m, { slim: 'stop' });
      else m.worker.process.kill('SIGTERM');
    }
  };

  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log('warn', { signal }, 'second signal: exiting without waiting');
      for (const m of members.values()) m.worker.process.kill('SIGKILL');
      resolveExit(130);
      return;
    }
    log('info', { signal, processes: members.size }, 'shutting down: every process stops accepting and answers what it accepted');
    stopAll(0);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  log('info', { processes: count, host: config.host, port: config.port }, `starting ${count} server processes`);
  for (let slot = 1; slot <= count; slot++) fork(slot);
  return exited;
}

/** The primary's own series: the process count, restarts, and the feedback it tallies. */
function primaryRegistry(live: () => number, restarts: () => number, ledger: FeedbackLedger): Registry {
  const registry = new Registry();
  const registers = [registry];
  new Gauge({
    name: 'slim_processes',
    help: 'Server processes running now (--processes; one fewer while a crashed one is being replaced).',
    registers,
    collect() {
      this.set(live());
    },
  });
  new Counter({
    name: 'slim_process_restarts_total',
    help: 'Server processes replaced after they exited unexpectedly.',
    registers,
    collect() {
      this.reset();
      this.inc(restarts());
    },
  });
  new Counter({
    name: 'slim_feedback_total',
    help: 'Feedback received on answers, by outcome (correct|incorrect).',
    labelNames: ['model', 'variant', 'outcome'],
    registers,
    collect() {
      this.reset();
      for (const [model, counts] of ledger.all()) {
        for (const [variant, c] of Object.entries(counts)) {
          this.inc({ model, variant, outcome: 'correct' }, c.correct);
          this.inc({ model, variant, outcome: 'incorrect' }, c.incorrect);
        }
      }
    },
  });
  new Gauge({
    name: 'slim_variant_accuracy',
    help: 'Accuracy of a variant: source="build" from its manifest eval, source="online" from feedback.',
    labelNames: ['model', 'variant', 'source'],
    registers,
    aggregator: 'first',
    collect() {
      this.reset();
      for (const [model, counts] of ledger.all()) {
        for (const [variant, c] of Object.entries(counts)) if (c.online.accuracy !== null) this.set({ model, variant, source: 'online' }, c.online.accuracy);
      }
    },
  });
  return registry;
}
