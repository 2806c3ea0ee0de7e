// SIGTERM on the real entry point in a child process: under load every request the server
// accepted before the signal is answered 200, nothing new is taken, and the process exits 0
// only after the last answer; connections the kernel had queued when the signal came get an
// answer, not a reset; a client holding a half-sent upload cannot keep the process alive past
// shutdownTimeoutMs; and `slim serve` itself (bin/slim.js) exits as soon as it has stopped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { createFixtureRepository } from './helpers/fixture-model.js';
import { SLIM_CLI, spawnServe, type ServeProcess } from './helpers/serve-process.js';

test('SIGTERM during load: every accepted request gets its answer, then exit 0', async () => {
  const repo = createFixtureRepository([{ name: 'tiny', variants: ['k1'] }]);
  let server: ServeProcess | undefined;
  try {
    server = await spawnServer(repo.dir, ['--max-batch-size', '2', '--max-queue-delay-ms', '0'], { env: { ...process.env, SLIM_TEST_WORKER_DELAY_MS: '150' } });
    const { child, url } = server;
    const answeredAt: number[] = [];
    const requests = Array.from({ length: 24 }, (_, i) =>
      fetch(`${url}/classify`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: `text number ${i}` }) }).then(
        async (r) => {
          answeredAt.push(Date.now());
          return { status: r.status, body: await r.json() };
        },
      ),
    );
    // Wait until all 24 are inside the server (12 batches x 150 ms of work): answered, running or queued.
    const deadline = Date.now() + 10_000;
    for (;;) {
      const v = (await (await fetch(`${url}/models/tiny`)).json()).variants[0];
      const accounted = answeredAt.length + v.running + v.queueDepth;
      if (accounted === 24 && v.queueDepth >= 12) break;
      assert.ok(Date.now() < deadline, `only ${accounted} requests inside the server`);
      await sleep(5);
    }
    const signalledAt = Date.now();
    child.kill('SIGTERM');
    await sleep(100);
    // Not accepted any more: refused at the socket, or 503 SHUTTING_DOWN on a kept-alive one.
    const late = await fetch(`${url}/classify`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"inputs":"late"}' }).then(
      async (r) => ({ status: r.status, body: await r.json() }),
      (e: Error) => ({ status: 0, body: e.message }),
    );
    assert.ok(late.status === 0 || (late.status === 503 && late.body.error.code === 'SHUTTING_DOWN'), JSON.stringify(late));

    const answers = await Promise.all(requests);
    assert.deepEqual(
      answers.map((a) => a.status),
      Array(24).fill(200),
      'every accepted request answered',
    );
    assert.ok(answeredAt.filter((t) => t > signalledAt).length >= 10, 'most answers came after the signal: the drain waited for them');
    const [code] = await server.exited;
    assert.equal(code, 0, server.stderr());
    const logs = server.lines.map((l) => JSON.parse(l) as { msg: string; time: number });
    const exitLog = logs.find((l) => l.msg === 'stopped');
    assert.ok(exitLog, 'logged "stopped"');
    assert.ok(exitLog.time >= Math.max(...answeredAt) - 50, 'stopped only after the last answer');
    assert.ok(logs.some((l) => l.msg.startsWith('shutting down')));
  } finally {
    if (server && server.child.exitCode === null) server.child.kill('SIGKILL');
    repo.cleanup();
  }
});

/** The server in a child process on a free port, one worker, JSON logs at info; resolves once it logged "ready on". */
/** The server in a child process: main.js, or with `cli` the command line a user runs (`slim serve`). */
function spawnServer(repoDir: string, flags: string[], opts: { env?: NodeJS.ProcessEnv; cli?: boolean } = {}): Promise<ServeProcess> {
  const args = ['--models', repoDir, '--port', '0', '--host', '127.0.0.1', '--workers', '1', '--log-level', 'info', ...flags];
  return opts.cli ? spawnServe(['serve', ...args], { env: opts.env, entry: SLIM_CLI }) : spawnServe(args, { env: opts.env });
}

/** SIGTERM, then wait at most waitMs for the exit: [code, signal], or null while it still runs; and how long it took. */
async function sigterm(server: ServeProcess, waitMs: number): Promise<{ exit: [number | null, string | null] | null; tookMs: number }> {
  const signalledAt = performance.now();
  server.child.kill('SIGTERM');
  const exit = await Promise.race([server.exited, sleep(waitMs).then(() => null)]);
  return { exit, tookMs: performance.now() - signalledAt };
}

test('SIGTERM ends within shutdownTimeoutMs while a client holds a half-sent upload', async () => {
  const repo = createFixtureRepository([{ name: 'tiny', variants: ['k1'] }]);
  const server = await spawnServer(repo.dir, ['--shutdown-timeout-ms', '1500']);
  const socket = connect(Number(new URL(server.url).port), '127.0.0.1');
  socket.on('error', () => {});
  try {
    await once(socket, 'connect');
    socket.write('POST /classify HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"inputs": "half');
    await sleep(200);
    const { exit, tookMs } = await sigterm(server, 6000);
    assert.ok(exit !== null, 'the process still runs 6 s after SIGTERM');
    assert.equal(exit[0], 0, server.stderr());
    assert.ok(tookMs < 1500 + 700, `exited ${tookMs.toFixed(0)} ms after SIGTERM (shutdownTimeoutMs 1500)`);
  } finally {
    socket.destroy();
    if (server.child.exitCode === null) server.child.kill('SIGKILL');
    repo.cleanup();
  }
});

test('`slim serve` (the command line, which does not call process.exit) exits at once after an idle SIGTERM, not at shutdownTimeoutMs', async () => {
  const repo = createFixtureRepository([{ name: 'tiny', variants: ['k1'] }]);
  const server = await spawnServer(repo.dir, ['--shutdown-timeout-ms', '8000'], { cli: true });
  try {
    const { exit, tookMs } = await sigterm(server, 7000);
    // A timer left pending by the shutdown kept the process for the rest of shutdownTimeoutMs.
    assert.ok(exit !== null, 'the process still runs 7 s after SIGTERM (shutdownTimeoutMs 8000, nothing in flight)');
    assert.equal(exit[0], 0, server.stderr());
    assert.ok(tookMs < 3000, `exited ${tookMs.toFixed(0)} ms after SIGTERM`);
  } finally {
    if (server.child.exitCode === null) server.child.kill('SIGKILL');
    repo.cleanup();
  }
});

test('connections the kernel queued before SIGTERM each get an answer (200 or 503 SHUTTING_DOWN), none a reset', async () => {
  const repo = createFixtureRepository([{ name: 'tiny', variants: ['k1'] }]);
  const server = await spawnServer(repo.dir, []);
  const port = Number(new URL(server.url).port);
  const sockets: Socket[] = [];
  try {
    // Frozen, the server accepts nothing: the kernel completes each handshake and queues the
    // connection with its request bytes. SIGTERM arrives while they wait; then the server runs.
    server.child.kill('SIGSTOP');
    const body = '{"inputs":"good film"}';
    const answers = await Promise.all(
      Array.from({ length: 16 }, async () => {
        const s = connect(port, '127.0.0.1');
        sockets.push(s);
        let text = '';
        let error = '';
        s.on('data', (d: Buffer) => (text += d.toString('latin1')));
        s.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
        const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
        await once(s, 'connect');
        s.write(`POST /classify HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
        return { closed, read: () => ({ text, error }) };
      }),
    );
    server.child.kill('SIGTERM');
    await sleep(100);
    server.child.kill('SIGCONT');
    const results = await Promise.all(answers.map(async (a) => (await Promise.race([a.closed, sleep(8000)]), a.read())));
    for (const r of results) {
      assert.equal(r.error, '', `a queued connection was reset: ${JSON.stringify(r)}`);
      const status = /^HTTP\/1\.1 (\d{3}) /.exec(r.text)?.[1];
      assert.ok(status === '200' || (status === '503' && r.text.includes('SHUTTING_DOWN')), `answered ${JSON.stringify(r.text.slice(0, 120))}`);
    }
    const [code] = await server.exited;
    assert.equal(code, 0, server.stderr());
  } finally {
    for (const s of sockets) s.destroy();
    if (server.child.exitCode === null) server.child.kill('SIGKILL');
    repo.cleanup();
  }
});
