// The floor under main-thread CPU per request (main-thread.ts --floor): what Node's HTTP stack,
// and fastify on top of it, cost on this CPU with no model, no workers and no serving code. Two
// servers answer POST /classify with one fixed answer (a real /classify answer captured from our
// server, with its x-* headers): 'http' is a bare node:http server that reads the body and
// writes the answer; 'fastify' is one fastify route that parses and validates the same body and
// serialises the same answer through a response schema (fast-json-stringify), as our routes do.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import Fastify from 'fastify';

export interface FloorServerSpec {
  server: 'http' | 'fastify';
  /** The answer body, JSON. */
  answer: string;
  /** Response headers sent with it (besides content-type and content-length). */
  headers: Record<string, string>;
}

/** A JSON schema of a value's shape (objects with every key required), for fastify's serialiser. */
export function schemaOf(value: unknown): Record<string, unknown> {
  if (Array.isArray(value)) return { type: 'array', items: value.length > 0 ? schemaOf(value[0]) : {} };
  if (value === null) return { type: 'null' };
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>);
    return {
      type: 'object',
      properties: Object.fromEntries(entries.map(([k, v]) => [k, schemaOf(v)])),
      required: entries.map(([k]) => k),
    };
  }
  if (typeof value === 'number') return { type: 'number' };
  return { type: typeof value };
}

export async function startFloorServer(spec: FloorServerSpec, onHandled: () => void): Promise<{ url: string; close(): Promise<void> }> {
  return spec.server === 'http' ? startHttp(spec, onHandled) : startFastify(spec, onHandled);
}

async function startHttp(spec: FloorServerSpec, onHandled: () => void): Promise<{ url: string; close(): Promise<void> }> {
  const body = Buffer.from(spec.answer);
  const headers = { ...spec.headers, 'content-type': 'application/json; charset=utf-8', 'content-length': String(body.length) };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      JSON.parse(Buffer.concat(chunks).toString('utf8'));
      res.writeHead(200, headers);
      res.end(body);
      onHandled();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function startFastify(spec: FloorServerSpec, onHandled: () => void): Promise<{ url: string; close(): Promise<void> }> {
  const answer = JSON.parse(spec.answer) as unknown;
  const app = Fastify({ logger: false });
  app.post(
    '/classify',
    {
      schema: {
        body: {
          type: 'object',
          required: ['inputs'],
          properties: {
            inputs: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] },
            model: { type: 'string' },
            variant: { type: 'string' },
          },
        },
        response: { 200: schemaOf(answer) },
      },
    },
    async (_request, reply) => {
      reply.headers(spec.headers);
      onHandled();
      return answer;
    },
  );
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, close: () => app.close() };
}
