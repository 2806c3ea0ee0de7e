// Labelled datasets for `slim build` and `slim eval`: reading JSONL, CSV and TSV files and the
// built-in SpamAssassin corpus into {text, label} examples, checking them with messages that
// name the file and line, and the deterministic helpers the trainer needs (stratified split,
// label set, content hash). One file a concern:
//   load.ts           the dataset spec and format sniffing (extension, else the first line)
//   utf8.ts           strict UTF-8 decoding
//   jsonl.ts          JSONL, and the column of a JSON syntax error
//   delimited.ts      CSV / TSV (RFC 4180)
//   training-data.ts  checks by role and the training/validation pair of a build
//   splits.ts         label set, counts, stratified split, content hash
//   spam-assassin.ts  builtin:spam; email-text.ts: the text of a raw e-mail
export { DatasetError, type Example } from './example.js';
export { BUILTIN_DATASETS, datasetFormat, loadDataset, type DatasetFormat } from './load.js';
export { decodeUtf8, firstInvalidUtf8 } from './utf8.js';
export { jsonErrorOffset } from './jsonl.js';
export { parseDelimitedRecords } from './delimited.js';
export { checkLabelsKnown, checkTrainingSet, prepareTrainingData, type TrainingData } from './training-data.js';
export { datasetSha256, labelCounts, labelSet, splitDataset } from './splits.js';
export { SPAM_MAX_CHARS, emailText, htmlToText } from './email-text.js';
