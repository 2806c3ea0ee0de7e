// Requests node's HTTP parser refuses before fastify sees them (CR/LF or NUL in a header, headers
// over the size limit, a garbled request line, a header timeout) are answered with the
// catalogue's error body like every other error, then the connection is closed.
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { errorBody, SlimError } from './errors.js';

export function clientErrorHandler(err: NodeJS.ErrnoException, socket: Socket): void {
  // An answer already under way on this socket (headers sent): another one would corrupt it.
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (err.code === 'ECONNRESET' || err.code === 'EPIPE' || !socket.writable || inFlight?.headersSent) {
    socket.destroy();
    return;
  }
  const e =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? new SlimError('HEADERS_TOO_LARGE')
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? new SlimError('REQUEST_TIMEOUT')
        : new SlimError('INVALID_REQUEST', 'malformed HTTP request');
  const body = JSON.stringify(errorBody(e));
  socket.end(
    `HTTP/1.1 ${e.statusCode} ${STATUS_CODES[e.statusCode]}\r\n` +
      `content-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}
