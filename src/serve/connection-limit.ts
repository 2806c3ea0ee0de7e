// The connection cap (config maxConnections). Under a flood the HTTP server would otherwise take
// every connection it is offered: their requests wait unread in kernel buffers while the event
// loop is busy answering 429 to others, and each is read seconds later (or never, within the
// client's patience). Past the cap a new connection gets a canned 429 TOO_MANY_CONNECTIONS,
// written before any byte of it is parsed, and is closed: the cheapest refusal there is, and
// requests inside the server stay bounded by the cap, so their latency and the recovery after
// the flood stay bounded too.
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

function cannedRefusal(max: number): Buffer {
  const err = new CoreError('TOO_MANY_CONNECTIONS', `the server holds its maximum of ${max} connections; retry on a new connection`, { retryAfterS: 1 });
  return cannedAnswer(`${httpStatus(err)} Too Many Requests`, JSON.stringify(errorBody(err)), 'retry-after: 1\r\n');
}

/**
 * Cap the open connections of an HTTP server at `max` (0: no cap). `onRefused` is called for
 * each connection turned away (the metrics count them).
 */
export function limitConnections(server: Server, max: number, onRefused: () => void = () => {}): void {
  if (max <= 0) return;
  const refusal = cannedRefusal(max);
  // The body GET /health/live answers (src/serve/routes/health.ts).
  const live = cannedAnswer('200 OK', JSON.stringify({ status: 'live' }));
  let open = 0;
  // net.Server hands every accepted socket to emit('connection'); the HTTP server's parser is
  // attached by its own 'connection' listener, so a socket that never reaches it is never parsed.
  const emit = server.emit.bind(server) as (event: string | symbol, ...args: unknown[]) => boolean;
  server.emit = ((event: string | symbol, ...args: unknown[]): boolean => {
    if (event !== 'connection') return emit(event, ...args);
    const socket = args[0] as Socket;
    if (open >= max) {
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
    socket.once('close', () => open--);
    return emit(event, ...args);
  }) as Server['emit'];
}
