// Routing as pure functions: table validation, the sticky hash (split, stability, how few keys
// a weight change moves), the cascade, online-accuracy intervals, signed feedback ids and the
// shadow runner's drop rule. The HTTP side is in routing-serve.test.ts.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { escalations, runCascade } from '../src/cascade-rule.js';
import { FeedbackIds } from '../src/serve/routing/feedback.js';
import { difference, OutcomeWindow, wilson } from '../src/serve/routing/online-accuracy.js';
import { shadowFits, shadowJob, shadowOutcomes } from '../src/serve/routing/shadow.js';
import { decide, keyUniform, rendezvous } from '../src/serve/routing/decide.js';
import { parseRoutingTable, RoutingTableError } from '../src/serve/routing/table.js';
import { checkRoutingDocument, routingTableSchema, type RoutingDocument } from '../src/serve/routing/table-schema.js';
import { sharedSchemas } from '../src/serve/routes/schemas.js';
import { CoreError } from '../src/serve/errors.js';

const LABELS = ['neg', 'pos'];
const VARIANTS = [
  { name: 'k1', labels: LABELS },
  { name: 'k2', labels: LABELS },
  { name: 'k4', labels: LABELS },
  { name: 'k2-other', labels: ['a', 'b', 'c'] },
];
const keys = (n: number, prefix = 'user-'): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

describe('routing table: validation', () => {
  const refused = (raw: unknown, message: RegExp): void => {
    assert.throws(
      () => parseRoutingTable('m', raw, VARIANTS),
      (err: unknown) => err instanceof RoutingTableError && message.test(err.message),
    );
  };

  test('the spec example parses, with defaults filled in', () => {
    const t = parseRoutingTable(
      'm',
      {
        variants: { k1: { weight: 90 }, k2: { weight: 10 } },
        sticky: true,
        shadow: { variant: 'k2', fraction: 0.1 },
        cascade: { order: ['k1', 'k2'], threshold: 0.9 },
      },
      VARIANTS,
    )!;
    assert.deepEqual(t.variants, { k1: { weight: 90 }, k2: { weight: 10 } });
    assert.deepEqual(t.cascade, { order: ['k1', 'k2'], threshold: 0.9 });
    assert.equal(parseRoutingTable('m', { variants: { k2: { weight: 1 } } }, VARIANTS)!.sticky, true);
    assert.deepEqual(parseRoutingTable('m', { cascade: { order: ['k1', 'k4'], threshold: 1 } }, VARIANTS)!.variants, { k1: { weight: 1 } });
    assert.equal(parseRoutingTable('m', null, VARIANTS), null);
  });

  test('refusals name the field and the reason', () => {
    refused({ variants: { k3: { weight: 1 } } }, /variants\.k3 names "k3", which is not a variant of m \(variants: k1, k2, k4, k2-other\)/);
    refused({ variants: { k1: { weight: -1 }, k2: { weight: 5 } } }, /variants\.k1\.weight must be a number >= 0, got -1/);
    refused({ variants: { k1: { weight: '5' } } }, /variants\.k1\.weight must be a number/);
    refused({ variants: { k1: { weight: 0 }, k2: { weight: 0 } } }, /weights add up to 0/);
    refused({ variants: {} }, /weights add up to 0/);
    refused({ shadow: { variant: 'k2', fraction: 1.5 } }, /shadow\.fraction must be a number in \[0, 1\], got 1\.5/);
    refused({ shadow: { variant: 'k9', fraction: 0.5 } }, /shadow\.variant names "k9"/);
    refused({ cascade: { order: ['k1', 'k3'], threshold: 0.9 } }, /cascade\.order\[1\] names "k3", which is not a variant/);
    refused({ cascade: { order: ['k1'], threshold: 0.9 } }, /cascade\.order must be a list of at least 2 strings, got \["k1"\]/);
    refused({ cascade: { order: ['k1', 7], threshold: 0.9 } }, /cascade\.order\[1\] must be a string, got 7/);
    refused({ shadow: { variant: 'k2' } }, /shadow\.fraction is required/);
    refused({ variants: { k1: { weight: 1, share: 2 } } }, /variants\.k1: unknown field "share" \(fields: weight\)/);
    refused({ variants: { k1: { weight: 1e-9 } } }, /must be 0 or between 0\.000001 and 1000000/);
    refused({ cascade: { order: ['k1', 'k1'], threshold: 0.9 } }, /names a variant twice/);
    refused({ cascade: { order: ['k1', 'k2-other'], threshold: 0.9 } }, /different labels/);
    refused({ cascade: { order: ['k1', 'k2'], threshold: 0 } }, /threshold must be a number in \(0, 1\], got 0/);
    refused({ cascade: { order: ['k1', 'k2'], threshold: 1.01 } }, /threshold must be a number in \(0, 1\]/);
    refused({ sticky: 'yes' }, /sticky must be true or false, got "yes"/);
    refused({ variant: { k1: { weight: 1 } } }, /unknown field "variant"/);
    refused([1, 2], /expected a JSON object/);
  });

  test('the validator is the PUT /routing body schema: what it accepts is typed as the schema says', () => {
    // The app registers this very object as RoutingTable (the PUT body and the OpenAPI component).
    assert.ok(sharedSchemas.includes(routingTableSchema as never));
    const doc: RoutingDocument = { variants: { k1: { weight: 2 } }, shadow: null, cascade: { order: ['k1', 'k2'], threshold: 0.5 } };
    assert.deepEqual(checkRoutingDocument('m', doc), doc);
    assert.throws(() => checkRoutingDocument('m', { cascade: { order: ['k1', 'k2'] } }), /cascade\.threshold is required/);
  });
});

describe('routing: sticky keys (weighted rendezvous hashing)', () => {
  test('keyUniform is in (0, 1) and looks uniform', () => {
    const us = keys(10_000).map((k) => keyUniform(k, 'k1'));
    assert.ok(us.every((u) => u > 0 && u < 1));
    const mean = us.reduce((a, b) => a + b, 0) / us.length;
    assert.ok(Math.abs(mean - 0.5) < 0.01, `mean ${mean}`);
  });

  for (const weights of [
    [
      ['k1', 90],
      ['k2', 10],
    ],
    [
      ['k1', 50],
      ['k2', 30],
      ['k4', 20],
    ],
    [
      ['k1', 1],
      ['k2', 1],
    ],
  ] as [string, number][][]) {
    test(`10,000 keys split within 2 points of ${weights.map(([n, w]) => `${n}=${w}`).join(', ')}`, () => {
      const counts = new Map<string, number>();
      for (const k of keys(10_000)) {
        const v = rendezvous(k, weights);
        counts.set(v, (counts.get(v) ?? 0) + 1);
      }
      const total = weights.reduce((a, [, w]) => a + w, 0);
      for (const [name, w] of weights) {
        const observed = (counts.get(name) ?? 0) / 10_000;
        assert.ok(Math.abs(observed - w / total) <= 0.02, `${name}: ${observed} vs ${w / total}`);
      }
    });
  }

  test('the same key keeps its variant; the order variants are listed in does not matter', () => {
    const w: [string, number][] = [
      ['k1', 70],
      ['k2', 30],
    ];
    for (const k of keys(1000)) {
      const v = rendezvous(k, w);
      assert.equal(rendezvous(k, w), v);
      assert.equal(rendezvous(k, [...w].reverse()), v);
    }
  });

  test('90/10 -> 80/20 moves about 10% of keys, all from k1 to k2, none back', () => {
    let moved = 0;
    for (const k of keys(10_000, 'session:')) {
      const before = rendezvous(k, [
        ['k1', 90],
        ['k2', 10],
      ]);
      const after = rendezvous(k, [
        ['k1', 80],
        ['k2', 20],
      ]);
      if (before !== after) {
        moved++;
        assert.equal(before, 'k1', `key ${k} moved from k2 to k1`);
      }
    }
    assert.ok(Math.abs(moved / 10_000 - 0.1) <= 0.015, `moved ${moved / 100}%`);
  });

  test('adding a variant takes keys only to it', () => {
    for (const k of keys(3000)) {
      const before = rendezvous(k, [
        ['k1', 50],
        ['k2', 50],
      ]);
      const after = rendezvous(k, [
        ['k1', 50],
        ['k2', 50],
        ['k4', 20],
      ]);
      assert.ok(after === before || after === 'k4', `key ${k}: ${before} -> ${after}`);
    }
  });

  test('decision order: explicit > cascade > sticky > weighted', () => {
    const base = { variants: { k1: { weight: 50 }, k2: { weight: 50 } }, sticky: true, shadow: null, cascade: null };
    const cascade = { ...base, cascade: { order: ['k1', 'k2'], threshold: 0.9 } };
    // Every decision is a cascade; a single variant is a one-stage one.
    const one = (reason: string, variant: string) => ({ reason, stages: [variant], threshold: 1 });
    assert.deepEqual(decide(cascade, 'k1', { variant: 'k4', key: 'x' }), one('explicit', 'k4'));
    assert.deepEqual(decide(cascade, 'k1', { key: 'x' }), { reason: 'cascade', stages: cascade.cascade!.order, threshold: cascade.cascade!.threshold });
    assert.deepEqual(
      decide(base, 'k1', { key: 'x' }),
      one(
        'sticky',
        rendezvous('x', [
          ['k1', 50],
          ['k2', 50],
        ]),
      ),
    );
    assert.deepEqual(
      decide(base, 'k1', {}, () => 0.75),
      one('weighted', 'k2'),
    );
    assert.deepEqual(
      decide({ ...base, sticky: false }, 'k1', { key: 'x' }, () => 0.1),
      one('weighted', 'k1'),
    );
    assert.deepEqual(decide(null, 'k1', { key: 'x' }), one('default', 'k1'));
  });
});

describe('routing: cascade', () => {
  test('inputs under the threshold go to the next stage; the last one decides; cost sums depths', async () => {
    const stages = [
      { name: 'k1', depth: 1 },
      { name: 'k2', depth: 2 },
      { name: 'k4', depth: 4 },
    ];
    // Per stage: top probability of each of 4 inputs.
    const top = [
      [0.95, 0.6, 0.7, 0.99],
      [0.5, 0.92, 0.6, 0.5],
      [0.55, 0.55, 0.51, 0.5],
    ];
    const calls: number[][] = [];
    const r = await runCascade(stages, 0.9, 4, async (_s, s, inputs) => {
      calls.push(inputs);
      return inputs.map((i) => [top[s]![i]!, 1 - top[s]![i]!]);
    });
    assert.deepEqual(calls, [[0, 1, 2, 3], [1, 2], [2]]);
    assert.deepEqual(r.decidedBy, [0, 1, 2, 0]);
    assert.deepEqual(r.cost, [1, 3, 7, 1]);
    assert.deepEqual(r.ran, [4, 2, 1]);
    assert.deepEqual(escalations(stages, r), [
      ['k1', 'k2', 2],
      ['k2', 'k4', 1],
    ]);
    assert.equal(r.probabilities[2]![0], 0.51);
  });

  test('threshold 1 sends everything not certain to the end', async () => {
    const r = await runCascade(
      [
        { name: 'a', depth: 1 },
        { name: 'b', depth: 2 },
      ],
      1,
      3,
      async (_s, s, inputs) => inputs.map(() => (s === 0 ? [0.999, 0.001] : [0.4, 0.6])),
    );
    assert.deepEqual(r.decidedBy, [1, 1, 1]);
  });
});

describe('routing: online accuracy', () => {
  test('Wilson interval matches a textbook value and stays in [0, 1]', () => {
    const ci = wilson(8, 10); // 0.8 of 10: [0.490, 0.943]
    assert.ok(Math.abs(ci.low - 0.4902) < 1e-3 && Math.abs(ci.high - 0.9433) < 1e-3, JSON.stringify(ci));
    const zero = wilson(0, 5);
    assert.equal(zero.low, 0);
    assert.ok(zero.high > 0.4 && zero.high < 0.5);
  });

  test('the window keeps the last N outcomes', () => {
    const w = new OutcomeWindow(4);
    for (const c of [false, false, true, true, true, true]) w.add(c);
    assert.deepEqual({ n: w.estimate().n, correct: w.estimate().correct, total: w.total }, { n: 4, correct: 4, total: 6 });
    w.add(false);
    assert.equal(w.estimate().accuracy, 0.75);
  });

  test('a difference becomes significant only with enough data', () => {
    const est = (c: number, n: number) => ({ n, correct: c, accuracy: c / n, ci95: wilson(c, n) });
    assert.equal(difference('a', est(9, 10), 'b', est(7, 10))!.significant, false);
    const big = difference('a', est(900, 1000), 'b', est(700, 1000))!;
    assert.equal(big.significant, true);
    assert.ok(Math.abs(big.difference - 0.2) < 1e-12 && big.ci95.low > 0.15 && big.ci95.high < 0.25, JSON.stringify(big));
  });
});

describe('routing: feedback ids', () => {
  const record = { trace: 'req-1', model: 'tiny', variants: ['k1', 'k2'], labels: ['neg', 'pos'], time: 1_000_000 };

  test('signed ids carry the prediction and verify on any instance with the secret', () => {
    const now = () => 1_000_500;
    const a = new FeedbackIds({ secret: 'shared-secret-1', ttlMs: 60_000, capacity: 10, now });
    const b = new FeedbackIds({ secret: 'shared-secret-1', ttlMs: 60_000, capacity: 10, now });
    const id = a.issue(record);
    assert.match(id, /^v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
    assert.deepEqual(b.resolve(id).record, record);
    assert.equal(b.markAnswered(b.resolve(id).key, 0), true);
    assert.equal(b.markAnswered(b.resolve(id).key, 0), false);
  });

  test('forged, altered or foreign ids are 400; expired ones 404', () => {
    const a = new FeedbackIds({ secret: 'shared-secret-1', ttlMs: 60_000, capacity: 10, now: () => 1_000_500 });
    const id = a.issue(record);
    const [p, body, mac] = id.split('.');
    const altered = JSON.parse(Buffer.from(body!, 'base64url').toString());
    altered.l = ['pos', 'pos'];
    const codeOf = (f: () => unknown): string => {
      try {
        f();
      } catch (err) {
        return (err as CoreError).code;
      }
      return 'none';
    };
    assert.equal(
      codeOf(() => a.resolve(`${p}.${Buffer.from(JSON.stringify(altered)).toString('base64url')}.${mac}`)),
      'INVALID_REQUEST_ID',
    );
    assert.equal(
      codeOf(() => a.resolve(`${p}.${body}.${mac!.slice(0, -2)}AA`)),
      'INVALID_REQUEST_ID',
    );
    assert.equal(
      codeOf(() => a.resolve('req-1')),
      'INVALID_REQUEST_ID',
    );
    const other = new FeedbackIds({ secret: 'another-secret', ttlMs: 60_000, capacity: 10, now: () => 1_000_500 });
    assert.equal(
      codeOf(() => other.resolve(id)),
      'INVALID_REQUEST_ID',
    );
    const later = new FeedbackIds({ secret: 'shared-secret-1', ttlMs: 60_000, capacity: 10, now: () => 1_000_000 + 60_001 });
    assert.equal(
      codeOf(() => later.resolve(id)),
      'REQUEST_ID_NOT_FOUND',
    );
  });

  test('without a secret: a bounded store with a TTL', () => {
    let t = 0;
    const s = new FeedbackIds({ secret: null, ttlMs: 1000, capacity: 3, now: () => t });
    // The ids are the server's own (random), never the trace id a client may have chosen.
    const ids = ['a', 'b', 'c', 'd'].map((trace) => s.issue({ ...record, trace }));
    for (const [i, id] of ids.entries()) assert.notEqual(id, ['a', 'b', 'c', 'd'][i]);
    assert.equal(new Set(ids).size, 4);
    assert.equal(s.stored, 3);
    assert.throws(() => s.resolve(ids[0]!), /no answered request/); // evicted: capacity 3
    assert.throws(() => s.resolve('d'), /no answered request/); // the trace id names nothing
    assert.equal(s.resolve(ids[3]!).record.labels[1], 'pos');
    t = 1001;
    assert.throws(
      () => s.resolve(ids[3]!),
      (err: unknown) => (err as CoreError).code === 'REQUEST_ID_NOT_FOUND',
    );
  });
});

describe('routing: shadow', () => {
  const table = { variants: { k1: { weight: 1 } }, sticky: true, shadow: { variant: 'k2', fraction: 1 }, cascade: null };

  test('a job leaves out inputs the shadow variant answered itself', () => {
    const job = shadowJob(table, 'm', ['a', 'b', 'c'], ['k1', 'k2', 'k1'], ['neg', 'pos', 'pos'], true)!;
    assert.deepEqual(job.texts, ['a', 'c']);
    assert.equal(
      shadowJob({ ...table, shadow: { variant: 'k2', fraction: 0.5 } }, 'm', ['a'], ['k1'], ['neg'], true, () => 0.6),
      null,
    );
    assert.equal(shadowJob(table, 'm', ['a'], ['k2'], ['neg'], true), null);
  });

  test('agreement is counted per input; over half a queue the job is dropped, not queued', () => {
    const job = shadowJob(table, 'm', ['a', 'b', 'c'], ['k1', 'k1', 'k4'], ['neg', 'pos', 'neg'], true)!;
    assert.deepEqual(shadowOutcomes(job, ['neg', 'neg', 'neg']), [
      ['k1', 'agree', 1],
      ['k1', 'disagree', 1],
      ['k4', 'agree', 1],
    ]);
    assert.deepEqual(shadowOutcomes(job, null), [
      ['k1', 'dropped', 2],
      ['k4', 'dropped', 1],
    ]);
    assert.equal(shadowFits(2, 3, 10), true); // 2 + 3 <= 10 / 2
    assert.equal(shadowFits(3, 3, 10), false);
  });
});
