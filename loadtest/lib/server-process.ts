// The server under test as its own process (so its CPU and RSS are its own), two ways:
//   - ServerProcess: the instrumented child (see server-child.ts for why it is a child): start it,
//     wait until it answers, reset and read its counters around each measured run, stop it;
//   - startServerProcess: the real CLI (`slim serve`'s main.js with flags) for the reliability runs
//     (overload, soak), which need its signals, its flags and its own RSS, not counters.
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { freePort } from './free-port.js';
import type { ProfileSummary } from './cpu-profile.js';
import type { FloorServerSpec } from './floor-server.js';

export type ChildSpec =
  | {
      kind: 'slim';
      /** Model repository directory. */
      models: string;
      workers: number;
      intraOp: number;
      interOp: number;
      maxBatchSize: number;
      maxBatchTokens: number;
      maxQueueDelayMs: number;
      maxQueued: number;
      /** false: Prometheus collection off (and no /metrics). */
      metrics: boolean;
      /** Execution provider asked for (the server's --device; default cpu). The server falls back to cpu when it is unavailable: check GET /models. */
      device?: 'cpu' | 'cuda';
    }
  | {
      kind: 'transformers';
      /** A directory laid out the way transformers.js loads a model (transformers-model-dir.ts). */
      modelDir: string;
      intraOp: number;
      interOp: number;
    }
  | ({
      /** No model: a bare node:http or fastify server with a fixed answer (floor-server.ts). */
      kind: 'floor';
    } & FloorServerSpec);

/** What the child counted since the last reset. */
export interface ChildStats {
  wallMs: number;
  /** Fraction of wall time the server's main thread was busy (1 = the event loop is the bottleneck). */
  eventLoopUtilization: number;
  eventLoopDelayMs: { p50: number; p99: number; max: number };
  /** CPU time of the whole server process (main thread, workers, onnxruntime threads). */
  cpuMs: number;
  batches: number;
  batchInputs: number;
  /** Per input, enqueue to batch start. */
  queueMsSum: number;
  /** Per batch, session.run wall time. */
  inferenceMsSum: number;
  /** Per input, the session.run time of its batch (what each input waited on compute). */
  inferenceMsPerInputSum: number;
  paddedTokens: number;
  realTokens: number;
  /** Per answered /classify request, arrival to answer (fastify's elapsed time). */
  handlerMsSum: number;
  handled: number;
}

export type ParentToChild =
  | { type: 'reset'; id: number }
  | { type: 'stats'; id: number }
  | { type: 'profile-start'; id: number }
  | { type: 'profile-stop'; id: number }
  | { type: 'close' };
export type ChildToParent =
  | { type: 'ready'; url: string }
  | { type: 'failed'; message: string }
  | { type: 'reset-done'; id: number }
  | { type: 'stats'; id: number; stats: ChildStats }
  | { type: 'profile-started'; id: number }
  | { type: 'profile'; id: number; summary: ProfileSummary };

const CHILD = fileURLToPath(new URL('./server-child.js', import.meta.url));

export class ServerProcess {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (msg: ChildToParent) => void; reject: (err: Error) => void }>();
  private exited: Promise<void>;

  private constructor(
    private readonly child: ChildProcess,
    readonly url: string,
    readonly spec: ChildSpec,
  ) {
    child.on('message', (msg: ChildToParent) => {
      if ('id' in msg) {
        this.waiting.get(msg.id)?.resolve(msg);
        this.waiting.delete(msg.id);
      }
    });
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        // A server that dies mid-run fails the run instead of leaving it waiting for an answer.
        for (const w of this.waiting.values()) w.reject(new Error(`${spec.kind} server exited (code ${code}, signal ${signal})`));
        this.waiting.clear();
        resolve();
      }),
    );
  }

  static async start(spec: ChildSpec, readyTimeoutMs = 300_000): Promise<ServerProcess> {
    const child = fork(CHILD, [JSON.stringify(spec)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [] });
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`${spec.kind} server did not become ready in ${readyTimeoutMs} ms`));
      }, readyTimeoutMs);
      child.on('message', (msg: ChildToParent) => {
        if (msg.type === 'ready') {
          clearTimeout(timer);
          resolve(msg.url);
        } else if (msg.type === 'failed') {
          clearTimeout(timer);
          reject(new Error(`${spec.kind} server failed to start:\n${msg.message}`));
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${spec.kind} server exited with code ${code} before it was ready`));
      });
    });
    return new ServerProcess(child, url, spec);
  }

  private ask(type: 'reset' | 'stats' | 'profile-start' | 'profile-stop'): Promise<ChildToParent> {
    const id = this.nextId++;
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.reject(new Error(`${this.spec.kind} server is not running`));
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.child.send({ type, id } satisfies ParentToChild);
    });
  }

  async reset(): Promise<void> {
    await this.ask('reset');
  }

  async stats(): Promise<ChildStats> {
    const msg = await this.ask('stats');
    if (msg.type !== 'stats') throw new Error(`unexpected answer ${msg.type}`);
    return msg.stats;
  }

  /** Start a CPU profile of the server's main thread. */
  async profileStart(): Promise<void> {
    await this.ask('profile-start');
  }

  /** Stop it and get its summary. */
  async profileStop(): Promise<ProfileSummary> {
    const msg = await this.ask('profile-stop');
    if (msg.type !== 'profile') throw new Error(`unexpected answer ${msg.type}`);
    return msg.summary;
  }

  /** Graceful stop; killed if it takes longer than 30 s. */
  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.send({ type: 'close' } satisfies ParentToChild);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 30_000);
    await this.exited;
    clearTimeout(timer);
  }
}

const MAIN = fileURLToPath(new URL('../../src/serve/main.js', import.meta.url));

export interface ServerUnderTest {
  child: ChildProcess;
  url: string;
  stop(): Promise<void>;
}

/** `node dist/src/serve/main.js --port <free> ...flags`, resolved once /health/ready is 200. */
export async function startServerProcess(flags: string[], env: NodeJS.ProcessEnv = {}): Promise<ServerUnderTest> {
  const port = await freePort();
  const child = spawn(process.execPath, [MAIN, '--port', String(port), '--log-level', 'warn', ...flags], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, ...env },
  });
  const url = `http://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  };
  const end = Date.now() + 300_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the server exited with code ${child.exitCode}`);
    if (Date.now() > end) {
      await stop();
      throw new Error('the server was not ready within 300 s');
    }
    try {
      if ((await fetch(`${url}/health/ready`)).status === 200) return { child, url, stop };
    } catch {
      /* not listening yet */
    }
    await sleep(200);
  }
}

/** Resident memory of a process, from /proc (Linux). */
export function rssMB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}
