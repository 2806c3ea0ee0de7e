// Sessions over in-memory graphs past the external-data threshold (what a frozen body past
// protobuf's 2 GB needs in training) are opened from a temporary model.onnx + model.onnx.data:
// made small here by a low threshold, they answer exactly as the session built from bytes does,
// and leave no temporary files behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../src/pipeline/graph.js';
import { createGraphSession } from '../src/pipeline/training/graph-session.js';

test('a graph past the threshold is opened through external data and computes what the in-memory one does', async () => {
  const g = new GraphBuilder('ext');
  const x = g.input('x', 'float32', [2, 64]);
  const w = new Float32Array(64 * 32).map((_, i) => Math.sin(i) / 8);
  const y = g.op('MatMul', [x, g.initializer('w', w, [64, 32])]);
  g.output(g.identity(y, 'y'), 'float32', [2, 32]);
  const xs = new Float32Array(2 * 64).map((_, i) => Math.cos(i));
  // The reference: a plain loop in float64.
  const want = new Float64Array(2 * 32);
  for (let r = 0; r < 2; r++) for (let c = 0; c < 32; c++) for (let k = 0; k < 64; k++) want[r * 32 + c] += xs[r * 64 + k]! * w[k * 32 + c]!;
  // Temporary files go under TMPDIR: point it at a fresh folder to see that none of ours stay.
  const tmp = mkdtempSync(join(tmpdir(), 'slim-graph-session-'));
  const saved = process.env.TMPDIR;
  process.env.TMPDIR = tmp;
  try {
    const opts = { logSeverityLevel: 3 as const };
    for (const threshold of [1e9, 1000]) {
      const s = await createGraphSession(g, opts, threshold);
      const got = (await s.run({ x: new ort.Tensor('float32', xs, [2, 64]) })).y!.data as Float32Array;
      for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i]! - want[i]!) < 1e-5, `threshold ${threshold}: y[${i}] = ${got[i]}, want ${want[i]}`);
      await s.release();
    }
    // (Other libraries may leave their own files there; ours are slim-session-*.)
    assert.deepEqual(
      readdirSync(tmp).filter((f) => f.startsWith('slim-session-')),
      [],
    );
  } finally {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
    rmSync(tmp, { recursive: true, force: true });
  }
});
