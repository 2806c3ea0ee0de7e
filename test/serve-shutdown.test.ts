// SIGTERM under load, on the real entry point in a child process: every request the server
// accepted before the signal is answered 200, nothing new is taken, and the process exits 0
// only after the last answer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { createFixtureRepository } from './helpers/fixture-model.js';

const MAIN = fileURLToPath(new URL('../src/serve/main.js', import.meta.url));

test('SIGTERM during load: every accepted request gets its answer, then exit 0', async () => {
  const repo = createFixtureRepository([{ name: 'tiny', variants: ['k1'] }]);
  const child = spawn(
    process.execPath,
    [MAIN, '--models', repo.dir, '--port', '0', '--host', '127.0.0.1', '--workers', '1', '--max-batch-size', '2', '--max-queue-delay-ms', '0', '--log-level', 'info'],
    { env: { ...process.env, SLIM_TEST_WORKER_DELAY_MS: '150' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const logs: { msg: string; url?: string; time: number }[] = [];
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const ready = new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      const entry = JSON.parse(line) as { msg: string; url?: string; time: number };
      logs.push(entry);
      if (entry.msg.startsWith('ready on')) resolve(entry.url!);
    });
    child.once('exit', (code) => reject(new Error(`server exited ${code} before ready: ${stderr}`)));
  });
  const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
  try {
    const url = await ready;
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
    assert.deepEqual(answers.map((a) => a.status), Array(24).fill(200), 'every accepted request answered');
    assert.ok(answeredAt.filter((t) => t > signalledAt).length >= 10, 'most answers came after the signal: the drain waited for them');
    const [code] = await exited;
    assert.equal(code, 0, stderr);
    const exitLog = logs.find((l) => l.msg === 'stopped');
    assert.ok(exitLog, 'logged "stopped"');
    assert.ok(exitLog.time >= Math.max(...answeredAt) - 50, 'stopped only after the last answer');
    assert.ok(logs.some((l) => l.msg.startsWith('shutting down')));
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    repo.cleanup();
  }
});
