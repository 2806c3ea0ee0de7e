import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../src/pipeline/graph.js';
import { onnx, tensorToFloat32 } from '../src/pipeline/onnx-proto.js';

test('graph builder: a dynamic-batch MatMul+Add graph runs in onnxruntime and matches a plain loop', async () => {
  const g = new GraphBuilder('affine');
  const x = g.input('x', 'float32', ['batch', 3]);
  const w = g.initializer('w', Float32Array.from([1, 2, 3, 4, 5, 6]), [3, 2]);
  const b = g.initializer('b', Float32Array.from([0.5, -0.5]), [2]);
  const y = g.op('Add', [g.op('MatMul', [x, w]), b], {}, 'y');
  g.output(y, 'float32', ['batch', 2]);
  const session = await ort.InferenceSession.create(g.toBytes());
  for (const batch of [1, 4]) {
    const xs = Float32Array.from({ length: batch * 3 }, (_, i) => i * 0.25 - 1);
    const out = await session.run({ x: new ort.Tensor('float32', xs, [batch, 3]) });
    const got = out.y!.data as Float32Array;
    assert.deepEqual(out.y!.dims, [batch, 2]);
    for (let r = 0; r < batch; r++) {
      for (let c = 0; c < 2; c++) {
        let want = [0.5, -0.5][c]!;
        for (let k = 0; k < 3; k++) want += xs[r * 3 + k]! * [1, 2, 3, 4, 5, 6][k * 2 + c]!;
        assert.ok(Math.abs(got[r * 2 + c]! - want) < 1e-6, `row ${r} col ${c}: ${got[r * 2 + c]} vs ${want}`);
      }
    }
  }
});

test('graph builder: initializers survive a serialise/decode round trip (unaligned rawData is copied)', () => {
  const g = new GraphBuilder('rt');
  const vals = Float32Array.from([1.5, -2.25, 3.125]);
  g.input('a', 'int64', [1]); // a preceding entry shifts the tensor's bytes off 4-byte alignment
  g.initializer('w', vals, [3]);
  g.output('w', 'float32', [3]);
  const m = onnx.ModelProto.decode(g.toBytes());
  const t = m.graph!.initializer!.find((i) => i.name === 'w')!;
  assert.deepEqual(Array.from(tensorToFloat32(t as never)), Array.from(vals));
});

test('graph builder: a duplicate value name is refused', () => {
  const g = new GraphBuilder('dup');
  g.input('x', 'float32', [1]);
  assert.throws(() => g.input('x', 'float32', [1]), /already defined/);
});

test('graph builder: anonymous constants get distinct names and run', async () => {
  const g = new GraphBuilder('consts');
  const x = g.input('x', 'float32', [2]);
  const y = g.op('Mul', [g.op('Add', [x, g.constF(1)]), g.constF([2, 3])], {}, 'y');
  g.output(y, 'float32', [2]);
  const shape = g.constI64([2]);
  assert.notEqual(shape, undefined);
  const s = await ort.InferenceSession.create(g.toBytes());
  const out = await s.run({ x: new ort.Tensor('float32', Float32Array.from([1, 2]), [2]) });
  assert.deepEqual(Array.from(out.y!.data as Float32Array), [4, 9]);
});
