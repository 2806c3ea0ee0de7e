// Results files: loadtest/results/<date>-<scenario>.json (every number, plus the command and
// the machine) and .md (the tables people read). Shared by every loadtest script.
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';

export function today(): string {
  return new Date().toISOString().slice(0, 10);
}

export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  loadAverage1m: number;
  node: string;
  platform: string;
}

export function machine(): Machine {
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: availableParallelism(),
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    loadAverage1m: Number(loadavg()[0]!.toFixed(2)),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
  };
}

export function commandLine(script: string): string {
  return [`node ${script}`, ...process.argv.slice(2)].join(' ');
}

/** A markdown table; numbers are formatted by the caller. */
export function mdTable(headers: readonly string[], rows: ReadonlyArray<ReadonlyArray<string | number>>): string {
  return [`| ${headers.join(' | ')} |`, `|${headers.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

/** Round for tables: 3 significant digits below 100, integers above. */
export function n(value: number | null | undefined, digits = 3): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '-';
  if (Math.abs(value) >= 100) return value.toFixed(0);
  return Number(value.toPrecision(digits)).toString();
}

export function writeResult(outDir: string, name: string, json: unknown, markdown: string): { json: string; md: string } {
  mkdirSync(outDir, { recursive: true });
  const files = { json: join(outDir, `${name}.json`), md: join(outDir, `${name}.md`) };
  writeFileSync(files.json, JSON.stringify(json, null, 2) + '\n');
  writeFileSync(files.md, markdown.endsWith('\n') ? markdown : markdown + '\n');
  return files;
}
