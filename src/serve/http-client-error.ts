// Answers to requests refused before our routes run, in the catalogue's body like every other
// error: node's HTTP parser (CR/LF or NUL in a header, headers over the size limit, a garbled
// request line, a receive timeout), node's own refusals (an unknown Expect; a missing Host is
// let through to the onRequest hook), and fastify's router (an undecodable URL, a parameter over
// maxParamLength). A request for /v2 gets the Open Inference Protocol's shape.
import { STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { CoreError } from './errors.js';
import { errorBody, httpStatus, v2ErrorBody } from './routes/error-replies.js';

const isV2Path = (url: string | undefined): boolean => url !== undefined && /^\/v2(\/|\?|$)/.test(url);

function bodyOf(e: CoreError, v2: boolean): string {
  return JSON.stringify(v2 ? v2ErrorBody(e) : errorBody(e));
}

/** The request line's target, from the bytes the parser refused (node attaches them as rawPacket). */
function targetOf(err: NodeJS.ErrnoException): string | undefined {
  const raw = (err as { rawPacket?: unknown }).rawPacket;
  const line = Buffer.isBuffer(raw) ? raw.subarray(0, 256).toString('latin1').split('\r\n', 1)[0] : undefined;
  return line?.split(' ')[1];
}

export function clientErrorHandler(err: NodeJS.ErrnoException, socket: Socket): void {
  // An answer already under way on this socket (headers sent): another one would corrupt it.
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (err.code === 'ECONNRESET' || err.code === 'EPIPE' || !socket.writable || inFlight?.headersSent) {
    socket.destroy();
    return;
  }
  const e =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? new CoreError('HEADERS_TOO_LARGE')
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? new CoreError('REQUEST_TIMEOUT')
        : new CoreError('INVALID_REQUEST', 'malformed HTTP request');
  const body = bodyOf(e, isV2Path(targetOf(err)));
  socket.end(
    `HTTP/1.1 ${httpStatus(e)} ${STATUS_CODES[httpStatus(e)]}\r\n` +
      `content-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

/** fastify's frameworkErrors: the router refused the URL before any hook ran. */
export function frameworkErrorHandler(error: Error & { code?: string }, request: FastifyRequest, reply: FastifyReply): void {
  const e =
    error.code === 'FST_ERR_MAX_PARAM_LENGTH'
      ? new CoreError('URI_TOO_LONG', 'a path parameter is longer than the server accepts (100 characters)')
      : error.code === 'FST_ERR_BAD_URL'
        ? new CoreError('INVALID_REQUEST', 'the URL is not valid percent-encoding')
        : new CoreError('INVALID_REQUEST', 'the request could not be routed');
  void reply
    .code(httpStatus(e))
    .header('content-type', 'application/json; charset=utf-8')
    .send(bodyOf(e, isV2Path(request.raw.url)));
}

/** node answers an Expect header other than 100-continue with a bare 417 unless told otherwise. */
export function answerUnknownExpectations(server: Server): void {
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    const e = new CoreError('EXPECTATION_FAILED', `the server does not support "Expect: ${String(req.headers.expect).slice(0, 64)}"; only 100-continue`);
    const body = bodyOf(e, isV2Path(req.url));
    res.writeHead(httpStatus(e), { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' });
    res.end(body);
  });
}

/** HTTP/1.1 requires Host; node's own refusal (requireHostHeader) is a bare 400, so the check is ours. */
export function missingHostError(request: FastifyRequest): CoreError | null {
  if (request.raw.httpVersion === '1.1' && request.headers.host === undefined) {
    return new CoreError('INVALID_REQUEST', 'an HTTP/1.1 request needs a Host header');
  }
  return null;
}
