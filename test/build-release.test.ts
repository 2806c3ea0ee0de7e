// A build lets go of a depth's float32 weights once its variant is written (pipeline.ts,
// releaseWeights), so that the onnxruntime sessions over the written file (latency, int8/fp16
// siblings) do not run beside them: the peak of a whole build from a large checkpoint
// (docs/checkpoints.md). Checked on a tiny random llama checkpoint with the build's own steps and
// probes between them: after `write` the export's pieces and the trained weights are gone and the
// base was told to drop that depth's body, with --precision int8 too (the siblings read the
// written file back, external data included); a depth built after another is the same file as
// when built alone.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { runCommand } from '../src/command-line.js';
import { sha256File } from '../src/sha256-file.js';
import { BUILD_COMMAND } from '../src/pipeline/build-command.js';
import { validateBuildFlags } from '../src/pipeline/build-options.js';
import { DEPTH_STEPS, runBuild, type DepthStep } from '../src/pipeline/pipeline.js';
import { writeRandomHfCheckpoint } from '../src/pipeline/checkpoints/random-hf.js';
import { dataSlices } from './helpers/build-run.js';
import { tokenizerFixture, writeTokenizerFixture } from './helpers/tokenizer-fixtures.js';
import { sampleSentences } from './helpers/dataset-sample.js';

let work = '',
  trainFile = '',
  valFile = '',
  base = '';
before(async () => {
  ({ dir: work, trainFile, valFile } = await dataSlices('slim-release-', 'sst2', { split: 'train', lines: 48 }, { split: 'dev', lines: 24 }));
  const tok = tokenizerFixture('llama3', sampleSentences(20));
  base = join(work, 'base');
  writeRandomHfCheckpoint(base, { arch: 'llama', layers: 2, hidden: 64, heads: 4, kvHeads: 2, ffn: 96, vocab: tok.vocabSize, maxPositions: 64, seed: 5 });
  writeTokenizerFixture(base, tok);
});
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

interface Seen {
  step: string;
  depth: number;
  exported: boolean;
  trainedParams: number;
}

/** `slim build` with DEPTH_STEPS, recording after each step what the depth still holds, and the base's releaseDepth calls. */
async function probedBuild(out: string, extra: string[]): Promise<{ seen: Seen[]; released: number[] }> {
  const seen: Seen[] = [],
    released: number[] = [];
  const steps: DepthStep[] = DEPTH_STEPS.map((s) => ({
    name: s.name,
    async run(ctx, d) {
      if (s.name === 'train' && !released.length) {
        const releaseDepth = ctx.base.releaseDepth.bind(ctx.base);
        ctx.base.releaseDepth = (depth) => {
          released.push(depth);
          releaseDepth(depth);
        };
      }
      await s.run(ctx, d);
      seen.push({ step: s.name, depth: d.depth, exported: d.exported !== undefined, trainedParams: d.trained?.params.size ?? -1 });
    },
  }));
  const argv = [
    '--base',
    base,
    '--data',
    trainFile,
    '--val',
    valFile,
    '--train',
    'head',
    '--head',
    'last',
    '--epochs',
    '1',
    '--max-length',
    '16',
    '--seed',
    '7',
    '--quiet',
    '--out',
    out,
    ...extra,
  ];
  const rc = await runCommand({ ...BUILD_COMMAND, run: async (v) => (await runBuild(validateBuildFlags(v), steps), 0) }, argv);
  assert.equal(rc, 0);
  return { seen, released };
}

const at = (seen: Seen[], step: string, depth: number) => seen.find((s) => s.step === step && s.depth === depth)!;

test('after write, a depth holds neither its export nor its trained weights, and the base drops its body; a later depth is built as if alone', async () => {
  const out = join(work, 'two');
  const { seen, released } = await probedBuild(out, ['--depths', '1,2']);
  for (const depth of [1, 2]) {
    assert.deepEqual(at(seen, 'export', depth), { step: 'export', depth, exported: true, trainedParams: 2 });
    assert.deepEqual(at(seen, 'write', depth), { step: 'write', depth, exported: false, trainedParams: 0 });
  }
  assert.deepEqual(released, [1, 2]);
  const alone = join(work, 'alone');
  await probedBuild(alone, ['--depths', '2']);
  assert.equal(await sha256File(join(out, 'k2-head', 'model.onnx')), await sha256File(join(alone, 'k2-head', 'model.onnx')));
});

test('with an int8 sibling too the export is let go in write; the sibling is converted from the written file, external data included', async () => {
  const inline = join(work, 'int8');
  const { seen, released } = await probedBuild(inline, ['--depths', '1', '--precision', 'fp32,int8']);
  assert.deepEqual(at(seen, 'write', 1), { step: 'write', depth: 1, exported: false, trainedParams: 0 });
  assert.deepEqual(at(seen, 'precisions', 1), { step: 'precisions', depth: 1, exported: false, trainedParams: 0 });
  assert.deepEqual(released, [1]);
  // The same build with its float32 weights in model.onnx.data: the same int8 file.
  const external = join(work, 'int8-external');
  await probedBuild(external, ['--depths', '1', '--precision', 'fp32,int8', '--external-data-threshold', '1000']);
  const fp32 = JSON.parse(await readFile(join(external, 'k1-head', 'manifest.json'), 'utf8')) as { externalData?: unknown[] };
  assert.ok((fp32.externalData?.length ?? 0) > 0, 'the float32 variant has external data');
  const int8 = JSON.parse(await readFile(join(external, 'k1-head-int8', 'manifest.json'), 'utf8')) as { externalData?: unknown[] };
  assert.equal(int8.externalData, undefined, 'the int8 sibling is one file');
  assert.equal(await sha256File(join(external, 'k1-head-int8', 'model.onnx')), await sha256File(join(inline, 'k1-head-int8', 'model.onnx')));
});
