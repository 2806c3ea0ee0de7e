// What the integration tests that run a real Prometheus share: a free loopback port to give a
// process, and instant queries against Prometheus' HTTP API, polled until a condition holds.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';

export { freePort } from '../../loadtest/lib/free-port.js';

/** One element of an instant-vector result. */
export interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

export interface PrometheusQueries {
  query: (q: string) => Promise<Sample[]>;
  /** Poll a query until `ok` holds (or fail after timeoutMs with what it last saw and the log). */
  waitFor: (q: string, ok: (r: Sample[]) => boolean, timeoutMs?: number) => Promise<Sample[]>;
}

/** Queries against the Prometheus at url(); log() is its output so far, shown on a timeout. */
export function prometheusQueries(url: () => string, log: () => string, defaultTimeoutMs: number): PrometheusQueries {
  const query = async (q: string): Promise<Sample[]> => {
    const res = await fetch(`${url()}/api/v1/query?query=${encodeURIComponent(q)}`);
    const body = (await res.json()) as { status: string; error?: string; data: { resultType: string; result: Sample[] } };
    assert.equal(body.status, 'success', `query ${q}: ${body.error}`);
    assert.equal(body.data.resultType, 'vector');
    return body.data.result;
  };
  const waitFor = async (q: string, ok: (r: Sample[]) => boolean, timeoutMs = defaultTimeoutMs): Promise<Sample[]> => {
    const until = Date.now() + timeoutMs;
    let last: Sample[] = [];
    while (Date.now() < until) {
      last = await query(q);
      if (ok(last)) return last;
      await sleep(250);
    }
    assert.fail(`timed out waiting on ${q}; last result ${JSON.stringify(last)}\nprometheus log:\n${log().slice(-2000)}`);
  };
  return { query, waitFor };
}
