// What the integration tests that run a real Prometheus share: a free loopback port to give a
// process, starting Prometheus on one, and instant queries against its HTTP API, polled until a
// condition holds.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../../loadtest/lib/free-port.js';
import { untilAnswers } from './http.js';

export { freePort };

export interface PrometheusProcess {
  child: ChildProcess;
  url: string;
  /** Its stdout and stderr so far. */
  log: () => string;
}

/**
 * Prometheus (`bin`) on a free loopback port with `config` as dir/prometheus.yml and its data
 * under dir/data, logging warnings; resolves once /-/ready answers (fails after 20 s, or when
 * it exits first, with its log; killed then).
 */
export async function startPrometheus(bin: string, dir: string, config: string): Promise<PrometheusProcess> {
  writeFileSync(join(dir, 'prometheus.yml'), config);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(
    bin,
    [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let log = '';
  child.stdout.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr.on('data', (d: Buffer) => (log += d.toString()));
  try {
    await untilAnswers('prometheus', `${url}/-/ready`, child, () => log, 20_000);
  } catch (err) {
    child.kill('SIGKILL'); // not left running by a test that failed to start it
    throw err;
  }
  return { child, url, log: () => log };
}

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
