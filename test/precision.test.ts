// Precision variants: the fp16 bit conversion and the int8 weight quantization against plain
// reference arithmetic, then a real USE-lite build with --precision fp32,int8,fp16: the int8
// sibling's probabilities against fp32 on 200 dataset sentences (parity), its manifest, the
// report grid, `slim eval` and the cascade on int8 variants, and the server's precision label.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { buildCommand } from '../src/pipeline/build-command.js';
import { evalCommand, evaluateCascade, evaluateVariant } from '../src/pipeline/eval-command.js';
import { readManifest, validateManifest } from '../src/pipeline/model-writer.js';
import { float16Bits, float16Value, toFloat16Array, FP16_INFINITY_STANDIN } from '../src/pipeline/precision/convert-fp16.js';
import { quantizeColumns, quantizeRows } from '../src/pipeline/precision/quantize-int8.js';
import { cpuInt8Weights, int8WeightsOf, setInt8Weights } from '../src/pipeline/precision/int8-weights.js';
import { decodeModel, encodeModel } from '../src/pipeline/precision/onnx-edit.js';
import { parsePrecisions } from '../src/pipeline/precision/variants.js';
import { loadTokenizer } from '../src/tokenizer.js';
import { capture, dataSlices } from './helpers/build-run.js';
import { sampleSentences } from './helpers/dataset-sample.js';
import { post } from './helpers/http.js';
import { rng } from './helpers/fixture-model.js';
import { startTestServer } from './helpers/serve.js';

describe('fp16 conversion', () => {
  test('float16Bits rounds to the nearest float16 (ties to even), checked against its neighbours', () => {
    const next = rng(7);
    const values = [0, -0, 1, -2.5, 65504, 65519, 6.1e-5, 5.96e-8, 2.98e-8, 1e-10, 0.1, 1 / 3, 2049, 2051];
    for (let i = 0; i < 2000; i++) values.push((next() * 2 - 1) * 10 ** (next() * 12 - 8));
    for (const x of values) {
      const bits = float16Bits(x);
      const v = float16Value(bits);
      for (const nb of [bits - 1, bits + 1]) {
        if ((nb & 0x7fff) >= 0x7c00 || nb < 0 || ((nb ^ bits) & 0x8000) !== 0) continue; // no NaN/inf or sign-crossing neighbours
        const w = float16Value(nb);
        const dv = Math.abs(Math.fround(x) - v);
        const dw = Math.abs(Math.fround(x) - w);
        assert.ok(dv < dw || (dv === dw && (bits & 1) === 0), `${x}: got ${v} (bits ${bits}) but ${w} is nearer`);
      }
    }
    assert.equal(float16Bits(1), 0x3c00);
    assert.equal(float16Bits(65504), 0x7bff);
    assert.equal(float16Bits(65520), 0x7c00, 'rounds up to infinity past the largest finite');
    assert.equal(float16Bits(2 ** -24), 0x0001, 'smallest subnormal');
    assert.equal(float16Bits(2049), float16Bits(2048), '2049 is a tie: to the even 2048');
  });

  test('infinity stand-ins (a -1e9 mask bias) become -16384, not -inf', () => {
    const out = toFloat16Array(Float32Array.of(-1e9, 1e9, 70000, 3));
    assert.deepEqual(Array.from(out, float16Value), [-FP16_INFINITY_STANDIN, FP16_INFINITY_STANDIN, FP16_INFINITY_STANDIN, 3]);
  });
});

describe('int8 weight quantization', () => {
  test('per-column symmetric: scale = column max / qmax, every weight within half a step', () => {
    const next = rng(3);
    const k = 37;
    const n = 5;
    const w = Float32Array.from({ length: k * n }, (_, i) => (next() * 2 - 1) * (1 + (i % n) * 10));
    for (const qmax of [63, 127]) {
      const { q, scales } = quantizeColumns(w, k, n, qmax, true);
      for (let c = 0; c < n; c++) {
        let m = 0;
        for (let r = 0; r < k; r++) m = Math.max(m, Math.abs(w[r * n + c]!));
        assert.ok(Math.abs(scales[c]! - m / qmax) <= 1e-6 * m, `column ${c} scale`);
        for (let r = 0; r < k; r++) {
          assert.ok(Math.abs(q[r * n + c]!) <= qmax);
          assert.ok(Math.abs(q[r * n + c]! * scales[c]! - w[r * n + c]!) <= scales[c]! / 2 + 1e-6, `w[${r},${c}]`);
        }
      }
    }
    const rows = quantizeRows(Float32Array.of(0, 0, 1, -2), 2, 2);
    assert.deepEqual(Array.from(rows.q), [0, 0, 64, -127]);
    assert.equal(rows.scales[0], 1, 'an all-zero row keeps scale 1');
  });

  test('the int8 weight storage follows the CPU: int8 with VNNI, uint8 on x86 without it, as written elsewhere', () => {
    const cpu = (flags: string) => `processor\t: 0\nflags\t\t: fpu sse2 ${flags}\n`;
    assert.equal(cpuInt8Weights(cpu('avx avx2 avx512f avx512_vnni'), 'x64').weights, 'int8');
    assert.equal(cpuInt8Weights(cpu('avx avx2 avx_vnni'), 'x64').weights, 'int8');
    assert.equal(cpuInt8Weights(cpu('avx avx2 fma'), 'x64').weights, 'uint8');
    assert.equal(cpuInt8Weights(cpu('avx avx2 avx512f avx512bw'), 'x64').weights, 'uint8', 'AVX-512 without VNNI still saturates in int16');
    assert.equal(cpuInt8Weights(cpu('asimd asimddp'), 'arm64').weights, undefined);
    assert.equal(cpuInt8Weights('', 'x64').weights, undefined, 'no flags line: run as written');
  });

  test('--precision parsing: fp32 required, known names, no repeats', () => {
    assert.deepEqual(parsePrecisions(undefined), ['fp32', 'int8']);
    assert.deepEqual(parsePrecisions('fp32,int8,fp16'), ['fp32', 'int8', 'fp16']);
    assert.throws(() => parsePrecisions('int8'), /must include fp32/);
    assert.throws(() => parsePrecisions('fp32,int4'), /unknown precision "int4"/);
    assert.throws(() => parsePrecisions('fp32,int8,int8'), /repeated/);
  });
});

describe('a built USE-lite model with int8 and fp16 siblings', () => {
  let dir = '';
  let valFile = '';
  let out = '';

  before(async () => {
    let trainFile: string;
    ({ dir, trainFile, valFile } = await dataSlices('slim-precision-', 'sms_spam', { split: 'train', lines: 300 }, { split: 'test', lines: 120 }));
    out = join(dir, 'models', 'spam');
    const { value: rc, stderr } = await capture(() =>
      buildCommand([
        '--data',
        trainFile,
        '--val',
        valFile,
        '--depths',
        '1,2',
        '--train',
        'head',
        '--epochs',
        '2',
        '--max-length',
        '48',
        '--precision',
        'fp32,int8,fp16',
        '--out',
        out,
      ]),
    );
    assert.equal(rc, 0, stderr);
  });

  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('every depth has fp32, int8 and fp16 variants with their own manifest, tokenizer and evaluation', async () => {
    for (const depth of [1, 2]) {
      const fp32 = await readManifest(join(out, `k${depth}-head`), { verifyOnnx: true });
      assert.equal(fp32.precision, 'fp32');
      for (const precision of ['int8', 'fp16'] as const) {
        const m = await readManifest(join(out, `k${depth}-head-${precision}`), { verifyOnnx: true });
        assert.equal(m.precision, precision);
        assert.equal(m.depth, depth);
        assert.deepEqual(m.convertedFrom, { variant: fp32.variant, onnxSha256: fp32.onnxSha256 });
        assert.deepEqual(m.labels, fp32.labels);
        assert.equal(m.eval.examples, fp32.eval.examples);
        assert.ok(Math.abs(m.eval.accuracy - fp32.eval.accuracy) <= 0.03, `${m.variant} accuracy ${m.eval.accuracy} vs ${fp32.eval.accuracy}`);
        assert.equal(await readFile(join(out, m.variant, 'tokenizer.json'), 'utf8'), await readFile(join(out, fp32.variant, 'tokenizer.json'), 'utf8'));
      }
    }
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8'));
    assert.deepEqual(
      report.results.map((r: { variant: string; precision: string }) => `${r.variant}:${r.precision}`),
      ['k1-head:fp32', 'k1-head-int8:int8', 'k1-head-fp16:fp16', 'k2-head:fp32', 'k2-head-int8:int8', 'k2-head-fp16:fp16'],
    );
    const sizes = Object.fromEntries(report.results.map((r: { variant: string; fileBytes: number }) => [r.variant, r.fileBytes]));
    assert.ok(sizes['k2-head-int8'] < 0.3 * sizes['k2-head'], `int8 file ${sizes['k2-head-int8']} vs fp32 ${sizes['k2-head']}`);
    assert.ok(Math.abs(sizes['k2-head-fp16'] / sizes['k2-head'] - 0.5) < 0.02, 'fp16 halves the file');
    assert.ok(report.results.some((r: { variant: string }) => r.variant === report.recommended.variant));
    const md = await readFile(join(out, 'report.md'), 'utf8');
    assert.match(md, /\| k2-head-int8[^|]*\| 2 \| head \| int8 \|/);
    assert.match(md, /fp16 is for GPU execution providers/);
  });

  test('parity: int8 probabilities within 0.02 of fp32 on 200 dataset sentences, same argmax on >= 98%', async () => {
    const texts = sampleSentences(25).slice(0, 200);
    assert.equal(texts.length, 200);
    for (const depth of [1, 2]) {
      const fp32 = await probabilities(join(out, `k${depth}-head`), texts);
      const int8 = await probabilities(join(out, `k${depth}-head-int8`), texts);
      const fp16 = await probabilities(join(out, `k${depth}-head-fp16`), texts);
      let worst = 0;
      let same = 0;
      let worst16 = 0;
      fp32.forEach((p, i) => {
        p.forEach((x, c) => {
          worst = Math.max(worst, Math.abs(x - int8[i]![c]!));
          worst16 = Math.max(worst16, Math.abs(x - fp16[i]![c]!));
        });
        if (argmax(p) === argmax(int8[i]!)) same++;
      });
      assert.ok(worst <= 0.02, `k${depth}: int8 probabilities differ from fp32 by up to ${worst}`);
      assert.ok(same >= 196, `k${depth}: same argmax on ${same}/200`);
      assert.ok(worst16 <= 0.01, `k${depth}: fp16 probabilities differ from fp32 by up to ${worst16}`);
    }
  });

  test('int8 weight storage: written for this CPU, rewritten both ways losslessly, the same probabilities', async () => {
    const file = join(out, 'k2-head-int8', 'model.onnx');
    const bytes = new Uint8Array(await readFile(file));
    const written = int8WeightsOf(decodeModel(bytes));
    assert.equal(written, cpuInt8Weights().weights ?? 'int8', 'the build stores the weights as this CPU runs them best');
    const other = written === 'int8' ? 'uint8' : 'int8';
    const model = decodeModel(bytes);
    const there = setInt8Weights(model, other);
    assert.ok(there.rewritten >= 12, `${there.rewritten} matrices rewritten`);
    assert.deepEqual(there.kept, []);
    assert.equal(int8WeightsOf(model), other);
    const otherBytes = encodeModel(model);
    const back = decodeModel(otherBytes);
    setInt8Weights(back, written!);
    assert.deepEqual(encodeModel(back), encodeModel(decodeModel(bytes)), 'there and back gives the same model');
    // uint8 weights run the u8u8 kernel, exact on every x86 CPU: the reference. The storage this
    // CPU picks must give the same probabilities (on x86 without VNNI it is uint8 itself).
    const texts = sampleSentences(25).slice(0, 200);
    const asBuilt = await probabilities(join(out, 'k2-head-int8'), texts);
    const rewritten = await probabilities(join(out, 'k2-head-int8'), texts, otherBytes);
    let worst = 0;
    asBuilt.forEach((p, i) => p.forEach((x, c) => (worst = Math.max(worst, Math.abs(x - rewritten[i]![c]!)))));
    assert.ok(worst <= 1e-5, `${written} vs ${other} weights: probabilities differ by up to ${worst}`);
  });

  test('slim eval and the cascade run on int8 variants', async () => {
    const single = await capture(() => evalCommand(['--model', join(out, 'k1-head-int8'), '--data', valFile]));
    assert.equal(single.value, 0, single.stderr);
    const report = await evaluateVariant(join(out, 'k1-head-int8'), valFile);
    const manifest = await readManifest(join(out, 'k1-head-int8'));
    assert.equal(report.examples, manifest.eval.examples);
    assert.ok(Math.abs(report.accuracy - manifest.eval.accuracy) <= 1 / report.examples + 1e-9, `${report.accuracy} vs manifest ${manifest.eval.accuracy}`);
    const cascade = await capture(() => evalCommand(['--model', out, '--cascade', 'k1-head-int8,k2-head-int8', '--threshold', '0.9', '--data', valFile]));
    assert.equal(cascade.value, 0, cascade.stderr);
    const c = await evaluateCascade(out, ['k1-head-int8', 'k2-head-int8'], [0.9], valFile);
    assert.deepEqual(
      c.variants.map((v: { variant: string; depth: number }) => `${v.variant}@${v.depth}`),
      ['k1-head-int8@1', 'k2-head-int8@2'],
    );
    assert.ok(c.cascades[0].meanCost >= 1 && c.cascades[0].meanCost <= 3);
  });

  test('the server answers with int8 variants and labels the precision in /models and slim_variant_info', async () => {
    await writeFile(join(out, 'routing.json'), JSON.stringify({ variants: { 'k1-head': { weight: 50 }, 'k1-head-int8': { weight: 50 } } }));
    const { server } = await startTestServer({ models: join(dir, 'models') });
    try {
      const models = (await (await fetch(`${server.url}/models/spam`)).json()) as { variants: { name: string; precision: string }[] };
      const precisionByName = Object.fromEntries(models.variants.map((v) => [v.name, v.precision]));
      assert.equal(precisionByName['k1-head'], 'fp32');
      assert.equal(precisionByName['k1-head-int8'], 'int8');
      assert.equal(precisionByName['k2-head-fp16'], 'fp16');
      const classify = async (variant: string) => {
        const res = await post(`${server.url}/classify`, {
          model: 'spam',
          variant,
          inputs: ['WINNER!! claim your free prize now', 'see you at lunch tomorrow'],
        });
        assert.equal(res.status, 200);
        return res.json as { variant: string; results: { label: string; score: number }[] };
      };
      const [fp32, int8] = [await classify('k2-head'), await classify('k2-head-int8')];
      assert.equal(int8.variant, 'k2-head-int8');
      assert.deepEqual(
        int8.results.map((r) => r.label),
        fp32.results.map((r) => r.label),
      );
      int8.results.forEach((r, i) => assert.ok(Math.abs(r.score - fp32.results[i]!.score) <= 0.02, `score ${r.score} vs fp32 ${fp32.results[i]!.score}`));
      // Routing splits traffic between k1-head and its int8 sibling (A/B).
      const seen = new Set<string>();
      for (let i = 0; i < 20 && seen.size < 2; i++) {
        const r = await post(`${server.url}/classify`, { model: 'spam', inputs: [`hello ${i}`] });
        seen.add((r.json as { variant: string }).variant);
      }
      assert.deepEqual([...seen].sort(), ['k1-head', 'k1-head-int8']);
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      assert.match(metrics, /slim_variant_info\{[^}]*variant="k2-head-int8"[^}]*precision="int8"\} 1/);
      assert.match(metrics, /slim_variant_info\{[^}]*variant="k2-head"[^}]*precision="fp32"\} 1/);
    } finally {
      await server.close();
      await rm(join(out, 'routing.json'), { force: true });
    }
  });

  test('the server rewrites int8 weights to the storage it is told (--int8-weights), answers unchanged', async () => {
    const built = int8WeightsOf(decodeModel(new Uint8Array(await readFile(join(out, 'k2-head-int8', 'model.onnx')))))!;
    const other = built === 'int8' ? 'uint8' : 'int8';
    const answers: Record<string, { score: number }[]> = {};
    for (const mode of ['as-written', other] as const) {
      const { server } = await startTestServer({ models: join(dir, 'models'), int8Weights: mode });
      try {
        const info = (await (await fetch(`${server.url}/models/spam`)).json()) as { variants: { name: string; int8Weights?: { file: string; run: string } }[] };
        const byName = new Map(info.variants.map((v) => [v.name, v]));
        assert.deepEqual(byName.get('k2-head-int8')!.int8Weights, { file: built, run: mode === 'as-written' ? built : other });
        assert.equal(byName.get('k2-head')!.int8Weights, undefined, 'fp32 variants have no int8 storage');
        const res = await post(`${server.url}/classify`, {
          model: 'spam',
          variant: 'k2-head-int8',
          inputs: ['WINNER!! claim your free prize now', 'see you at lunch tomorrow'],
        });
        assert.equal(res.status, 200);
        answers[mode] = (res.json as { results: { score: number }[] }).results;
      } finally {
        await server.close();
      }
    }
    answers['as-written']!.forEach((r, i) => assert.ok(Math.abs(r.score - answers[other]![i]!.score) <= 1e-5, `${r.score} vs ${answers[other]![i]!.score}`));
  });

  test('manifests whose name and precision disagree are refused', async () => {
    const m = JSON.parse(await readFile(join(out, 'k1-head-int8', 'manifest.json'), 'utf8'));
    assert.throws(() => validateManifest({ ...m, precision: 'fp32' }, 'x'), /named int8 but precision is fp32/);
    assert.throws(() => validateManifest({ ...m, variant: 'k1-head' }, 'x'), /precision int8 needs a variant name ending in -int8/);
    assert.throws(() => validateManifest({ ...m, precision: 'int4' }, 'x'), /precision must be one of/);
  });
});

/** Softmax of the variant's logits on texts (its model.onnx, or `onnx` bytes in its place). */
async function probabilities(variantDir: string, texts: string[], onnx?: Uint8Array): Promise<number[][]> {
  const manifest = await readManifest(variantDir);
  const tokenizer = await loadTokenizer(variantDir);
  const options = { intraOpNumThreads: 2, logSeverityLevel: 3 } as const;
  const session = onnx ? await ort.InferenceSession.create(onnx, options) : await ort.InferenceSession.create(join(variantDir, 'model.onnx'), options);
  try {
    const out: number[][] = [];
    for (let k = 0; k < texts.length; k += 50) {
      const batch = tokenizer.encodeBatch(texts.slice(k, k + 50), { maxLength: manifest.maxLength });
      const dims = [batch.batchSize, batch.seqLength];
      const r = await session.run({
        input_ids: new ort.Tensor('int64', batch.inputIds, dims),
        attention_mask: new ort.Tensor('int64', batch.attentionMask, dims),
      });
      const logits = r.logits!.data as Float32Array;
      const n = manifest.labels.length;
      for (let b = 0; b < batch.batchSize; b++) {
        const row = Array.from(logits.slice(b * n, b * n + n));
        const max = Math.max(...row);
        const e = row.map((x) => Math.exp(x - max));
        const z = e.reduce((a, x) => a + x, 0);
        out.push(e.map((x) => x / z));
      }
    }
    return out;
  } finally {
    await session.release();
  }
}

function argmax(p: readonly number[]): number {
  return p.reduce((best, x, i) => (x > p[best]! ? i : best), 0);
}
