// The connections of a graceful stop. node's http.Server.close() destroys every connection that
// has no request in flight at that instant -- including one the kernel had already accepted whose
// request bytes are waiting unread, and a kept-alive one whose client is sending its next request
// right then: both clients see a reset, not an answer. So the stop closes only the listener, and
// a connection is closed by the server only once it has been quiet (no request in flight, nothing
// answered or received) for IDLE_GRACE_MS; every answer while draining says `connection: close`,
// so busy connections end on their own after their next answer.
import { Server } from 'node:net';
import type { Server as HttpServer, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** How long a connection must be quiet before a draining server closes it. */
export const IDLE_GRACE_MS = 500;

interface Connection {
  busy: number;
  /** performance.now() of its accept or its last request start or answer. */
  lastActive: number;
}

export class ConnectionTracker {
  private readonly open = new Map<Socket, Connection>();
  private readonly emptied: (() => void)[] = [];

  constructor(server: HttpServer) {
    server.on('connection', (socket: Socket) => {
      this.open.set(socket, { busy: 0, lastActive: performance.now() });
      socket.once('close', () => {
        this.open.delete(socket);
        if (this.open.size === 0) for (const f of this.emptied.splice(0)) f();
      });
    });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      const c = this.open.get(req.socket);
      if (!c) return;
      c.busy++;
      c.lastActive = performance.now();
      res.once('close', () => {
        c.busy--;
        c.lastActive = performance.now();
      });
    });
  }

  get size(): number {
    return this.open.size;
  }

  /** Destroy connections with nothing in flight that have been quiet for at least `quietMs`. */
  closeQuiet(quietMs: number): void {
    const now = performance.now();
    for (const [socket, c] of this.open) if (c.busy === 0 && now - c.lastActive >= quietMs) socket.destroy();
  }

  destroyAll(): void {
    for (const socket of this.open.keys()) socket.destroy();
  }

  /** Resolves once no connection is open. */
  allClosed(): Promise<void> {
    if (this.open.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.emptied.push(resolve));
  }
}

/**
 * Stop accepting connections without touching the open ones (http.Server.close() would destroy
 * the idle ones at once). Connections the kernel has already queued are accepted first: libuv
 * accepts one connection per turn of the event loop, and closing the listener resets every
 * connection still queued, so the listener closes only after two turns in a row accepted
 * nothing (or after `maxMs`, when clients keep connecting).
 */
export async function stopListening(server: HttpServer, maxMs: number): Promise<void> {
  let accepted = 0;
  const count = (): void => void accepted++;
  server.on('connection', count);
  const end = performance.now() + maxMs;
  let quietTurns = 0;
  while (quietTurns < 2 && performance.now() < end) {
    const before = accepted;
    await new Promise((resolve) => setImmediate(resolve));
    quietTurns = accepted === before ? quietTurns + 1 : 0;
  }
  server.off('connection', count);
  if (server.listening) Server.prototype.close.call(server);
}
