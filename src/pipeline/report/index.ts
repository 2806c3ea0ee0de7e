// The depth report, models/<model>/report.{md,json,svg}: what each depth, training mode and
// precision costs and buys (accuracy, macro-F1, size, latency, training speed), and which
// variant to serve. Also the latency measurement the build runs for it. One file a concern:
//   types.ts           the report's shape (report.json)
//   recommendation.ts  the variant to serve, and the report completed with it
//   markdown.ts, svg.ts, write.ts   the three files (format.ts: their number formats)
//   latency.ts         median session.run time per batch
export type { DepthReport, DepthResult, DistillationRecord } from './types.js';
export { RECOMMENDATION_TOLERANCE, buildReport, recommendVariant } from './recommendation.js';
export { formatBytes, formatCount } from './format.js';
export { renderReportMarkdown } from './markdown.js';
export { axisTicks, renderReportSvg } from './svg.js';
export { writeReport } from './write.js';
export { makeBatch, measureLatency, type LatencyMeasurement, type TokenizedBatch } from './latency.js';
