// A variant directory as `slim build` writes it loads in transformers.js (@huggingface/transformers)
// as a text-classification pipeline, with no conversion step:
//   pipeline('text-classification', <variant dir>, { local_files_only: true })
// and answers the same labels and scores (within 1e-4) as our server's /classify on the same
// texts, batched (padding) and longer than the variant's maxLength (truncation). Two real builds:
// builtin:use-lite (SentencePiece unigram tokenizer, pooled head) and the llama2.c checkpoint
// stories260K (byte-fallback BPE, label-word head with the prompt inside the graph).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { env, pipeline } from '@huggingface/transformers';
import { buildCommand } from '../src/pipeline/build-command.js';
import type { RunningServer } from '../src/serve/server.js';
import { capture, dataSlices } from './helpers/build-run.js';
import { post } from './helpers/http.js';
import { SHARED_MODELS } from './helpers/paths.js';
import { startTestServer } from './helpers/serve.js';

const MAX_LENGTH = 16;
const TEXTS = [
  'a great film',
  'the plot is dull and the acting is worse',
  // far beyond 16 tokens: both sides keep the first 16
  'this movie is an absolute delight from start to finish , with a story that keeps surprising you and performances that never once ring false , even in the quietest scenes',
  'boring',
  'not bad at all , really',
];

let work = '';
let trainFile = '',
  valFile = '';
let server: RunningServer | undefined;

before(async () => {
  ({ dir: work, trainFile, valFile } = await dataSlices('slim-tjs-', 'sst2', { split: 'train', lines: 64 }, { split: 'dev', lines: 32 }));
  env.allowRemoteModels = false;
  const builds: string[][] = [
    ['--data', trainFile, '--val', valFile, '--depths', '1', '--train', 'head', '--epochs', '1', '--seed', '3', '--out', join(work, 'models', 'use')],
    [
      '--base',
      join(SHARED_MODELS, 'stories260K', 'stories260K.bin'),
      '--data',
      trainFile,
      '--val',
      valFile,
      '--depths',
      '1',
      '--head',
      'label-words',
      '--verbalizer',
      'negative=little,positive=happy',
      '--epochs',
      '1',
      '--batch',
      '16',
      '--out',
      join(work, 'models', 'stories'),
    ],
  ];
  for (const args of builds) {
    const { value: code, stderr } = await capture(() => buildCommand([...args, '--max-length', String(MAX_LENGTH), '--quiet']));
    assert.equal(code, 0, stderr);
  }
  server = (await startTestServer({ models: join(work, 'models') })).server;
});
after(async () => {
  await server?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

interface Scored {
  label: string;
  score: number;
}

async function classifyOnServer(model: string, variant: string): Promise<{ label: string; scores: Record<string, number> }[]> {
  const res = await post(`${server!.url}/classify`, { model, variant, inputs: TEXTS });
  assert.equal(res.status, 200);
  return (res.json as { results: { label: string; scores: Record<string, number> }[] }).results;
}

for (const [model, variant] of [
  ['use', 'k1-head'],
  ['stories', 'k1'],
] as const) {
  test(`transformers.js pipeline('text-classification', models/${model}/${variant}) = our /classify (labels, scores within 1e-4)`, async () => {
    const dir = join(work, 'models', model, variant);
    // onnx/model.onnx is the served model.onnx itself (a hard link), not a second copy.
    const [served, linked] = await Promise.all([stat(join(dir, 'model.onnx')), stat(join(dir, 'onnx', 'model.onnx'))]);
    assert.equal(linked.ino, served.ino);
    const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as { labels: string[] };

    const classify = await pipeline('text-classification', dir, { local_files_only: true });
    try {
      const theirs = (await classify(TEXTS, { top_k: null })) as unknown as Scored[][];
      const ours = await classifyOnServer(model, variant);
      assert.equal(theirs.length, TEXTS.length);
      for (let i = 0; i < TEXTS.length; i++) {
        const want = ours[i]!;
        const got = theirs[i]!;
        assert.deepEqual(got.map((s) => s.label).sort(), [...manifest.labels].sort(), `text ${i}: every label`);
        assert.equal(got[0]!.label, want.label, `text ${i}: top label`);
        for (const s of got) {
          assert.ok(Math.abs(s.score - want.scores[s.label]!) <= 1e-4, `text ${i} ${s.label}: transformers.js ${s.score} vs server ${want.scores[s.label]}`);
        }
      }
      // The pipeline's default (top_k 1) on one text: the server's label and score.
      const [top] = (await classify(TEXTS[1]!)) as unknown as Scored[];
      assert.equal(top!.label, ours[1]!.label);
      assert.ok(Math.abs(top!.score - ours[1]!.scores[ours[1]!.label]!) <= 1e-4);
    } finally {
      await classify.dispose();
    }
  });
}
