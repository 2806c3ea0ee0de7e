// The connection caps (config maxConnections, maxConnectionsPerClient). Under a flood the HTTP
// server would otherwise take every connection it is offered: their requests wait unread in
// kernel buffers while the event loop is busy answering 429 to others, and each is read seconds
// later (or never, within the client's patience). Past a cap a new connection gets a canned 429
// TOO_MANY_CONNECTIONS, written before any byte of it is parsed, and is closed: the cheapest
// refusal there is, and requests inside the server stay bounded by the cap, so their latency and
// the recovery after the flood stay bounded too.
//
// The per-client cap (counted per remote address; IPv6 per /64, the block one subscriber
// usually holds) keeps one client from taking every connection: without it a single address that
// opens maxConnections slow connections locks every other client out for as long as it holds
// them (receiveTimeoutMs bounds how long each can be held without sending a whole request).
//
// One exception: a refused connection whose first bytes are `GET /health/live` gets the liveness
// answer instead. An orchestrator's liveness probe must not restart a server for being busy
// (readiness probes do get the 429, which takes the replica out of rotation while it is flooded).
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { CoreError } from './errors.js';
import { errorBody, httpStatus } from './routes/error-replies.js';

/** How long a refused connection may keep sending (its request is read and dropped) before it is cut. */
const LINGER_MS = 2000;

const LIVENESS_REQUEST = Buffer.from('GET /health/live');

function cannedAnswer(status: string, body: string, extraHeaders = ''): Buffer {
  const payload = Buffer.from(body);
  const head = `HTTP/1.1 ${status}\r\ncontent-type: application/json; charset=utf-8\r\n${extraHeaders}connection: close\r\ncontent-length: ${payload.length}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), payload]);
}

function cannedRefusal(message: string): Buffer {
  const err = new CoreError('TOO_MANY_CONNECTIONS', message, { retryAfterS: 1 });
  return cannedAnswer(`${httpStatus(err)} Too Many Requests`, JSON.stringify(errorBody(err)), 'retry-after: 1\r\n');
}

/**
 * The key a connection counts under for the per-client cap: the IPv4 address (also when it
 * arrives IPv4-mapped), or the first 64 bits of an IPv6 address.
 */
export function clientKey(address: string | undefined): string {
  if (!address) return '';
  const lower = address.toLowerCase();
  if (lower.startsWith('::ffff:') && lower.includes('.')) return lower.slice(7);
  if (!lower.includes(':')) return lower;
  const zoneless = lower.split('%')[0]!;
  const [head, tail] = zoneless.split('::') as [string, string | undefined];
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? left : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

export interface ConnectionCaps {
  /** Most open connections in all (0: no cap). */
  max: number;
  /** Most open connections from one client (0: no cap). */
  perClient: number;
}

/**
 * Cap the open connections of an HTTP server, in all and per client. `onRefused` is called for
 * each connection turned away (the metrics count them).
 */
export function limitConnections(server: Server, caps: ConnectionCaps, onRefused: () => void = () => {}): void {
  const { max, perClient } = caps;
  if (max <= 0 && perClient <= 0) return;
  const refuseAll = cannedRefusal(`the server holds its maximum of ${max} connections; retry on a new connection`);
  const refuseClient = cannedRefusal(`this client holds its maximum of ${perClient} connections (maxConnectionsPerClient); reuse one or retry later`);
  // The body GET /health/live answers (src/serve/routes/health.ts).
  const live = cannedAnswer('200 OK', JSON.stringify({ status: 'live' }));
  let open = 0;
  const byClient = new Map<string, number>();
  // net.Server hands every accepted socket to emit('connection'); the HTTP server's parser is
  // attached by its own 'connection' listener, so a socket that never reaches it is never parsed.
  const emit = server.emit.bind(server) as (event: string | symbol, ...args: unknown[]) => boolean;
  server.emit = ((event: string | symbol, ...args: unknown[]): boolean => {
    if (event !== 'connection') return emit(event, ...args);
    const socket = args[0] as Socket;
    const key = clientKey(socket.remoteAddress);
    const mine = byClient.get(key) ?? 0;
    const refusal = max > 0 && open >= max ? refuseAll : perClient > 0 && mine >= perClient ? refuseClient : null;
    if (refusal) {
      socket.on('error', () => {});
      socket.setTimeout(LINGER_MS, () => socket.destroy());
      // The answer waits for the first bytes (they say whether this is a liveness probe); what
      // follows is read and dropped, so that closing does not reset the connection (a reset can
      // discard the answer before the client reads it).
      socket.once('data', (first: Buffer) => {
        const probe = first.subarray(0, LIVENESS_REQUEST.length).equals(LIVENESS_REQUEST);
        if (!probe) onRefused();
        socket.end(probe ? live : refusal);
      });
      socket.resume();
      return true;
    }
    open++;
    byClient.set(key, mine + 1);
    socket.once('close', () => {
      open--;
      const left = byClient.get(key)! - 1;
      if (left === 0) byClient.delete(key);
      else byClient.set(key, left);
    });
    return emit(event, ...args);
  }) as Server['emit'];
}
