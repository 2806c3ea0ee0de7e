// `slim <command> --help` / `-h` through the real command (bin/slim.js in a child process): usage,
// every flag with its default, an example, exit 0 -- and nothing run: run from an empty
// directory, it stays empty (no models/ built by `start`, no openapi/ written), and the
// repository's openapi/openapi.json is untouched. Unknown flags are one line and exit 2.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runSlim } from './helpers/cli.js';
import { REPO_ROOT } from './helpers/paths.js';
import { BUILD_FLAGS } from '../src/pipeline/build-options.js';
import { EVAL_COMMAND } from '../src/pipeline/eval-command.js';
import { HF_ARCHITECTURES } from '../src/pipeline/checkpoints/hf.js';
import { OPTIONS } from '../src/serve/config.js';

const SUBCOMMANDS = ['build', 'eval', 'serve', 'start', 'openapi'] as const;
let empty = '';

before(async () => {
  empty = await mkdtemp(join(tmpdir(), 'slim-cli-help-'));
});
after(async () => {
  if (empty) await rm(empty, { recursive: true, force: true });
});

/** Help text with its wrapping undone, so that a flag's text can be looked up whole. */
const flat = (s: string) => s.replace(/\s+/g, ' ');

/** The flags (name and shown default) each subcommand's help must list. */
function expectedFlags(cmd: (typeof SUBCOMMANDS)[number]): { name: string; default?: string }[] {
  switch (cmd) {
    case 'build':
      return BUILD_FLAGS.map((f) => ({ name: f.name, default: f.default }));
    case 'eval':
      return EVAL_COMMAND.flags.map((f) => ({ name: f.name, default: f.default }));
    case 'serve':
    case 'start':
      return [{ name: 'config' }, ...OPTIONS.map((o) => ({ name: o.flag.slice(2), default: o.defaultText }))];
    case 'openapi':
      return [{ name: 'out', default: 'openapi/openapi.json' }];
  }
}

test('every subcommand answers --help and -h with usage, its flags and their defaults, and an example; exit 0, nothing run', async () => {
  const openapiFile = join(REPO_ROOT, 'openapi', 'openapi.json');
  const openapiBefore = createHash('sha256')
    .update(await readFile(openapiFile))
    .digest('hex');
  for (const cmd of SUBCOMMANDS) {
    for (const flag of ['--help', '-h']) {
      const r = await runSlim([cmd, flag], { cwd: empty });
      assert.equal(r.code, 0, `${cmd} ${flag}: ${r.stderr}`);
      assert.equal(r.stderr, '', `${cmd} ${flag} writes nothing on stderr`);
      assert.match(r.stdout, new RegExp(`^Usage: slim ${cmd} \\[options\\]`), `${cmd} ${flag}`);
      assert.match(r.stdout, /\nExamples?:\n {2}slim /, `${cmd} ${flag}: an example`);
      const text = flat(r.stdout);
      for (const f of expectedFlags(cmd)) {
        assert.ok(text.includes(`--${f.name}`), `${cmd} --help lists --${f.name}`);
        if (f.default !== undefined) assert.ok(text.includes(`(default: ${flat(f.default)})`), `${cmd} --help shows the default of --${f.name} (${f.default})`);
      }
    }
  }
  // Nothing was run: `start --help` built no model, `openapi --help` wrote no document.
  assert.deepEqual(await readdir(empty), []);
  const r = await runSlim(['openapi', '--help'], { cwd: REPO_ROOT });
  assert.equal(r.code, 0);
  assert.equal(
    createHash('sha256')
      .update(await readFile(openapiFile))
      .digest('hex'),
    openapiBefore,
    'openapi/openapi.json unchanged',
  );
});

test('slim build --help lists every kind of base and every model_type a Hugging Face directory may have', async () => {
  const r = await runSlim(['build', '--help'], { cwd: empty });
  assert.equal(r.code, 0);
  const text = flat(r.stdout);
  assert.match(text, /Bases \(--base\):/);
  assert.match(text, /builtin:use-lite Universal Sentence Encoder lite/);
  assert.match(text, /DIR a Hugging Face checkpoint: config\.json \+ model\.safetensors/);
  assert.match(text, /FILE\.bin a llama2\.c checkpoint, with tokenizer\.bin/);
  assert.match(text, /DIR a folder holding one llama2\.c \.bin and its tokenizer/);
  for (const type of HF_ARCHITECTURES.flatMap((a) => a.modelTypes)) assert.match(text, new RegExp(`model_type values built: [a-z0-9_, ]*\\b${type}\\b`), type);
});

test('unknown flags, missing values and stray arguments are one line on stderr, exit 2, nothing run', async () => {
  for (const cmd of SUBCOMMANDS) {
    const r = await runSlim([cmd, '--no-such-flag'], { cwd: empty });
    assert.equal(r.code, 2, `${cmd}: ${r.stderr}`);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`^slim ${cmd}: unknown option '--no-such-flag'`));
  }
  const typo = await runSlim(['build', '--dat', 'x.jsonl'], { cwd: empty });
  assert.equal(typo.code, 2);
  assert.equal(typo.stderr, "slim build: unknown option '--dat' (Did you mean --data?)\n");
  const missing = await runSlim(['openapi', '--out'], { cwd: empty });
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /^slim openapi: option '--out <FILE>' argument missing\n$/);
  const stray = await runSlim(['eval', 'models/spam/k1'], { cwd: empty });
  assert.equal(stray.code, 2);
  assert.match(stray.stderr, /^slim eval: too many arguments/);
  const unknown = await runSlim(['frobnicate'], { cwd: empty });
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /^slim: unknown command 'frobnicate' \(commands: build, eval, serve, start, openapi/);
  assert.deepEqual(await readdir(empty), []);
});

test("slim --help lists every subcommand; slim help <command> is that command's help; bare slim is usage with exit 2", async () => {
  const top = await runSlim(['--help'], { cwd: empty });
  assert.equal(top.code, 0);
  for (const cmd of SUBCOMMANDS) assert.match(top.stdout, new RegExp(`\\n {2}${cmd} +\\S`), cmd);
  const help = await runSlim(['help', 'eval'], { cwd: empty });
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: slim eval \[options\]/);
  const bare = await runSlim([], { cwd: empty });
  assert.equal(bare.code, 2);
  assert.match(bare.stdout, /^usage: slim <command>/);
});
