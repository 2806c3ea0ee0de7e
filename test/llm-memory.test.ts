// Memory bound of a shallow build from a deep checkpoint: a random 24-layer Llama-shaped
// checkpoint of more than 1 GB (written by the test, in Hugging Face layout) is cut to k = 1 and
// exported (label-word head) in a child process, whose peak RSS must stay under 25% of the
// checkpoint's size (only the embeddings, block 0, the final norm and two LM-head rows are read)
// and under 3x the exported file's (the weights are read once and written from where they are,
// src/pipeline/onnx-pieces.ts: no encoded copy of the file). The child's RSS before it reads
// anything (Node and the modules loaded) is printed beside it: about 55 MB of the bound.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeRandomHfCheckpoint } from '../src/pipeline/checkpoints/random-hf.js';

const work = mkdtempSync(join(tmpdir(), 'slim-llm-mem-'));
after(() => rmSync(work, { recursive: true, force: true }));

test('building k=1 from a 1.2 GB, 24-layer checkpoint keeps peak RSS under 25% of the checkpoint and 3x the variant', () => {
  const dir = join(work, 'ckpt');
  const written = writeRandomHfCheckpoint(dir, {
    arch: 'llama',
    layers: 24,
    hidden: 1024,
    heads: 16,
    kvHeads: 4,
    ffn: 3072,
    vocab: 2000,
    maxPositions: 256,
    fill: 'fast',
    shards: 4,
  });
  const onDisk = written.bytes;
  assert.ok(onDisk >= 1e9, `checkpoint is ${onDisk} bytes`);
  const exportModule = new URL('../src/pipeline/export-transformer.js', import.meta.url).href;
  const hfModule = new URL('../src/pipeline/checkpoints/hf.js', import.meta.url).href;
  const script = join(work, 'child.mjs');
  const outFile = join(work, 'k1.onnx');
  writeFileSync(
    script,
    `
    const { exportTransformer } = await import(${JSON.stringify(exportModule)});
    const { HfCheckpoint } = await import(${JSON.stringify(hfModule)});
    const baseRss = process.memoryUsage().rss;
    const ckpt = new HfCheckpoint(${JSON.stringify(dir)});
    const r = exportTransformer(ckpt, { depth: 1, head: { kind: 'label-words', ids: [5, 17] }, outFile: ${JSON.stringify(outFile)}, tableLength: 128 });
    console.log(JSON.stringify({ maxRssKb: process.resourceUsage().maxRSS, baseRss, bytesRead: ckpt.store.bytesRead, fileBytes: r.bytes }));
  `,
  );
  const out = JSON.parse(execFileSync(process.execPath, [script], { encoding: 'utf8' }).trim().split('\n').pop()!) as {
    maxRssKb: number;
    baseRss: number;
    bytesRead: number;
    fileBytes: number;
  };
  const rss = out.maxRssKb * 1024;
  const layerBytes = (onDisk - 2 * 2000 * 1024 * 4) / 24;
  assert.ok(out.bytesRead < 2 * layerBytes, `read ${out.bytesRead} bytes of the checkpoint (one layer is ${Math.round(layerBytes)})`);
  assert.ok(statSync(outFile).size === out.fileBytes);
  const mb = (x: number) => (x / 1e6).toFixed(0);
  const figures = `checkpoint ${mb(onDisk)} MB, read ${(out.bytesRead / 1e6).toFixed(1)} MB, k1 model ${(out.fileBytes / 1e6).toFixed(1)} MB, peak RSS ${mb(rss)} MB (${((100 * rss) / onDisk).toFixed(1)}% of the checkpoint, ${(rss / out.fileBytes).toFixed(2)}x the model; ${mb(out.baseRss)} MB before reading)`;
  console.log(`# ${figures}`);
  assert.ok(rss < 0.25 * onDisk, `peak RSS over 25% of the checkpoint: ${figures}`);
  assert.ok(rss < 3 * out.fileBytes, `peak RSS over 3x the variant: ${figures}`);
});
