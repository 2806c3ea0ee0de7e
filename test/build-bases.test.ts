// What `slim build --base` accepts and what it refuses, through the real command (bin/slim.js in
// a child process): each mistake a user bringing their own checkpoint makes -- a Hub id, an
// unsupported model_type, a tensor missing from the download, a depth the model has not got, a
// PyTorch .bin, a folder of several llama2.c files -- is one line on stderr naming what is wrong
// and what to do, exit code 2, and nothing written; a folder holding one llama2.c .bin and its
// tokenizer builds like the .bin itself.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { writeRandomHfCheckpoint } from '../src/pipeline/checkpoints/random-hf.js';
import { Llama2cTokenizer, readLlama2cTokenizer } from '../src/pipeline/tokenizers/llama2c.js';
import { dataSlices } from './helpers/build-run.js';
import { runSlim, type SlimRun } from './helpers/cli.js';
import { SHARED_MODELS } from './helpers/paths.js';

const STORIES = join(SHARED_MODELS, 'stories260K');
let work = '',
  trainFile = '',
  valFile = '';

before(async () => {
  ({ dir: work, trainFile, valFile } = await dataSlices('slim-build-bases-', 'sst2', { split: 'train', lines: 64 }, { split: 'dev', lines: 32 }));
});
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

/** A small random llama checkpoint in HF layout with a tokenizer.json of its vocabulary (stories260K's, converted). */
async function llamaDir(name: string, extraConfig: Record<string, unknown> = {}, layers = 2): Promise<string> {
  const dir = join(work, name);
  writeRandomHfCheckpoint(dir, { arch: 'llama', layers, hidden: 16, heads: 2, vocab: 512, maxPositions: 64, seed: 5, extraConfig });
  const tok = new Llama2cTokenizer(readLlama2cTokenizer(join(STORIES, 'tok512.bin'), 512));
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tok.toTokenizerJson()));
  return dir;
}

/** `slim build --base <base> ...` on the small data; `out` is returned so a test can check nothing was written. */
async function build(base: string, extra: string[] = [], cwd = work): Promise<SlimRun & { out: string }> {
  const out = join(work, 'models', `m${Math.random().toString(36).slice(2, 8)}`);
  const r = await runSlim(
    ['build', '--base', base, '--data', trainFile, '--val', valFile, '--epochs', '1', '--batch', '16', '--max-length', '16', '--quiet', '--out', out, ...extra],
    { cwd },
  );
  return { ...r, out };
}

function assertOneLineError(r: SlimRun & { out: string }, pattern: RegExp): void {
  assert.equal(r.code, 2, r.stderr);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /^slim build: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  assert.equal(existsSync(r.out), false, 'no model directory is written');
}

test('a Hugging Face Hub id as --base says to download it first, with the command', async () => {
  for (const id of ['bert-base-uncased', 'meta-llama/Llama-3.2-1B']) {
    const r = await build(id);
    assertOneLineError(r, new RegExp(`--base ${id.replace(/[.-]/g, '\\$&')}: no such directory; it looks like a Hugging Face Hub id`));
    assert.match(r.stderr, new RegExp(`download it first \\(hf download ${id.replace(/[.-]/g, '\\$&')} --local-dir `));
  }
  const r = await build(join(work, 'no', 'such', 'dir'));
  assertOneLineError(r, /no such file or directory; --base takes builtin:use-lite, a Hugging Face checkpoint directory/);
});

test('an unsupported model_type is refused by name, listing the supported ones', async () => {
  const dir = await llamaDir('mamba', { model_type: 'mamba' });
  const r = await build(dir);
  assertOneLineError(r, /model_type "mamba" is not supported \(supported: [a-z0-9_, -]*llama[a-z0-9_, -]*\); use a checkpoint of a supported family/);
});

test('a tensor missing from the checkpoint is named as the checkpoint names it, before any training', async () => {
  // config.json says 3 layers, the safetensors hold 2: depth 3 needs model.layers.2.*.
  const dir = await llamaDir('truncated', { num_hidden_layers: 3 });
  const r = await build(dir, ['--depths', '1,3', '--head', 'last']);
  assertOneLineError(
    r,
    /tensor model\.layers\.2\.input_layernorm\.weight \(blocks\.2\.attn_norm\.weight, needed from depth 3\) is not in the checkpoint; .*download the model's safetensors again/,
  );
});

test("a depth above the model's layers names the layer count and the valid range", async () => {
  const dir = await llamaDir('two-layers');
  assertOneLineError(await build(dir, ['--depths', '1,5']), /--depths 5: .* has 2 layers \(use 1\.\.2\)/);
  assertOneLineError(await build('builtin:use-lite', ['--depths', '3']), /--depths 3: builtin:use-lite has 2 layers \(use 1\.\.2\)/);
});

test('directories that are not checkpoints: config.json without safetensors, a PyTorch .bin, several llama2.c files', async () => {
  const torch = join(work, 'torch-only');
  await mkdir(torch, { recursive: true });
  await writeFile(join(torch, 'config.json'), JSON.stringify({ model_type: 'bert' }));
  await writeFile(join(torch, 'pytorch_model.bin'), 'not really');
  assertOneLineError(await build(torch), /config\.json but no model\.safetensors .*\(found pytorch_model\.bin\); download the safetensors weights/);
  assertOneLineError(await build(join(torch, 'pytorch_model.bin')), /a PyTorch \.bin, not a llama2\.c checkpoint/);
  const two = join(work, 'two-bins');
  await mkdir(two, { recursive: true });
  for (const f of ['a.bin', 'b.bin']) await copyFile(join(STORIES, 'stories260K.bin'), join(two, f));
  await copyFile(join(STORIES, 'tok512.bin'), join(two, 'tok512.bin'));
  assertOneLineError(await build(two), /holds several llama2\.c checkpoints \(a\.bin, b\.bin\); pass the \.bin to use/);
});

test('a folder holding one llama2.c .bin and its tokenizer is accepted as --base and builds as the .bin does', async () => {
  const r = await build(STORIES, ['--depths', '1', '--verbalizer', 'negative=little,positive=happy']);
  assert.equal(r.code, 0, r.stderr);
  const manifest = JSON.parse(await readFile(join(r.out, 'k1', 'manifest.json'), 'utf8'));
  assert.equal(manifest.base.arch, 'llama');
  assert.equal(manifest.base.layers, 5);
  assert.match(manifest.base.source, /stories260K\.bin$/);
  assert.equal(manifest.head, 'label-words');
  assert.deepEqual(manifest.labelWords, ['little', 'happy']);
});
