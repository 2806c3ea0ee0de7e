// stories260K (karpathy/tinyllamas, a real pretrained Llama-architecture model in llama2.c .bin
// format) exported at full depth with the LM head, decoded greedily from the reference prompt
// by re-running the whole sequence each step: the ids must equal run.c's reference continuation
// token for token, and the logits after the prompt must equal run.c's.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { Llama2cCheckpoint } from '../src/pipeline/checkpoints/llama2c.js';
import { exportTransformer } from '../src/pipeline/export-transformer.js';
import { Llama2cTokenizer, readLlama2cTokenizer } from '../src/pipeline/tokenizers/llama2c.js';
import { SHARED_MODELS } from './helpers/paths.js';

const DIR = join(SHARED_MODELS, 'stories260K');
const work = mkdtempSync(join(tmpdir(), 'slim-stories-'));
after(() => rmSync(work, { recursive: true, force: true }));

interface Run {
  name: string;
  prompt_ids?: number[];
  sequence_ids: number[];
  generated_ids?: number[];
  stdout: string;
  logits_after_prompt?: { pos: number; values: number[] };
}
const reference = JSON.parse(readFileSync(join(DIR, 'reference.json'), 'utf8')) as {
  config_from_header: Record<string, number>;
  shared_classifier: boolean;
  runs: Run[];
};

test('llama2.c header and tokenizer: config, shared classifier, prompt ids as run.c encode()', () => {
  const ckpt = new Llama2cCheckpoint(join(DIR, 'stories260K.bin'));
  const h = reference.config_from_header;
  assert.deepEqual(
    [ckpt.header.dim, ckpt.header.hiddenDim, ckpt.header.nLayers, ckpt.header.nHeads, ckpt.header.nKvHeads, ckpt.header.vocabSize, ckpt.header.seqLen],
    [h.dim, h.hidden_dim, h.n_layers, h.n_heads, h.n_kv_heads, h.vocab_size, h.seq_len],
  );
  assert.equal(ckpt.header.sharedClassifier, reference.shared_classifier);
  ckpt.close();
  const tok = new Llama2cTokenizer(readLlama2cTokenizer(join(DIR, 'tok512.bin'), h.vocab_size!));
  const run = reference.runs.find((r) => r.prompt_ids)!;
  assert.deepEqual(tok.encode('Once upon a time'), run.prompt_ids);
  // Decoding the reference ids gives run.c's stdout.
  const ids = run.sequence_ids;
  const text = Buffer.concat(ids.slice(1).map((id, i) => tok.decodePiece(ids[i]!, id))).toString('utf8');
  assert.equal(text + '\n', run.stdout);
});

test('stories260K full depth, greedy from the reference prompt, reproduces run.c token for token', async () => {
  const ckpt = new Llama2cCheckpoint(join(DIR, 'stories260K.bin'));
  const file = join(work, 'lm.onnx');
  exportTransformer(ckpt, { depth: ckpt.config.layers, head: { kind: 'lm' }, outFile: file, tableLength: 256 });
  ckpt.close();
  const session = await ort.InferenceSession.create(file, { intraOpNumThreads: 1, interOpNumThreads: 1, logSeverityLevel: 3 });
  const V = reference.config_from_header.vocab_size!;
  const logitsAt = async (ids: number[]) => {
    const t = (a: number[]) => new ort.Tensor('int64', BigInt64Array.from(a.map(BigInt)), [1, a.length]);
    const out = (await session.run({ input_ids: t(ids), attention_mask: t(ids.map(() => 1)) })).logits!;
    return (out.data as Float32Array).subarray((ids.length - 1) * V, ids.length * V);
  };
  for (const run of reference.runs) {
    const start = run.prompt_ids ?? [1];
    const want = run.sequence_ids;
    const ids = [...start];
    // Positions 0..len-1 are forwarded; the last forwarded position predicts the last id.
    while (ids.length < want.length) {
      const logits = await logitsAt(ids);
      if (run.logits_after_prompt && ids.length === run.logits_after_prompt.pos + 1) {
        let worst = 0;
        run.logits_after_prompt.values.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - logits[i]!))));
        assert.ok(worst < 1e-4, `${run.name}: logits after the prompt differ from run.c by ${worst}`);
      }
      let best = 0;
      for (let i = 1; i < V; i++) if (logits[i]! > logits[best]!) best = i;
      ids.push(best);
      assert.equal(best, want[ids.length - 1], `${run.name}: token ${ids.length - 1} is ${best}, run.c gave ${want[ids.length - 1]}`);
    }
    assert.deepEqual(ids, want);
  }
  await session.release();
});
