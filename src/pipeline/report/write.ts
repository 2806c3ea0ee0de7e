// Writing models/<model>/report.{md,json,svg}, each file replaced atomically.
import { join } from 'node:path';
import { writeFileAtomic } from '../../atomic-write.js';
import { renderReportMarkdown } from './markdown.js';
import { renderReportSvg } from './svg.js';
import type { DepthReport } from './types.js';

/** Write report.md, report.json and report.svg into the model directory, each replaced atomically. */
export async function writeReport(modelDir: string, report: DepthReport): Promise<{ md: string; json: string; svg: string }> {
  const paths = { md: join(modelDir, 'report.md'), json: join(modelDir, 'report.json'), svg: join(modelDir, 'report.svg') };
  await writeFileAtomic(paths.json, `${JSON.stringify(report, null, 2)}\n`);
  await writeFileAtomic(paths.svg, renderReportSvg(report));
  await writeFileAtomic(paths.md, renderReportMarkdown(report));
  return paths;
}
