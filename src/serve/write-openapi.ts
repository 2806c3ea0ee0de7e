// Writes the committed OpenAPI document from the route schemas:
//   node dist/src/serve/write-openapi.js [FILE]      (default openapi/openapi.json)
// or openapiCommand(argv) from the CLI (`slim openapi [--out FILE]`).
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultConfig } from './config.js';
import { formatOpenApi, OPENAPI_FILE } from './openapi.js';
import { buildApp } from './server.js';

/** The document the server serves at /openapi.json. It depends only on the routes, not on models. */
export async function openApiDocument(): Promise<unknown> {
  const { app, core } = await buildApp({ ...defaultConfig(), logLevel: 'silent' }, { logger: false });
  try {
    await app.ready();
    return app.swagger();
  } finally {
    await app.close();
    await core.close();
  }
}

export async function writeOpenApiFile(file = OPENAPI_FILE): Promise<string> {
  const path = resolve(file);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, formatOpenApi(await openApiDocument()));
  return path;
}

/** `slim openapi [--out FILE]`: returns the exit code. */
export async function openapiCommand(argv: readonly string[]): Promise<number> {
  const at = argv.indexOf('--out');
  const unknown = argv.filter((a, i) => a !== '--out' && i !== at + 1);
  if (unknown.length > 0 || (at >= 0 && argv[at + 1] === undefined)) {
    console.error('usage: slim openapi [--out FILE]   (default openapi/openapi.json)');
    return 2;
  }
  console.log(`wrote ${await writeOpenApiFile(at >= 0 ? argv[at + 1] : OPENAPI_FILE)}`);
  return 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await openapiCommand(process.argv[2] ? ['--out', process.argv[2]] : []);
}
