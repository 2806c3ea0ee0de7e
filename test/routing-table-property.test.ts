// A routing table that passes validation always serves: property-tested with fast-check against a
// real server -- every generated table is PUT; one refused must be 400 INVALID_ROUTING, one
// accepted must then answer /classify without and with a key, and /v2 infer, with 200. Weights
// range over the doubles JSON can carry (0, subnormals, near-overflow, negatives), fractions and
// thresholds over and around [0, 1]. And concurrent PUTs: once they all return, the live table,
// routing.json and the last acknowledged PUT are the same table.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import type { RunningServer } from '../src/serve/server.js';
import { createFixtureRepository } from './helpers/fixture-model.js';
import { call as callWith } from './helpers/http.js';
import { startTestServer } from './helpers/serve.js';

const ADMIN = 'admin-token-for-tests';
const repo = createFixtureRepository([{ name: 'tiny', variants: ['k1', 'k2'] }]);
let server: RunningServer;
before(async () => {
  server = (await startTestServer({ models: repo.dir, adminToken: ADMIN, routingReloadMs: 20, 'feedback.rateLimit': 0 })).server;
});
after(async () => {
  await server.close();
  repo.cleanup();
});

const call = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
  callWith(method, `${server.url}${path}`, body, { headers });
const put = (table: unknown) => call('PUT', '/routing/tiny', table, { authorization: `Bearer ${ADMIN}` });

const number = fc.oneof(
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom(0, 1, 0.5, -1, 5e-324, 1e-310, 1e-7, 1e-6, 1e6, 1e7, 1e300, 1.7976931348623157e308),
);
const fraction = fc.oneof(fc.double({ min: -0.5, max: 1.5, noNaN: true }), fc.constantFrom(0, 1, 5e-324, 1 + Number.EPSILON));
const weights = fc.record({ k1: fc.option(number, { nil: undefined }), k2: fc.option(number, { nil: undefined }) }).map((w) =>
  Object.fromEntries(
    Object.entries(w)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => [k, { weight: v }]),
  ),
);
const table = fc.record(
  {
    variants: weights,
    sticky: fc.boolean(),
    shadow: fc.record({ variant: fc.constantFrom('k1', 'k2'), fraction }),
    cascade: fc.record({ order: fc.constantFrom(['k1', 'k2'], ['k2', 'k1']), threshold: fraction }),
  },
  { requiredKeys: [] },
);

test('every table that passes validation serves /classify (with and without a key) and /v2', async () => {
  let accepted = 0;
  await fc.assert(
    fc.asyncProperty(table, fc.string({ minLength: 1, maxLength: 20 }), async (t, key) => {
      const r = await put(t);
      if (r.status === 400) {
        assert.equal(r.json.error.code, 'INVALID_ROUTING');
        return;
      }
      assert.equal(r.status, 200, JSON.stringify(r.json));
      accepted++;
      const plain = await call('POST', '/classify', { inputs: 'good film' });
      assert.equal(plain.status, 200, `no key: ${JSON.stringify(plain.json)}`);
      const keyed = await call('POST', '/classify', { inputs: 'good film', key });
      assert.equal(keyed.status, 200, `key ${JSON.stringify(key)}: ${JSON.stringify(keyed.json)}`);
      const v2 = await call('POST', '/v2/models/tiny/infer', { inputs: [{ name: 'text', datatype: 'BYTES', shape: [1], data: ['good film'] }] });
      assert.equal(v2.status, 200, `v2: ${JSON.stringify(v2.json)}`);
    }),
    {
      numRuns: 40,
      // Tables that passed validation before the numeric checks and then failed to serve.
      examples: [
        [{ variants: { k1: { weight: 5e-324 } } }, 'user-1'],
        [{ variants: { k1: { weight: 1.7976931348623157e308 }, k2: { weight: 1.7976931348623157e308 } } }, 'user-2'],
      ],
    },
  );
  assert.ok(accepted > 0, 'some generated tables were accepted');
});

test('concurrent PUTs: the live table, routing.json and the last acknowledged PUT agree', async () => {
  for (let round = 0; round < 4; round++) {
    const acknowledged: number[] = [];
    await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        put({ variants: { k1: { weight: round * 100 + i + 1 }, k2: { weight: 1 } } }).then((r) => {
          assert.equal(r.status, 200);
          acknowledged.push(round * 100 + i + 1);
        }),
      ),
    );
    const last = acknowledged.at(-1)!;
    const liveAtOnce = (await call('GET', '/routing/tiny')).json;
    assert.equal(
      liveAtOnce.routing.variants.k1.weight,
      last,
      `round ${round}: right after the PUTs live k1=${liveAtOnce.routing.variants.k1.weight}, the last acknowledged PUT k1=${last}`,
    );
    const file = JSON.parse(readFileSync(join(repo.dir, 'tiny', 'routing.json'), 'utf8'));
    assert.equal(file.variants.k1.weight, last, `round ${round}: routing.json holds k1=${file.variants.k1.weight}, the last acknowledged PUT k1=${last}`);
    await sleep(100); // five reload polls: none may swap an older file back in
    const live = (await call('GET', '/routing/tiny')).json;
    assert.equal(live.routing.variants.k1.weight, last, `round ${round}: live k1=${live.routing.variants.k1.weight}, the last acknowledged PUT k1=${last}`);
  }
});
