// A minimal HTTP/1.1 client for floods: pre-built request bytes written to keep-alive sockets,
// answers parsed just far enough to get the status, and the body only for 5xx.
//
// Why not node:http (or autocannon's open loop): on a 2-core machine the load generator shares
// the CPU with the server it floods. node:http costs some tens of microseconds per request
// (ClientRequest, header objects, an IncomingMessage stream); at 3x the server's maximum rate
// that is most of a core, the generator falls seconds behind its schedule, and the run measures
// the generator. Writing a Buffer and scanning the answer's head costs a few microseconds.
//
// One request at a time per socket (no pipelining, so a slow answer delays only its own socket);
// a request that finds no free socket opens one, up to maxSockets, and past that waits in a FIFO
// (that wait is part of its latency, as it would be for a real client).
import { connect, type Socket } from 'node:net';

export interface RawAnswer {
  /** HTTP status; 0: the connection failed or closed before an answer; -1: no answer within timeoutMs. */
  status: number;
  /** The status line and headers (latin1), when an answer came. */
  head?: string;
  /** The body, for answers >= 500 only. */
  body?: string;
  /** performance.now() when the request was written to a socket (absent: it never got one). */
  writtenAt?: number;
}

interface Pending {
  bytes: Buffer;
  startedAt: number;
  writtenAt?: number;
  timeoutMs: number;
  done: (a: RawAnswer) => void;
}

interface Conn {
  socket: Socket;
  buffer: Buffer;
  current: Pending | null;
  /** Parsed head of the current answer: status and body length, once the head is complete. */
  status: number;
  head: string;
  bodyStart: number;
  bodyLength: number;
  chunked: boolean;
  /** The answer said `connection: close`: the socket is not reused. */
  closing: boolean;
}

const HEAD_END = Buffer.from('\r\n\r\n');
const CHUNKED_END = Buffer.from('\r\n0\r\n\r\n');

export class RawHttpClient {
  private readonly idle: Conn[] = [];
  private readonly all = new Set<Conn>();
  private readonly waiting: Pending[] = [];
  private waitingHead = 0;
  private readonly host: string;
  private readonly port: number;
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;

  constructor(
    url: string,
    private readonly maxSockets = 1024,
  ) {
    const u = new URL(url);
    this.host = u.hostname;
    this.port = Number(u.port || 80);
    // Timeouts by a sweep rather than a timer per request: one timer for thousands in flight.
    this.sweeper = setInterval(() => this.sweep(), 100);
    this.sweeper.unref();
  }

  /** The bytes of a POST with a JSON body, built once and reused for every send. */
  postBytes(path: string, body: string): Buffer {
    const payload = Buffer.from(body);
    const head = `POST ${path} HTTP/1.1\r\nhost: ${this.host}:${this.port}\r\ncontent-type: application/json\r\ncontent-length: ${payload.length}\r\n\r\n`;
    return Buffer.concat([Buffer.from(head, 'latin1'), payload]);
  }

  /** Requests waiting for a socket. */
  get queued(): number {
    return this.waiting.length - this.waitingHead;
  }

  send(bytes: Buffer, timeoutMs: number): Promise<RawAnswer> {
    return new Promise((done) => {
      const p: Pending = { bytes, startedAt: performance.now(), timeoutMs, done };
      const conn = this.idle.pop() ?? (this.all.size < this.maxSockets ? this.open() : null);
      if (conn) this.start(conn, p);
      else this.waiting.push(p);
    });
  }

  /** Close every socket and give up every request not answered yet (status 0). */
  close(): void {
    this.closed = true;
    clearInterval(this.sweeper);
    for (const c of [...this.all]) this.drop(c, { status: 0 });
    for (let i = this.waitingHead; i < this.waiting.length; i++) this.waiting[i]!.done({ status: 0 });
    this.waiting.length = 0;
    this.waitingHead = 0;
  }

  private open(): Conn {
    const socket = connect({ host: this.host, port: this.port, noDelay: true });
    const conn: Conn = { socket, buffer: Buffer.alloc(0), current: null, status: 0, head: '', bodyStart: -1, bodyLength: 0, chunked: false, closing: false };
    this.all.add(conn);
    socket.on('data', (chunk: Buffer) => this.onData(conn, chunk));
    const gone = (): void => this.drop(conn, { status: 0 });
    socket.on('error', gone);
    socket.on('close', gone);
    return conn;
  }

  private start(conn: Conn, p: Pending): void {
    conn.current = p;
    conn.buffer = Buffer.alloc(0);
    conn.status = 0;
    conn.bodyStart = -1;
    p.writtenAt = performance.now();
    conn.socket.write(p.bytes);
  }

  private onData(conn: Conn, chunk: Buffer): void {
    const p = conn.current;
    if (!p) return; // bytes nobody asked for: ignored (the server never sends them)
    conn.buffer = conn.buffer.length === 0 ? chunk : Buffer.concat([conn.buffer, chunk]);
    const buf = conn.buffer;
    if (conn.bodyStart < 0) {
      const end = buf.indexOf(HEAD_END);
      if (end < 0) return;
      const head = (conn.head = buf.toString('latin1', 0, end));
      conn.status = Number(head.slice(9, 12));
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      conn.chunked = !length && /\r\ntransfer-encoding:\s*chunked/i.test(head);
      conn.closing = /\r\nconnection:\s*close/i.test(head);
      conn.bodyLength = length ? Number(length[1]) : 0;
      conn.bodyStart = end + HEAD_END.length;
    }
    let complete: boolean;
    let bodyEnd: number;
    if (conn.chunked) {
      bodyEnd = buf.indexOf(CHUNKED_END, conn.bodyStart - 2);
      complete = bodyEnd >= 0;
    } else {
      bodyEnd = conn.bodyStart + conn.bodyLength;
      complete = buf.length >= bodyEnd;
    }
    if (!complete) return;
    const answer: RawAnswer = { status: conn.status, head: conn.head, writtenAt: p.writtenAt! };
    if (conn.status >= 500) answer.body = buf.toString('utf8', conn.bodyStart, bodyEnd);
    conn.current = null;
    conn.buffer = Buffer.alloc(0);
    // A socket the server closes after this answer takes no next request; a new one does.
    if (conn.closing) this.drop(conn, { status: 0 });
    else this.release(conn);
    p.done(answer);
  }

  /** A socket whose answer is complete: to the next waiting request, else to the idle list. */
  private release(conn: Conn): void {
    if (this.closed) return;
    if (this.waitingHead < this.waiting.length) {
      const next = this.waiting[this.waitingHead++]!;
      if (this.waitingHead > 4096 && this.waitingHead * 2 > this.waiting.length) {
        this.waiting.splice(0, this.waitingHead);
        this.waitingHead = 0;
      }
      this.start(conn, next);
    } else {
      this.idle.push(conn);
    }
  }

  private drop(conn: Conn, answer: RawAnswer): void {
    if (!this.all.delete(conn)) return;
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
    conn.socket.destroy();
    const p = conn.current;
    conn.current = null;
    if (p) p.done({ ...answer, ...(p.writtenAt !== undefined ? { writtenAt: p.writtenAt } : {}) });
    // A waiting request gets a fresh socket in place of the lost one.
    if (!this.closed && this.waitingHead < this.waiting.length) this.start(this.open(), this.waiting[this.waitingHead++]!);
  }

  private sweep(): void {
    const now = performance.now();
    for (const conn of this.all) {
      const p = conn.current;
      if (p && now - p.startedAt > p.timeoutMs) this.drop(conn, { status: -1 });
    }
    // Requests still waiting for a socket past their timeout are hung as well.
    while (this.waitingHead < this.waiting.length && now - this.waiting[this.waitingHead]!.startedAt > this.waiting[this.waitingHead]!.timeoutMs) {
      this.waiting[this.waitingHead++]!.done({ status: -1 });
    }
  }
}
