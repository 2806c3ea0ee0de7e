// Slow and greedy clients on raw sockets against a real server: a request whose headers or body
// trickle in (or never finish) is cut after receiveTimeoutMs with 408, and one client address
// cannot take every connection (maxConnectionsPerClient), so a second client is still served
// while the first holds all it may. Clients are told apart by their loopback source address
// (127.0.0.1 and 127.0.0.2).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { clientKey } from '../src/serve/connection-limit.js';
import type { RunningServer } from '../src/serve/server.js';
import { createFixtureRepository } from './helpers/fixture-model.js';
import { post } from './helpers/http.js';
import { startTestServer, type TestServer } from './helpers/serve.js';

const repo = createFixtureRepository([{ name: 'tiny', variants: ['k1'] }]);
const servers: RunningServer[] = [];
const sockets: Socket[] = [];
after(async () => {
  for (const s of sockets) s.destroy();
  for (const s of servers) await s.close();
  repo.cleanup();
});

const serve = (overrides: Record<string, unknown>): Promise<TestServer> => startTestServer({ models: repo.dir, ...overrides }, servers);

async function open(port: number, localAddress = '127.0.0.1'): Promise<Socket> {
  const s = connect({ port, host: '127.0.0.1', localAddress });
  sockets.push(s);
  s.on('error', () => {});
  await once(s, 'connect');
  return s;
}

/** Everything the server sends until it closes the socket (or `ms` pass: then closed is false). */
function collect(socket: Socket, ms: number): Promise<{ text: string; closed: boolean; afterMs: number }> {
  const started = performance.now();
  return new Promise((resolve) => {
    let text = '';
    const timer = setTimeout(() => finish(false), ms);
    const finish = (closed: boolean): void => {
      clearTimeout(timer);
      resolve({ text, closed, afterMs: performance.now() - started });
    };
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.once('close', () => finish(true));
  });
}

const jsonOf = (text: string): any => JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4));

test('a body sent a byte at a time is cut after receiveTimeoutMs with 408 REQUEST_TIMEOUT', async () => {
  const { port } = await serve({ receiveTimeoutMs: 1000 });
  const s = await open(port);
  const answer = collect(s, 4000);
  s.write('POST /classify HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 400\r\n\r\n{"inputs":"');
  // A byte every 100 ms: always sending, never done (400 bytes would take 40 s).
  const drip = setInterval(() => s.writable && s.write('a'), 100);
  const r = await answer;
  clearInterval(drip);
  assert.equal(r.closed, true, `still open after ${r.afterMs.toFixed(0)} ms; got ${JSON.stringify(r.text)}`);
  assert.match(r.text, /^HTTP\/1\.1 408 /);
  assert.equal(jsonOf(r.text).error.code, 'REQUEST_TIMEOUT');
  assert.ok(r.afterMs < 2500, `cut ${r.afterMs.toFixed(0)} ms after the headers`);
});

test('headers that never end are cut after receiveTimeoutMs too; a prompt request on the same server is served', async () => {
  const { port } = await serve({ receiveTimeoutMs: 1000 });
  const s = await open(port);
  const answer = collect(s, 4000);
  s.write('POST /classify HTTP/1.1\r\nhost: x\r\n');
  const drip = setInterval(() => s.writable && s.write('x-slow: a\r\n'), 100);
  const r = await answer;
  clearInterval(drip);
  assert.equal(r.closed, true, `still open after ${r.afterMs.toFixed(0)} ms`);
  assert.match(r.text, /^HTTP\/1\.1 408 /);
  const ok = await post(`http://127.0.0.1:${port}/classify`, { inputs: 'good film' });
  assert.equal(ok.status, 200);
});

test('one client address holds at most maxConnectionsPerClient; another client is still served while it does', async () => {
  const { server, port } = await serve({ maxConnections: 8, maxConnectionsPerClient: 3, receiveTimeoutMs: 60_000 });
  // Client A opens every connection the server has, each with a request it never finishes.
  const held: Socket[] = [];
  const refusedA: string[] = [];
  for (let i = 0; i < 8; i++) {
    const s = await open(port, '127.0.0.1');
    const answer = collect(s, 400);
    s.write('POST /classify HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{');
    const r = await answer;
    if (r.closed) refusedA.push(r.text);
    else held.push(s);
  }
  assert.equal(held.length, 3, 'client A holds maxConnectionsPerClient connections');
  assert.equal(refusedA.length, 5);
  for (const t of refusedA) {
    assert.match(t, /^HTTP\/1\.1 429 /);
    assert.equal(jsonOf(t).error.code, 'TOO_MANY_CONNECTIONS');
    assert.match(jsonOf(t).error.message, /this client/);
  }
  // Client B, from another address, gets served.
  const b = await open(port, '127.0.0.2');
  const answer = collect(b, 3000);
  const body = '{"inputs":"good film"}';
  b.write(`POST /classify HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
  const rb = await answer;
  assert.match(rb.text, /^HTTP\/1\.1 200 /, `client B got ${JSON.stringify(rb.text.slice(0, 200))}`);
  for (const s of held) s.destroy();
  await sleep(100);
  assert.equal((await fetch(`${server.url}/health/live`)).status, 200, 'freed connections are taken again');
});

test('clientKey: IPv4 as is (also IPv4-mapped), IPv6 by its /64', () => {
  assert.equal(clientKey('10.1.2.3'), '10.1.2.3');
  assert.equal(clientKey('::ffff:10.1.2.3'), '10.1.2.3');
  assert.equal(clientKey('2001:db8:0:1::5'), '2001:db8:0:1::/64');
  assert.equal(clientKey('2001:db8:0:1:ffff:1:2:3'), '2001:db8:0:1::/64');
  assert.equal(clientKey('2001:0db8:0000:0001::9'), '2001:db8:0:1::/64');
  assert.equal(clientKey('::1'), '0:0:0:0::/64');
  assert.equal(clientKey(undefined), '');
});
