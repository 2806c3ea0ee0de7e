// Write distillation transfer text from a training set's own sentences (bench/transfer-text.ts),
// as the public-sets bench does, with a chosen number of augmented copies:
//
//   node dist/bench/make-transfer.js --data train.jsonl --copies 3 [--val-split 0.1] --out transfer.jsonl
//
// With --val-split, only the training part of that split (seed 42, as `slim build --val-split`
// with the bench's seed) is used, so no validation sentence leaks into the transfer text.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadDataset, splitDataset } from '../src/pipeline/datasets/index.js';
import { augmentSentences } from './transfer-text.js';

const { values: args } = parseArgs({
  options: {
    data: { type: 'string' },
    copies: { type: 'string', default: '1' },
    'val-split': { type: 'string' },
    seed: { type: 'string', default: '42' },
    out: { type: 'string' },
  },
});
if (!args.data || !args.out) throw new Error('usage: make-transfer --data FILE --copies N [--val-split F] [--seed S] --out FILE');
const train = await loadDataset(args.data);
const split = args['val-split'] !== undefined ? Number(args['val-split']) : 0;
const texts = (split > 0 ? splitDataset(train, split, Number(args.seed)).train : train).map((e) => e.text);
const transfer = augmentSentences(texts, Number(args.copies), 7);
writeFileSync(args.out, transfer.map((text) => JSON.stringify({ text })).join('\n') + '\n');
console.log(`${texts.length} training sentences -> ${transfer.length} transfer texts in ${args.out}`);
