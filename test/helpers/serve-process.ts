// `slim serve`'s real entry point (main.js) in a child process, for the tests that need the
// process itself: its signals, its exit code, its log lines. Spawn it and wait for the line that
// says it is ready; one copy here instead of one per test file. Tests that need a server and not
// its process start one in-process with startTestServer (serve.ts).
import { spawn, type ChildProcess, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

/** dist/src/serve/main.js: what `slim serve` runs. */
export const SERVE_MAIN = fileURLToPath(new URL('../../src/serve/main.js', import.meta.url));
/** bin/slim.js: the command line a user runs (`slim serve ...`, `slim start ...`); it lets the event loop end instead of calling process.exit. */
export const SLIM_CLI = fileURLToPath(new URL('../../../bin/slim.js', import.meta.url));

export interface ServeProcess {
  child: ChildProcessWithoutNullStreams;
  /** The URL the ready line named. */
  url: string;
  /** Every stdout line so far, in order (JSON log lines unless --log-format pretty). */
  lines: string[];
  stderr: () => string;
  /** [code, signal] once the process has exited. */
  exited: Promise<[number | null, string | null]>;
}

/** "ready on <url>" anywhere in the line: the JSON line's msg, or a pretty line. */
const READY_ON = /ready on (http:\/\/[^\s"]+)/;

export interface SpawnServeOptions {
  /** The environment of the process (default: this one's). */
  env?: NodeJS.ProcessEnv;
  /** Each stdout line as it comes, before the ready check. */
  onLine?: (line: string) => void;
  /** The URL when `line` is the ready line to wait for (default: the first "ready on <url>"). */
  ready?: (line: string) => string | undefined;
  /** Give up (SIGKILL) when not ready by then; default: wait as long as the process lives. */
  timeoutMs?: number;
  /** The script to run (default SERVE_MAIN; SLIM_CLI with args starting 'serve'). */
  entry?: string;
}

/**
 * `node main.js ...args` (stdin closed, stdout and stderr piped), resolved with its URL once
 * its ready line is logged; rejects with its stderr when it exits first.
 */
export async function spawnServe(args: readonly string[], opts: SpawnServeOptions = {}): Promise<ServeProcess> {
  const child = spawn(process.execPath, [opts.entry ?? SERVE_MAIN, ...args], { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin.end();
  const lines: string[] = [];
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
  const ready = opts.ready ?? ((line: string) => READY_ON.exec(line)?.[1]);
  let timer: NodeJS.Timeout | undefined;
  try {
    const url = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout }).on('line', (line) => {
        lines.push(line);
        opts.onLine?.(line);
        const url = ready(line);
        if (url) resolve(url);
      });
      child.once('exit', (code) => reject(new Error(`server exited ${code} before ready: ${stderr}`)));
      if (opts.timeoutMs !== undefined) {
        timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(new Error(`server not ready in ${opts.timeoutMs} ms; stderr: ${stderr}`));
        }, opts.timeoutMs);
      }
    });
    return { child, url, lines, stderr: () => stderr, exited };
  } finally {
    clearTimeout(timer);
  }
}

/** Stop a child process the test started (any, not only a server): `signal`, then SIGKILL if it still runs after graceMs. */
export async function stopProcess(p: ChildProcess | null | undefined, signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  const gone = once(p, 'exit');
  p.kill(signal);
  if (!(await Promise.race([gone.then(() => true), sleep(graceMs).then(() => false)]))) {
    p.kill('SIGKILL');
    await gone;
  }
}
