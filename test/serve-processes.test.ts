// `slim serve --processes 2` on the real entry point: two server processes on one port answer
// /classify; /metrics from either counts the requests both answered; a PUT /routing is in force
// in both before it is answered; feedback on a request_id the other process answered counts once
// for the whole server; kill -9 of one process: it is replaced and the server keeps answering;
// SIGTERM to the primary with requests in flight: every one answered, exit 0. Startup errors
// (port in use, bad --models) fail fast without forking endless processes.
//
// Which process answered a request is read from its access-log line (pid, reqId = our
// x-request-id). Every request goes on a fresh connection (agent: false): node:cluster hands
// connections to the processes round-robin.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { createFixtureRepository } from './helpers/fixture-model.js';
import { SERVE_MAIN, spawnServe } from './helpers/serve-process.js';

const ADMIN = 'admin-token-for-tests';

/** The server's environment: without node --test's NODE_TEST_CONTEXT, which makes forked cluster processes hang silently. */
function serverEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  delete env.NODE_TEST_CONTEXT;
  return env;
}

interface LogLine {
  msg: string;
  pid: number;
  role?: string;
  reqId?: string;
  url?: string;
  workerPid?: number;
  time: number;
}

interface Answer {
  status: number;
  json: any;
  text: string;
}

let nextId = 0;

/** One request on a fresh connection, tagged with its own x-request-id (returned as `id`). */
function send(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer & { id: string }> {
  const id = `t-${process.pid}-${nextId++}`;
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = httpRequest(
      `${base}${path}`,
      { method, agent: false, headers: { 'x-request-id': id, ...(data ? { 'content-type': 'application/json' } : {}), ...headers } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (text += d));
        res.on('end', () => {
          let json: unknown = null;
          try {
            json = JSON.parse(text);
          } catch {
            /* /metrics */
          }
          resolve({ status: res.statusCode!, json, text, id });
        });
      },
    );
    req.setTimeout(15_000, () => req.destroy(new Error(`${method} ${path}: no answer in 15 s`)));
    req.on('error', reject);
    req.end(data);
  });
}

interface Running {
  child: ChildProcessWithoutNullStreams;
  logs: LogLine[];
  stderr: () => string;
  url: string;
  exited: Promise<[number | null, string | null]>;
  /** The pid whose access log has the request `id` (waits briefly for the line). */
  servedBy(id: string): Promise<number>;
  waitLog(what: string, ok: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
}

/** A JSON log line, or undefined for any other line. */
function logLine(line: string): LogLine | undefined {
  try {
    return JSON.parse(line) as LogLine;
  } catch {
    return undefined; // not a log line
  }
}

async function startCluster(args: string[], env: Record<string, string> = {}): Promise<Running> {
  const logs: LogLine[] = [];
  const { child, url, stderr, exited } = await spawnServe(args, {
    env: serverEnv(env),
    onLine: (line) => {
      const l = logLine(line);
      if (l) logs.push(l);
    },
    ready: (line) => {
      const l = logLine(line);
      return l?.role === 'primary' && l.msg.startsWith('ready on') ? l.url : undefined;
    },
    timeoutMs: 90_000,
  });
  const waitLog = async (what: string, ok: (l: LogLine) => boolean, timeoutMs = 20_000): Promise<LogLine> => {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const hit = logs.find(ok);
      if (hit) return hit;
      if (child.exitCode !== null) assert.fail(`server exited (${child.exitCode}) while waiting for ${what}: ${stderr()}`);
      assert.ok(Date.now() < end, `timed out waiting for ${what}; stderr: ${stderr()}`);
      await sleep(10);
    }
  };
  return {
    child,
    logs,
    stderr,
    url,
    exited,
    waitLog,
    servedBy: async (id) => (await waitLog(`access log of ${id}`, (l) => l.reqId === id && l.msg.includes(' ms'), 5_000)).pid,
  };
}

function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    total += Number(line.slice(line.lastIndexOf(' ') + 1));
    found = true;
  }
  assert.ok(found, `no ${name} ${JSON.stringify(labels)} in /metrics`);
  return total;
}

test('two server processes share one port, their metrics, routing and feedback; crash replaced; SIGTERM drains both', async () => {
  const repo = createFixtureRepository([{ name: 'tiny', variants: ['k1', 'k2'] }]);
  let server: Running | null = null;
  try {
    server = await startCluster(
      [
        '--models',
        repo.dir,
        '--port',
        '0',
        '--host',
        '127.0.0.1',
        '--processes',
        '2',
        '--workers',
        '1',
        '--intra-op-threads',
        '1',
        '--admin-token',
        ADMIN,
        '--access-log',
        '--max-batch-size',
        '1',
        '--max-queue-delay-ms',
        '0',
      ],
      { SLIM_TEST_WORKER_DELAY_MS: '150' },
    );
    const s = server;
    const pids = new Set(s.logs.filter((l) => l.role === 'primary' && l.workerPid).map((l) => l.workerPid!));
    assert.equal(pids.size, 2, 'two server processes started');

    // /classify on fresh connections: both processes answer.
    const classified: { requestId: string; pid: number }[] = [];
    for (let round = 0; round < 5; round++) {
      const answers = await Promise.all(
        Array.from({ length: 4 }, (_, i) => send(s.url, 'POST', '/classify', { inputs: `the movie was good ${round} ${i}`, variant: 'k1' })),
      );
      for (const a of answers) {
        assert.equal(a.status, 200, a.text);
        classified.push({ requestId: a.json.request_id, pid: await s.servedBy(a.id) });
      }
    }
    const sent = classified.length;
    assert.deepEqual(new Set(classified.map((c) => c.pid)), pids, 'both processes answered /classify');

    // /metrics from either process: the requests of both, summed; the process count.
    const scrapedBy = new Set<number>();
    for (let i = 0; i < 4; i++) {
      const m = await send(s.url, 'GET', '/metrics');
      assert.equal(m.status, 200);
      scrapedBy.add(await s.servedBy(m.id));
      assert.equal(metricValue(m.text, 'slim_requests_total', { endpoint: '/classify', code: '200' }), sent, 'every /classify counted once');
      assert.equal(metricValue(m.text, 'slim_inputs_total', { variant: 'k1' }), sent);
      assert.equal(metricValue(m.text, 'slim_processes'), 2);
      assert.equal(metricValue(m.text, 'slim_variant_info', { variant: 'k1' }), 1, 'a same-in-every-process gauge is taken once');
      assert.equal(metricValue(m.text, 'slim_request_duration_seconds_count', { endpoint: '/classify' }), sent, 'histograms merged');
    }
    assert.equal(scrapedBy.size, 2, 'scraped through both processes');

    // Feedback on a request_id the other process answered counts once, for the whole server.
    // Round-robin: the next connection most likely goes to the other process than the last one,
    // so each try sends the id of a request the last one's process answered.
    let crossed: { requestId: string; pid: number } | null = null;
    let lastPid = await s.servedBy((await send(s.url, 'GET', '/health/live')).id);
    const unused = [...classified];
    let given = 0;
    while (!crossed && unused.length > 0) {
      const pick = unused.findIndex((c) => c.pid === lastPid);
      const c = unused.splice(Math.max(0, pick), 1)[0]!;
      const f = await send(s.url, 'POST', '/feedback', { request_id: c.requestId, label: 'negative' });
      assert.equal(f.status, 202, f.text);
      assert.equal(f.json.counted, 1);
      given++;
      lastPid = await s.servedBy(f.id);
      if (lastPid !== c.pid) crossed = c;
    }
    assert.ok(crossed, 'a feedback was taken by the process that did not answer its /classify');
    // A repeat, on whichever process, is not counted again.
    for (let i = 0; i < 2; i++) {
      const again = await send(s.url, 'POST', '/feedback', { request_id: crossed.requestId, label: 'negative' });
      assert.equal(again.status, 202);
      assert.equal(again.json.counted, 0, 'a repeat is not counted, whichever process takes it');
    }
    const statusBy = new Map<number, any>();
    for (let i = 0; i < 8 && statusBy.size < 2; i++) {
      const r = await send(s.url, 'GET', '/routing/tiny');
      assert.equal(r.status, 200, r.text);
      statusBy.set(await s.servedBy(r.id), r.json);
    }
    assert.equal(statusBy.size, 2, 'GET /routing answered by both processes');
    for (const [pid, st] of statusBy) {
      const k1 = st.variants.find((v: { name: string }) => v.name === 'k1');
      assert.equal(k1.requests, sent, `process ${pid}: requests of both processes`);
      assert.equal(k1.feedback.total, given, `process ${pid}: every feedback counted once`);
      assert.equal(k1.online.n, given, `process ${pid}: one online-accuracy window`);
    }
    const fm = await send(s.url, 'GET', '/metrics');
    assert.equal(metricValue(fm.text, 'slim_feedback_total', { variant: 'k1' }), given);

    // PUT /routing on one process is in force in both before it is answered.
    const table = { variants: { k1: { weight: 1 }, k2: { weight: 3 } } };
    const put = await send(s.url, 'PUT', '/routing/tiny', table, { authorization: `Bearer ${ADMIN}` });
    assert.equal(put.status, 200, put.text);
    const seenBy = new Set<number>();
    for (let i = 0; i < 8 && seenBy.size < 2; i++) {
      const r = await send(s.url, 'GET', '/routing/tiny');
      seenBy.add(await s.servedBy(r.id));
      assert.deepEqual(r.json.routing.variants, table.variants, 'the new table, at once');
    }
    assert.equal(seenBy.size, 2, 'both processes were asked');

    // kill -9 of one server process: replaced; the server keeps answering meanwhile.
    const victim = [...pids][0]!;
    process.kill(victim, 'SIGKILL');
    // A connection handed to it in the instant before the primary saw it die is lost with it.
    await s.waitLog('the crash', (l) => l.role === 'primary' && l.msg.includes('exited unexpectedly'));
    const during = await Promise.all(Array.from({ length: 4 }, (_, i) => send(s.url, 'POST', '/classify', { inputs: `film ${i}`, variant: 'k1' })));
    assert.deepEqual(
      during.map((a) => a.status),
      [200, 200, 200, 200],
      'the other process answers',
    );
    await s.waitLog('the replacement', (l) => l.role === 'primary' && l.msg.includes('replaced and ready'));
    assert.ok(
      s.logs.some((l) => l.role === 'primary' && l.msg.includes('exited unexpectedly') && l.msg.includes('SIGKILL')),
      'the crash is logged',
    );
    const after = await send(s.url, 'GET', '/metrics');
    assert.equal(metricValue(after.text, 'slim_process_restarts_total'), 1);
    assert.equal(metricValue(after.text, 'slim_processes'), 2);
    const newPids = new Set<number>();
    for (let i = 0; i < 6 && newPids.size < 2; i++) {
      const a = await send(s.url, 'POST', '/classify', { inputs: 'great plot', variant: 'k1' });
      assert.equal(a.status, 200);
      newPids.add(await s.servedBy(a.id));
    }
    assert.equal(newPids.size, 2, 'two processes answer again');
    assert.ok(!newPids.has(victim));

    // SIGTERM to the primary with requests in flight in both processes: all answered, exit 0.
    // 6 requests per process at 150 ms each: about 0.9 s of work, most of it still queued at the signal.
    const answeredAt: number[] = [];
    const inflight = Array.from({ length: 12 }, (_, i) =>
      send(s.url, 'POST', '/classify', { inputs: `so boring ${i}`, variant: 'k1' }).then((a) => {
        answeredAt.push(Date.now());
        return a;
      }),
    );
    await sleep(300); // sent, accepted and queued
    const signalledAt = Date.now();
    s.child.kill('SIGTERM');
    const answers = await Promise.all(inflight);
    assert.deepEqual(
      answers.map((a) => a.status),
      Array(12).fill(200),
      'every accepted request answered',
    );
    assert.ok(answeredAt.filter((t) => t > signalledAt).length >= 2, 'answers came after the signal: the drain waited for them');
    const [code] = await s.exited;
    assert.equal(code, 0, s.stderr());
    assert.equal(s.logs.filter((l) => l.msg === 'stopped' && l.role !== 'primary').length, 2, 'both processes drained and stopped');
    assert.ok(s.logs.some((l) => l.role === 'primary' && l.msg === 'stopped'));
  } finally {
    if (server && server.child.exitCode === null) server.child.kill('SIGKILL');
    repo.cleanup();
  }
});

test('--processes 2: a port in use or a missing model repository fails fast, without forking endless processes', async () => {
  const repo = createFixtureRepository([{ name: 'tiny', variants: ['k1'] }]);
  const blocker = createServer();
  blocker.listen(0, '127.0.0.1');
  await once(blocker, 'listening');
  const port = (blocker.address() as { port: number }).port;
  try {
    const run = async (args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> => {
      const child = spawn(process.execPath, [SERVE_MAIN, '--processes', '2', '--workers', '1', '--host', '127.0.0.1', ...args], {
        env: serverEnv(),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      const [code] = (await once(child, 'exit')) as [number | null];
      clearTimeout(timer);
      return { code, stdout, stderr };
    };
    const busy = await run(['--models', repo.dir, '--port', String(port)]);
    assert.equal(busy.code, 1, busy.stderr);
    assert.match(busy.stderr, /could not listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/);
    assert.doesNotMatch(busy.stdout, /server process/, 'found out before any process is forked');

    const missing = await run(['--models', `${repo.dir}/nope`, '--port', '0']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /model repository .*nope does not exist/);
    assert.doesNotMatch(missing.stdout, /server process/, 'checked before any process is forked');
  } finally {
    blocker.close();
    repo.cleanup();
  }
});
