// What serving tests do over HTTP and with time: call an endpoint and read its JSON, wait until a
// condition holds, and wait until a process they started answers. One copy here instead of one
// per test file.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

export interface JsonAnswer {
  status: number;
  headers: Headers;
  json: any;
  /** Wall time of the call, ms. */
  ms: number;
}

/** One HTTP call with a JSON body (raw: a string body is sent as it is); the answer's JSON (null when empty). */
export async function call(
  method: string,
  url: string,
  body?: unknown,
  opts: { headers?: Record<string, string>; signal?: AbortSignal; raw?: boolean } = {},
): Promise<JsonAnswer> {
  const started = performance.now();
  const res = await fetch(url, {
    method,
    headers: body === undefined ? opts.headers : { 'content-type': 'application/json', ...opts.headers },
    body: body === undefined ? undefined : opts.raw && typeof body === 'string' ? body : JSON.stringify(body),
    signal: opts.signal,
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, json: text ? JSON.parse(text) : null, ms: performance.now() - started };
}

export const post = (url: string, body: unknown, headers: Record<string, string> = {}): Promise<JsonAnswer> => call('POST', url, body, { headers });

/**
 * Poll `fn` until it gives a value (anything but undefined and false), and return it; throws
 * "timed out waiting for <what>" after timeoutMs.
 */
export async function until<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 10_000, everyMs = 20): Promise<T> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * Poll GET `url` until it answers 2xx (a readiness endpoint of a process the test started). Fails
 * with the process's log (`log()`, its last 2000 characters) when `child` exits first, or when
 * it is not ready after timeoutMs.
 */
export async function untilAnswers(what: string, url: string, child: ChildProcess, log: () => string, timeoutMs: number, everyMs = 200): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) assert.fail(`${what} exited ${child.exitCode ?? child.signalCode}:\n${log().slice(-2000)}`);
    const ok = await fetch(url).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return;
    if (Date.now() > end) assert.fail(`${what} not ready after ${timeoutMs / 1000} s:\n${log().slice(-2000)}`);
    await sleep(everyMs);
  }
}
