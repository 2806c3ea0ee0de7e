// The piecewise model encoding (src/pipeline/onnx-pieces.ts) that variants and training sessions
// are written with: its concatenation decodes to the same model as protobufjs' own encoding, the
// weights are the caller's bytes (views, not copies), and onnxruntime computes the same outputs
// from either file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../src/pipeline/graph.js';
import { onnx } from '../src/pipeline/onnx-proto.js';
import { modelPieces } from '../src/pipeline/onnx-pieces.js';

function concat(pieces: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(pieces.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of pieces) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

test('model pieces: same decoded model and outputs as one encode(), weights not copied', async () => {
  const g = new GraphBuilder('pieces');
  const x = g.input('x', 'float32', ['batch', 300]);
  // 300 x 200 floats (240 KB: past the 64 KiB coalescing size, so it stays a view) and small ones.
  const w = new Float32Array(300 * 200).map((_, i) => Math.sin(i) / 16);
  const h = g.op('MatMul', [x, g.initializer('w', w, [300, 200])]);
  const y = g.op('Add', [
    h,
    g.initializer(
      'b',
      new Float32Array(200).map((_, i) => i / 100),
      [200],
    ),
  ]);
  g.output(g.identity(g.op('Mul', [y, g.constF(0.5)]), 'y'), 'float32', ['batch', 200]);
  const model = g.toModel({ docString: 'pieces test', metadata: { a: 'b' } });
  const whole = onnx.ModelProto.encode(model).finish();
  const { pieces, bytes } = modelPieces(model);
  const joined = concat(pieces);
  assert.equal(bytes, joined.length);
  assert.equal(joined.length, whole.length, 'same fields, other order: same length');
  // Decoded and encoded again (in protobufjs' field order), it is byte for byte the one-piece encoding.
  assert.ok(Buffer.from(onnx.ModelProto.encode(onnx.ModelProto.decode(joined)).finish()).equals(Buffer.from(whole)));
  assert.ok(!Buffer.from(joined).equals(Buffer.from(whole)), 'the fields are in another order (else this test checks nothing new)');
  assert.ok(
    pieces.some((p) => p.buffer === w.buffer),
    'the weight is written from its own buffer',
  );
  // The model is left as it was.
  assert.ok(Buffer.from(onnx.ModelProto.encode(model).finish()).equals(Buffer.from(whole)));

  const xs = new Float32Array(2 * 300).map((_, i) => Math.cos(i));
  const outputs: Float32Array[] = [];
  for (const bytesOf of [whole, joined]) {
    const s = await ort.InferenceSession.create(bytesOf, { logSeverityLevel: 3 });
    outputs.push((await s.run({ x: new ort.Tensor('float32', xs, [2, 300]) })).y!.data as Float32Array);
    await s.release();
  }
  assert.deepEqual(outputs[1], outputs[0]);
  // And against a plain loop in float64.
  for (let r = 0; r < 2; r++) {
    for (let c = 0; c < 200; c += 37) {
      let s = c / 100;
      for (let k = 0; k < 300; k++) s += xs[r * 300 + k]! * w[k * 200 + c]!;
      assert.ok(Math.abs(outputs[0]![r * 200 + c]! - 0.5 * s) < 1e-4);
    }
  }
});
